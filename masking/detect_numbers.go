package masking

import (
	"encoding/binary"
	"math/bits"
)

// Detectors for numbers: payment cards, US SSNs, phone numbers, IBANs.
//
// Each has a Find for the Detector interface and a run form the Masker
// uses: one pass over the maximal digit runs of a value (numberPass)
// tries the candidates of all of them, and of IPv4 addresses, each of
// which starts at or just before a run.

// digitMask8 returns a bit mask of the ASCII digits among the eight bytes
// of w, bit k for byte k (little-endian). Each byte's low seven bits are
// added to constants that carry into its high bit exactly when they are
// at least '0' and at least '9'+1; no byte carries into the next.
func digitMask8(w uint64) uint64 {
	const (
		lo7 = 0x7f7f7f7f7f7f7f7f
		hi  = 0x8080808080808080
	)
	x := w & lo7
	ge0 := x + 0x5050505050505050 // 0x80 - '0'
	gt9 := x + 0x4646464646464646 // 0x80 - '9' - 1
	d := ge0 &^ gt9 &^ w & hi
	// Gather the high bits into the top byte (each lands at 56 + k, and
	// no two partial products meet).
	return (d >> 7) * 0x0102040810204080 >> 56
}

// numberRules are the Masker rules of the detectors in a numberPass, or
// -1; ipv4 is the IP detector's rule when its matches in the value can
// only be IPv4 addresses.
type numberRules struct {
	card, ssn, phone, iban, ipv4 int
}

// digitRun is a maximal run of ASCII digits, b[s:e].
type digitRun struct{ s, e int32 }

// maxRuns is how many digit runs digitRuns collects at a time.
const maxRuns = 32

// digitRuns stores in runs the maximal digit runs of b that start at p or
// later (p not inside a run), up to maxRuns of them; it returns how many,
// and where to go on (len(b) when it found all).
//
// It takes b 64 bytes at a time as a bit mask of its digits (digitMask8,
// eight bytes at a time), and the starts and ends of the runs from the
// mask with shifts: branches on the bytes, mispredicted at every run
// boundary, would cost more than the whole scan.
func digitRuns(b []byte, p int, runs *[maxRuns]digitRun) (n, next int) {
	open := -1 // the start of a run that goes on past the chunk
	for base := p; base < len(b); base += 64 {
		var m uint64 // bit k: b[base+k] is a digit
		for k := 0; k < 64 && base+k < len(b); k += 8 {
			m |= digitMask8(wordAt(b, base+k)) << k
		}
		starts := m &^ (m << 1)
		ends := m &^ (m >> 1) // the last digit of each run
		if m>>63 != 0 && base+64 < len(b) && isDigit(b[base+64]) {
			ends &^= 1 << 63 // the last run goes on in the next chunk
		}
		if open >= 0 {
			starts &^= 1 // bit 0 goes on the open run
			if ends == 0 {
				continue // the whole chunk is digits
			}
			e := base + bits.TrailingZeros64(ends) + 1
			ends &= ends - 1
			runs[n] = digitRun{int32(open), int32(e)}
			if n++; n == maxRuns {
				return n, e
			}
			open = -1
		}
		for starts != 0 {
			s := base + bits.TrailingZeros64(starts)
			starts &= starts - 1
			if ends == 0 {
				open = s
				break
			}
			e := base + bits.TrailingZeros64(ends) + 1
			ends &= ends - 1
			runs[n] = digitRun{int32(s), int32(e)}
			if n++; n == maxRuns {
				return n, e
			}
		}
	}
	return n, len(b)
}

// wordAt returns the eight bytes of b from i, little-endian, with zeros
// past the end of b.
func wordAt(b []byte, i int) uint64 {
	switch {
	case len(b)-i >= 8:
		return binary.LittleEndian.Uint64(b[i:])
	case i >= len(b):
		return 0
	case len(b) >= 8:
		return binary.LittleEndian.Uint64(b[len(b)-8:]) >> (8 * (8 - (len(b) - i)) & 63)
	}
	var w uint64
	for k, x := range b[i:] {
		w |= uint64(x) << (8 * k & 63)
	}
	return w
}

// Gates of a digit run: the candidates it may start.
const (
	gateCard      = 1 << iota // a card number at the run
	gateSSN                   // an SSN at the run
	gatePhoneSign             // a phone number at the '+' or '(' before the run
	gatePhone                 // a phone number at the run
	gateIBAN                  // an IBAN at the two capitals before the run
	gateIPv4                  // an IPv4 address at the run
)

