package postgres

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/protocol"
)

// Sessions that miss the catalog cache together share one lookup: before,
// each opened its own catalog connection, and 200 sessions starting the
// same masked query at once ran the backend out of connections, so their
// masking failed closed (test/e2e TestLoadMixedSessions).
func TestCatalogLookupsAreShared(t *testing.T) {
	h := newHarness(t, nil)
	// Count the connections the plugin opens to the backend.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var dials atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			b, err := net.Dial("tcp", backendAddr())
			if err != nil {
				c.Close()
				continue
			}
			wg.Go(func() { _, _ = io.Copy(b, c); b.Close() })
			wg.Go(func() { _, _ = io.Copy(c, b); c.Close() })
		}
	})
	p, err := New(&protocol.Target{Name: "pg", Protocol: Name, Address: ln.Addr().String(),
		Options: map[string]string{"database": "postgres", "sslmode": "disable"}})
	require.NoError(t, err)
	s := &testSession{h: h, id: "catalog", allowed: true}

	// pg_catalog.pg_class (OID 1259), column 2: relname.
	fields := []pgproto3.FieldDescription{{Name: []byte("relname"), TableOID: 1259, TableAttributeNumber: 2}}
	const sessions = 20
	var got [sessions][]sourceColumn
	var errs [sessions]error
	var start sync.WaitGroup
	start.Add(1)
	var calls sync.WaitGroup
	for i := range sessions {
		calls.Go(func() {
			start.Wait()
			got[i], errs[i] = p.(*Plugin).sources(context.Background(), s, "postgres", fields)
		})
	}
	start.Done()
	calls.Wait()
	for i := range sessions {
		require.NoError(t, errs[i])
		assert.Equal(t, []sourceColumn{{table: "pg_catalog.pg_class", column: "relname"}}, got[i])
	}
	assert.Equal(t, int64(1), dials.Load(), "one catalog connection for sessions missing the same column at once")
}
