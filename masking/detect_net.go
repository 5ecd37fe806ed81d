package masking

import "bytes"

// Detectors for network identities: email and IP addresses.

// emailDetector finds addresses local@domain: a local part of letters,
// digits and . _ % + - (no leading or trailing dot, at most 64 bytes) and
// a domain of at least two labels ending in an alphabetic top-level label.
// Prefilter: '@'.
type emailDetector struct{}

func (emailDetector) Name() string { return DetectEmail }

func (emailDetector) Find(b []byte, start int) (int, int, bool) {
	for pos := start; pos < len(b); {
		k := bytes.IndexByte(b[pos:], '@')
		if k < 0 {
			break
		}
		at := pos + k
		pos = at + 1
		i := at
		for i > start && at-i < 64 && ctype[b[i-1]]&cLocal != 0 {
			i--
		}
		for i < at && b[i] == '.' {
			i++
		}
		if i == at || b[at-1] == '.' {
			continue
		}
		if end := emailDomain(b, at+1); end > 0 {
			return i, end, true
		}
	}
	return 0, 0, false
}

// emailDomain returns the end of the domain starting at j, or 0.
func emailDomain(b []byte, j int) int {
	end, labels, start := 0, 0, j
	for j < len(b) && j-start < 253 {
		l := j
		alpha := true
		for j < len(b) && j-l <= 63 && (isAlnum(b[j]) || b[j] == '-') {
			if ctype[b[j]]&cLetter == 0 {
				alpha = false
			}
			j++
		}
		if j == l || b[l] == '-' || b[j-1] == '-' || j-l > 63 {
			break
		}
		labels++
		if labels >= 2 && alpha && j-l >= 2 {
			end = j
		}
		if j+1 < len(b) && b[j] == '.' && isAlnum(b[j+1]) {
			j++
			continue
		}
		break
	}
	return end
}

// ipDetector finds IPv4 addresses (four dotted octets 0-255) and IPv6
// addresses (eight hex groups, or fewer with one "::", optionally ending
// in dotted IPv4). Version strings with a letter before them ("v1.2.3.4"),
// browser versions in a User-Agent ("Chrome/120.0.0.0") and longer dotted
// numbers are not addresses. Prefilter: '.' and ':'.
type ipDetector struct{}

func (ipDetector) Name() string { return DetectIP }

func (ipDetector) Find(b []byte, start int) (int, int, bool) {
	i4, j4, ok4 := findIPv4(b, start)
	i6, j6, ok6 := findIPv6(b, start)
	return firstIP(i4, j4, ok4, i6, j6, ok6)
}

// firstIP picks between an IPv4 and an IPv6 match: the first, or at one
// position the longer ("::ffff:192.0.2.128").
func firstIP(i4, j4 int, ok4 bool, i6, j6 int, ok6 bool) (int, int, bool) {
	if ok6 && (!ok4 || i6 < i4 || i6 == i4 && j6 > j4) {
		return i6, j6, true
	}
	return i4, j4, ok4
}

func findIPv4(b []byte, start int) (int, int, bool) {
	for pos := start; pos < len(b); {
		k := bytes.IndexByte(b[pos:], '.')
		if k < 0 {
			break
		}
		dot := pos + k
		pos = dot + 1
		s := dot
		for s > start && dot-s < 3 && isDigit(b[s-1]) {
			s--
		}
		if s == dot {
			continue
		}
		if s > 0 && (isAlnum(b[s-1]) || b[s-1] == '.') {
			continue // "1234.5", "v1.2.3.4", "1.2.3.4.5"
		}
		if productVersion(b, s) {
			continue // "Chrome/120.0.0.0"
		}
		if e, ok := ipv4At(b, s); ok {
			if !ipv4Ends(b, e) {
				pos = e
				continue
			}
			return s, e, true
		}
	}
	return 0, 0, false
}

// ipv4Run is findIPv4's test from the digit run b[s:e] rather than the
// dot after it: an address starts at a run of at most three digits
// followed by a dot, with no letter, digit or dot before it.
func ipv4Run(b []byte, s, e int) (int, bool) {
	if e-s > 3 || e >= len(b) || b[e] != '.' || s > 0 && (isAlnum(b[s-1]) || b[s-1] == '.') || productVersion(b, s) {
		return 0, false
	}
	if e, ok := ipv4At(b, s); ok && ipv4Ends(b, e) {
		return e, true
	}
	return 0, false
}

