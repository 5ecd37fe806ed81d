package recording

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

const testID = "01JQ8Z5V7S3E6T4N2W9X0Y1K5M"

var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func ptr(s string) *string { return &s }

// sampleEntries is a short PostgreSQL session: start, an allowed query with
// its result, a denied DROP, an error, end.
func sampleEntries(id string) []*Entry {
	return []*Entry{
		{Seq: 1, Time: t0, Session: id, Type: TypeSessionStart,
			Identity:   &identity.Identity{Subject: "alice", Groups: []string{"dba", "oncall"}, Method: identity.MethodOIDC},
			Target:     &protocol.Target{Name: "pg-prod", Protocol: "postgres", Address: "db.internal:5432"},
			ClientAddr: "10.1.2.3:54321"},
		{Seq: 2, Time: t0.Add(time.Second), Session: id, Type: TypeCommand,
			Command:  &protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: "SELECT id, name\nFROM users WHERE id < 3"},
			Decision: &protocol.Decision{Action: protocol.Allow, Rules: []string{"read-users"}}},
		{Seq: 3, Time: t0.Add(1120 * time.Millisecond), Session: id, Type: string(protocol.EventResult), CommandSeq: 2,
			Result: &protocol.Result{Tag: "SELECT 2", Rows: 2, Bytes: 38, Duration: 120 * time.Millisecond,
				Columns: []string{"id", "name"}, Data: [][]*string{{ptr("1"), ptr("alice")}, {ptr("2"), nil}}}},
		{Seq: 4, Time: t0.Add(2 * time.Second), Session: id, Type: TypeCommand,
			Command:  &protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: "DROP TABLE users"},
			Decision: &protocol.Decision{Action: protocol.Deny, Rules: []string{"no-ddl"}, Message: "DDL is not allowed on pg-prod"}},
		{Seq: 5, Time: t0.Add(2100 * time.Millisecond), Session: id, Type: string(protocol.EventError), CommandSeq: 4,
			Code: "42501", Message: "permission denied by sluice policy"},
		{Seq: 6, Time: t0.Add(3 * time.Second), Session: id, Type: TypeSessionEnd, Reason: "client disconnected"},
	}
}

func encodeAll(t testing.TB, entries []*Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	for _, e := range entries {
		require.NoError(t, enc.Encode(e))
	}
	return buf.Bytes()
}

func lines(b []byte) [][]byte {
	ls := bytes.SplitAfter(b, []byte("\n"))
	if len(ls[len(ls)-1]) == 0 {
		ls = ls[:len(ls)-1]
	}
	return ls
}

func TestEncoderRoundTrip(t *testing.T) {
	in := sampleEntries(testID)
	data := encodeAll(t, in)

	rd := NewReader(bytes.NewReader(data))
	var out []*Entry
	for {
		e, err := rd.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		out = append(out, e)
	}
	assert.Equal(t, in, out)
	rep := rd.Report()
	assert.Equal(t, VerifyReport{Session: testID, Entries: 6, Intact: true, Complete: true, Head: rep.Head}, rep)
	assert.NotEqual(t, ZeroHash, rep.Head)
}

// TestEncoderLineFormat pins the byte format a verifier relies on, checked
// independently of Reader.
func TestEncoderLineFormat(t *testing.T) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	assert.Equal(t, ZeroHash, enc.Head())
	for _, e := range sampleEntries(testID) {
		require.NoError(t, enc.Encode(e))
	}
	prev := ZeroHash
	for i, line := range lines(buf.Bytes()) {
		require.True(t, bytes.HasSuffix(line, []byte("\"}\n")), "line %d", i+1)
		body := line[:len(line)-1]
		cut := len(body) - len(`,"hash":"`) - 64 - len(`"}`)
		require.Equal(t, `,"hash":"`, string(body[cut:cut+9]))
		hash := string(body[cut+9 : cut+9+64])
		b := append(append([]byte{}, body[:cut]...), '}')
		require.True(t, bytes.HasSuffix(b, []byte(`,"prev":"`+prev+`"}`)), "line %d: prev is the last member", i+1)
		sum := sha256.Sum256(b)
		assert.Equal(t, hex.EncodeToString(sum[:]), hash, "line %d", i+1)
		// The full line is ordinary JSON too.
		var m map[string]any
		require.NoError(t, json.Unmarshal(line, &m))
		assert.Equal(t, prev, m["prev"])
		assert.Equal(t, hash, m["hash"])
		prev = hash
	}
	assert.Equal(t, prev, enc.Head())
	// HTML characters stay readable.
	assert.Contains(t, buf.String(), "id < 3")
}

