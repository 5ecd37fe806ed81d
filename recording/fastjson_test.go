package recording

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/protocol"
)

func strp(s string) *string { return &s }

// hotEntries are command and result entries with every field the fast
// encoder writes, including the awkward strings.
func hotEntries() []*Entry {
	weird := "a\"b\\c\n\r\t\b\f\x00\x1f<>&\u2028\u2029é\xff\xfe日本"
	return []*Entry{
		{Seq: 1, Time: time.Date(2026, 11, 26, 1, 2, 3, 400500600, time.UTC), Session: "S1", Type: TypeCommand,
			Command: &protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: weird,
				SQL: &protocol.SQL{Statements: []protocol.Statement{
					{Kind: "SELECT", Tables: []string{"public.users", "users"}, HasWhere: true, Functions: []string{"lower"}},
					{Kind: "DROP"},
				}, Writes: true, DDL: true, ParseError: ""},
				Attrs: map[string]string{"statement": "s1", "extended": "parse", "a": weird}},
			Decision: &protocol.Decision{Action: protocol.Deny, Rules: []string{"no-drop", "x"}, Message: weird,
				Approvers: []string{"group:dba"}, Quorum: 2, Timeout: 10 * time.Minute, Mask: []string{"email"}, PerExecution: true, Seq: 99}},
		{Seq: 2, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600)), Type: TypeCommand,
			Command:  &protocol.Command{Protocol: "postgres", Kind: protocol.KindConnect, SQL: &protocol.SQL{ParseError: "syntax error"}},
			Decision: &protocol.Decision{Action: protocol.Allow}},
		{Seq: 3, Time: time.Unix(0, 0).UTC(), Session: "S1", Type: string(protocol.EventResult), CommandSeq: 1,
			Result: &protocol.Result{Tag: "SELECT 2", Rows: 2, Bytes: 77, Duration: 1234567, Columns: []string{"id", weird},
				Data:      [][]*string{{strp("1"), nil}, nil, {strp(weird), strp("")}},
				Truncated: true, Masked: 3, Error: "E: " + weird, Params: []*string{nil, strp("x")}}},
		{Seq: 4, Type: string(protocol.EventResult), Result: &protocol.Result{}},
		{Seq: 5, Type: string(protocol.EventError), Code: "42501", Message: weird, Data: []byte{0, 1, 2, 250}, Reason: "r", ClientAddr: "1.2.3.4:5"},
		{Seq: 6, Type: TypeSessionEnd, Reason: weird},
		{Seq: 7, Session: "S2", Type: TypeCommand,
			Command: &protocol.Command{Protocol: "http", Kind: protocol.KindRequest, Text: "POST /v1/x?q=" + weird,
				HTTP: &protocol.HTTP{Method: "POST", Host: "api.example:8443", Path: "/v1/" + weird,
					Query:       map[string]string{"q": weird, weird: "", "": "empty name", "b": "2", "a": "1"},
					Headers:     map[string]string{"content-type": "application/json", "x-" + weird: weird, "accept": "*/*"},
					ContentType: "application/json", Body: weirdValue(weird)},
				Attrs: map[string]string{"body_parsed": "true"}},
			Decision: &protocol.Decision{Action: protocol.RequireApproval, Approvers: []string{"group:ops"}, GrantWindow: time.Hour}},
		{Seq: 8, Type: TypeCommand, Command: &protocol.Command{Protocol: "http", Kind: protocol.KindRequest,
			HTTP: &protocol.HTTP{Method: "GET", Query: map[string]string{}, Headers: map[string]string{}, Body: map[string]any{}}}},
		{Seq: 9, Type: TypeCommand, Command: &protocol.Command{Protocol: "http", Kind: protocol.KindRequest,
			HTTP: &protocol.HTTP{Method: "PUT", Body: []any{}}}},
		{Seq: 10, Type: TypeCommand, Command: &protocol.Command{Protocol: "http", Kind: protocol.KindRequest,
			HTTP: &protocol.HTTP{Method: "PUT", Body: map[string]any(nil)}}},
		{Seq: 11, Type: TypeCommand, Command: &protocol.Command{Protocol: "http", Kind: protocol.KindRequest,
			HTTP: &protocol.HTTP{Method: "PUT", Body: weird}}},
		{Seq: 12, Type: TypeCommand, Command: &protocol.Command{Protocol: "http", Kind: protocol.KindRequest,
			HTTP: &protocol.HTTP{Method: "PUT", Body: math.Copysign(0, -1)}}},
		{Seq: 13, Type: TypeCommand, Command: &protocol.Command{Protocol: "http", Kind: protocol.KindRequest,
			HTTP: &protocol.HTTP{}}},
		{Seq: 14, Session: "S2", Type: TypeCommand,
			Command: &protocol.Command{Protocol: "http", Kind: protocol.KindRequest, Text: "tools/call run_query",
				MCP: &protocol.MCP{Method: "tools/call", Tool: weird, URI: "file:///" + weird, Prompt: weird,
					Arguments: weirdValue(weird).(map[string]any)}}},
		{Seq: 15, Type: TypeCommand, Command: &protocol.Command{Protocol: "http", Kind: protocol.KindRequest,
			MCP: &protocol.MCP{Method: "resources/read", Arguments: map[string]any{}}}},
		{Seq: 16, Type: TypeCommand, Command: &protocol.Command{Protocol: "kubernetes", Kind: protocol.KindRequest,
			K8s: &protocol.K8s{Verb: "delete", APIGroup: "apps", Resource: "deployments", Subresource: weird, Namespace: "prod", Name: weird}}},
		{Seq: 17, Type: TypeCommand, Command: &protocol.Command{Protocol: "kubernetes", Kind: protocol.KindRequest,
			K8s: &protocol.K8s{}}},
		{Seq: 18, Type: TypeCommand, Command: &protocol.Command{Protocol: "ssh", Kind: protocol.KindExec,
			SSH: &protocol.SSH{ChannelType: "session", Command: weird, Subsystem: "sftp"}}},
		{Seq: 19, Type: TypeCommand, Command: &protocol.Command{Protocol: "ssh", Kind: protocol.KindShell,
			SSH: &protocol.SSH{}}},
		{Seq: 20, Type: string(protocol.EventResult), CommandSeq: 7,
			Result: &protocol.Result{Tag: "200", Columns: []string{"body"}, Data: [][]*string{{strp(weird)}}, Masked: 6,
				MaskedBy: map[string]int64{"email": 2, weird: 3, "": 1, "backend-credential": math.MaxInt64, "neg": math.MinInt64}}},
		{Seq: 21, Type: string(protocol.EventResult), Result: &protocol.Result{MaskedBy: map[string]int64{}}},
	}
}

