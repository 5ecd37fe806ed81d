package http

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/masking"
)

func TestHTTPParseJSONBody(t *testing.T) {
	ok := []struct {
		in   string
		want any
	}{
		{`{"amount": 5000, "to": "x", "tags": ["a", 1, true, null], "n": {"k": -1.5e2}}`,
			map[string]any{"amount": int64(5000), "to": "x", "tags": []any{"a", int64(1), true, nil}, "n": map[string]any{"k": -150.0}}},
		{` [1, 2.0, 1e2, 9223372036854775808] `, []any{int64(1), 2.0, 100.0, 9223372036854775808.0}},
		{`"s"`, "s"},
		{`{"a": {"a": 1}, "b": {"a": 2}}`, map[string]any{"a": map[string]any{"a": int64(1)}, "b": map[string]any{"a": int64(2)}}},
	}
	for _, tt := range ok {
		got, err := parseJSONBody([]byte(tt.in))
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
	bad := map[string]string{
		`{"amount": 1, "amount": 5000}`: "given twice",
		`{"amount": 1, "AMOUNT": 5000}`: "differ only in case",
		`{"s": 1, "ſ": 2}`:              "differ only in case", // long s folds to s
		`{"k": 1, "\u212a": 2}`:         "differ only in case", // Kelvin sign folds to k
		`{"a": 1} {"a": 2}`:             "more than one value",
		`{"a": 1`:                       "invalid JSON",
		"{\"a\": \"\xff\"}":             "not valid UTF-8",
		`{"n": 1e400}`:                  "invalid JSON",
		strings.Repeat("[", 1001) + "1" + strings.Repeat("]", 1001): "nested deeper",
	}
	for in, want := range bad {
		_, err := parseJSONBody([]byte(in))
		require.Error(t, err, "%.60s", in)
		assert.Contains(t, err.Error(), want, "%.60s", in)
	}
}

func TestHTTPCheckPath(t *testing.T) {
	for _, p := range []string{"/", "/a", "/a/b/", "/a.b/..c/c..", "/%"} {
		assert.NoError(t, checkPath(p), p)
	}
	for _, p := range []string{"", "*", "a/b", "/a/../b", "/a/./b", "/..", "/a//b", "//a", "/a\\..\\b", "/a\x00b"} {
		assert.Error(t, checkPath(p), "%q", p)
	}
}

func TestHTTPMediaTypes(t *testing.T) {
	assert.Equal(t, "application/json", mediaType("Application/JSON; charset=utf-8"))
	assert.Equal(t, "text/plain", mediaType("text/plain;;bad"))
	for _, mt := range []string{"application/json", "application/problem+json", "application/x-ndjson", "application/vnd.api+json"} {
		assert.True(t, isJSON(mt), mt)
	}
	for _, mt := range []string{"text/json", "application/json-seq", "application/jsonx", ""} {
		assert.False(t, isJSON(mt), mt)
	}
	for _, mt := range []string{"text/plain", "text/html", "application/xml", "application/atom+xml", "text/csv"} {
		assert.True(t, isText(mt), mt)
	}
	for _, mt := range []string{"text/event-stream", "application/octet-stream", "image/png", ""} {
		assert.False(t, isText(mt), mt)
	}
}

// writeSplit writes s to w one piece per cut position.
func writeSplit(t *testing.T, w interface{ Write([]byte) (int, error) }, s string, cuts ...int) {
	t.Helper()
	prev := 0
	for _, c := range append(cuts, len(s)) {
		_, err := w.Write([]byte(s[prev:c]))
		require.NoError(t, err)
		prev = c
	}
}

func TestHTTPScrubberAcrossWrites(t *testing.T) {
	const secret = "s3cr3t-value-123"
	in := "a " + secret + " b " + secret + secret + " s3cr3t- end s3cr"
	want := strings.ReplaceAll(in, secret, strings.Repeat("*", len(secret)))
	for cut := 0; cut <= len(in); cut++ {
		for cut2 := cut; cut2 <= len(in); cut2 += 3 {
			var out bytes.Buffer
			s := newScrubber(&out, []string{secret, "short"})
			writeSplit(t, s, in, cut, cut2)
			require.NoError(t, s.Close())
			require.Equal(t, want, out.String(), "cuts %d %d", cut, cut2)
			require.Equal(t, 3, s.found)
		}
	}
	// Nothing held back when the tail cannot start a secret.
	var out bytes.Buffer
	s := newScrubber(&out, []string{secret})
	_, _ = s.Write([]byte("data: x\n\n"))
	assert.Equal(t, "data: x\n\n", out.String())
}

func compileMasker(t testing.TB, entries ...string) *masking.Masker {
	t.Helper()
	m, err := masking.Compile(entries, masking.Options{})
	require.NoError(t, err)
	return m
}

func TestHTTPSSEMasker(t *testing.T) {
	m := compileMasker(t, "email", "json:ssn")
	in := "event: greet\r\ndata: {\"to\":\"a@example.com\",\r\ndata: \"ssn\":\"078-05-1120\"}\r\n\r\n" +
		": comment for b@example.com\n\n" +
		"id: 7\rdata: text c@example.com\rdata:second\r\r" +
		"retry: 3000\n\n" +
		"data: [DONE]\n\n" +
		"data: unterminated d@example.com"
	want := "event: greet\ndata: {\"to\":\"[REDACTED]\",\ndata: \"ssn\":\"[REDACTED]\"}\n\n" +
		": comment for [REDACTED]\n\n" +
		"id: 7\ndata: text [REDACTED]\ndata: second\n\n" +
		"retry: 3000\n\n" +
		"data: [DONE]\n\n" +
		"data: unterminated [REDACTED]\n\n"
	for cut := 0; cut <= len(in); cut++ {
		var out bytes.Buffer
		s := newSSEMasker(m, &out)
		writeSplit(t, s, in, cut)
		require.NoError(t, s.Close())
		require.Equal(t, want, out.String(), "cut at %d", cut)
		assert.Equal(t, map[string]int{"email": 4, "json:ssn": 1}, s.Counts())
	}
	// Events leave as soon as they are complete.
	var out bytes.Buffer
	s := newSSEMasker(m, &out)
	_, err := s.Write([]byte("data: one\n\ndata: tw"))
	require.NoError(t, err)
	assert.Equal(t, "data: one\n\n", out.String())
	// An event too large to hold fails the stream.
	s = newSSEMasker(m, &out)
	_, err = s.Write([]byte("data: " + strings.Repeat("x", maxEvent)))
	assert.ErrorIs(t, err, errEventTooLarge)
}

func FuzzParseJSONBody(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[{"a":"b"},null]`, `{"a":1,"A":2}`, `"x"`, `{`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := parseJSONBody(data)
		if err == nil && v == nil && !bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
			t.Fatalf("no error and no value for %q", data)
		}
	})
}

func FuzzSSEMasker(f *testing.F) {
	f.Add([]byte("data: {\"email\":\"a@b.co\"}\n\n"), 3)
	f.Add([]byte(": c\r\ndata: x\r\rdata:y\n\n"), 1)
	m := compileMasker(f, "email", "json:ssn", "credit_card")
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		if cut < 0 || cut > len(data) {
			cut = len(data) / 2
		}
		var whole, split bytes.Buffer
		a := newSSEMasker(m, &whole)
		_, errA := a.Write(data)
		errA2 := a.Close()
		b := newSSEMasker(m, &split)
		_, errB := b.Write(data[:cut])
		if errB == nil {
			_, errB = b.Write(data[cut:])
		}
		errB2 := b.Close()
		if (errA == nil && errA2 == nil) != (errB == nil && errB2 == nil) {
			t.Fatalf("split changes the outcome: %v %v / %v %v", errA, errA2, errB, errB2)
		}
		if errA == nil && errA2 == nil && whole.String() != split.String() {
			t.Fatalf("split changes the output:\n%q\n%q", whole.String(), split.String())
		}
	})
}

func FuzzScrubber(f *testing.F) {
	f.Add([]byte("xx secret-secret yy"), 5)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		if cut < 0 || cut > len(data) {
			cut = len(data) / 2
		}
		const sec = "secret-secret"
		var out bytes.Buffer
		s := newScrubber(&out, []string{sec})
		_, _ = s.Write(data[:cut])
		_, _ = s.Write(data[cut:])
		_ = s.Close()
		if out.Len() != len(data) {
			t.Fatalf("length changed: %d -> %d", len(data), out.Len())
		}
		if bytes.Contains(out.Bytes(), []byte(sec)) {
			t.Fatalf("the secret went through: %q", out.Bytes())
		}
	})
}

func TestHTTPRelativeLocation(t *testing.T) {
	base, err := backendURL("https://api.internal:8443/v1", "")
	require.NoError(t, err)
	for in, want := range map[string]string{
		"https://api.internal:8443/v1/orders/7?x=1#f": "/orders/7?x=1#f",
		"https://API.internal:8443/v1":                "/",
		"https://api.internal:8443/v2/other":          "https://api.internal:8443/v2/other",
		"http://api.internal:8443/v1/x":               "http://api.internal:8443/v1/x",
		"https://elsewhere.example/v1/x":              "https://elsewhere.example/v1/x",
		"/relative":                                   "/relative",
	} {
		assert.Equal(t, want, relativeLocation(in, base), in)
	}
}
