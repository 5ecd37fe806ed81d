package masking

import (
	"bytes"
	"encoding/json"
	"maps"
	"strings"
	"testing"
)

// chunks splits b at the cumulative sizes in cuts (each 0-255 bytes; a
// zero size writes an empty chunk), the rest in one last chunk.
func chunks(b []byte, cuts []byte) [][]byte {
	var out [][]byte
	for _, c := range cuts {
		n := min(int(c), len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// FuzzTextStreamChunks: a TextStream's output and counts do not depend on
// how its input is split into writes, and the output is MaskText's on the
// whole text. (The text stays within the stream's hold, past which a match
// that keeps growing is written as it stands; repeating the input makes
// texts longer than the window the stream always holds back.)
//
// The counts are compared with one whole write, not with MaskText's:
// MaskText counts every detection, also those merged into another's
// replacement (a JWT is also a "secret"), the stream one per replacement.
func FuzzTextStreamChunks(f *testing.F) {
	jwt := jwtOf(`{"alg":"HS256"}`, `{"sub":"1234567890"}`)
	for _, s := range []string{
		"pay with 4111 1111 1111 1111 now\n", "user alice@example.com from 192.168.1.20; ssn 123-45-6789\n",
		"key AKIAIOSFODNN7EXAMPLE token " + jwt + "\n", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n-----END PRIVATE KEY-----\n",
		"phone +44 20 7946 0958 iban GB82 WEST 1234 5698 7654 32 done ", "x@y.z 1234567890123456 ", "::ffff:10.0.0.1 ",
	} {
		f.Add(s, uint8(3), []byte{1, 200, 7, 0, 255})
	}
	const hold = 4096
	m, err := Compile(BuiltinNames(), Options{StreamHold: hold})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string, rep uint8, cuts []byte) {
		text := []byte(strings.Repeat(s, 1+int(rep%16)))
		if len(text) > hold {
			text = text[:hold]
		}
		want, _ := m.MaskText(text, nil)
		stream := func(parts [][]byte) ([]byte, map[string]int) {
			var out bytes.Buffer
			st := m.NewTextStream(&out)
			for _, c := range parts {
				if n, err := st.Write(c); err != nil || n != len(c) {
					t.Fatalf("Write: %d, %v", n, err)
				}
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			return out.Bytes(), st.Counts()
		}
		got, counts := stream(chunks(text, cuts))
		if !bytes.Equal(got, want) {
			t.Fatalf("text %q written in chunks %v:\nstream   %q\nMaskText %q", text, cuts, got, want)
		}
		if _, whole := stream([][]byte{text}); !maps.Equal(counts, whole) {
			t.Fatalf("text %q: counts %v in chunks %v, %v in one write", text, counts, cuts, whole)
		}
	})
}

// FuzzJSONStreamChunks: a JSONStream gives the same output and the same
// verdict as MaskJSON however its input is split into writes, and when the
// input is valid JSON what it accepts it writes as valid JSON.
func FuzzJSONStreamChunks(f *testing.F) {
	for _, s := range []string{
		`{"user":{"email":"a@x.io","card":"4111 1111 1111 1111"},"n":[1,2.5e3,-0,true,null]}`,
		`[{"password":"p"},{"items":[{"card":4111111111111111}]}]`,
		`"esc \" \\ \/ \b \f \n \r \t \u00e9 \ud83d\ude00 \ud800"`,
		"{\"k\" : \"v\" }\n{\"k\":2}\n", `{"a":}`, `[1,]`, `01`, `"\x"`, `tru`, "", `{"token":"eyJhbGciOiJIUzI1NiJ9.e30.x"}`,
	} {
		f.Add([]byte(s), []byte{1, 3, 0, 9})
	}
	m, err := Compile(append(BuiltinNames(), "json:password", "json:$.items[*].card=partial:4", "json:*token*=hash", "json:$.n[1]=null"),
		Options{PseudonymKey: testKey, MaxValue: 256})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, doc, cuts []byte) {
		want, err := m.MaskJSON(doc, nil)
		var out bytes.Buffer
		s := m.NewJSONStream(&out)
		var serr error
		for _, c := range chunks(doc, cuts) {
			if _, serr = s.Write(c); serr != nil {
				break
			}
		}
		if cerr := s.Close(); serr == nil {
			serr = cerr
		}
		if (err == nil) != (serr == nil) {
			t.Fatalf("%q in chunks %v: MaskJSON error %v, stream error %v", doc, cuts, err, serr)
		}
		if err != nil {
			return
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("%q in chunks %v: MaskJSON %q, stream %q", doc, cuts, want, out.Bytes())
		}
		if json.Valid(doc) && !json.Valid(out.Bytes()) {
			t.Fatalf("valid JSON %q masked into invalid JSON %q", doc, out.Bytes())
		}
	})
}
