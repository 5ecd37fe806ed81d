package recording

import (
	"bytes"
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

func TestFastEncoderRandomStrings(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "\"", "\\", "\n", "\x01", "\x7f", "é", "\xff", "\u2028", "日", "<", " ", "\xe2\x80"}
	randStr := func() string {
		var sb strings.Builder
		for n := r.IntN(12); n > 0; n-- {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return sb.String()
	}
	for i := 0; i < 2000; i++ {
		e := &Entry{Seq: uint64(i), Type: TypeCommand, Session: randStr(),
			Command:  &protocol.Command{Protocol: randStr(), Kind: protocol.Kind(randStr()), Text: randStr(), Attrs: map[string]string{randStr(): randStr()}},
			Decision: &protocol.Decision{Action: protocol.Action(randStr()), Message: randStr()}}
		want, err := stdChained(e, ZeroHash)
		require.NoError(t, err)
		got, ok := appendChained(nil, e, ZeroHash)
		require.True(t, ok)
		require.Equal(t, string(want), string(got))
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

// TestFastEncoderKnowsEveryCommandPart: a command with any protocol part
// the fast encoder does not write itself is left to encoding/json, so no
// part is dropped from a recording.
func TestFastEncoderKnowsEveryCommandPart(t *testing.T) {
	parts := map[string]*protocol.Command{
		"http": {Protocol: "http", Kind: protocol.KindQuery, HTTP: &protocol.HTTP{Method: "GET", Path: "/x", Body: map[string]any{"a": 1.0}}},
		"mcp":  {Protocol: "http", Kind: protocol.KindQuery, MCP: &protocol.MCP{Method: "tools/call", Tool: "run_query", Arguments: map[string]any{"query": "select 1"}}},
		"k8s":  {Protocol: "kubernetes", Kind: protocol.KindQuery, K8s: &protocol.K8s{Verb: "get"}},
		"ssh":  {Protocol: "ssh", Kind: protocol.KindQuery, SSH: &protocol.SSH{ChannelType: "session"}},
	}
	for name, c := range parts {
		e := &Entry{Seq: 2, Session: "S", Type: TypeCommand, Command: c}
		_, ok := appendChained(nil, e, ZeroHash)
		assert.False(t, ok, "%s: left to encoding/json", name)
		var out bytes.Buffer
		require.NoError(t, NewEncoder(&out).Encode(e), name)
		assert.Contains(t, out.String(), `"`+name+`":`, "%s: the part is in the recording", name)
	}
	// Every pointer part of Command is listed above: a new one must be
	// added here and to appendChained's fallback.
	typ := reflect.TypeFor[protocol.Command]()
	for i := range typ.NumField() {
		if f := typ.Field(i); f.Type.Kind() == reflect.Pointer && f.Name != "SQL" {
			assert.Contains(t, parts, strings.ToLower(f.Name), "Command.%s is not covered", f.Name)
		}
	}
}
