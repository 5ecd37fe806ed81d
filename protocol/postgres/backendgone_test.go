package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A backend connection that ends without a FATAL of PostgreSQL's own (the
// server crashed or the network cut it; PostgreSQL terminated while
// blocked writing to a slow client sends none either) is reported to the
// client as an 08006 FATAL rather than a bare EOF, and the command in
// flight is recorded as failed (found by test/e2e
// TestFaultBackendTerminated).
func TestBackendVanishingIsReported(t *testing.T) {
	h := newHarness(t, nil)
	// The plugin reaches the backend through a proxy the test can cut.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	cut := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
	t.Cleanup(func() { ln.Close(); cut(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", backendAddr())
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, b)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(b, c); b.Close() })
			wg.Go(func() { _, _ = io.Copy(c, b); c.Close() })
		}
	})
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	h.plugin.host, h.plugin.port = host, port

	c := connect(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := c.Exec(ctx, "select pg_sleep(5)"); done <- err }()
	time.Sleep(200 * time.Millisecond)
	cut()
	err = <-done
	var pe *pgconn.PgError
	require.True(t, errors.As(err, &pe), "want a PostgreSQL error, got %v", err)
	assert.Equal(t, "FATAL", pe.Severity)
	assert.Equal(t, codeConnectionFailure, pe.Code)
	assert.Contains(t, pe.Message, "the backend closed the connection unexpectedly")
	require.Eventually(t, func() bool { return len(h.resultEvents()) > 0 }, 5*time.Second, 10*time.Millisecond)
	res := h.resultEvents()[len(h.resultEvents())-1].Result
	assert.Equal(t, "the backend closed the connection", res.Error)
	// The session's end names the backend, even when the client, told,
	// closed its side first.
	require.Eventually(t, func() bool { return len(h.errs()) > 0 }, 5*time.Second, 10*time.Millisecond)
	assert.EqualError(t, h.errs()[0], "backend closed the connection")
}
