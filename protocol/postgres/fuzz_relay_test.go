package postgres

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/protocol/postgres/pgsql"
)

// sinkConn is a net.Conn that keeps what is written to it and has nothing
// to read: the relay's two sides in FuzzRelay, which drives the relay's
// handlers directly rather than through its goroutines.
type sinkConn struct{ bytes.Buffer }

func (c *sinkConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *sinkConn) Close() error                     { return nil }
func (c *sinkConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *sinkConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *sinkConn) SetDeadline(time.Time) error      { return nil }
func (c *sinkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *sinkConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzSession is the gateway side of a FuzzRelay session: a command whose
// text says "deny" is denied, one that says "mask" is allowed with masking
// (by markerMasker), one that says "each" is decided per execution. The
// backend credential is unavailable, so the catalog lookups that masking
// and COPY need fail, as they would with the backend unreachable.
type fuzzSession struct {
	seq    uint64
	masker markerMasker
	log    *slog.Logger
}

func (s *fuzzSession) Info() protocol.SessionInfo {
	return protocol.SessionInfo{ID: "fuzz", Identity: &identity.Identity{Subject: "fuzzer"}}
}
func (s *fuzzSession) Limits() protocol.Limits {
	return protocol.Limits{MaxMessageSize: 1 << 16, RecordRows: 3, RecordBytes: 256}
}
func (s *fuzzSession) TLSConfig() *tls.Config                    { return nil }
func (s *fuzzSession) CheckTransport(*tls.ConnectionState) error { return nil }
func (s *fuzzSession) Authenticate(context.Context, identity.Credentials) (*identity.Identity, error) {
	return nil, identity.ErrUnauthenticated
}
func (s *fuzzSession) Check(_ context.Context, cmd *protocol.Command) (protocol.Decision, error) {
	s.seq++
	d := protocol.Decision{Action: protocol.Allow, Seq: s.seq, Rules: []string{"fuzz"}}
	text := strings.ToLower(cmd.Text)
	switch {
	case strings.Contains(text, "deny"):
		d.Action, d.Message = protocol.Deny, "denied"
	case strings.Contains(text, "mask"):
		d.Mask = []string{"marker"}
	}
	d.PerExecution = strings.Contains(text, "each")
	return d, nil
}
func (s *fuzzSession) Record(context.Context, protocol.Event) error { return nil }
func (s *fuzzSession) Credential(context.Context) (credstore.Credential, error) {
	return credstore.Credential{}, errors.New("fuzz: no backend credential")
}
func (s *fuzzSession) Masker(d protocol.Decision) masking.RowMasker {
	if len(d.Mask) > 0 {
		return s.masker
	}
	return nil
}
func (s *fuzzSession) Logger() *slog.Logger { return s.log }

func encodeMsgs(f *testing.F, msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			f.Fatal(err)
		}
	}
	return b
}

