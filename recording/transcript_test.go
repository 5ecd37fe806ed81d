package recording

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/protocol"
)

// fullSession adds to sampleEntries an approval, a truncated and masked
// result with parameters, a notice, terminal output with escape sequences
// and an entry type the renderer does not know.
func fullSession() []*Entry {
	es := sampleEntries(testID)
	end := es[len(es)-1]
	end.Seq = 12
	end.Time = t0.Add(65 * time.Second)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	more := []*Entry{
		{Seq: 6, Time: at(4000), Session: testID, Type: TypeCommand,
			Command:  &protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: "UPDATE users SET name = $1 WHERE id = $2"},
			Decision: &protocol.Decision{Action: protocol.RequireApproval, Rules: []string{"writes-need-approval"}, Message: "ask #dba"}},
		{Seq: 7, Time: at(30000), Session: testID, Type: TypeApproval, CommandSeq: 6,
			Decision: &protocol.Decision{Action: protocol.Allow, Rules: []string{"writes-need-approval"}}, Message: "approved by bob"},
		{Seq: 8, Time: at(30050), Session: testID, Type: string(protocol.EventResult), CommandSeq: 6,
			Result: &protocol.Result{Tag: "UPDATE 1", Rows: 1, Bytes: 0, Duration: 3 * time.Millisecond, Params: []*string{ptr("bobby"), nil}}},
		{Seq: 9, Time: at(31000), Session: testID, Type: string(protocol.EventResult), CommandSeq: 2,
			Result: &protocol.Result{Tag: "SELECT 1000", Rows: 1000, Bytes: 52311, Duration: 1500 * time.Millisecond,
				Columns: []string{"email", "note"}, Masked: 2, Truncated: true,
				Data: [][]*string{{ptr("a***@example.com"), ptr("multi\nline\ttab")}, {ptr("b***@example.com"), ptr("naïve ✓")}}}},
		{Seq: 10, Time: at(32000), Session: testID, Type: string(protocol.EventNotice), Message: "table \"t\" does not exist, skipping"},
		{Seq: 11, Time: at(33000), Session: testID, Type: string(protocol.EventOutput), Data: []byte("$ ls\r\n\x1b[31mred\x1b[0m\n")},
		{Seq: 11, Time: at(34000), Session: testID, Type: "resize", Message: "80x24"},
	}
	return append(append(es[:len(es)-1], more...), end)
}

const fullTranscript = `session   01JQ8Z5V7S3E6T4N2W9X0Y1K5M
identity  alice (method: oidc; groups: dba, oncall)
target    pg-prod (postgres at db.internal:5432)
client    10.1.2.3:54321
started   2025-03-04T05:06:07.000Z

05:06:08.000  #2 command (query)
    SELECT id, name
    FROM users WHERE id < 3
    decision: allow (rules: read-users)
05:06:08.120  #3 result of #2: SELECT 2
    id | name
    ---+------
    1  | alice
    2  | NULL
    (2 rows, 38 bytes, 120ms)
05:06:09.000  #4 command (query)
    DROP TABLE users
    decision: deny (rules: no-ddl): DDL is not allowed on pg-prod
05:06:09.100  #5 error of #4 (code 42501)
    permission denied by sluice policy
05:06:11.000  #6 command (query)
    UPDATE users SET name = $1 WHERE id = $2
    decision: require_approval (rules: writes-need-approval): ask #dba
05:06:37.000  #7 approval of #6
    decision: allow (rules: writes-need-approval)
    approved by bob
05:06:37.050  #8 result of #6: UPDATE 1
    params: $1='bobby', $2=NULL
    (1 row, 0 bytes, 3ms)
05:06:38.000  #9 result of #2: SELECT 1000
    email            | note
    -----------------+-----------------
    a***@example.com | multi\nline\ttab
    b***@example.com | naïve ✓
    (1000 rows, 52311 bytes, 1.5s)
    [truncated: only the first 2 rows were recorded]
    [masked: 2 values]
05:06:39.000  #10 notice
    table "t" does not exist, skipping
05:06:40.000  #11 output (19 bytes)
    $ ls\r
    \x1b[31mred\x1b[0m
05:06:41.000  #11 resize
    80x24
05:07:12.000  #12 session end: client disconnected (duration 1m5s)

hash chain: intact (13 entries)
`

func TestWriteTranscript(t *testing.T) {
	data := encodeAll(t, fullSession())
	var out bytes.Buffer
	rep, err := WriteTranscript(&out, bytes.NewReader(data))
	require.NoError(t, err)
	assert.True(t, rep.Intact)
	assert.True(t, rep.Complete)
	assert.Equal(t, fullTranscript, out.String())
}