// weirdValue is a parsed JSON body with every type and number the parsers
// produce, awkward strings as keys and values, and empty containers.
func weirdValue(weird string) any {
	return map[string]any{
		weird: weird,
		"":    "",
		"numbers": []any{int64(0), int64(1), int64(-1), int64(math.MaxInt64), int64(math.MinInt64),
			1.5, -1.5, 0.0, math.Copysign(0, -1), 1e20, 1e21, -1e21, 123456789012345678.0, 1e-6, 1e-7, -1e-7,
			0.1, 1.0 / 3, 2e-9, 1.5e-300, 5e-324, math.MaxFloat64, -math.MaxFloat64, 9007199254740993.0, 1e100},
		"nested":             map[string]any{"a": map[string]any{"b": []any{[]any{}, map[string]any{}, nil, true, false}}},
		"nils":               []any{nil, map[string]any(nil), []any(nil)},
		"z\x00\x1f<&>\u2028": map[string]any{"\xff": "\xfe", "é": "日本"},
	}
}

func TestFastEncoderMatchesEncodingJSON(t *testing.T) {
	for _, e := range hotEntries() {
		want, err := stdChained(e, ZeroHash)
		require.NoError(t, err)
		got, ok := appendChained(nil, e, ZeroHash)
		require.True(t, ok, "entry %d takes the fast path", e.Seq)
		assert.Equal(t, string(want), string(got), "entry %d", e.Seq)
	}
}

// randString returns a short string of awkward pieces: quotes, control
// characters, invalid and truncated UTF-8, U+2028, HTML characters.
func randString(r *rand.Rand) string {
	alphabet := []string{"a", "\"", "\\", "\n", "\x01", "\x7f", "é", "\xff", "\u2028", "日", "<", " ", "\xe2\x80"}
	var sb strings.Builder
	for n := r.IntN(12); n > 0; n-- {
		sb.WriteString(alphabet[r.IntN(len(alphabet))])
	}
	return sb.String()
}

func TestFastEncoderRandomStrings(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		e := &Entry{Seq: uint64(i), Type: TypeCommand, Session: randString(r),
			Command: &protocol.Command{Protocol: randString(r), Kind: protocol.Kind(randString(r)), Text: randString(r),
				HTTP:  &protocol.HTTP{Method: randString(r), Headers: map[string]string{randString(r): randString(r)}},
				Attrs: map[string]string{randString(r): randString(r)}},
			Decision: &protocol.Decision{Action: protocol.Action(randString(r)), Message: randString(r)},
			Result:   &protocol.Result{MaskedBy: map[string]int64{randString(r): r.Int64(), randString(r): -r.Int64()}}}
		want, err := stdChained(e, ZeroHash)
		require.NoError(t, err)
		got, ok := appendChained(nil, e, ZeroHash)
		require.True(t, ok)
		require.Equal(t, string(want), string(got))
	}
}

