package postgres

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// FuzzClientDecoder feeds arbitrary bytes to the client-side decoder: the
// startup packet reader, the frame reader and the message decoder. It must
// return errors, never panic, and never accept a body over the limit.
func FuzzClientDecoder(f *testing.F) {
	seed := func(msgs ...pgproto3.FrontendMessage) []byte {
		var b []byte
		for _, m := range msgs {
			var err error
			b, err = m.Encode(b)
			if err != nil {
				f.Fatal(err)
			}
		}
		return b
	}
	f.Add(seed(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u", "database": "d"}}))
	f.Add(seed(&pgproto3.SSLRequest{}))
	f.Add(seed(&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}))
	f.Add(seed(&pgproto3.Query{String: "select 1"}, &pgproto3.Terminate{}))
	f.Add(seed(&pgproto3.Parse{Name: "s", Query: "select $1", ParameterOIDs: []uint32{23}},
		&pgproto3.Bind{PreparedStatement: "s", ParameterFormatCodes: []int16{1}, Parameters: [][]byte{{0, 0, 0, 1}}, ResultFormatCodes: []int16{1}},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}))
	f.Add(seed(&pgproto3.CopyData{Data: []byte("1\tx\n")}, &pgproto3.CopyDone{}, &pgproto3.CopyFail{Message: "x"}))
	f.Add([]byte{'Q', 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{'B', 0, 0, 0, 6, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if m, err := readStartupPacket(bytes.NewReader(data)); err == nil && m == nil {
			t.Fatal("nil startup message without error")
		}
		const limit = 4096
		fr := newFrameReader(bytes.NewReader(data), limit)
		for i := 0; i < 1000; i++ {
			typ, body, err := fr.next()
			if err != nil {
				return
			}
			if len(body) > limit {
				t.Fatalf("body of %d bytes accepted over the %d limit", len(body), limit)
			}
			m, err := decodeFrontend(typ, body)
			if err == nil && m == nil {
				t.Fatal("nil message without error")
			}
			if b, ok := m.(*pgproto3.Bind); ok && err == nil {
				_ = renderParams(b.Parameters, b.ParameterFormatCodes, 128, []uint32{23, 20, 25, 1184, 1700, 17})
			}
		}
	})
}

// FuzzStartupPacket: the startup-phase reader consumes exactly the packet
// its length announces and nothing after it (bytes sent before a TLS
// handshake must never be read as sent after it: CVE-2021-23214), never
// more than MAX_STARTUP_PACKET_LENGTH, and what it decodes re-encodes to a
// packet that decodes the same.
func FuzzStartupPacket(f *testing.F) {
	for _, m := range []interface{ Encode([]byte) ([]byte, error) }{
		&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "alice", "database": "app", "application_name": "psql", "client_encoding": "UTF8"}},
		&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32, Parameters: map[string]string{"user": "u", "_pq_.x": "1", "replication": "database"}},
		&pgproto3.SSLRequest{},
		&pgproto3.GSSEncRequest{},
		&pgproto3.CancelRequest{ProcessID: 4242, SecretKey: []byte{1, 2, 3, 4}},
		&pgproto3.CancelRequest{ProcessID: 1, SecretKey: bytes.Repeat([]byte{7}, 32)}, // protocol 3.2 key
	} {
		b, err := m.Encode(nil)
		if err != nil {
			f.Fatal(err)
		}
		// An SSLRequest followed by what a client may have pipelined.
		f.Add(append(b, 0x16, 0x03, 0x01, 0, 5, 'Q', 0, 0, 0, 4))
	}
	f.Add([]byte{0, 0, 0, 8})
	f.Add([]byte{0, 0, 0x27, 0x11, 0, 3, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		m, err := readStartupPacket(r)
		consumed := len(data) - r.Len()
		if consumed > maxStartupPacket {
			t.Fatalf("read %d bytes, over the %d-byte startup packet limit", consumed, maxStartupPacket)
		}
		if err != nil {
			if m != nil {
				t.Fatalf("a message with an error: %v", err)
			}
			return
		}
		if n := int(binary.BigEndian.Uint32(data)); consumed != n {
			t.Fatalf("read %d bytes of a %d-byte packet", consumed, n)
		}
		enc, err := m.Encode(nil)
		if err != nil {
			return // pgproto3 refuses to encode some of what it decodes (an over-long cancel key)
		}
		again, err := readStartupPacket(bytes.NewReader(enc))
		if err != nil {
			t.Fatalf("%T re-encoded as %x does not decode: %v", m, enc, err)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("decoded %#v, re-encoded and decoded %#v", m, again)
		}
	})
}

// FuzzRenderParams: bind parameters are rendered for the recording within
// the byte budget (plus one truncation mark per value), NULL stays NULL,
// and a binary value of a known type decodes without panicking.
func FuzzRenderParams(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x0a\xff2026-01-02\xff\x00\x00\x00\x00\x00\x00\x00\x01"), []byte{1, 0, 1}, uint32(0b10), uint16(64), []byte{0, 0, 0, 23, 0, 0, 4, 0x1a, 0, 0, 0, 20})
	f.Add([]byte("\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x0a"), []byte{1}, uint32(0), uint16(8), []byte{0, 0, 0x06, 0xa4}) // numeric
	f.Add([]byte("\x00\x02\x9a\x6e\x11\x8e\x40\x00"), []byte{1}, uint32(0), uint16(128), []byte{0, 0, 0x04, 0xa0})                                               // timestamptz
	f.Add([]byte("{1,2}\xff\x01"), []byte{}, uint32(0), uint16(3), []byte{0, 0, 0x03, 0xf0})
	f.Fuzz(func(t *testing.T, values, formats []byte, nulls uint32, budget uint16, oidBytes []byte) {
		vals := bytes.Split(values, []byte{0xff})
		for i := range vals {
			if nulls&(1<<(i%32)) != 0 {
				vals[i] = nil
			}
		}
		fmts := make([]int16, len(formats))
		for i, b := range formats {
			fmts[i] = int16(b % 2)
		}
		var oids []uint32
		for len(oidBytes) >= 4 {
			oids = append(oids, binary.BigEndian.Uint32(oidBytes))
			oidBytes = oidBytes[4:]
		}
		out := renderParams(vals, fmts, int(budget), oids)
		if len(vals) > 0 && len(out) != len(vals) {
			t.Fatalf("%d values rendered as %d", len(vals), len(out))
		}
		total := 0
		for i, s := range out {
			if (s == nil) != (vals[i] == nil) {
				t.Fatalf("value %d: NULL is %v, rendered %v", i, vals[i] == nil, s)
			}
			if s != nil {
				total += len(*s)
			}
		}
		// Each value may overrun what is left of the budget by a
		// truncation mark (and a binary value by its "\x" prefix).
		if limit := int(budget) + len(out)*(len(truncatedMark)+2); total > limit {
			t.Fatalf("rendered %d bytes for a budget of %d", total, budget)
		}
	})
}
