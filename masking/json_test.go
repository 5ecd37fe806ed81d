package masking

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// streamJSON masks doc through a JSONStream, writing chunk bytes at a time.
func streamJSON(t testing.TB, m *Masker, doc string, chunk int) (string, error) {
	var out bytes.Buffer
	s := m.NewJSONStream(&out)
	for i := 0; i < len(doc); i += chunk {
		if _, err := s.Write([]byte(doc[i:min(i+chunk, len(doc))])); err != nil {
			return out.String(), err
		}
	}
	err := s.Close()
	return out.String(), err
}

func TestJSONPaths(t *testing.T) {
	tests := []struct {
		name    string
		entries []string
		in      string
		want    string
	}{
		{"absolute path", []string{"json:$.user.email"},
			`{"user":{"email":"a@x.io","name":"A"},"email":"kept"}`,
			`{"user":{"email":"[REDACTED]","name":"A"},"email":"kept"}`},
		{"key anywhere", []string{"json:password"},
			`{"password":"p1","nested":{"Password":"p2","list":[{"password":3}]}}`,
			`{"password":"[REDACTED]","nested":{"Password":"[REDACTED]","list":[{"password":"[REDACTED]"}]}}`},
		{"array wildcard and partial", []string{"json:$.items[*].card=partial:4"},
			`{"items":[{"card":"4111111111111111"},{"card":"5555555555554444","id":1}]}`,
			`{"items":[{"card":"************1111"},{"card":"************4444","id":1}]}`},
		{"nested arrays by index", []string{"json:$.m[1][0]=null"},
			`{"m":[[1,2],[3,4],[5]]}`,
			`{"m":[[1,2],[null,4],[5]]}`},
		{"container masks every scalar below, keeps the shape", []string{"json:secret"},
			`{"secret":{"a":"x","b":[1,true,null,{"c":2.5}]},"ok":"y"}`,
			`{"secret":{"a":"[REDACTED]","b":["[REDACTED]","[REDACTED]",null,{"c":"[REDACTED]"}]},"ok":"y"}`},
		{"null strategy", []string{"json:$.token=null"},
			`{"token":"abc","x":1}`,
			`{"token":null,"x":1}`},
		{"hash strategy", []string{"json:email=hash"},
			`[{"email":"a@x.io"},{"email":"a@x.io"}]`,
			`[{"email":"p_` + pseudonymOf(t, "a@x.io") + `"},{"email":"p_` + pseudonymOf(t, "a@x.io") + `"}]`},
		{"glob key", []string{"json:*token*"},
			`{"access_token":"a","refresh_token_v2":"b","tok":"c"}`,
			`{"access_token":"[REDACTED]","refresh_token_v2":"[REDACTED]","tok":"c"}`},
		{"root", []string{"json:$"}, `"x"`, `"[REDACTED]"`},
		{"whitespace kept", []string{"json:k"},
			"{\n  \"k\" : \"v\" ,\n  \"j\": [ 1 , 2 ]\n}\n",
			"{\n  \"k\" : \"[REDACTED]\" ,\n  \"j\": [ 1 , 2 ]\n}\n"},
		{"stronger rule wins", []string{"json:k=partial", "json:$.k=null"}, `{"k":"value"}`, `{"k":null}`},
		{"detectors in strings, keys and numbers", []string{"email", "credit_card=partial:4"},
			`{"alice@example.com":{"note":"card 4111 1111 1111 1111, mail bob\u0040example.com","n":4111111111111111,"f":0.4111111111111111}}`,
			`{"[REDACTED]":{"note":"card ***************1111, mail [REDACTED]","n":"************1111","f":0.4111111111111111}}`},
		{"detector null strategy", []string{"email=null"}, `["a@example.com", "x"]`, `[null, "x"]`},
		{"escapes re-encoded", []string{"email"}, `"tab\there\u00e9 \"q\" a@example.com"`, `"tab\there` + "é" + ` \"q\" [REDACTED]"`},
		{"nothing matches: bytes unchanged", []string{"email", "json:zzz"},
			`{"a":[1,-2.5e+10,true,false,null,"\u00e9\ud83d\ude00"],"b":{}}`,
			`{"a":[1,-2.5e+10,true,false,null,"\u00e9\ud83d\ude00"],"b":{}}`},
		{"JSON lines", []string{"json:k"}, "{\"k\":1}\n{\"k\":2}\n", "{\"k\":\"[REDACTED]\"}\n{\"k\":\"[REDACTED]\"}\n"},
		{"bracketed and long keys", []string{"json:$['a.b']", "json:" + strings.Repeat("k", 70)},
			`{"a.b":1,"A.B":2,"ab":3,"` + strings.Repeat("K", 70) + `":4,"` + strings.Repeat("k", 69) + `":5}`,
			`{"a.b":"[REDACTED]","A.B":"[REDACTED]","ab":3,"` + strings.Repeat("K", 70) + `":"[REDACTED]","` + strings.Repeat("k", 69) + `":5}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, tt.entries...)
			got, err := m.MaskJSON([]byte(tt.in), nil)
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(got))
			for _, chunk := range []int{1, 2, 7, 1 << 20} {
				s, err := streamJSON(t, m, tt.in, chunk)
				require.NoError(t, err)
				assert.Equal(t, tt.want, s, "chunks of %d", chunk)
			}
			dec := json.NewDecoder(strings.NewReader(string(got)))
			for dec.More() {
				var v any
				require.NoError(t, dec.Decode(&v), "output is valid JSON")
			}
		})
	}
}

func pseudonymOf(t *testing.T, s string) string {
	m := mustCompile(t, "email=hash")
	return string(m.appendPseudonym(nil, []byte(s)))[2:]
}

func TestJSONInvalid(t *testing.T) {
	m := mustCompile(t, "email", "json:k")
	for _, in := range []string{
		`{"a":}`, `[1,]`, `{"a" 1}`, `{"a":1,}`, `"\x"`, `"\u12"`, `01`, `1.`, `1e`, `-`, `tru`, `nul`,
		`{"a":1}}`, `"unterminated`, "\"a\x01b\"", `[1 2]`, `truefalse`, `{`, `[`, `{"k"`, `{1:2}`,
		`'x'`, `{"a":1]`, `[1}`, `]`, `,`, `{"k":"v"`, `1 x`,
	} {
		t.Run(in, func(t *testing.T) {
			_, err := m.MaskJSON([]byte(in), nil)
			assert.Error(t, err)
			_, err = streamJSON(t, m, in, 1)
			assert.Error(t, err)
			assert.False(t, json.Valid([]byte(in)), "the case is invalid JSON")
		})
	}
	// A json column holds exactly one value.
	_, _, err := m.maskJSONValue([]byte(`1 2`), false, nil)
	assert.Error(t, err)
	_, _, err = m.maskJSONValue([]byte(`  `), false, nil)
	assert.Error(t, err)
	// A stream may be empty or hold a sequence.
	_, err = streamJSON(t, m, "", 1)
	assert.NoError(t, err)
	_, err = streamJSON(t, m, `1 2 "x" {}[]`, 1)
	assert.NoError(t, err)
}

