package postgres

import (
	"errors"
	"net"
	"sync"
	"time"
)

// handoverConn sits between pgconn and the backend connection (above TLS)
// while pgconn logs in. During a slow write pgconn starts a background
// reader of its own (to avoid a write/read deadlock); Hijack stops it only
// after its Read in progress returns, so that Read could take the first
// bytes the backend sends the relay, and the session would hang. detach
// shuts pgconn out: later Reads through the guard fail, a Read in progress
// is interrupted and waited for, and whatever it read is kept for the
// relay.
type handoverConn struct {
	net.Conn
	mu       sync.Mutex
	inflight int
	detached bool
	kept     []byte
}

var errHandedOver = errors.New("postgres: the backend connection was handed over to the relay")

// handoverTimeout bounds the wait for pgconn's background Read to return.
const handoverTimeout = 5 * time.Second

// Read is pgconn's read path until detach.
func (h *handoverConn) Read(p []byte) (int, error) {
	h.mu.Lock()
	if h.detached {
		h.mu.Unlock()
		return 0, errHandedOver
	}
	h.inflight++
	h.mu.Unlock()
	n, err := h.Conn.Read(p)
	h.mu.Lock()
	h.inflight--
	if h.detached && n > 0 {
		h.kept = append(h.kept, p[:n]...)
	}
	h.mu.Unlock()
	return n, err
}

// detach ends pgconn's use of the connection and returns the bytes a
// background Read took after the handover began.
func (h *handoverConn) detach() ([]byte, error) {
	h.mu.Lock()
	h.detached = true
	busy := h.inflight > 0
	h.mu.Unlock()
	if !busy {
		return nil, nil
	}
	_ = h.Conn.SetReadDeadline(time.Now())
	defer func() { _ = h.Conn.SetReadDeadline(time.Time{}) }()
	deadline := time.Now().Add(handoverTimeout)
	for {
		h.mu.Lock()
		inflight, kept := h.inflight, h.kept
		h.mu.Unlock()
		if inflight == 0 {
			return kept, nil
		}
		if time.Now().After(deadline) {
			return nil, errors.New("postgres: pgconn's background read did not stop")
		}
		time.Sleep(time.Millisecond)
	}
}

// prefixConn returns bytes read ahead of the relay before reading on.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