// around returns the two bytes before b[s:e] and the two after it, or 0
// where there are none.
func around(b []byte, s, e int) (prev2, prev, next, next2 byte) {
	if s >= 2 {
		prev2, prev = b[s-2], b[s-1]
	} else if s == 1 {
		prev = b[0]
	}
	if e+1 < len(b) {
		next, next2 = b[e], b[e+1]
	} else if e < len(b) {
		next = b[e]
	}
	return
}

// gatesAt returns the gates of a run of n digits starting with first,
// with prev2 and prev before it and next and next2 after it: a lookup in
// gateTable by their classes, which costs a few loads rather than the
// branches gatesOf takes (mispredicted often: the runs of a value differ
// from one to the next). The index is a sum of terms loaded at once,
// rather than a chain of multiplications (gateIndex).
func gatesAt(first byte, n int, prev2, prev, next, next2 byte) uint8 {
	t := &gateTerms
	return gateTable[int(t.prev[prev])+int(t.prev2[prev2])+int(t.len[min(n, len(t.len)-1)])+
		int(t.first[first-'0'])+int(t.next[next])+int(t.next2[next2])]
}

// gateTerms are the classes of gatesAt multiplied out: gateIndex of one
// class, the others zero.
var gateTerms = func() (t struct {
	prev, prev2, next, next2 [256]uint16
	len                      [21]uint16
	first                    [10]uint16
}) {
	for c := range 256 {
		t.prev[c] = uint16(gateIndex(prevClass[c], 0, 0, 0, 0, 0))
		t.prev2[c] = uint16(gateIndex(0, prev2Class[c], 0, 0, 0, 0))
		t.next[c] = uint16(gateIndex(0, 0, 0, 0, nextClass[c], 0))
		t.next2[c] = uint16(gateIndex(0, 0, 0, 0, 0, next2Class[c]))
	}
	for n, k := range lenClass {
		t.len[n] = uint16(gateIndex(0, 0, k, 0, 0, 0))
	}
	for d, k := range firstClass {
		t.first[d] = uint16(gateIndex(0, 0, 0, k, 0, 0))
	}
	return
}()

// Classes of the bytes around a digit run (gatesAt). prev is the byte
// before the run, prev2 the one before it; next and next2 follow the run.
const (
	pOther   = iota // none, a space, punctuation
	pLower          // a lower-case letter
	pUpper          // a capital
	pPlus           // '+'
	pParen          // '('
	pDotDash        // '.' or '-'
	numP
)

const (
	p2Other = iota // prev2 is none or something else
	p2Digit
	p2Upper
	numP2
)

const (
	xDot   = iota // next is '.'
	xSep          // ' ' or '-'
	xOther        // anything else, or none
)

const (
	dNone = iota // next2 is not a digit, or none
	d01          // '0' or '1'
	d29          // '2' to '9'
)

// Length classes: 1, 2, 3, 4-6, 7-8, 9-12, 13-19, 20 and more digits.
var lenClass = [21]uint8{0, 0, 1, 2, 3, 3, 3, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7}

// First-digit classes: '0', '1', '2', '3'-'6' ('2'-'6' are card issuers'),
// '7'-'9'.
var firstClass = [10]uint8{0, 1, 2, 3, 3, 3, 3, 4, 4, 4}

var prevClass, prev2Class, nextClass, next2Class = func() (p, p2, x, d [256]uint8) {
	for c := range 256 {
		p[c], x[c] = pOther, xOther
	}
	for c := 'a'; c <= 'z'; c++ {
		p[c] = pLower
	}
	for c := 'A'; c <= 'Z'; c++ {
		p[c], p2[c] = pUpper, p2Upper
	}
	p['+'], p['('], p['.'], p['-'] = pPlus, pParen, pDotDash, pDotDash
	for c := '0'; c <= '9'; c++ {
		p2[c], d[c] = p2Digit, d29
	}
	d['0'], d['1'] = d01, d01
	x['.'], x[' '], x['-'] = xDot, xSep, xSep
	return
}()

func gateIndex(p, p2, n, f, x, d uint8) int {
	return ((((int(p)*numP2+int(p2))*8+int(n))*5+int(f))*3+int(x))*3 + int(d)
}