// browserProducts are the product tokens of browsers' User-Agent strings
// whose versions have four parts ("Chrome/120.0.0.0"; since user-agent
// reduction, always of that shape).
var browserProducts = [...]string{
	"Chrome", "Chromium", "HeadlessChrome", "CriOS", "Edg", "EdgA", "EdgiOS",
	"OPR", "YaBrowser", "SamsungBrowser", "Vivaldi", "Brave", "Electron",
}

// productVersion reports whether the digits at s follow a browser's
// product token and a slash, a token that is itself a word of its own
// ("... Chrome/120.0.0.0 Safari/537.36"): a version, not an address. A
// path segment ("/Chrome/10.0.0.1") or any other word before the slash
// ("hosts/10.0.0.1") does not count.
func productVersion(b []byte, s int) bool {
	if s < 2 || b[s-1] != '/' {
		return false
	}
	t := s - 1
	for t > 0 && s-1-t < 16 && ('a' <= b[t-1]|0x20 && b[t-1]|0x20 <= 'z') {
		t--
	}
	if t > 0 && (isAlnum(b[t-1]) || b[t-1] == '/' || b[t-1] == '.' || b[t-1] == '-' || b[t-1] == '_') {
		return false
	}
	tok := b[t : s-1]
	for _, p := range browserProducts {
		if string(tok) == p {
			return true
		}
	}
	return false
}

// ipv4Ends reports whether an address ends at e: no letter or digit
// follows, nor a dot and a digit ("1.2.3.4.5").
func ipv4Ends(b []byte, e int) bool {
	return !(e < len(b) && (isAlnum(b[e]) || b[e] == '.' && e+1 < len(b) && isDigit(b[e+1])))
}

// ipv4At parses four dotted octets at s and returns their end.
func ipv4At(b []byte, s int) (int, bool) {
	j := s
	for o := 0; o < 4; o++ {
		if o > 0 {
			if j >= len(b) || b[j] != '.' {
				return 0, false
			}
			j++
		}
		v, n := 0, 0
		for j < len(b) && isDigit(b[j]) && n < 4 {
			v = v*10 + int(b[j]-'0')
			j++
			n++
		}
		if n == 0 || n > 3 || v > 255 {
			return 0, false
		}
	}
	return j, true
}

func findIPv6(b []byte, start int) (int, int, bool) {
	for pos := start; pos < len(b); {
		k := bytes.IndexByte(b[pos:], ':')
		if k < 0 {
			break
		}
		c := pos + k
		l := c
		for l > start && c-l < 45 && (ctype[b[l-1]]&cHex != 0 || b[l-1] == ':') {
			l--
		}
		r := c
		for r < len(b) && r-l < 45 && (ctype[b[r]]&cHex != 0 || b[r] == ':' || b[r] == '.') {
			r++
		}
		pos = r
		if pos == c {
			pos = c + 1
		}
		for r > c && b[r-1] == '.' {
			r--
		}
		if l > 0 && (isAlnum(b[l-1]) || b[l-1] == '.') || r < len(b) && isAlnum(b[r]) {
			continue
		}
		if validIPv6(b[l:r]) {
			return l, r, true
		}
		if r-l > 2 && b[r-1] == ':' && b[r-2] != ':' && validIPv6(b[l:r-1]) {
			return l, r - 1, true // "fe80::1: up"
		}
	}
	return 0, 0, false
}

func validIPv6(t []byte) bool {
	if len(t) < 3 || bytes.Count(t, []byte{':'}) < 2 {
		return false
	}
	groups, dbl, i := 0, false, 0
	if t[0] == ':' {
		if t[1] != ':' {
			return false
		}
		dbl, i = true, 2
		if i == len(t) {
			return false // "::" alone: no digit at all
		}
	}
	for i < len(t) {
		j := i
		for j < len(t) && ctype[t[j]]&cHex != 0 && j-i < 5 {
			j++
		}
		if j < len(t) && t[j] == '.' {
			e, ok := ipv4At(t, i)
			if !ok || e != len(t) {
				return false
			}
			groups += 2
			i = e
			break
		}
		if j == i || j-i > 4 {
			return false
		}
		groups++
		i = j
		if i == len(t) {
			break
		}
		if t[i] != ':' {
			return false
		}
		i++
		if i < len(t) && t[i] == ':' {
			if dbl {
				return false
			}
			dbl = true
			i++
		} else if i == len(t) {
			return false
		}
	}
	if dbl {
		return groups <= 7
	}
	return groups == 8
}