func TestJSONDepthLimit(t *testing.T) {
	m := mustCompile(t, "json:k")
	ok := strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth)
	_, err := m.MaskJSON([]byte(ok), nil)
	require.NoError(t, err)
	_, err = m.MaskJSON([]byte("["+ok+"]"), nil)
	assert.ErrorContains(t, err, "nested too deeply")
}

func TestJSONOversize(t *testing.T) {
	m, err := Compile([]string{"email"}, Options{MaxValue: 64})
	require.NoError(t, err)
	long := strings.Repeat("x", 100)
	counts := map[string]int{}
	got, err := m.MaskJSON([]byte(`{"a":"`+long+`","b":"short"}`), counts)
	require.NoError(t, err)
	assert.Equal(t, `{"a":"[REDACTED]","b":"short"}`, string(got), "too long to inspect: redacted whole")
	assert.Equal(t, map[string]int{OversizeCount: 1}, counts)

	_, err = m.MaskJSON([]byte(`{"`+long+`":1}`), nil)
	assert.ErrorContains(t, err, "key longer")
	_, err = m.MaskJSON([]byte(`1`+strings.Repeat("0", 100)), nil)
	assert.ErrorContains(t, err, "number too long")

	// Without detectors or rules nothing is held: long strings pass.
	plain, err := Compile([]string{"column:x"}, Options{MaxValue: 64})
	require.NoError(t, err)
	got, err = plain.MaskJSON([]byte(`"`+long+`"`), nil)
	require.NoError(t, err)
	assert.Equal(t, `"`+long+`"`, string(got))
}

func TestJSONStream(t *testing.T) {
	m := mustCompile(t, "email", "json:password")
	var out bytes.Buffer
	s := m.NewJSONStream(&out)
	_, err := s.Write([]byte(`{"password":"hunter2","contact":"al`))
	require.NoError(t, err)
	assert.Equal(t, `{"password":"[REDACTED]","contact":`, out.String(), "what is safe is passed on")
	_, err = s.Write([]byte(`ice@example.com"}`))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	assert.Equal(t, `{"password":"[REDACTED]","contact":"[REDACTED]"}`, out.String())
	assert.Equal(t, map[string]int{"email": 1, "json:password": 1}, s.Counts())
	_, err = s.Write([]byte("x"))
	assert.ErrorIs(t, err, ErrClosed)

	// Truncated input fails at Close, and the failure sticks.
	s = m.NewJSONStream(&out)
	_, err = s.Write([]byte(`{"a":[1,2`))
	require.NoError(t, err)
	assert.ErrorContains(t, s.Close(), "unexpected end")
	assert.Error(t, s.Close())
}