var gateTable = func() (t [numP * numP2 * 8 * 5 * 3 * 3]uint8) {
	for p := range uint8(numP) {
		for p2 := range uint8(numP2) {
			for n := range uint8(8) {
				for f := range uint8(5) {
					for x := range uint8(3) {
						for d := range uint8(3) {
							t[gateIndex(p, p2, n, f, x, d)] = gatesOf(p, p2, n, f, x, d)
						}
					}
				}
			}
		}
	}
	return
}()

// gatesOf returns the gates of a digit run with the given classes around
// it. Each gate repeats the first tests of its validator (cardAt, ssnAt,
// phoneAt, ibanRun, ipv4Run), so that a run it stops would fail the
// validator; most runs pass none.
func gatesOf(p, p2, n, f, x, d uint8) uint8 {
	var g uint8
	// Up to three digits (three only from "0", "1" or "2": at most 255),
	// a dot and a digit.
	if (n <= 1 || n == 2 && f <= 2) && x == xDot && d != dNone {
		g |= gateIPv4
	}
	if p == pDotDash && p2 == p2Digit {
		return g // no card, SSN, phone number or IBAN continues a number
	}
	free := p != pLower && p != pUpper // no letter before
	if free && (f == 2 || f == 3) && (n == 6 || (n == 2 || n == 3) && x == xSep && d != dNone) {
		g |= gateCard // an issuer's digit; 13 to 19 digits, or groups of 3 to 6
	}
	if free && p != pPlus {
		nanp := n == 2 && f >= 2 && x != xOther && d == d29 // "NXX-NXX"
		one := n == 0 && f == 1 && x != xOther              // "1-NXX"
		trunk := f == 0 && n >= 1 && n <= 4 && x == xSep && d != dNone
		if nanp || one || trunk { // "0N NN..."
			g |= gatePhone
		}
	}
	if n == 2 && x == xSep && d != dNone {
		g |= gateSSN // "AAA-GG"; the caller checks the length
	}
	if p == pPlus && f != 0 || p == pParen && n == 2 && f >= 2 {
		g |= gatePhoneSign // "+CC", "(NXX"
	}
	if p == pUpper && p2 == p2Upper && n >= 1 {
		g |= gateIBAN // "CC" and two check digits
	}
	return g
}

// numberPass appends the matches in b of the detectors with a rule in
// rules, trying the candidates at each digit run in one pass over the
// runs. Each detector's matches are those of repeated calls to its Find
// from 0 and from the end of its last match (card, ssn, ...: where its
// next match may start).
func numberPass(b []byte, rules numberRules, out []span) []span {
	const off = 1 << 62 // where the next match of a detector not in the pass may start
	nextOf := func(rule int) int {
		if rule < 0 {
			return off
		}
		return 0
	}
	card, ssn, phone, iban, ipv4 := nextOf(rules.card), nextOf(rules.ssn), nextOf(rules.phone), nextOf(rules.iban), nextOf(rules.ipv4)
	var runs [maxRuns]digitRun
	for p := 0; p < len(b); {
		var nr int
		nr, p = digitRuns(b, p, &runs)
		for _, r := range runs[:nr] {
			s, e := int(r.s), int(r.e)
			prev2, prev, next, next2 := around(b, s, e)
			g := gatesAt(b[s], e-s, prev2, prev, next, next2)
			if g == 0 {
				continue
			}
			if g&gateCard != 0 && s >= card {
				if j, ok := cardAt(b, s); ok {
					out = append(out, span{s, j, rules.card})
					card = j
				}
			}
			if g&gateSSN != 0 && s >= ssn && s+11 <= len(b) && ssnAt(b, s) {
				out = append(out, span{s, s + 11, rules.ssn})
				ssn = s + 11
			}
			if g&gatePhoneSign != 0 && s-1 >= phone {
				if j, ok := phoneAt(b, s-1); ok {
					out = append(out, span{s - 1, j, rules.phone})
					phone = j
				}
			}
			if g&gatePhone != 0 && s >= phone {
				if j, ok := phoneAt(b, s); ok {
					out = append(out, span{s, j, rules.phone})
					phone = j
				}
			}
			if g&gateIBAN != 0 && s-2 >= iban {
				if q, j, ok := ibanRun(b, iban, s); ok {
					out = append(out, span{q, j, rules.iban})
					iban = j
				}
			}
			if g&gateIPv4 != 0 && s >= ipv4 {
				if j, ok := ipv4Run(b, s, e); ok {
					out = append(out, span{s, j, rules.ipv4})
					ipv4 = j
				}
			}
		}
	}
	return out
}

