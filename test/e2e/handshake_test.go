package e2e

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingBackend is a TCP listener standing in for the backend, that
// counts the connections it accepts and closes them. A test that expects
// the gateway not to reach the backend points a target at it.
type countingBackend struct {
	ln      net.Listener
	accepts atomic.Int64
	wg      sync.WaitGroup
}

func startCountingBackend(t *testing.T) *countingBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &countingBackend{ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepts.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); b.wg.Wait() })
	return b
}

// TestSlowHandshakeClosed: clients that connect and stall before they
// have authenticated are cut off after the target's handshake timeout,
// wherever they stall, and nothing reaches the backend.
func TestSlowHandshakeClosed(t *testing.T) {
	backend := startCountingBackend(t)
	tc := pgTarget("pg")
	tc.Target.Address = backend.ln.Addr().String()
	tc.HandshakeTimeout = 500 * time.Millisecond
	e := startGateway(t, 2*time.Second, tc)
	addr := e.g.Addr("pg").String()

	startup := func() []byte {
		b, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
			Parameters: map[string]string{"user": subject, "database": "test"}}).Encode(nil)
		require.NoError(t, err)
		return b
	}
	cases := []struct {
		name string
		// stall sends what the client sends before it stops, and returns
		// the connection to wait on.
		stall func(t *testing.T, c net.Conn) net.Conn
	}{
		{"sends nothing", func(t *testing.T, c net.Conn) net.Conn { return c }},
		{"half a startup packet", func(t *testing.T, c net.Conn) net.Conn {
			b := startup()
			_, err := c.Write(b[:len(b)/2])
			require.NoError(t, err)
			return c
		}},
		{"trickles a byte every 100ms", func(t *testing.T, c net.Conn) net.Conn {
			// An absolute deadline: a client that keeps sending, slowly,
			// is cut off all the same.
			b := startup()
			go func() {
				for _, x := range b {
					if _, err := c.Write([]byte{x}); err != nil {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
			return c
		}},
		{"a length and nothing more", func(t *testing.T, c net.Conn) net.Conn {
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], 100)
			_, err := c.Write(b[:])
			require.NoError(t, err)
			return c
		}},
		{"SSLRequest then no TLS handshake", func(t *testing.T, c net.Conn) net.Conn {
			b, _ := (&pgproto3.SSLRequest{}).Encode(nil)
			_, err := c.Write(b)
			require.NoError(t, err)
			var resp [1]byte
			_, err = io.ReadFull(c, resp[:])
			require.NoError(t, err)
			require.Equal(t, byte('S'), resp[0])
			return c
		}},
		{"TLS and startup but no password", func(t *testing.T, c net.Conn) net.Conn {
			b, _ := (&pgproto3.SSLRequest{}).Encode(nil)
			_, err := c.Write(b)
			require.NoError(t, err)
			var resp [1]byte
			_, err = io.ReadFull(c, resp[:])
			require.NoError(t, err)
			require.Equal(t, byte('S'), resp[0])
			tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) // the gateway's self-signed certificate
			require.NoError(t, tc.Handshake())
			_, err = tc.Write(startup())
			require.NoError(t, err)
			fe := pgproto3.NewFrontend(tc, tc)
			msg, err := fe.Receive()
			require.NoError(t, err)
			require.IsType(t, &pgproto3.AuthenticationCleartextPassword{}, msg)
			return tc
		}},
	}

	// They stall side by side (as many at once as -parallel allows).
	t.Run("stall", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				require.NoError(t, err)
				defer c.Close()
				start := time.Now()
				conn := tc.stall(t, c)
				require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
				// The gateway closes the connection: the read ends with
				// EOF (or a reset, or a TLS alert), not our own deadline.
				_, err = io.Copy(io.Discard, conn)
				took := time.Since(start)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("the gateway did not close the stalled connection within 5s")
				}
				assert.GreaterOrEqual(t, took, 400*time.Millisecond, "closed before the handshake timeout")
				assert.Less(t, took, 2*time.Second, "not closed at the handshake timeout (500ms)")
			})
		}
	})

	assert.Equal(t, int64(0), backend.accepts.Load(), "nothing may reach the backend before a client authenticates")
	assert.Eventually(t, func() bool { return len(e.g.Sessions()) == 0 }, 5*time.Second, 10*time.Millisecond)
	assert.Empty(t, recordingPaths(t, e.recDir), "no session was recorded")
	assert.Equal(t, len(cases), strings.Count(e.logs.String(), `reason="handshake timeout"`),
		"every stalled connection ends as a handshake timeout:\n%s", e.logs.String())
}
