package postgres

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tap is a TCP proxy in front of the real backend that keeps every byte
// the gateway sent it, so tests can prove what did or did not reach it.
type tap struct {
	ln      net.Listener
	mu      sync.Mutex
	accepts int
	seen    bytes.Buffer
	wg      sync.WaitGroup
}

func newTap(t *testing.T) *tap {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tp := &tap{ln: ln}
	tp.wg.Add(1)
	go func() {
		defer tp.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tp.mu.Lock()
			tp.accepts++
			tp.mu.Unlock()
			b, err := net.Dial("tcp", backendAddr())
			if err != nil {
				c.Close()
				continue
			}
			tp.wg.Add(2)
			go func() { defer tp.wg.Done(); io.Copy(b, io.TeeReader(c, tp)); b.Close() }()
			go func() { defer tp.wg.Done(); io.Copy(c, b); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); tp.wg.Wait() })
	return tp
}

func (tp *tap) Write(p []byte) (int, error) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.seen.Write(p)
}

func (tp *tap) snapshot() (int, []byte) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.accepts, append([]byte(nil), tp.seen.Bytes()...)
}

func tappedHarness(t *testing.T) (*harness, *tap) {
	requirePostgres(t)
	tp := newTap(t)
	h := newHarness(t, nil)
	h.target.Address = tp.ln.Addr().String()
	h.plugin.host, h.plugin.port, _ = splitHostPort(h.target.Address)
	return h, tp
}

func startup(user string) []byte {
	b, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": user, "database": "postgres"}}).Encode(nil)
	return b
}

// readUntilClosed reads what the gateway sends until it closes the
// connection, failing if it does not within the deadline.
func readUntilClosed(t *testing.T, c net.Conn) []byte {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the gateway did not close the connection")
	}
	return b
}

func dialH(t *testing.T, h *harness) net.Conn {
	c, err := net.Dial("tcp", h.ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestBadInputBeforeLogin(t *testing.T) {
	junk := make([]byte, 512)
	_, _ = rand.Read(junk)
	huge := make([]byte, 8)
	binary.BigEndian.PutUint32(huge, 1<<30)
	binary.BigEndian.PutUint32(huge[4:], pgproto3.ProtocolVersion30)
	cases := map[string][]byte{
		"random bytes":              junk,
		"truncated startup":         startup("x")[:9],
		"startup length over limit": huge,
		"unknown protocol version":  {0, 0, 0, 8, 0, 9, 0, 0},
		"empty":                     {},
	}
	h, tp := tappedHarness(t)
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			c := dialH(t, h)
			_, _ = c.Write(in)
			if name == "truncated startup" || name == "empty" {
				c.(*net.TCPConn).CloseWrite()
			}
			readUntilClosed(t, c)
		})
	}
	accepts, _ := tp.snapshot()
	assert.Zero(t, accepts, "nothing may reach the backend before login")
}

func TestWrongTokenAndBadPasswordMessage(t *testing.T) {
	h, tp := tappedHarness(t)

	c := dialH(t, h)
	_, err := c.Write(startup("x"))
	require.NoError(t, err)
	pw, _ := (&pgproto3.PasswordMessage{Password: "not-the-token"}).Encode(nil)
	_, err = c.Write(pw)
	require.NoError(t, err)
	out := readUntilClosed(t, c)
	assert.Contains(t, string(out), "28P01")
	assert.Contains(t, string(out), "authentication failed")
	assert.NotContains(t, string(out), "not-the-token")

	// A query instead of a password.
	c = dialH(t, h)
	_, _ = c.Write(startup("x"))
	q, _ := (&pgproto3.Query{String: "select 1"}).Encode(nil)
	_, _ = c.Write(q)
	out = readUntilClosed(t, c)
	assert.Contains(t, string(out), "expected a password message")

	// A password message claiming to be larger than any startup packet.
	c = dialH(t, h)
	_, _ = c.Write(startup("x"))
	_, _ = c.Write([]byte{'p', 0x7f, 0, 0, 0})
	readUntilClosed(t, c)

	accepts, _ := tp.snapshot()
	assert.Zero(t, accepts)
}

// login performs the startup and token exchange over a raw connection and
// reads until the first ReadyForQuery.
func login(t *testing.T, h *harness) (net.Conn, *pgproto3.Frontend) {
	c := dialH(t, h)
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "x", "database": "postgres"}})
	fe.Send(&pgproto3.PasswordMessage{Password: testToken})
	require.NoError(t, fe.Flush())
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	for {
		m, err := fe.Receive()
		require.NoError(t, err)
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			return c, fe
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			t.Fatalf("login failed: %s", e.Message)
		}
	}
}

func TestBadInputAfterLogin(t *testing.T) {
	cases := map[string][]byte{
		"unknown message type":    {'Z', 0, 0, 0, 4},
		"length below header":     {'Q', 0, 0, 0, 2},
		"malformed bind":          {'B', 0, 0, 0, 6, 'x', 0},
		"over the size limit":     {'Q', 0x10, 0, 0, 0},
		"second password message": append([]byte{'p', 0, 0, 0, 8}, "abc\x00"...),
		"truncated query":         {'Q', 0, 0, 0, 100, 's', 'e'},
	}
	h, tp := tappedHarness(t)
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, before := tp.snapshot()
			c, _ := login(t, h)
			_, _ = c.Write(in)
			if name == "truncated query" {
				c.(*net.TCPConn).CloseWrite()
			}
			readUntilClosed(t, c)
			time.Sleep(50 * time.Millisecond)
			_, after := tp.snapshot()
			sent := after[len(before):]
			assert.False(t, bytes.Contains(sent, in), "the bad message reached the backend")
		})
	}
}