// randValue returns a random parsed JSON value, as protocol/http parses a
// body, with containers nested at most depth deep and about *budget values
// in all.
func randValue(r *rand.Rand, depth int, budget *int) any {
	*budget--
	n := 10
	if depth == 0 || *budget <= 0 {
		n = 6
	}
	switch r.IntN(n) {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return randString(r)
	case 3:
		return r.Int64()>>r.IntN(64) - r.Int64()>>r.IntN(64)
	case 4:
		// Round numbers at every scale, around the exponent cut-offs.
		return float64(r.Int64N(2e6)-1e6) * math.Pow10(r.IntN(60)-30)
	case 5:
		for {
			if f := math.Float64frombits(r.Uint64()); !math.IsNaN(f) && !math.IsInf(f, 0) {
				return f
			}
		}
	case 6, 7:
		m := map[string]any{}
		for k := r.IntN(5); k > 0; k-- {
			m[randString(r)] = randValue(r, depth-1, budget)
		}
		return m
	default:
		a := []any{}
		for k := r.IntN(5); k > 0; k-- {
			a = append(a, randValue(r, depth-1, budget))
		}
		return a
	}
}

func TestFastEncoderRandomValues(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 3000; i++ {
		budget := 40
		body := randValue(r, 6, &budget)
		args := map[string]any{randString(r): randValue(r, 6, &budget), randString(r): randValue(r, 6, &budget)}
		e := &Entry{Seq: uint64(i), Type: TypeCommand,
			Command: &protocol.Command{Protocol: "http", Kind: protocol.KindRequest,
				HTTP: &protocol.HTTP{Method: "POST", Body: body}, MCP: &protocol.MCP{Method: "tools/call", Arguments: args}}}
		want, err := stdChained(e, ZeroHash)
		require.NoError(t, err)
		got, ok := appendChained(nil, e, ZeroHash)
		require.True(t, ok)
		require.Equal(t, string(want), string(got))
	}
}

// TestFastEncoderLeavesUnknownValuesToEncodingJSON: a value of a type the
// JSON parsers do not produce, a float encoding/json refuses, or nesting
// deeper than maxValueDepth is left to encoding/json rather than written
// in some other way.
func TestFastEncoderLeavesUnknownValuesToEncodingJSON(t *testing.T) {
	type point struct{ X int }
	nest := func(n int) any {
		var v any = "leaf"
		for range n {
			v = []any{v}
		}
		return v
	}
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	values := map[string]any{
		"int": 1, "int inside": map[string]any{"a": []any{int64(1), 2}}, "float32": float32(1),
		"struct": point{1}, "pointer": &point{1}, "json.Number": json.Number("1"), "json.RawMessage": json.RawMessage("1"),
		"[]byte": []byte("x"), "[]string": []string{"a"}, "map[string]string": map[string]string{"a": "b"},
		"NaN": math.NaN(), "+Inf": math.Inf(1), "-Inf inside": map[string]any{"a": []any{nil, math.Inf(-1)}},
		"too deep": nest(maxValueDepth + 1), "cyclic": cyclic,
	}
	for name, v := range values {
		for _, c := range []*protocol.Command{
			{Protocol: "http", Kind: protocol.KindRequest, HTTP: &protocol.HTTP{Method: "POST", Body: v}},
			{Protocol: "http", Kind: protocol.KindRequest, MCP: &protocol.MCP{Method: "tools/call", Arguments: map[string]any{"v": v}}},
		} {
			_, ok := appendChained(nil, &Entry{Type: TypeCommand, Command: c}, ZeroHash)
			assert.False(t, ok, name)
		}
	}

	// As deep as protocol/http parses takes the fast path; one deeper is
	// still recorded, by encoding/json.
	for _, n := range []int{maxValueDepth, maxValueDepth + 1} {
		e := &Entry{Type: TypeCommand, Command: &protocol.Command{Protocol: "http", Kind: protocol.KindRequest,
			HTTP: &protocol.HTTP{Method: "POST", Body: nest(n)}}}
		want, err := stdChained(e, ZeroHash)
		require.NoError(t, err)
		got, ok := appendChained(nil, e, ZeroHash)
		if assert.Equal(t, n == maxValueDepth, ok, "depth %d", n) && ok {
			assert.Equal(t, string(want), string(got))
		}
		require.NoError(t, NewEncoder(discard{}).Encode(e))
	}
}