func TestEncoderDoesNotModifyEntry(t *testing.T) {
	e := sampleEntries(testID)[1]
	before := *e
	encodeAll(t, []*Entry{e})
	assert.Equal(t, before, *e)
}

// failWriter fails every write from the failAt'th call (1-based) on,
// writing half of the line first like a disk filling up.
type failWriter struct {
	calls  int
	failAt int
	buf    bytes.Buffer
}

func (w *failWriter) Write(p []byte) (int, error) {
	w.calls++
	if w.calls >= w.failAt {
		n, _ := w.buf.Write(p[:len(p)/2])
		return n, errors.New("no space left on device")
	}
	return w.buf.Write(p)
}

func TestEncoderWriteErrorIsSticky(t *testing.T) {
	w := &failWriter{failAt: 3}
	enc := NewEncoder(w)
	es := sampleEntries(testID)
	require.NoError(t, enc.Encode(es[0]))
	require.NoError(t, enc.Encode(es[1]))
	err := enc.Encode(es[2])
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no space left on device")

	// Every later Encode fails without touching the writer.
	for _, e := range es[3:] {
		assert.Equal(t, err, enc.Encode(e))
	}
	assert.Equal(t, 3, w.calls)

	// What reached the writer verifies up to the half line.
	rep, verr := Verify(bytes.NewReader(w.buf.Bytes()))
	require.NoError(t, verr)
	assert.Equal(t, 2, rep.Entries)
	assert.Equal(t, "line 3: incomplete line at the end of the file (truncated mid-line)", rep.Problem)
}

func TestEncoderMarshalErrorIsNotSticky(t *testing.T) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	bad := &Entry{Type: TypeSessionStart, Session: testID,
		Identity: &identity.Identity{Subject: "x", Claims: map[string]any{"c": make(chan int)}}}
	require.Error(t, enc.Encode(bad))
	assert.Zero(t, buf.Len(), "nothing written")
	assert.Error(t, enc.Encode(nil))

	for _, e := range sampleEntries(testID) {
		require.NoError(t, enc.Encode(e))
	}
	rep, err := Verify(&buf)
	require.NoError(t, err)
	assert.True(t, rep.Intact)
	assert.Equal(t, 6, rep.Entries)
}

// countWriter counts Write calls.
type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n++; return len(p), nil }

func TestEncoderOneWritePerEntry(t *testing.T) {
	w := &countWriter{}
	enc := NewEncoder(w)
	for _, e := range sampleEntries(testID) {
		require.NoError(t, enc.Encode(e))
	}
	assert.Equal(t, 6, w.n)
}

