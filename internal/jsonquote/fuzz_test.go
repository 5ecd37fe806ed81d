package jsonquote

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzAppend: Append writes exactly what encoding/json writes (HTML
// escaping off) for any string or byte slice, after any prefix, and the
// result reads back as the string (invalid UTF-8 as U+FFFD). The
// recording's hash chain and masked JSON bodies rely on both.
func FuzzAppend(f *testing.F) {
	for _, s := range []string{"", "plain", "a\"b\\c\n\r\t\b\f\x00\x1f\x7f", "<&>", "é日本\U0001F600", "\u2028\u2029", "\xff\xfe", "\xe2\x80", "\xed\xa0\x80"} {
		f.Add([]byte("prefix:"), s)
	}
	f.Fuzz(func(t *testing.T, prefix []byte, s string) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		want := append(bytes.Clone(prefix), bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
		if got := Append(bytes.Clone(prefix), s); !bytes.Equal(got, want) {
			t.Fatalf("string %q: got %s want %s", s, got, want)
		}
		got := Append(bytes.Clone(prefix), []byte(s))
		if !bytes.Equal(got, want) {
			t.Fatalf("bytes %q: got %s want %s", s, got, want)
		}
		var back string
		if err := json.Unmarshal(got[len(prefix):], &back); err != nil {
			t.Fatalf("%q quoted as %s does not read back: %v", s, got[len(prefix):], err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("%q quoted as %s reads back as %q", s, got[len(prefix):], back)
		}
	})
}
