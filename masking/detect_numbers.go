package masking

// Detectors for numbers: payment cards, US SSNs, phone numbers, IBANs.
//
// Each has a Find for the Detector interface and a run form the Masker
// uses: the maximal digit runs of a value are found once (digitRuns) and
// shared, and every candidate of these detectors starts at or just before
// one of them.

// digitRun is a maximal run of ASCII digits, b[s:e].
type digitRun struct{ s, e int }

// digitRuns appends the digit runs of b to out, up to cap(out); ok is false
// when there are more.
func digitRuns(b []byte, out []digitRun) ([]digitRun, bool) {
	for p := 0; p < len(b); {
		for p < len(b) && !isDigit(b[p]) {
			p++
		}
		if p == len(b) {
			break
		}
		s := p
		p = skipDigits(b, p)
		if len(out) == cap(out) {
			return out, false
		}
		out = append(out, digitRun{s, p})
	}
	return out, true
}

// Which run form a detector has (detRule.runs).
const (
	runNone = iota
	runCard
	runSSN
	runPhone
	runIBAN
)

// findInRuns is Find for the detectors with a run form, over the value's
// digit runs.
func findInRuns(kind int, b []byte, start int, runs []digitRun) (int, int, bool) {
	for _, r := range runs {
		switch kind {
		case runCard:
			if r.s >= start {
				if j, ok := cardAt(b, r.s); ok {
					return r.s, j, true
				}
			}
		case runSSN:
			if r.s >= start && r.s+11 <= len(b) && ssnAt(b, r.s) {
				return r.s, r.s + 11, true
			}
		case runIBAN:
			if r.s >= start {
				if q, j, ok := ibanRun(b, start, r.s); ok {
					return q, j, true
				}
			}
		case runPhone:
			if p := r.s - 1; p >= start && (b[p] == '+' || b[p] == '(') {
				if j, ok := phoneAt(b, p); ok {
					return p, j, true
				}
			}
			if r.s >= start {
				if j, ok := phoneAt(b, r.s); ok {
					return r.s, j, true
				}
			}
		}
	}
	return 0, 0, false
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
