package masking

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
)

// Detectors for credentials: AWS access keys, JWTs, PEM private keys and
// generic high-entropy secrets.

// awsKeyDetector finds AWS access key ids: AKIA (long-term), ASIA
// (temporary), ABIA or ACCA, then 16 capital letters or digits, as a
// whole word. Prefilter: 'A'.
type awsKeyDetector struct{}

func (awsKeyDetector) Name() string { return DetectAWSKey }

func (awsKeyDetector) Find(b []byte, start int) (int, int, bool) {
	for pos := start; pos+20 <= len(b); {
		k := bytes.IndexByte(b[pos:len(b)-19], 'A')
		if k < 0 {
			break
		}
		i := pos + k
		pos = i + 1
		switch string(b[i : i+4]) {
		case "AKIA", "ASIA", "ABIA", "ACCA":
		default:
			continue
		}
		if i > 0 && isAlnum(b[i-1]) || i+20 < len(b) && isAlnum(b[i+20]) {
			continue
		}
		ok := true
		for _, c := range b[i+4 : i+20] {
			if !isUpper(c) && !isDigit(c) {
				ok = false
				break
			}
		}
		if ok {
			return i, i + 20, true
		}
	}
	return 0, 0, false
}

// jwtDetector finds JSON Web Tokens: three (or, for JWE, five) base64url
// parts separated by dots, the first decoding to a JSON object.
// Prefilter: "eyJ", the base64url of `{"`.
type jwtDetector struct{}

func (jwtDetector) Name() string { return DetectJWT }

func (jwtDetector) Find(b []byte, start int) (int, int, bool) {
	for pos := start; pos+3 <= len(b); {
		// Look for the 'J' of "eyJ": 'e' is too common in text to
		// search for.
		k := bytes.IndexByte(b[pos+2:], 'J')
		if k < 0 {
			break
		}
		i := pos + k
		pos = i + 1
		if b[i] != 'e' || b[i+1] != 'y' {
			continue
		}
		if i > 0 && (ctype[b[i-1]]&cURL64 != 0 || b[i-1] == '.') {
			continue
		}
		h := skipURL64(b, i)
		if h-i < 10 || h >= len(b) || b[h] != '.' {
			continue
		}
		p := skipURL64(b, h+1)
		if p-h-1 < 2 || p >= len(b) || b[p] != '.' {
			continue
		}
		j := skipURL64(b, p+1)
		for parts := 3; parts < 5 && j+1 < len(b) && b[j] == '.' && ctype[b[j+1]]&cURL64 != 0; parts++ {
			j = skipURL64(b, j+1)
		}
		if jsonObject(b[i:h]) {
			return i, j, true
		}
		pos = h
	}
	return 0, 0, false
}

func skipURL64(b []byte, j int) int {
	for j < len(b) && ctype[b[j]]&cURL64 != 0 {
		j++
	}
	return j
}

// jsonObject reports whether enc, unpadded base64url, decodes to a JSON
// object.
func jsonObject(enc []byte) bool {
	var buf [768]byte
	dst := buf[:]
	if n := base64.RawURLEncoding.DecodedLen(len(enc)); n > len(buf) {
		dst = make([]byte, n)
	}
	n, err := base64.RawURLEncoding.Decode(dst, enc)
	if err != nil {
		return false
	}
	return n > 0 && dst[0] == '{' && json.Valid(dst[:n])
}

// privateKeyDetector finds PEM private key blocks, "-----BEGIN ...PRIVATE
// KEY...-----" through the matching END line. A block without its END
// line is masked to the end of the value: a truncated key is still a key.
// Prefilter: "-----BEGIN ".
type privateKeyDetector struct{}

func (privateKeyDetector) Name() string { return DetectPrivateKey }

var (
	pemBegin = []byte("-----BEGIN ")
	pemEnd   = []byte("-----END ")
	pemDash  = []byte("-----")
)

func (privateKeyDetector) Find(b []byte, start int) (int, int, bool) {
	for pos := start; pos < len(b); {
		k := bytes.Index(b[pos:], pemBegin)
		if k < 0 {
			break
		}
		i := pos + k
		pos = i + 1
		ls := i + len(pemBegin)
		le := bytes.Index(b[ls:min(len(b), ls+64)], pemDash)
		if le < 0 {
			if len(b)-ls < 64 && bytes.IndexByte(b[ls:], '\n') < 0 {
				return i, len(b), true // the label may continue: hold it
			}
			continue
		}
		if !bytes.Contains(b[ls:ls+le], []byte("PRIVATE KEY")) {
			continue
		}
		body := ls + le + len(pemDash)
		e := bytes.Index(b[body:], pemEnd)
		if e < 0 {
			return i, len(b), true
		}
		el := body + e + len(pemEnd)
		f := bytes.Index(b[el:min(len(b), el+64+len(pemDash))], pemDash)
		if f < 0 {
			return i, len(b), true
		}
		return i, el + f + len(pemDash), true
	}
	return 0, 0, false
}

