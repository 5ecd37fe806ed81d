package jsonquote

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// Append matches encoding/json (HTML escaping off) for strings and byte
// slices alike, including invalid UTF-8 and the line separators.
func TestAppendMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"a", "\"", "\\", "\n", "\b", "\f", "\x01", "\x7f", "é", "\xff", "\u2028", "\u2029", "日", "<&>", "\xe2\x80"}
	for i := 0; i < 3000; i++ {
		var s string
		for n := r.IntN(10); n > 0; n-- {
			s += pieces[r.IntN(len(pieces))]
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		want := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		if got := Append(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("string %q: got %s want %s", s, got, want)
		}
		if got := Append(nil, []byte(s)); !bytes.Equal(got, want) {
			t.Fatalf("bytes %q: got %s want %s", s, got, want)
		}
	}
}
