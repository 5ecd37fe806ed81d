package masking

import (
	"fmt"
	"regexp"
	"slices"
)

// A Detector finds sensitive values by content. Find returns the first
// match b[i:j] with i >= start, looking at all of b for context (a match
// must not continue a longer number or token that begins before start).
// A Detector must be safe for concurrent use and must not retain b.
//
// The built-in detectors pair a cheap prefilter (a byte or literal the
// value must contain, found with the vectorised bytes functions) with a
// validator (Luhn, mod 97, area numbers, a JSON header, ...).
type Detector interface {
	Name() string
	Find(b []byte, start int) (i, j int, ok bool)
}

// Names of the built-in detectors.
const (
	DetectEmail      = "email"
	DetectCard       = "credit_card"
	DetectSSN        = "ssn"
	DetectPhone      = "phone"
	DetectIBAN       = "iban"
	DetectIP         = "ip"
	DetectAWSKey     = "aws_key"
	DetectJWT        = "jwt"
	DetectPrivateKey = "private_key"
	DetectSecret     = "secret"
)

var builtins = map[string]Detector{
	DetectEmail:      emailDetector{},
	DetectCard:       cardDetector{},
	DetectSSN:        ssnDetector{},
	DetectPhone:      phoneDetector{},
	DetectIBAN:       ibanDetector{},
	DetectIP:         ipDetector{},
	DetectAWSKey:     awsKeyDetector{},
	DetectJWT:        jwtDetector{},
	DetectPrivateKey: privateKeyDetector{},
	DetectSecret:     secretDetector{},
}

// Builtin returns the built-in detector with the given name.
func Builtin(name string) (Detector, bool) {
	d, ok := builtins[name]
	return d, ok
}

// IsBuiltin reports whether name is a built-in detector.
func IsBuiltin(name string) bool {
	_, ok := builtins[name]
	return ok
}

// BuiltinNames lists the built-in detectors, sorted.
func BuiltinNames() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// RegexpDetector returns a detector for a user-defined pattern (Go RE2
// syntax), with an optional validator that confirms each match (return
// false to reject it; nil accepts every non-empty match). The pattern sees
// the value from the search position on, so ^ and \b anchor there.
func RegexpDetector(name, pattern string, validate func(match []byte) bool) (Detector, error) {
	if !validName(name) {
		return nil, fmt.Errorf("masking: detector name %q: want letters, digits, _ and -", name)
	}
	if name == "column" || name == "json" || IsBuiltin(name) {
		return nil, fmt.Errorf("masking: detector name %q is taken", name)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("masking: detector %q: %w", name, err)
	}
	return &regexpDetector{name: name, re: re, validate: validate}, nil
}

type regexpDetector struct {
	name     string
	re       *regexp.Regexp
	validate func([]byte) bool
}

func (d *regexpDetector) Name() string { return d.name }

func (d *regexpDetector) Find(b []byte, start int) (int, int, bool) {
	// regexp uses the pattern's literal prefix, if any, as its prefilter.
	for start < len(b) {
		loc := d.re.FindIndex(b[start:])
		if loc == nil {
			return 0, 0, false
		}
		i, j := start+loc[0], start+loc[1]
		if j > i && (d.validate == nil || d.validate(b[i:j])) {
			return i, j, true
		}
		start = i + 1
	}
	return 0, 0, false
}

// textStats is a one-pass census of a value that lets a built-in detector
// rule itself out before it scans: a card needs 13 digits, an email an
// '@', a generic secret a run of 20 token bytes.
type textStats struct {
	n                                  int
	digit, upper, at, dot, colon, dash int
	maxRun                             int // longest run of secret token bytes
}

// statBits packs, per byte, a one in the census field of its class: six
// 10-bit fields summed in one register (flushed before they overflow).
var statBits = func() (t [256]uint64) {
	for c := '0'; c <= '9'; c++ {
		t[c] = 1 << 0
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = 1 << 10
	}
	t['@'], t['.'], t[':'], t['-'] = 1<<20, 1<<30, 1<<40, 1<<50
	return t
}()

var tokenBit = func() (t [256]int) {
	for c := range t {
		if ctype[c]&cToken != 0 {
			t[c] = 1
		}
	}
	return t
}()

func (s *textStats) scan(b []byte) {
	*s = textStats{n: len(b)}
	last, maxRun := -1, 0 // last: index of the last non-token byte
	for base := 0; base < len(b); base += 1023 {
		var acc uint64
		for i, c := range b[base:min(len(b), base+1023)] {
			acc += statBits[c]
			if tokenBit[c] == 0 {
				last = base + i
			}
			maxRun = max(maxRun, base+i-last)
		}
		const f = 1<<10 - 1
		s.digit += int(acc & f)
		s.upper += int(acc >> 10 & f)
		s.at += int(acc >> 20 & f)
		s.dot += int(acc >> 30 & f)
		s.colon += int(acc >> 40 & f)
		s.dash += int(acc >> 50 & f)
	}
	s.maxRun = maxRun
}

// need is what a value must have for a detector to match in it: at least
// n bytes, a token run of maxRun bytes, and of digits, capitals, '@', '.',
// ':' and '-' as many as given.
type need textStats