// TestJSONStreamSplitAnywhere writes documents in two parts split at
// every offset, and in parts of every size up to 64 bytes: the output and
// the counts are MaskJSON's however a value, an escape or the space
// between values is cut.
func TestJSONStreamSplitAnywhere(t *testing.T) {
	m, err := Compile([]string{"email", "credit_card", "json:ssn", "json:$.h=hash", "json:p=partial", "json:$.n=null"},
		Options{PseudonymKey: testKey, MaxValue: 40})
	require.NoError(t, err)
	for _, doc := range []string{
		string(gatewayBody),
		`{"k\u0040x.io": ["a\"b\\c\u00e9 bob@example.com", -12.5e+3, true, false, null, 4111111111111111],` +
			"\n  \"h\": \"to hash\", \"p\": 123456789, \"n\": {\"x\": [1, \"y\"]}, \"ssn\": \"078-05-1120\",\n" +
			`  "long": "` + strings.Repeat("x", 50) + `", "plain": "` + strings.Repeat("y", 30) + `"} 7 "z"`,
	} {
		want := map[string]int{}
		masked, err := m.MaskJSON([]byte(doc), want)
		require.NoError(t, err)
		check := func(parts ...string) {
			t.Helper()
			var out bytes.Buffer
			s := m.NewJSONStream(&out)
			for _, p := range parts {
				_, err := s.Write([]byte(p))
				require.NoError(t, err)
			}
			require.NoError(t, s.Close())
			require.Equal(t, string(masked), out.String(), "written in parts %q", parts)
			require.Equal(t, want, s.Counts(), "written in parts %q", parts)
		}
		for k := range len(doc) + 1 {
			check(doc[:k], doc[k:])
		}
		for n := 1; n <= 64; n++ {
			var parts []string
			for p := doc; len(p) > 0; p = p[min(n, len(p)):] {
				parts = append(parts, p[:min(n, len(p))])
			}
			check(parts...)
		}
	}
}

// TestJSONStreamPartialOutput checks what a stream has passed on when the
// input turns out invalid: everything before the error, but nothing of a
// value it was holding.
func TestJSONStreamPartialOutput(t *testing.T) {
	m := mustCompile(t, "email")
	for _, tt := range []struct{ in, out string }{
		{`{"a":1,"b":"x@y.io",}`, `{"a":1,"b":"[REDACTED]",`},
		{`{"a":"x@y.io", "b":1.x}`, `{"a":"[REDACTED]", "b":`},
		{`{"a":"x@y.io", "b":12x}`, `{"a":"[REDACTED]", "b":12`},
		{`["ok", tru]`, `["ok", `},
		{"[\"ok\", \"a\x01b\"]", `["ok", `},
		{`{"a":1 "b":2}`, `{"a":1 `},
	} {
		for _, chunk := range []int{1, 5, 1 << 10} {
			got, err := streamJSON(t, m, tt.in, chunk)
			require.Error(t, err, tt.in)
			assert.Equal(t, tt.out, got, "%q in chunks of %d", tt.in, chunk)
		}
	}
}

func TestJSONLargeDocumentBoundedMemory(t *testing.T) {
	// A large document streams through in chunks; only the current string
	// is held.
	m := mustCompile(t, "email")
	var doc bytes.Buffer
	doc.WriteString("[")
	for i := range 20000 {
		if i > 0 {
			doc.WriteString(",")
		}
		doc.WriteString(`{"id":1,"email":"user@example.com","note":"nothing to see here"}`)
	}
	doc.WriteString("]")
	var out bytes.Buffer
	s := m.NewJSONStream(&out)
	_, err := s.Write(doc.Bytes())
	require.NoError(t, err)
	assert.Less(t, cap(s.x.out), 2*streamChunk, "output is flushed chunk by chunk")
	require.NoError(t, s.Close())
	assert.NotContains(t, out.String(), "user@example.com")
	assert.Equal(t, 20000, s.Counts()["email"])
}

// TestKeyMatchShortcuts checks the shortcuts of path matching against the
// glob matcher: equalLower for keys without wildcards, and endSet, which
// rules out the values a path cannot end at.
func TestKeyMatchShortcuts(t *testing.T) {
	keys := []string{"", "k", "K", "key", "KEY", "kEy", "keys", "ke", "email", "e-mail", "é", "É", "ssn", strings.Repeat("k", 62), strings.Repeat("k", 63), strings.Repeat("K", 70)}
	for _, pat := range keys {
		pat = strings.ToLower(pat)
		for _, k := range keys {
			if got, want := equalLower(pat, []byte(k)), globFold(pat, []byte(k)); got != want {
				t.Errorf("equalLower(%q, %q) = %v, globFold %v", pat, k, got, want)
			}
		}
	}
	for _, entry := range []string{"json:key", "json:$.a.key", "json:$['KEY']", "json:*ey", "json:$.a[1]", "json:$", "json:" + strings.Repeat("k", 63)} {
		m := mustCompile(t, entry)
		for _, k := range keys {
			steps := []step{{isKey: true, key: []byte("a")}, {isKey: true, key: []byte(k)}}
			if m.paths[0].path.match(steps) && !m.ends.mayEnd(&steps[1]) {
				t.Errorf("%s matches key %q, which endSet rules out", entry, k)
			}
		}
		if steps := []step{{isKey: true, key: []byte("a")}, {idx: 1}}; m.paths[0].path.match(steps) && !m.ends.mayEnd(&steps[1]) {
			t.Errorf("%s matches an index, which endSet rules out", entry)
		}
	}
}
