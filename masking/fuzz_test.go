package masking

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzJSONMasker(f *testing.F) {
	for _, s := range []string{
		`{"user":{"email":"a@x.io","card":"4111 1111 1111 1111"},"n":[1,2.5e3,-0,true,null]}`,
		`[{"password":"p"},{"items":[{"card":4111111111111111}]}]`,
		`"esc \" \\ \/ \b \f \n \r \t \u00e9 \ud83d\ude00 \ud800"`,
		"{\"k\" : \"v\" }\n{\"k\":2}\n", `{"a":}`, `[1,]`, `01`, `"\x"`, `tru`, "",
	} {
		f.Add([]byte(s), uint16(3))
	}
	m, err := Compile(append(BuiltinNames(), "json:password", "json:$.items[*].card=partial:4", "json:*token*=hash", "json:$.n[1]=null"),
		Options{PseudonymKey: testKey, MaxValue: 256})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, doc []byte, split uint16) {
		out, err := m.MaskJSON(doc, nil)
		// The stream, split anywhere, agrees with the one-shot call.
		var buf bytes.Buffer
		s := m.NewJSONStream(&buf)
		k := int(split) % (len(doc) + 1)
		_, serr := s.Write(doc[:k])
		if serr == nil {
			_, serr = s.Write(doc[k:])
		}
		if serr == nil {
			serr = s.Close()
		}
		if (err == nil) != (serr == nil) {
			t.Fatalf("one-shot error %v, stream error %v", err, serr)
		}
		if err != nil {
			return
		}
		if !bytes.Equal(out, buf.Bytes()) {
			t.Fatalf("one-shot %q != stream %q", out, buf.Bytes())
		}
		// Whatever we accept and emit is valid JSON, value by value.
		dec := json.NewDecoder(bytes.NewReader(out))
		for {
			var v json.RawMessage // syntax only: 1E700 is valid JSON
			if err := dec.Decode(&v); err != nil {
				if err.Error() != "EOF" {
					t.Fatalf("masked output is not JSON: %v: %q", err, out)
				}
				break
			}
		}
		// A single valid value is accepted (encoding/json also accepts
		// invalid UTF-8 in strings; so do we).
		if json.Valid(doc) && utf8.Valid(doc) {
			if _, _, err := m.maskJSONValue(doc, false, nil); err != nil && !strings.Contains(err.Error(), "too long") && !strings.Contains(err.Error(), "nested") {
				t.Fatalf("valid JSON refused: %v", err)
			}
		}
	})
}

func FuzzTextStream(f *testing.F) {
	for _, s := range []string{
		"hello world", "", "4111 1111 1111", "-----BEGIN PRIVATE KEY-----\nabc", "x@", "eyJhbGciOiJIUzI1NiJ9.", "1234-",
		strings.Repeat("a", 600), "AKIA", "+1 ", "::", "192.168.",
	} {
		f.Add(s, s, uint8(0), uint16(5), uint16(300))
	}
	secrets := []string{
		"4111 1111 1111 1111", "alice@example.com", "123-45-6789", "AKIAIOSFODNN7EXAMPLE",
		"ghp_R2d4x9QmWq7LzT1vB8nY5kP3jH6sF0aCxYz1", "GB82 WEST 1234 5698 7654 32", "+44 20 7946 0958",
		jwtOf(`{"alg":"HS256"}`, `{"sub":"x"}`),
	}
	m, err := Compile(BuiltinNames(), Options{StreamHold: 600})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, before, after string, which uint8, cut1, cut2 uint16) {
		secret := secrets[int(which)%len(secrets)]
		text := before + " " + secret + " " + after
		c1 := int(cut1) % (len(text) + 1)
		c2 := int(cut2) % (len(text) + 1)
		if c1 > c2 {
			c1, c2 = c2, c1
		}
		var out bytes.Buffer
		s := m.NewTextStream(&out)
		for _, part := range []string{text[:c1], text[c1:c2], text[c2:]} {
			if _, err := s.Write([]byte(part)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if want, _ := m.MaskText([]byte(text), nil); out.String() != string(want) {
			t.Fatalf("text %q cut at %d and %d:\nstream   %q\nMaskText %q", text, c1, c2, out.String(), want)
		}
		// The planted secret is masked. Its characters may also come
		// from before or after, inside a longer token that is no secret
		// ("4111 1111 1111 11110", 17 digits): those may stay.
		if left, elsewhere := strings.Count(out.String(), secret), strings.Count(before+" "+after, secret); left > elsewhere {
			t.Fatalf("planted %q left in %q", secret, out.String())
		}
	})
}
