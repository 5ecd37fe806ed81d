package masking

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// referenceSpans is what Masker.findSpans must find in b, computed the
// slow way: every enabled detector's Find, in detector order, each search
// starting where the last match ended. JWTs and PEM blocks are not looked
// for in values under 20 bytes (a shorter one is a fragment; the masker
// has always skipped them).
func referenceSpans(m *Masker, b []byte) []span {
	var out []span
	for k, r := range m.dets {
		if name := r.d.Name(); (name == DetectJWT || name == DetectPrivateKey) && len(b) < 20 {
			continue
		}
		for pos := 0; pos < len(b); {
			i, j, ok := r.d.Find(b, pos)
			if !ok || i < pos || j > len(b) {
				break
			}
			if j <= i {
				pos = i + 1
				continue
			}
			out = append(out, span{i, j, k})
			pos = j
		}
	}
	return out
}

// checkFindSpans fails when findSpans and referenceSpans disagree on b,
// before or after merging.
func checkFindSpans(t *testing.T, m *Masker, b []byte) {
	t.Helper()
	byRule := func(a, b span) int {
		if a.rule != b.rule {
			return a.rule - b.rule
		}
		return a.i - b.i
	}
	got := slices.SortedFunc(slices.Values(m.findSpans(b, nil)), byRule)
	want := slices.SortedFunc(slices.Values(referenceSpans(m, b)), byRule)
	if !slices.Equal(got, want) {
		t.Fatalf("in %q:\nfindSpans %v\nreference %v", b, got, want)
	}
	if got, want := m.mergeSpans(m.findSpans(b, nil)), m.mergeSpans(referenceSpans(m, b)); !slices.Equal(got, want) {
		t.Fatalf("in %q: merged:\nfindSpans %v\nreference %v", b, got, want)
	}
}

// findSpansInputs returns values rich in what the detectors look for:
// generated cells as in the property test, the benchmark rows, trigger
// soup, and long values with more digit runs than findBuiltins keeps.
func findSpansInputs() [][]byte {
	var vals [][]byte
	g := newGen(77)
	for range 6000 {
		var b strings.Builder
		for k := range 1 + g.r.IntN(6) {
			if k > 0 {
				b.WriteString(g.sep())
			}
			if g.r.IntN(3) == 0 {
				b.WriteString(g.planted())
			} else {
				b.WriteString(g.harmless())
			}
		}
		vals = append(vals, []byte(b.String()))
	}
	for _, r := range benchRows(100) {
		vals = append(vals, r...)
	}
	const soup = "0123456789012345 .-:@+()/_=AKISyJeBGNPRVTWabcdefxX\n"
	frags := []string{"-----BEGIN ", "-----END ", "PRIVATE KEY-----", "eyJ", "::", "AKIA", "ASIA", "ghp_", "1.2.3.4", "@x.io", "+1 ", "GB82", "(0)"}
	for range 6000 {
		var b strings.Builder
		for range g.r.IntN(12) {
			if g.r.IntN(4) == 0 {
				b.WriteString(frags[g.r.IntN(len(frags))])
			} else {
				b.WriteString(g.chars(soup, 1+g.r.IntN(12)))
			}
		}
		vals = append(vals, []byte(b.String()))
	}
	for range 200 {
		var b strings.Builder
		for range 20 + g.r.IntN(40) {
			b.WriteString(g.pick(g.planted(), g.harmless(), g.ip(), g.phone()))
			b.WriteString(g.sep())
		}
		vals = append(vals, []byte(b.String()))
	}
	return vals
}

// TestFindSpansMatchesDetectors checks that the masker's prefilters and
// shared digit-run pass find exactly what the detectors' Find methods
// find, for every detector alone and all together (with a custom one).
func TestFindSpansMatchesDetectors(t *testing.T) {
	custom, err := RegexpDetector("emp", `EMP-\d{6}`, nil)
	require.NoError(t, err)
	maskers := []*Masker{allDetectors(t)}
	for _, n := range BuiltinNames() {
		maskers = append(maskers, mustCompile(t, n))
	}
	m, err := Compile(append([]string{"emp"}, BuiltinNames()...), Options{Custom: []Detector{custom}})
	require.NoError(t, err)
	maskers = append(maskers, m)
	vals := findSpansInputs()
	vals = append(vals, []byte("EMP-123456 4111111111111111 EMP-000001"))
	// At the census thresholds: the shortest JWT and PEM fragment looked
	// for (20 bytes) and the longest not (19); the shortest of the others.
	for _, s := range []string{
		"eyJhIjoxfQ.abcdefgh.", "eyJhIjoxfQ.abcdefg.", "-----BEGIN RSA PRIVA", "-----BEGIN RSA PRIV",
		"a@b.cd", "4222222222222", "123-45-6789", "+12345678", "NO9386011117947", "1.2.3.4", "::1",
		"AKIA1234567890123456", "R2d4x9QmWq7LzT1vB8nY",
		"1:2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4", "a::b", "10:30:00 fe80::1", "1:2:3:4:5:6:7::", "12:34:56.1.2.3.4",
	} {
		vals = append(vals, []byte(s))
	}
	for _, m := range maskers {
		for _, v := range vals {
			checkFindSpans(t, m, v)
		}
	}
}