func TestVerifyDetectsTampering(t *testing.T) {
	good := encodeAll(t, sampleEntries(testID))
	ls := lines(good)
	require.Len(t, ls, 6)
	join := func(ls ...[]byte) []byte { return bytes.Join(ls, nil) }

	// Another session's entry, correctly chained.
	var foreign bytes.Buffer
	fenc := NewEncoder(&foreign)
	es := sampleEntries(testID)
	es[1].Session = "OTHER"
	for _, e := range es {
		require.NoError(t, fenc.Encode(e))
	}

	tests := []struct {
		name     string
		data     []byte
		line     int
		problem  string
		entries  int
		complete bool
	}{
		{name: "intact", data: good, entries: 6, complete: true},
		{name: "empty", data: nil, entries: 0},
		{name: "end cut off (crash)", data: join(ls[:5]...), entries: 5},
		{
			name: "one byte of the SQL edited",
			data: bytes.Replace(good, []byte("DROP TABLE users"), []byte("DROP TABLE usert"), 1),
			line: 4, problem: "line 4: content does not match its hash (edited)",
		},
		{
			name: "one byte of a hash edited",
			data: join(ls[0], flipHashByte(ls[1]), ls[2], ls[3], ls[4], ls[5]),
			line: 2, problem: "line 2: content does not match its hash (edited)",
		},
		{
			name: "edit breaking the JSON",
			data: join(ls[0], ls[1], bytes.Replace(ls[2], []byte(`"rows":2`), []byte(`"rows":2"`), 1), ls[3], ls[4], ls[5]),
			line: 3, problem: "line 3: content does not match its hash (edited)",
		},
		{
			name: "middle line deleted",
			data: join(ls[0], ls[1], ls[3], ls[4], ls[5]),
			line: 3, problem: "line 3: prev does not match line 2 (a line was removed, inserted or reordered)",
		},
		{
			name: "first line deleted",
			data: join(ls[1:]...),
			line: 1, problem: "line 1: prev is not the start of a chain (lines were removed from the beginning)",
		},
		{
			name: "two lines swapped",
			data: join(ls[0], ls[2], ls[1], ls[3], ls[4], ls[5]),
			line: 2, problem: "line 2: prev does not match line 1 (a line was removed, inserted or reordered)",
		},
		{
			name: "line duplicated",
			data: join(ls[0], ls[1], ls[1], ls[2], ls[3], ls[4], ls[5]),
			line: 3, problem: "line 3: prev does not match line 2 (a line was removed, inserted or reordered)",
		},
		{
			name: "truncated mid last line",
			data: good[:len(good)-len(ls[5])/2],
			line: 6, problem: "line 6: incomplete line at the end of the file (truncated mid-line)",
		},
		{
			name: "truncated mid line 4",
			data: join(ls[0], ls[1], ls[2], ls[3][:20]),
			line: 4, problem: "line 4: incomplete line at the end of the file (truncated mid-line)",
		},
		{
			name: "trailing newline removed",
			data: good[:len(good)-1],
			line: 6, problem: "line 6: incomplete line at the end of the file (truncated mid-line)",
		},
		{
			name: "garbage line",
			data: join(ls[0], ls[1], []byte("hello\n"), ls[3], ls[4], ls[5]),
			line: 3, problem: "line 3: not valid JSON",
		},
		{
			name: "empty line",
			data: join(ls[0], []byte("\n"), ls[1]),
			line: 2, problem: "line 2: not valid JSON",
		},
		{
			name: "unchained JSON line appended",
			data: join(ls[0], []byte(`{"seq":2,"type":"command"}`+"\n")),
			line: 2, problem: "line 2: no hash at the end of the line (not written by a recording encoder)",
		},
		{
			name: "line of another session",
			data: foreign.Bytes(),
			line: 2, problem: `line 2: entry of session "OTHER" in the recording of session "` + testID + `"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Verify(bytes.NewReader(tt.data))
			require.NoError(t, err)
			assert.Equal(t, tt.problem, rep.Problem)
			assert.Equal(t, tt.line, rep.BreakLine)
			assert.Equal(t, tt.line == 0, rep.Intact)
			assert.Equal(t, tt.complete, rep.Complete)
			if tt.line > 0 {
				assert.Equal(t, tt.line-1, rep.Entries, "entries verified before the break")
				assert.Equal(t, "hash chain: BROKEN at "+tt.problem, rep.String())
			} else {
				assert.Equal(t, tt.entries, rep.Entries)
			}
		})
	}
}

func flipHashByte(line []byte) []byte {
	l := bytes.Clone(line)
	i := len(l) - 4 // inside the hash hex
	if l[i] == '0' {
		l[i] = '1'
	} else {
		l[i] = '0'
	}
	return l
}

func TestReaderStopsAtBreak(t *testing.T) {
	data := bytes.Replace(encodeAll(t, sampleEntries(testID)), []byte("alice"), []byte("mallory"), 1)
	rd := NewReader(bytes.NewReader(data))
	_, err := rd.Next()
	var ce *ChainError
	require.ErrorAs(t, err, &ce)
	assert.ErrorIs(t, err, ErrChainBroken)
	assert.Equal(t, 1, ce.Line)
	assert.Equal(t, "recording: hash chain broken at line 1: content does not match its hash (edited)", err.Error())
	_, err2 := rd.Next()
	assert.Equal(t, err, err2, "nothing after a break is read")
}

type errReader struct{ data []byte }

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errors.New("disk read error")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestVerifyReadError(t *testing.T) {
	ls := lines(encodeAll(t, sampleEntries(testID)))
	rep, err := Verify(&errReader{data: bytes.Join(ls[:2], nil)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "disk read error")
	assert.Contains(t, err.Error(), "line 3")
	assert.Equal(t, 2, rep.Entries)
}

func TestVerifyLargeEntry(t *testing.T) {
	const size = 5 << 20
	row := strings.Repeat("x", 1000)
	var data [][]*string
	for i := 0; i < size/len(row); i++ {
		data = append(data, []*string{ptr(row)})
	}
	es := sampleEntries(testID)
	es[2].Result.Data = data
	es[2].Data = bytes.Repeat([]byte{0, 1, 2, 0xff}, size/4)
	enc := encodeAll(t, es)
	require.Greater(t, len(lines(enc)[2]), 2*size)

	rd := NewReader(bytes.NewReader(enc))
	var got *Entry
	for {
		e, err := rd.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if e.Seq == 3 {
			got = e
		}
	}
	rep := rd.Report()
	assert.True(t, rep.Intact, rep.Problem)
	assert.True(t, rep.Complete)
	assert.Equal(t, 6, rep.Entries)
	require.NotNil(t, got)
	assert.Len(t, got.Result.Data, len(data))
	assert.Equal(t, es[2].Data, got.Data)

	// An edit deep inside the big line is still found.
	i := bytes.Index(enc, []byte(row)) + 500
	enc[i] = 'y'
	rep, err := Verify(bytes.NewReader(enc))
	require.NoError(t, err)
	assert.Equal(t, "line 3: content does not match its hash (edited)", rep.Problem)
}

func FuzzVerify(f *testing.F) {
	good := encodeAll(f, sampleEntries(testID))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Add([]byte("\n\n"))
	f.Add([]byte(`{"prev":"` + ZeroHash + `","hash":"` + ZeroHash + `"}` + "\n"))
	f.Add([]byte(`,"hash":"` + ZeroHash + `"}` + "\n"))
	f.Add(bytes.Replace(good, []byte("alice"), []byte("\x1b[31m"), 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Verify(bytes.NewReader(data))
		require.NoError(t, err)
		if rep.Intact {
			assert.Zero(t, rep.BreakLine)
			assert.Empty(t, rep.Problem)
		} else {
			assert.Positive(t, rep.BreakLine)
			assert.Equal(t, rep.BreakLine-1, rep.Entries)
			assert.True(t, strings.HasPrefix(rep.Problem, "line "), rep.Problem)
			assert.False(t, rep.Complete)
		}
		var out bytes.Buffer
		trep, err := WriteTranscript(&out, bytes.NewReader(data))
		require.NoError(t, err)
		assert.Equal(t, rep, trep)
		assert.True(t, strings.HasSuffix(out.String(), rep.String()+"\n"))
		assert.NotContains(t, out.String(), "\x1b", "control characters are escaped")
	})
}

func BenchmarkEncode(b *testing.B) {
	es := sampleEntries(testID)
	enc := NewEncoder(io.Discard)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := enc.Encode(es[i%len(es)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	es := sampleEntries(testID)
	var all []*Entry
	for range 100 {
		all = append(all, es...)
	}
	data := encodeAll(b, all)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		rep, err := Verify(bytes.NewReader(data))
		if err != nil || rep.Entries != len(all) {
			b.Fatal(err, rep)
		}
	}
}