// secretDetector finds generic secrets: tokens of at least 20 base64 or
// base64url characters that either start with a well-known credential
// prefix (ghp_, github_pat_, glpat-, xoxb-, sk_live_, AIza, ...) or look
// random: upper case, lower case and digits mixed, with high Shannon
// entropy and frequent changes between those classes (which words,
// identifiers and paths lack). Lower-case hex (hashes, UUIDs) is not
// flagged. Prefilter: a run of 20 token bytes.
type secretDetector struct{}

func (secretDetector) Name() string { return DetectSecret }

// minSecret is the shortest token the secret detector considers.
const minSecret = 20

func (secretDetector) Find(b []byte, start int) (int, int, bool) {
	p := start
	for p > 0 && p < len(b) && ctype[b[p-1]]&cToken != 0 && ctype[b[p]]&cToken != 0 {
		p++ // a token that began before start is not ours
	}
	for {
		s, e, ok := nextTokenRun(b, p, minSecret)
		if !ok {
			return 0, 0, false
		}
		p = e
		i, j := s, p
		for i < j && isTokenPunct(b[i]) {
			i++
		}
		for j > i && isTokenPunct(b[j-1]) {
			j--
		}
		if j-i < minSecret || !(knownSecretPrefix(b[i:j]) || looksRandom(b[i:j])) {
			continue
		}
		if j == p {
			for k := 0; k < 2 && j < len(b) && b[j] == '='; k++ {
				j++ // base64 padding
			}
		}
		return i, j, true
	}
}

// nextTokenRun returns the first maximal run b[s:e] of at least n token
// bytes with s >= p; b[p-1], if any, must not be a token byte continuing
// into b[p]. It looks at every n-th byte only: a run of n covers one of
// them, and around a token byte it measures the run that holds it, then
// jumps n past its end. Prose, whose words are short, costs a few looks
// per n bytes.
func nextTokenRun(b []byte, p, n int) (s, e int, ok bool) {
	lo := p // no run begins before lo
	for q := p + n - 1; q < len(b); {
		if ctype[b[q]]&cToken == 0 {
			lo, q = q+1, q+n
			continue
		}
		s, e = q, q+1
		for s > lo && ctype[b[s-1]]&cToken != 0 {
			s--
		}
		for e < len(b) && ctype[b[e]]&cToken != 0 {
			e++
		}
		if e-s >= n {
			return s, e, true
		}
		lo, q = e+1, e+n
	}
	return 0, 0, false
}

func isTokenPunct(c byte) bool { return c == '-' || c == '_' || c == '/' || c == '+' }

var secretPrefixes = [][]byte{
	[]byte("ghp_"), []byte("gho_"), []byte("ghu_"), []byte("ghs_"), []byte("ghr_"),
	[]byte("github_pat_"), []byte("glpat-"), []byte("xoxb-"), []byte("xoxp-"),
	[]byte("xoxa-"), []byte("xoxr-"), []byte("xoxs-"), []byte("sk_live_"),
	[]byte("sk_test_"), []byte("rk_live_"), []byte("AIza"), []byte("npm_"),
	[]byte("pypi-"), []byte("dop_v1_"), []byte("hf_"), []byte("sk-proj-"),
	[]byte("sk-ant-"),
}

func knownSecretPrefix(t []byte) bool {
	for _, p := range secretPrefixes {
		if bytes.HasPrefix(t, p) {
			return true
		}
	}
	return false
}

// looksRandom is the entropy test. t must mix upper and lower case, with
// the case flipping between adjacent letters (at least one pair in ten:
// SHOUTING_words-and-lower ids do not); hold a digit unless it is 32 bytes
// or longer; have less than 60% (80% from 32 bytes) of it in word-like
// runs (three or more lower-case letters, with a capital before them),
// which identifiers, paths and prose are made of; and reach a Shannon
// entropy per byte of 0.75 x log2 of its length (capped at 64: random
// base62 of length L sits near log2 L). Calibrated in
// TestSecretCalibration.
func looksRandom(t []byte) bool {
	if len(t) > 256 {
		t = t[:256]
	}
	var counts [128]uint16
	var upper, lowerc, digit, wordy, run, flips int
	for k, c := range t {
		if c >= 128 {
			return false
		}
		counts[c]++
		if k > 0 && ctype[c]&cLetter != 0 && ctype[t[k-1]]&cLetter != 0 && ctype[c]&cLetter != ctype[t[k-1]]&cLetter {
			flips++
		}
		switch ctype[c] & cAlnum {
		case cUpper:
			upper++
		case cLower:
			lowerc++
			run++
			if k+1 < len(t) && ctype[t[k+1]]&cLower != 0 {
				continue
			}
			if run >= 3 {
				wordy += run
				if s := k - run; s >= 0 && ctype[t[s]]&cUpper != 0 {
					wordy++
				}
			}
		case cDigit:
			digit++
		}
		run = 0
	}
	long := len(t) >= 32
	if upper == 0 || lowerc == 0 || digit == 0 && !long || flips < max(2, len(t)/10) {
		return false
	}
	n := float64(len(t))
	if float64(wordy) >= 0.6*n && !long || float64(wordy) >= 0.8*n {
		return false
	}
	h := 0.0
	for _, k := range counts {
		if k > 0 {
			p := float64(k) / n
			h -= p * math.Log2(p)
		}
	}
	return h >= 0.75*math.Log2(math.Min(n, 64))
}