func FuzzFindSpans(f *testing.F) {
	for _, s := range []string{
		"", "::1", "1.2.3.4", "eyJhIjoxfQ.ab.", "-----BEGIN RSA", "4111 1111 1111 1111", "Chrome/120.0.0.0 Safari/537.36",
		"+44 20 7946 0958 and 123-45-6789", "GB82 WEST 1234 5698 7654 32", "key AKIAIOSFODNN7EXAMPLE from 203.0.113.7",
		"ghp_R2d4x9QmWq7LzT1vB8nY5kP3jH6sF0aCxYz1", "2024-03-02 12:34:56.123456+00", "fe80::1: up 10.0.0.0/8.",
	} {
		f.Add(s)
	}
	m, err := Compile(BuiltinNames(), Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkFindSpans(t, m, []byte(s))
	})
}

// TestNextTokenRun checks the strided run search against a byte-by-byte
// one.
func TestNextTokenRun(t *testing.T) {
	g := newGen(3)
	naive := func(b []byte, p, n int) (int, int, bool) {
		for p < len(b) {
			for p < len(b) && ctype[b[p]]&cToken == 0 {
				p++
			}
			s := p
			for p < len(b) && ctype[b[p]]&cToken != 0 {
				p++
			}
			if p-s >= n {
				return s, p, true
			}
		}
		return 0, 0, false
	}
	for range 3000 {
		b := []byte(g.chars("ab9Z+/-_ .,=", g.r.IntN(80)))
		for _, n := range []int{1, 2, 3, 7, 20} {
			for p := 0; p <= len(b); p++ {
				if p > 0 && p < len(b) && ctype[b[p-1]]&cToken != 0 && ctype[b[p]]&cToken != 0 {
					continue // nextTokenRun's precondition
				}
				s1, e1, ok1 := naive(b, p, n)
				s2, e2, ok2 := nextTokenRun(b, p, n)
				if s1 != s2 || e1 != e2 || ok1 != ok2 {
					t.Fatalf("%q from %d, n %d: got (%d,%d,%v), want (%d,%d,%v)", b, p, n, s2, e2, ok2, s1, e1, ok1)
				}
			}
		}
	}
}

// TestCensusMin checks that census never finds a detector a candidate in
// a value shorter than censusMin says (findSpans skips those values), and
// that each minimum is reached.
func TestCensusMin(t *testing.T) {
	g := newGen(5)
	alphabets := []string{"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ@.:-+ ab", "0123456789", "0123456789 -.", "@.a", ":a", "AB12", "-.A"}
	for range 200000 {
		b := []byte(g.chars(alphabets[g.r.IntN(len(alphabets))], g.r.IntN(20)))
		c := census(b)
		for id, n := range censusMin {
			if len(b) < n && c&(1<<id) != 0 {
				t.Fatalf("census finds detector %d a candidate in %q, shorter than %d", id, b, n)
			}
		}
	}
	for id, s := range [numBuiltins]string{
		idEmail: "a@b.c", idCard: "1234567890123", idSSN: "12345678901", idPhone: "123456789",
		idIBAN: "AB0000000000000", idIP: "::", idAWSKey: "ABCD5678901234567890", idJWT: "a.b.5678901234567890",
		idPrivateKey: "-----678901234567890", idSecret: "12345678901234567890",
	} {
		if len(s) != censusMin[id] || census([]byte(s))&(1<<id) == 0 {
			t.Errorf("detector %d: %q (%d bytes) is not a candidate of the minimum length %d", id, s, len(s), censusMin[id])
		}
	}
}
