package masking

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func streamText(t testing.TB, m *Masker, parts ...string) (string, map[string]int) {
	t.Helper()
	var out bytes.Buffer
	s := m.NewTextStream(&out)
	for _, p := range parts {
		n, err := s.Write([]byte(p))
		require.NoError(t, err)
		require.Equal(t, len(p), n)
	}
	require.NoError(t, s.Close())
	return out.String(), s.Counts()
}

func allDetectors(t testing.TB) *Masker {
	entries := BuiltinNames()
	return mustCompile(t, entries...)
}

func TestTextStreamSplitCard(t *testing.T) {
	m := allDetectors(t)
	got, counts := streamText(t, m, "pay with 4111 1111 ", "1111 1111 now\n")
	assert.Equal(t, "pay with [REDACTED] now\n", got)
	assert.Equal(t, map[string]int{"credit_card": 1}, counts)
}

func TestTextStreamEverySplit(t *testing.T) {
	m := allDetectors(t)
	jwt := jwtOf(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"1234567890","name":"`+strings.Repeat("John Doe ", 40)+`"}`)
	text := "user alice@example.com paid 4111-1111-1111-1111 from 192.168.1.20; ssn 123-45-6789\n" +
		"key AKIAIOSFODNN7EXAMPLE token " + jwt + "\n" + samplePEM + "\nphone +44 20 7946 0958 iban GB82 WEST 1234 5698 7654 32 done\n"
	want, _ := m.MaskText([]byte(text), nil)
	for _, secret := range []string{"alice@", "4111-1111", "192.168.1.20", "123-45-6789", "AKIAIOSFODNN7EXAMPLE", jwt[:40], "MIIEowIBAAKCAQEA", "7946 0958", "GB82"} {
		require.NotContains(t, string(want), secret)
	}
	for i := 0; i <= len(text); i++ {
		got, _ := streamText(t, m, text[:i], text[i:])
		require.Equal(t, string(want), got, "split at %d", i)
	}
	var parts []string
	for i := range text {
		parts = append(parts, text[i:i+1])
	}
	got, counts := streamText(t, m, parts...)
	assert.Equal(t, string(want), got, "one byte at a time")
	assert.Equal(t, 1, counts["jwt"])
	assert.Equal(t, 1, counts["private_key"])
}

func TestTextStreamLongMatchesHeld(t *testing.T) {
	m := allDetectors(t)
	// A PEM block far longer than the window, written line by line.
	var lines []string
	lines = append(lines, "-----BEGIN PRIVATE KEY-----\n")
	for range 60 {
		lines = append(lines, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n")
	}
	lines = append(lines, "-----END PRIVATE KEY-----\n", "after\n")
	got, counts := streamText(t, m, lines...)
	assert.Equal(t, "[REDACTED]\nafter\n", got)
	assert.Equal(t, map[string]int{"private_key": 1}, counts)
}

func TestTextStreamFlushAndBounds(t *testing.T) {
	m, err := Compile([]string{"email", "ssn=null"}, Options{StreamHold: 1024})
	require.NoError(t, err)
	var out bytes.Buffer
	s := m.NewTextStream(&out)
	_, err = s.Write([]byte("ssn 123-45-6789 prompt$ "))
	require.NoError(t, err)
	assert.Empty(t, out.String(), "a short tail is held")
	require.NoError(t, s.Flush())
	assert.Equal(t, "ssn  prompt$ ", out.String(), "null drops the match")

	// A long run without spaces cannot grow the buffer past the bound.
	junk := bytes.Repeat([]byte("x"), 100000)
	for range 5 {
		_, err = s.Write(junk)
		require.NoError(t, err)
		assert.LessOrEqual(t, len(s.buf), 1024+streamContext)
	}
	require.NoError(t, s.Close())
	assert.Equal(t, len("ssn  prompt$ ")+500000, out.Len())
	_, err = s.Write([]byte("x"))
	assert.ErrorIs(t, err, ErrClosed)
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, assert.AnError }

func TestTextStreamWriterError(t *testing.T) {
	s := allDetectors(t).NewTextStream(failWriter{})
	_, err := s.Write(bytes.Repeat([]byte("a "), 1000))
	assert.ErrorIs(t, err, assert.AnError)
	_, err = s.Write([]byte("more"))
	assert.ErrorIs(t, err, assert.AnError)
	assert.ErrorIs(t, s.Close(), assert.AnError)
}

// TestMaskTextCountsReplacements: MaskText counts what it replaces, after
// overlapping matches merge, as the text stream does; a JWT that the
// secret detector also matches is one masked value, not four.
func TestMaskTextCountsReplacements(t *testing.T) {
	m, err := Compile(BuiltinNames(), Options{})
	require.NoError(t, err)
	text := []byte("token " + jwtOf(`{"alg":"HS256"}`, `{"sub":"1234567890"}`) + "\n")
	whole := map[string]int{}
	out, n := m.MaskText(text, whole)
	var buf bytes.Buffer
	ts := m.NewTextStream(&buf)
	_, err = ts.Write(text)
	require.NoError(t, err)
	require.NoError(t, ts.Close())
	assert.Equal(t, buf.String(), string(out))
	assert.Equal(t, ts.Counts(), whole)
	assert.Equal(t, 1, n)
}
