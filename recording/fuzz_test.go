package recording

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// fuzzEntries is a session whose strings come from the fuzzer: a start
// (encoded by encoding/json), a command and a result (by the fast
// encoder), an error with raw data, and an end.
func fuzzEntries(session, text, msg string, data []byte) []*Entry {
	cell := msg
	return []*Entry{
		{Seq: 1, Time: t0, Session: session, Type: TypeSessionStart,
			Identity: &identity.Identity{Subject: msg, Groups: []string{text}}, Target: &protocol.Target{Name: text, Protocol: "postgres"}},
		{Seq: 2, Time: t0.Add(time.Second), Session: session, Type: TypeCommand,
			Command:  &protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: text, Attrs: map[string]string{msg: text}},
			Decision: &protocol.Decision{Action: protocol.Deny, Rules: []string{msg}, Message: msg}},
		{Seq: 3, Time: t0.Add(2 * time.Second), Session: session, Type: string(protocol.EventResult), CommandSeq: 2,
			Result: &protocol.Result{Tag: text, Columns: []string{msg}, Data: [][]*string{{&cell, nil}}, Params: []*string{nil, &cell}, Error: msg}},
		{Seq: 4, Time: t0.Add(3 * time.Second), Session: session, Type: string(protocol.EventError), Code: text, Message: msg, Data: data},
		{Seq: 5, Time: t0.Add(4 * time.Second), Session: session, Type: TypeSessionEnd, Reason: msg},
	}
}

// FuzzChain: whatever strings an entry holds, the fast encoder writes the
// bytes encoding/json would, the chain verifies intact and complete, and
// the entries read back are the ones written; changing any one byte of the
// recording makes verification fail.
func FuzzChain(f *testing.F) {
	f.Add(testID, "SELECT id, name\nFROM users WHERE id < 3", "permission denied", []byte{0, 1, 2, 250}, uint32(100), byte(1))
	f.Add("S", "a\"b\\c\n\r\t\b\f\x00\x1f<>&\u2028\u2029é日本", "\xff\xfe", []byte(nil), uint32(7), byte(0x20))
	f.Add("", "", "", []byte{}, uint32(0), byte(0x80))
	f.Fuzz(func(t *testing.T, session, text, msg string, data []byte, pos uint32, flip byte) {
		entries := fuzzEntries(session, text, msg, data)
		for _, e := range entries {
			want, err := stdChained(e, ZeroHash)
			if err != nil {
				t.Fatalf("entry %d: %v", e.Seq, err)
			}
			if got, fast := appendChained(nil, e, ZeroHash); fast && !bytes.Equal(got, want) {
				t.Fatalf("entry %d: fast encoder wrote\n%s\nencoding/json\n%s", e.Seq, got, want)
			}
		}
		var buf bytes.Buffer
		enc := NewEncoder(&buf)
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				t.Fatalf("entry %d: %v", e.Seq, err)
			}
		}
		rec := buf.Bytes()

		rd := NewReader(bytes.NewReader(rec))
		var got []*Entry
		for {
			e, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("reading back: %v\n%s", err, rec)
			}
			got = append(got, e)
		}
		rep := rd.Report()
		if !rep.Intact || !rep.Complete || rep.Entries != len(entries) || rep.Head != enc.Head() {
			t.Fatalf("report %+v for an untouched recording (head %s)", rep, enc.Head())
		}
		if utf8.ValidString(session) && utf8.ValidString(text) && utf8.ValidString(msg) {
			// (invalid UTF-8 is written as U+FFFD, as encoding/json does)
			g := got[1]
			if g.Session != session || g.Command.Text != text || g.Decision.Message != msg || g.Command.Attrs[msg] != text ||
				got[2].Result.Data[0][0] == nil || *got[2].Result.Data[0][0] != msg || got[2].Result.Data[0][1] != nil ||
				!bytes.Equal(got[3].Data, data) || got[4].Reason != msg {
				t.Fatalf("read back other entries than written:\n%s", rec)
			}
		}

		if flip == 0 {
			return
		}
		i := int(pos % uint32(len(rec)))
		tampered := bytes.Clone(rec)
		tampered[i] ^= flip
		trep, err := Verify(bytes.NewReader(tampered))
		if err != nil {
			t.Fatal(err)
		}
		if trep.Intact {
			t.Fatalf("byte %d changed from %q to %q, and the recording still verifies: %+v", i, rec[i], tampered[i], trep)
		}
		var ce *ChainError
		if _, err := NewReader(bytes.NewReader(tampered)).Next(); err != nil && err != io.EOF && !errors.As(err, &ce) {
			t.Fatalf("a tampered recording gives %v, not a ChainError", err)
		}
	})
}

// TestHashInCapitalsIsAnEdit: the verifier compares a line's hash as the
// encoder wrote it, in lowercase; the same digits in capitals are an edit
// (found by FuzzChain: a one-byte change that still verified).
func TestHashInCapitalsIsAnEdit(t *testing.T) {
	rec := encodeAll(t, sampleEntries(testID))
	end := bytes.IndexByte(rec, '\n')
	hash := rec[end-2-64 : end-2]
	copy(hash, bytes.ToUpper(hash))
	rep, err := Verify(bytes.NewReader(rec))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Intact || rep.BreakLine != 1 || rep.Problem != "line 1: content does not match its hash (edited)" {
		t.Fatalf("report %+v", rep)
	}
}