// pack puts the eight counts, capped at 127, in the bytes of a word, so
// that a need is checked against a value in three operations (met).
func (s *textStats) pack() uint64 {
	var w uint64
	for i, v := range [8]int{s.n, s.maxRun, s.digit, s.upper, s.at, s.dot, s.colon, s.dash} {
		w |= uint64(min(v, 127)) << (8 * i)
	}
	return w
}

// met reports whether every byte of have is at least the byte of want
// (both packed): with the high bits set in have, no byte subtraction
// borrows into the next, and a byte keeps its high bit exactly when it
// did not go below zero.
func met(have, want uint64) bool {
	const hi = 0x8080808080808080
	return ((have|hi)-want)&hi == hi
}

// prefilters are the built-in detectors' prefilters: a value must meet
// one of the needs (a detector without an entry always scans).
var prefilters = map[string][]uint64{}

func init() {
	for name, needs := range prefilterNeeds {
		for _, nd := range needs {
			ts := textStats(nd)
			prefilters[name] = append(prefilters[name], ts.pack())
		}
	}
}

var prefilterNeeds = map[string][]need{
	DetectEmail:      {{n: 5, at: 1, dot: 1}},
	DetectCard:       {{n: 13, digit: 13}},
	DetectSSN:        {{n: 11, digit: 9}},
	DetectPhone:      {{n: 9, digit: 8}},
	DetectIBAN:       {{n: 15, upper: 2, digit: 2}},
	DetectIP:         {{n: 7, dot: 3, digit: 4}, {n: 3, colon: 2}},
	DetectAWSKey:     {{n: 20, maxRun: 20, upper: 4}},
	DetectJWT:        {{n: 20, maxRun: 10, dot: 2}},
	DetectPrivateKey: {{n: 20, dash: 5}},
	DetectSecret:     {{n: minSecret, maxRun: minSecret}},
}

// Byte classes for the hand-written scanners.
const (
	cDigit  = 1 << iota
	cUpper  // A-Z
	cLower  // a-z
	cHex    // 0-9 A-F a-f
	cURL64  // base64url: A-Z a-z 0-9 - _
	cToken  // secret token bytes: A-Z a-z 0-9 + / - _
	cLocal  // email local part: A-Z a-z 0-9 . _ % + -
	cSpace  // ASCII white space
	cAlnum  = cDigit | cUpper | cLower
	cLetter = cUpper | cLower
)

var ctype = func() (t [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] |= cDigit | cHex | cURL64 | cToken | cLocal
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] |= cUpper | cURL64 | cToken | cLocal
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= cLower | cURL64 | cToken | cLocal
	}
	for _, c := range "ABCDEFabcdef" {
		t[c] |= cHex
	}
	t['-'] |= cURL64 | cToken | cLocal
	t['_'] |= cURL64 | cToken | cLocal
	t['+'] |= cToken | cLocal
	t['/'] |= cToken
	t['.'] |= cLocal
	t['%'] |= cLocal
	for _, c := range " \t\n\r\v\f" {
		t[c] |= cSpace
	}
	return t
}()

func isDigit(c byte) bool { return c-'0' < 10 }
func isAlnum(c byte) bool { return ctype[c]&cAlnum != 0 }
func isUpper(c byte) bool { return c-'A' < 26 }

// digitBefore reports whether b[i-1] is a digit.
func digitBefore(b []byte, i int) bool { return i > 0 && isDigit(b[i-1]) }

// continuesNumber reports whether position i (just past a candidate)
// continues it as a longer number: a digit, or a dot or dash and a digit
// ("4111111111111111.25", "123-45-6789-0"). A comma does not: CSV
// separates values with it.
func continuesNumber(b []byte, i int) bool {
	if i >= len(b) {
		return false
	}
	if isDigit(b[i]) {
		return true
	}
	switch b[i] {
	case '.', '-':
		return i+1 < len(b) && isDigit(b[i+1])
	}
	return false
}

// extendsNumber reports whether a candidate starting at i continues a
// number before it: a digit, or a dot or dash after a digit ("0.4111...").
func extendsNumber(b []byte, i int) bool {
	if i == 0 {
		return false
	}
	if isDigit(b[i-1]) {
		return true
	}
	switch b[i-1] {
	case '.', '-':
		return i >= 2 && isDigit(b[i-2])
	}
	return false
}

// inDashedToken reports whether a candidate b[i:j] is part of a longer
// token joined by dashes, dots or slashes ("42dc403e-0390-4460-8175-...").
func inDashedToken(b []byte, i, j int) bool {
	if i >= 2 && (b[i-1] == '-' || b[i-1] == '.' || b[i-1] == '/') && isAlnum(b[i-2]) {
		return true
	}
	return j+1 < len(b) && (b[j] == '-' || b[j] == '/') && isAlnum(b[j+1])
}

// nextDigitRun returns the start of the first run of digits at or after
// p that does not begin before p.
func nextDigitRun(b []byte, p int) int {
	for p < len(b) && isDigit(b[p]) && digitBefore(b, p) {
		p++
	}
	for p < len(b) && !isDigit(b[p]) {
		p++
	}
	return p
}

func skipDigits(b []byte, p int) int {
	for p < len(b) && isDigit(b[p]) {
		p++
	}
	return p
}