func TestFastEncoderLeavesOtherEntriesToEncodingJSON(t *testing.T) {
	for _, e := range sampleEntries("S") {
		_, ok := appendChained(nil, e, ZeroHash)
		assert.Equal(t, e.Identity == nil && e.Target == nil, ok, "entry %d", e.Seq)
	}
}

func BenchmarkEncodeResult(b *testing.B) {
	e := hotEntries()[2]
	enc := NewEncoder(discard{})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := enc.Encode(e); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestFastEncoderWritesEveryField: an entry with every field set, down
// through every protocol part, encodes as with encoding/json, so that a
// field added to Entry or to a type it holds fails here until the fast
// encoder writes it, rather than being dropped from recordings.
func TestFastEncoderWritesEveryField(t *testing.T) {
	var e Entry
	v := reflect.ValueOf(&e).Elem()
	for i := range v.NumField() {
		if f := v.Type().Field(i); f.Name != "Identity" && f.Name != "Target" {
			fill(v.Field(i))
		}
	}
	want, err := stdChained(&e, ZeroHash)
	require.NoError(t, err)
	got, ok := appendChained(nil, &e, ZeroHash)
	require.True(t, ok)
	assert.Equal(t, string(want), string(got))
	for _, part := range []string{"sql", "http", "mcp", "k8s", "ssh", "body", "arguments", "masked_by", "grant_window"} {
		assert.Contains(t, string(got), `"`+part+`":`)
	}
}

// fill sets every exported field reachable from v to a value that is not
// empty: one element in each slice and map, a parsed JSON object in each
// interface.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("s")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1.5)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem())
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0))
		v.Set(s)
	case reflect.Map:
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		m := reflect.MakeMap(v.Type())
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Interface:
		v.Set(reflect.ValueOf(map[string]any{"k": []any{"s", int64(7), 1.5, true, nil}}))
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	}
}

// benchHTTPEntries are an HTTP command with a parsed JSON body and its
// result: a masked 2 KiB response body.
func benchHTTPEntries() (command, result *Entry) {
	command = &Entry{Seq: 7, Time: time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC), Session: "01JABCDEF", Type: TypeCommand,
		Command: &protocol.Command{Protocol: "http", Kind: protocol.KindRequest, Text: "POST /api/v1/orders",
			HTTP: &protocol.HTTP{Method: "POST", Host: "api.internal:8443", Path: "/api/v1/orders",
				Query: map[string]string{"dry_run": "true", "page": "2"},
				Headers: map[string]string{"accept": "application/json", "content-type": "application/json; charset=utf-8",
					"user-agent": "orders-client/1.4", "content-length": "231", "x-request-id": "6f1c2a9e-03b1-4c55-9d0e-1f2a3b4c5d6e"},
				ContentType: "application/json",
				Body: map[string]any{
					"customer": map[string]any{"id": int64(42), "email": "ada@example.com", "vip": true},
					"items": []any{
						map[string]any{"sku": "A-1", "qty": int64(2), "price": 19.99},
						map[string]any{"sku": "B-7", "qty": int64(1), "price": 5.5, "tags": []any{"gift", "fragile"}},
					},
					"note": "leave at the door", "express": false, "coupon": nil,
				}},
			Attrs: map[string]string{"body_sha256": strings.Repeat("ab", 32), "body_parsed": "true"}},
		Decision: &protocol.Decision{Action: protocol.Allow, Rules: []string{"orders-api"}}}
	body := strings.Repeat(`{"id":1,"email":"****************","name":"Ada Lovelace"},`, 36)[:2048]
	result = &Entry{Seq: 8, Time: time.Date(2026, 3, 4, 5, 6, 7, 9, time.UTC), Session: "01JABCDEF", Type: string(protocol.EventResult), CommandSeq: 7,
		Result: &protocol.Result{Tag: "200", Bytes: 2048, Duration: 3 * time.Millisecond, Columns: []string{"body"}, Data: [][]*string{{&body}},
			Masked: 36, MaskedBy: map[string]int64{"email": 35, "backend-credential": 1}}}
	return command, result
}

func BenchmarkEncodeHTTPCommand(b *testing.B) {
	e, _ := benchHTTPEntries()
	enc := NewEncoder(discard{})
	b.ReportAllocs()
	for b.Loop() {
		if err := enc.Encode(e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeHTTPResult(b *testing.B) {
	_, e := benchHTTPEntries()
	enc := NewEncoder(discard{})
	b.ReportAllocs()
	for b.Loop() {
		if err := enc.Encode(e); err != nil {
			b.Fatal(err)
		}
	}
}