// cardDetector finds payment card numbers: 13 to 19 digits, bare or in
// groups of 3 to 6 separated by single spaces or dashes, with a known
// issuer prefix and a valid Luhn check digit. A number that continues a
// longer number (a decimal fraction, a dashed id) or a word (a hex hash)
// is not a card.
type cardDetector struct{}

func (cardDetector) Name() string { return DetectCard }

func (cardDetector) Find(b []byte, start int) (int, int, bool) {
	for p := nextDigitRun(b, start); p < len(b); p = nextDigitRun(b, p) {
		if j, ok := cardAt(b, p); ok {
			return p, j, true
		}
		p = skipDigits(b, p)
	}
	return 0, 0, false
}

func cardAt(b []byte, q int) (int, bool) {
	if extendsNumber(b, q) || q > 0 && isAlnum(b[q-1]) {
		return 0, false
	}
	type group struct{ s, e int }
	var gs [8]group
	ng := 0
	var sep byte
	j := q
	for ng < len(gs) {
		g := j
		j = skipDigits(b, j)
		gs[ng] = group{g, j}
		ng++
		if j-g > 19 {
			break
		}
		if j+1 < len(b) && (b[j] == ' ' || b[j] == '-') && (sep == 0 || sep == b[j]) && isDigit(b[j+1]) {
			sep = b[j]
			j++
			continue
		}
		break
	}
	// The longest valid run of groups wins. Groups separated by dashes
	// must all belong to the number; with spaces a card may be followed
	// by another number.
	for k := ng; k >= 1; k-- {
		if k < ng && sep == '-' {
			break
		}
		end := gs[k-1].e
		if k == ng && (continuesNumber(b, end) || end < len(b) && isAlnum(b[end])) {
			continue
		}
		var d [19]byte
		nd := 0
		ok := true
		for g := 0; g < k && ok; g++ {
			l := gs[g].e - gs[g].s
			if k > 1 && (l < 3 || l > 6) || nd+l > len(d) {
				ok = false
				break
			}
			nd += copy(d[nd:], b[gs[g].s:gs[g].e])
		}
		if ok && nd >= 13 && issuerLength(d[:nd]) && luhn(d[:nd]) {
			return end, true
		}
	}
	return 0, false
}

// issuerLength reports whether digits start with a card issuer's prefix
// and have a length that issuer uses.
func issuerLength(d []byte) bool {
	n := len(d)
	switch d[0] {
	case '4': // Visa
		return n >= 13 && n <= 19
	case '5': // Mastercard 51-55, Maestro 50, 56-59
		return n >= 13 && n <= 19
	case '6': // Discover, UnionPay, Maestro, RuPay
		return n >= 13 && n <= 19
	case '3': // Amex 34/37 (15), JCB 35, Diners 30/36/38/39
		if d[1] == '4' || d[1] == '7' {
			return n == 15
		}
		return n >= 14 && n <= 19
	case '2': // Mir 2200-2204, Mastercard 2221-2720
		p := int(d[1]-'0')*100 + int(d[2]-'0')*10 + int(d[3]-'0')
		return (p >= 200 && p <= 204 || p >= 221 && p <= 720) && n >= 16 && n <= 19
	}
	return false
}