func TestWriteTranscriptBrokenAndIncomplete(t *testing.T) {
	good := encodeAll(t, sampleEntries(testID))
	ls := lines(good)
	tests := []struct {
		name     string
		data     []byte
		want     []string // lines that must appear, in order
		notWant  []string
		complete bool
	}{
		{
			name: "edited",
			data: bytes.Replace(good, []byte("DROP TABLE"), []byte("DROP TABLf"), 1),
			want: []string{
				"    (2 rows, 38 bytes, 120ms)\n",
				"\n[replay stopped at line 4: it and the lines after it are not verified]\n",
				"\nhash chain: BROKEN at line 4: content does not match its hash (edited)\n",
			},
			notWant: []string{"DROP", "session end:", "incomplete"},
		},
		{
			name: "line removed",
			data: bytes.Join([][]byte{ls[0], ls[1], ls[3], ls[4], ls[5]}, nil),
			want: []string{
				"decision: allow (rules: read-users)\n",
				"hash chain: BROKEN at line 3: prev does not match line 2 (a line was removed, inserted or reordered)\n",
			},
			notWant: []string{"DROP"},
		},
		{
			name: "crashed: no session.end",
			data: bytes.Join(ls[:5], nil),
			want: []string{
				"permission denied by sluice policy\n",
				"\n[incomplete: no session.end entry (the gateway stopped before the session ended, or the end was cut off)]\n",
				"\nhash chain: intact (5 entries)\n",
			},
			notWant: []string{"session end:", "BROKEN"},
		},
		{
			name:     "complete",
			data:     good,
			want:     []string{"session end: client disconnected (duration 3s)\n\nhash chain: intact (6 entries)\n"},
			notWant:  []string{"incomplete", "BROKEN", "replay stopped"},
			complete: true,
		},
		{
			name:    "empty",
			data:    nil,
			want:    []string{"[incomplete: no session.end entry"},
			notWant: []string{"session   "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			rep, err := WriteTranscript(&out, bytes.NewReader(tt.data))
			require.NoError(t, err)
			assert.Equal(t, tt.complete, rep.Complete)
			s := out.String()
			assert.True(t, strings.HasSuffix(s, rep.String()+"\n"), "the verdict is the last line")
			rest := s
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if !assert.GreaterOrEqual(t, i, 0, "missing or out of order: %q in\n%s", w, s) {
					return
				}
				rest = rest[i+len(w):]
			}
			for _, nw := range tt.notWant {
				assert.NotContains(t, s, nw)
			}
		})
	}
}

func TestWriteTranscriptEscapesControls(t *testing.T) {
	es := sampleEntries(testID)
	es[0].Identity.Subject = "eve\x1b]0;owned\x07"
	es[1].Command.Text = "SELECT '\u202egnp.exe'\r"
	es[2].Result.Data[0][1] = ptr("\xff\x00")
	var out bytes.Buffer
	_, err := WriteTranscript(&out, bytes.NewReader(encodeAll(t, es)))
	require.NoError(t, err)
	s := out.String()
	assert.Contains(t, s, `identity  eve\x1b]0;owned\x07 (method: oidc`)
	assert.Contains(t, s, `    SELECT '\u202egnp.exe'\r`+"\n")
	// JSON stored the invalid byte as U+FFFD; it is shown escaped.
	assert.Contains(t, s, `1  | \ufffd\x00`)
	assert.NotContains(t, s, "\x1b")
	assert.NotContains(t, s, "\u202e")
}

type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n--; w.n < 0 {
		return 0, errors.New("broken pipe")
	}
	return len(p), nil
}

func TestWriteTranscriptWriteError(t *testing.T) {
	_, err := WriteTranscript(&failingWriter{n: 3}, bytes.NewReader(encodeAll(t, sampleEntries(testID))))
	assert.EqualError(t, err, "broken pipe")
}

func TestSanitize(t *testing.T) {
	tests := []struct{ in, oneLine, block string }{
		{"plain text", "plain text", "plain text"},
		{"a\tb", `a\tb`, "a\tb"},
		{"a\nb", `a\nb`, `a\nb`},
		{"\x1b[2J", `\x1b[2J`, `\x1b[2J`},
		{"\x7f\u0085", `\x7f\u0085`, `\x7f\u0085`},
		{"bad\xc3", `bad\xc3`, `bad\xc3`},
		{"rtl\u202eltr\u2066", `rtl\u202eltr\u2066`, `rtl\u202eltr\u2066`},
		{"ünï ✓ 日本", "ünï ✓ 日本", "ünï ✓ 日本"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.oneLine, sanitize(tt.in, true), "%q", tt.in)
		assert.Equal(t, tt.block, sanitize(tt.in, false), "%q", tt.in)
	}
}
