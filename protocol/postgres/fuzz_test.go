package postgres

import (
	"bytes"
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