// FuzzRelay drives one relay with a client's messages and a backend's
// replies, interleaved as the schedule says: the relay must not panic, and
// while a masked command's result is in progress no DataRow or CopyData it
// passes to the client carries a value the masker was asked to remove
// (each is masked, or withheld and the result ends in an error). The
// client stream it writes must stay well-framed.
func FuzzRelay(f *testing.F) {
	text := func(name string, table uint32) pgproto3.FieldDescription {
		return pgproto3.FieldDescription{Name: []byte(name), TableOID: table, TableAttributeNumber: 1, DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
	}
	rd := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{text("id", 0), text("email", 0)}}
	rows := []interface{ Encode([]byte) ([]byte, error) }{
		rd,
		&pgproto3.DataRow{Values: [][]byte{[]byte("1"), []byte("alice SECRET")}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("2"), nil}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 2")},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	}
	// A simple query, masked.
	f.Add(encodeMsgs(f, &pgproto3.Query{String: "select id, email from pii -- mask"}), encodeMsgs(f, rows...), []byte{})
	// Interleaved: the reply to the first query arrives before the second.
	f.Add(encodeMsgs(f, &pgproto3.Query{String: "select 1 -- mask"}, &pgproto3.Query{String: "select 2"}),
		encodeMsgs(f, append(append([]interface{ Encode([]byte) ([]byte, error) }{}, rows...), rows...)...), []byte{0, 1, 1, 1, 1, 1, 0})
	// The extended protocol, with a Describe of the portal.
	f.Add(encodeMsgs(f,
		&pgproto3.Parse{Name: "s", Query: "select id, email from pii where id = $1 -- mask each"},
		&pgproto3.Describe{ObjectType: 'S', Name: "s"},
		&pgproto3.Bind{PreparedStatement: "s", ParameterFormatCodes: []int16{1}, Parameters: [][]byte{{0, 0, 0, 1}}, ResultFormatCodes: []int16{0}},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		encodeMsgs(f, &pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{23}}, rd,
			&pgproto3.BindComplete{}, rd, rows[1], rows[2], rows[3], rows[4]), []byte{})
	// A row from a table column: the catalog lookup fails, so it is withheld.
	f.Add(encodeMsgs(f, &pgproto3.Query{String: "select email from pii -- mask"}),
		encodeMsgs(f, &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{text("email", 16384)}},
			&pgproto3.DataRow{Values: [][]byte{[]byte("SECRET")}}, rows[3], rows[4]), []byte{})
	// COPY TO STDOUT, masked.
	f.Add(encodeMsgs(f, &pgproto3.Query{String: "copy pii to stdout -- mask"}),
		encodeMsgs(f, &pgproto3.CopyOutResponse{OverallFormat: 0, ColumnFormatCodes: []uint16{0, 0}},
			&pgproto3.CopyData{Data: []byte("1\tSECRET\n")}, &pgproto3.CopyDone{},
			&pgproto3.CommandComplete{CommandTag: []byte("COPY 1")}, rows[4]), []byte{})
	// A denied command, then a masking failure, then a setting change.
	f.Add(encodeMsgs(f, &pgproto3.Query{String: "drop table pii -- deny"}, &pgproto3.Query{String: "select 'BOOM' -- mask"}),
		encodeMsgs(f, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "42501", Message: "sluice: command refused"}, rows[4],
			rd, &pgproto3.DataRow{Values: [][]byte{[]byte("BOOM"), []byte("SECRET")}}, rows[3],
			&pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: "off"}, rows[4]), []byte{})

	p := newFuzzPlugin()
	f.Fuzz(func(t *testing.T, client, backend, schedule []byte) {
		driveRelay(t, p, client, backend, schedule)
	})
}

func newFuzzPlugin() *Plugin {
	return &Plugin{target: &protocol.Target{Name: "fuzz", Protocol: Name}, host: "127.0.0.1", port: "1",
		classifier: pgsql.NewClassifier(64)}
}

var discardLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// driveRelay runs a relay over a client's and a backend's message streams
// on one goroutine and returns what it sent the client.
func driveRelay(t *testing.T, p *Plugin, client, backend, schedule []byte) []byte {
	ctx := context.Background()
	s := &fuzzSession{masker: markerMasker{repl: []byte("[masked]")}, log: discardLog}
	cc, bc := &sinkConn{}, &sinkConn{}
	hj := &pgconn.HijackedConn{Conn: bc, TxStatus: 'I', ParameterStatuses: map[string]string{"standard_conforming_strings": "on"}}
	r := newRelay(p, s, cc, newWriter(cc), newFrameReader(bytes.NewReader(nil), 0), hj)
	cfr := newFrameReader(bytes.NewReader(client), 1<<16)
	bfr := newFrameReader(bytes.NewReader(backend), 1<<16)
	clientDone, backendDone := false, false
	for step := 0; step < 512 && !(clientDone && backendDone); step++ {
		fromClient := !clientDone
		if step < len(schedule) {
			fromClient = schedule[step]&1 == 0
		}
		if fromClient && !clientDone {
			typ, body, err := cfr.next()
			if err != nil {
				clientDone = true
				continue
			}
			msg, err := decodeFrontend(typ, body)
			if err != nil || typ == 'p' {
				clientDone = true // the request loop ends the session
				continue
			}
			if q := queryText(msg); strings.IndexByte(q, '\\') >= 0 && r.head() != nil {
				// classify would wait for the response loop, which runs
				// on this goroutine here.
				continue
			}
			if err := r.handleFrontend(ctx, typ, body, msg); err != nil {
				clientDone = true
			}
			continue
		}
		if backendDone {
			continue
		}
		typ, body, err := bfr.next()
		if err != nil {
			backendDone = true
			continue
		}
		h := r.head()
		masked := h != nil && h.res != nil && h.res.masker != nil
		mark := cc.Len()
		err = r.handleBackend(ctx, typ, body)
		_ = r.cw.flush()
		checkClientBytes(t, cc.Bytes()[mark:], masked)
		if err != nil {
			backendDone = true
		}
	}
	return cc.Bytes()
}

func queryText(m pgproto3.FrontendMessage) string {
	switch m := m.(type) {
	case *pgproto3.Query:
		return m.String
	case *pgproto3.Parse:
		return m.Query
	}
	return ""
}

// checkClientBytes checks what one backend message made the relay send:
// whole messages, and, for a masked result, no marker in a row.
func checkClientBytes(t *testing.T, out []byte, masked bool) {
	t.Helper()
	fr := newFrameReader(bytes.NewReader(out), 0)
	for {
		typ, body, err := fr.next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("the relay wrote a broken message stream to the client: %v: %q", err, out)
		}
		if !masked {
			continue
		}
		switch typ {
		case 'D':
			var dr pgproto3.DataRow
			if err := dr.Decode(body); err != nil {
				t.Fatalf("masked DataRow %q does not decode: %v", body, err)
			}
			for _, v := range dr.Values {
				if bytes.Contains(v, []byte(fuzzMarker)) {
					t.Fatalf("a masked result's DataRow reached the client unmasked: %q", dr.Values)
				}
			}
		case 'd':
			if bytes.Contains(body, []byte(fuzzMarker)) {
				t.Fatalf("a masked result's CopyData reached the client unmasked: %q", body)
			}
		}
	}
}

// TestRelayFuzzHarness checks that FuzzRelay's harness exercises what it
// claims: a masked query's rows arrive masked, an unmasked one's as they
// are, and a row the catalog cannot place is withheld with an error.
func TestRelayFuzzHarness(t *testing.T) {
	p := newFuzzPlugin()
	b := func(msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
		var out []byte
		for _, m := range msgs {
			var err error
			out, err = m.Encode(out)
			if err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	reply := func(table uint32) []byte {
		return b(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("email"), TableOID: table, TableAttributeNumber: 1, DataTypeOID: 25}}},
			&pgproto3.DataRow{Values: [][]byte{[]byte("alice SECRET")}},
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	}
	out := driveRelay(t, p, b(&pgproto3.Query{String: "select email from pii -- mask"}), reply(0), nil)
	if !bytes.Contains(out, []byte("[masked]")) || bytes.Contains(out, []byte(fuzzMarker)) {
		t.Fatalf("masked query: client got %q", out)
	}
	out = driveRelay(t, p, b(&pgproto3.Query{String: "select email from pii"}), reply(0), nil)
	if !bytes.Contains(out, []byte("alice SECRET")) {
		t.Fatalf("unmasked query: client got %q", out)
	}
	out = driveRelay(t, p, b(&pgproto3.Query{String: "select email from pii -- mask"}), reply(16384), nil)
	if bytes.Contains(out, []byte("alice")) || !bytes.Contains(out, []byte("withheld")) {
		t.Fatalf("unresolvable column: client got %q", out)
	}
}