func luhn(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// ssnDetector finds US Social Security numbers written AAA-GG-SSSS (or
// with spaces), excluding numbers the SSA never issues: area 000, 666 or
// 900-999, group 00, serial 0000.
type ssnDetector struct{}

func (ssnDetector) Name() string { return DetectSSN }

func (ssnDetector) Find(b []byte, start int) (int, int, bool) {
	for p := nextDigitRun(b, start); p+11 <= len(b); p = nextDigitRun(b, p) {
		if ssnAt(b, p) {
			return p, p + 11, true
		}
		p = skipDigits(b, p)
	}
	return 0, 0, false
}

func ssnAt(b []byte, p int) bool {
	s := b[p : p+11]
	sep := s[3]
	if sep != '-' && sep != ' ' || s[6] != sep {
		return false
	}
	for _, k := range [...]int{0, 1, 2, 4, 5, 7, 8, 9, 10} {
		if !isDigit(s[k]) {
			return false
		}
	}
	if extendsNumber(b, p) || continuesNumber(b, p+11) {
		return false
	}
	area := int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0')
	if area == 0 || area == 666 || area >= 900 {
		return false
	}
	if s[4] == '0' && s[5] == '0' {
		return false
	}
	return !(s[7] == '0' && s[8] == '0' && s[9] == '0' && s[10] == '0')
}

// phoneDetector finds phone numbers: E.164 and international forms
// ("+14155552671", "+44 20 7946 0958", "+49 (0)30 1234567"), North
// American national forms ("(415) 555-2671", "415-555-2671",
// "415.555.2671", "1-415-555-2671") and trunk-prefixed national forms
// ("020 7946 0958", "06 12 34 56 78"). Bare digit strings without a '+'
// are not phone numbers: they are too often ids.
type phoneDetector struct{}

func (phoneDetector) Name() string { return DetectPhone }

func (phoneDetector) Find(b []byte, start int) (int, int, bool) {
	for p := start; p < len(b); p++ {
		c := b[p]
		if !(isDigit(c) || c == '+' || c == '(') {
			continue
		}
		if j, ok := phoneAt(b, p); ok {
			return p, j, true
		}
		if isDigit(c) {
			p = skipDigits(b, p) - 1
		}
	}
	return 0, 0, false
}

// phoneAt tries a phone number starting at b[p], a digit, '+' or '('.
func phoneAt(b []byte, p int) (int, bool) {
	c := b[p]
	if p > 0 && (isAlnum(b[p-1]) || b[p-1] == '+' || b[p-1] == '(' && c == '(') {
		return 0, false
	}
	var j int
	var ok bool
	switch {
	case c == '+':
		j, ok = e164At(b, p)
	case extendsNumber(b, p):
	default:
		if j, ok = nanpAt(b, p); !ok && c == '0' {
			j, ok = trunkAt(b, p)
		}
	}
	return j, ok && (c == '+' || !inDashedToken(b, p, j))
}

// e164At parses "+" CC digits, with single spaces, dashes or dots between
// groups and at most one parenthesised group ("(0)", "(415)"): 8 to 15
// digits in all. When more digits follow, the longest prefix that ends at
// a group and is a number on its own wins.
func e164At(b []byte, p int) (int, bool) {
	j := p + 1
	if j >= len(b) || b[j] < '1' || b[j] > '9' {
		return 0, false
	}
	nd, end, parens, best := 0, 0, 0, 0
	good := func() bool {
		return nd >= 8 && nd <= 15 && !continuesNumber(b, end) && !(end < len(b) && isAlnum(b[end]))
	}
loop:
	for j < len(b) && nd <= 15 {
		c := b[j]
		switch {
		case isDigit(c):
			nd++
			j++
			end = j
			continue
		case c == ' ' || c == '-' || c == '.':
			// A separator sits between a digit (or ')') and a group of
			// at least two digits or a parenthesised group.
			if end != j || j+2 >= len(b) || !(isDigit(b[j+1]) && isDigit(b[j+2]) || b[j+1] == '(') {
				break loop
			}
			if good() {
				best = end
			}
			j++
		case c == '(':
			k := skipDigits(b, j+1)
			if parens > 0 || k == j+1 || k-j-1 > 4 || k >= len(b) || b[k] != ')' {
				break loop
			}
			parens++
			nd += k - j - 1
			j = k + 1
			end = j
			if j < len(b) && b[j] == ' ' && j+1 < len(b) && isDigit(b[j+1]) {
				j++
			}
		default:
			break loop
		}
	}
	if good() {
		best = end
	}
	return best, best > 0
}

// nanpAt parses [1 sep] (NXX) NXX-XXXX or NXX sep NXX sep XXXX, N = 2-9.
func nanpAt(b []byte, p int) (int, bool) {
	j := p
	if b[j] == '1' && j+1 < len(b) && (b[j+1] == ' ' || b[j+1] == '-' || b[j+1] == '.') {
		j += 2
	}
	paren := j < len(b) && b[j] == '('
	if paren {
		j++
	}
	if !nxx(b, j) {
		return 0, false
	}
	j += 3
	var sep byte
	if paren {
		if j >= len(b) || b[j] != ')' {
			return 0, false
		}
		j++
		if j < len(b) && b[j] == ' ' {
			j++
		}
	} else {
		if j >= len(b) || (b[j] != ' ' && b[j] != '-' && b[j] != '.') {
			return 0, false
		}
		sep = b[j]
		j++
	}
	if !nxx(b, j) {
		return 0, false
	}
	j += 3
	if j >= len(b) || (b[j] != ' ' && b[j] != '-' && b[j] != '.') || (sep != 0 && b[j] != sep) {
		return 0, false
	}
	j++
	for k := 0; k < 4; k++ {
		if j+k >= len(b) || !isDigit(b[j+k]) {
			return 0, false
		}
	}
	j += 4
	if continuesNumber(b, j) || j < len(b) && isAlnum(b[j]) {
		return 0, false
	}
	return j, true
}

func nxx(b []byte, j int) bool {
	return j+3 <= len(b) && b[j] >= '2' && b[j] <= '9' && isDigit(b[j+1]) && isDigit(b[j+2]) && !(j+3 < len(b) && isDigit(b[j+3]))
}

// trunkAt parses a national number with trunk prefix 0: "0" then 1-9,
// at least two groups of 2 to 8 digits separated by single spaces or
// dashes (one kind), 10 to 12 digits in all, or 9 in three groups or more
// ("02 123 45 67"; a ZIP+4 "01639-6697" is not a phone).
func trunkAt(b []byte, p int) (int, bool) {
	if p+1 >= len(b) || b[p+1] < '1' || b[p+1] > '9' {
		return 0, false
	}
	j, nd, groups := p, 0, 0
	var sep byte
	for {
		g := j
		j = skipDigits(b, j)
		l := j - g
		if l < 2 || l > 8 {
			return 0, false
		}
		nd += l
		groups++
		if j+1 < len(b) && (b[j] == ' ' || b[j] == '-') && (sep == 0 || b[j] == sep) && isDigit(b[j+1]) && nd < 12 {
			sep = b[j]
			j++
			continue
		}
		break
	}
	if groups < 2 || nd < 9 || nd == 9 && groups < 3 || nd > 12 || continuesNumber(b, j) || j < len(b) && isAlnum(b[j]) {
		return 0, false
	}
	return j, true
}

// ibanDetector finds IBANs: a country code, two check digits and the
// country's BBAN length, bare or in groups of four separated by single
// spaces, passing the ISO 13616 mod-97 check.
type ibanDetector struct{}

func (ibanDetector) Name() string { return DetectIBAN }

func (ibanDetector) Find(b []byte, start int) (int, int, bool) {
	// Prefilter: two check digits preceded by two capital letters.
	for p := nextDigitRun(b, start); p+2 <= len(b); p = nextDigitRun(b, p) {
		if q, j, ok := ibanRun(b, start, p); ok {
			return q, j, true
		}
		p = skipDigits(b, p)
	}
	return 0, 0, false
}

// ibanRun tries an IBAN whose check digits start the digit run at p.
func ibanRun(b []byte, start, p int) (int, int, bool) {
	q := p - 2
	if q >= start && p+2 <= len(b) && isUpper(b[q]) && isUpper(b[q+1]) && isDigit(b[p+1]) && (q == 0 || !isAlnum(b[q-1])) {
		if j, ok := ibanAt(b, q); ok {
			return q, j, true
		}
	}
	return 0, 0, false
}

func ibanAt(b []byte, q int) (int, bool) {
	want := ibanLengths[string(b[q:q+2])]
	if want == 0 {
		return 0, false
	}
	var s [34]byte
	ns, j := 0, q
	spaced := false
	for ns < int(want) && j < len(b) {
		c := b[j]
		if !(isUpper(c) || isDigit(c)) {
			return 0, false
		}
		s[ns] = c
		ns++
		j++
		if ns%4 == 0 && ns < int(want) && j < len(b) {
			if ns == 4 {
				spaced = b[j] == ' '
			}
			if spaced {
				if b[j] != ' ' {
					return 0, false
				}
				j++
			}
		}
	}
	if ns != int(want) || j < len(b) && isAlnum(b[j]) {
		return 0, false
	}
	// Move the first four characters to the end, letters count A=10 ...
	// Z=35, and the whole must be 1 mod 97.
	rem := 0
	for k := 0; k < ns; k++ {
		c := s[(k+4)%ns]
		if isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A') + 10) % 97
		}
	}
	return j, rem == 1
}

// ibanLengths is the IBAN length per country (SWIFT IBAN registry).
var ibanLengths = map[string]uint8{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16,
	"BG": 22, "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22,
	"CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20,
	"EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22,
	"GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21,
	"HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30,
	"KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
	"LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
	"MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
	"PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
	"RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24,
	"SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26,
	"UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
