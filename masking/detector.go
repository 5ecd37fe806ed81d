package masking

import (
	"bytes"
	"fmt"
	"math"
	"math/bits"
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

// Built-in detector ids: the bits of a candSet.
const (
	idEmail = iota
	idCard
	idSSN
	idPhone
	idIBAN
	idIP
	idAWSKey
	idJWT
	idPrivateKey
	idSecret
	numBuiltins
)

var builtinIDs = map[string]int{
	DetectEmail: idEmail, DetectCard: idCard, DetectSSN: idSSN, DetectPhone: idPhone,
	DetectIBAN: idIBAN, DetectIP: idIP, DetectAWSKey: idAWSKey, DetectJWT: idJWT,
	DetectPrivateKey: idPrivateKey, DetectSecret: idSecret,
}

// A candSet is a set of built-in detectors (bit 1<<id), and of the halves
// of the IP detector (candIPv4, candIPv6).
type candSet uint32

const (
	candIPv4 candSet = 1 << (numBuiltins + iota)
	candIPv6
	candDetectors = 1<<numBuiltins - 1
)

// numberIDs are the detectors whose candidates start at a digit run.
const numberIDs = candSet(1<<idCard | 1<<idSSN | 1<<idPhone | 1<<idIBAN | 1<<idIP)

// statBits packs, per byte, a one in the census field of its class: six
// 10-bit fields (digits, capitals, '@', '.', ':', '-') summed in one
// register, flushed before they overflow.
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

// census returns the built-in detectors that may match in b, from a count
// of its digits, capitals, '@', '.', ':' and '-' taken in one pass (one
// table load and one add per byte): a card needs 13 digits, an email an
// '@' and a '.', an IP address three dots or two colons. Each condition
// holds for every match of its detector (the shortest are "a@b.cd", 13
// card digits, "AAA-GG-SSSS", "+12345678", a 15-character IBAN, "1.2.3.4"
// or "::1", 20-byte keys and secrets), except that JWTs and PEM blocks are
// looked for only in values of 20 bytes or more: a shorter one is a
// fragment.
func census(b []byte) candSet {
	var digit, upper, at, dot, colon, dash int
	for rest := b; ; {
		k := min(len(rest), 1023)
		acc := statSum(rest[:k])
		const f = 1<<10 - 1
		digit += int(acc & f)
		upper += int(acc >> 10 & f)
		at += int(acc >> 20 & f)
		dot += int(acc >> 30 & f)
		colon += int(acc >> 40 & f)
		dash += int(acc >> 50 & f)
		if k == len(rest) {
			break
		}
		rest = rest[k:]
	}
	var c candSet
	n := len(b)
	if n >= 5 && at >= 1 && dot >= 1 {
		c |= 1 << idEmail
	}
	if digit >= 8 {
		if digit >= 13 {
			c |= 1 << idCard
		}
		if n >= 11 && digit >= 9 {
			c |= 1 << idSSN
		}
		if n >= 9 {
			c |= 1 << idPhone
		}
	}
	if n >= 15 && upper >= 2 && digit >= 2 {
		c |= 1 << idIBAN
	}
	if n >= 7 && dot >= 3 && digit >= 4 {
		c |= 1<<idIP | candIPv4
	}
	// Eight groups take seven colons, six and an IPv4 address six; fewer
	// need a "::". Clocks ("10:30:00") have two or three.
	if colon >= 6 || colon >= 2 && bytes.Contains(b, doubleColon) {
		c |= 1<<idIP | candIPv6
	}
	if n >= 20 {
		c |= 1 << idSecret
		if upper >= 4 {
			c |= 1 << idAWSKey
		}
		if dot >= 2 {
			c |= 1 << idJWT
		}
		if dash >= 5 {
			c |= 1 << idPrivateKey
		}
	}
	return c
}

var doubleColon = []byte("::")

// censusMin is, per built-in detector, the shortest value in which census
// may find it a candidate (the lengths its conditions imply: an IP address
// may be "::").
var censusMin = [numBuiltins]int{
	idEmail: 5, idCard: 13, idSSN: 11, idPhone: 9, idIBAN: 15, idIP: 2,
	idAWSKey: 20, idJWT: 20, idPrivateKey: 20, idSecret: 20,
}

// minCandidate returns the length of the shortest value in which census
// may find one of the built-in detectors in c.
func minCandidate(c candSet) int {
	n := math.MaxInt
	for d := c & candDetectors; d != 0; d &= d - 1 {
		n = min(n, censusMin[bits.TrailingZeros32(uint32(d))])
	}
	return n
}

// statSum sums statBits over c, at most 1023 bytes.
func statSum(c []byte) uint64 {
	var a0, a1 uint64
	for len(c) >= 8 {
		a0 += statBits[c[0]] + statBits[c[1]] + statBits[c[2]] + statBits[c[3]]
		a1 += statBits[c[4]] + statBits[c[5]] + statBits[c[6]] + statBits[c[7]]
		c = c[8:]
	}
	if len(c) >= 4 {
		a0 += statBits[c[0]] + statBits[c[1]]
		a1 += statBits[c[2]] + statBits[c[3]]
		c = c[4:]
	}
	if len(c) >= 2 {
		a0 += statBits[c[0]]
		a1 += statBits[c[1]]
		c = c[2:]
	}
	if len(c) == 1 {
		a0 += statBits[c[0]]
	}
	return a0 + a1
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
