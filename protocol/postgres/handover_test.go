package postgres

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHandoverInterruptsBackgroundRead: a Read pgconn's background reader
// has in progress when the relay takes the connection over is interrupted,
// and later reads through the guard fail, so the relay alone reads what
// the backend sends next.
func TestHandoverInterruptsBackgroundRead(t *testing.T) {
	ours, backend := net.Pipe()
	defer ours.Close()
	defer backend.Close()
	h := &handoverConn{Conn: ours}

	bg := make(chan error, 1)
	go func() { _, err := h.Read(make([]byte, 16)); bg <- err }()
	require.Eventually(t, func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.inflight == 1 }, time.Second, time.Millisecond)

	kept, err := h.detach()
	require.NoError(t, err)
	assert.Empty(t, kept)
	var ne net.Error
	require.True(t, errors.As(<-bg, &ne) && ne.Timeout(), "the background read was interrupted")
	_, err = h.Read(make([]byte, 1))
	assert.ErrorIs(t, err, errHandedOver)

	go func() { _, _ = backend.Write([]byte("Z\x00\x00\x00\x05I")) }()
	buf := make([]byte, 6)
	_, err = io.ReadFull(h.Conn, buf)
	require.NoError(t, err, "the deadline was cleared for the relay")
	assert.Equal(t, "Z\x00\x00\x00\x05I", string(buf))
}

// dataOnDeadline is a conn whose blocked Read returns data when a deadline
// is set: bytes that arrive just as the handover interrupts the read.
type dataOnDeadline struct {
	net.Conn
	release chan struct{}
}

func (c *dataOnDeadline) Read(p []byte) (int, error) {
	<-c.release
	return copy(p, "late"), nil
}

func (c *dataOnDeadline) SetReadDeadline(t time.Time) error {
	if !t.IsZero() {
		close(c.release)
	}
	return nil
}

func TestHandoverKeepsBytesTheBackgroundReadTook(t *testing.T) {
	h := &handoverConn{Conn: &dataOnDeadline{release: make(chan struct{})}}
	go func() { _, _ = h.Read(make([]byte, 16)) }()
	require.Eventually(t, func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.inflight == 1 }, time.Second, time.Millisecond)
	kept, err := h.detach()
	require.NoError(t, err)
	assert.Equal(t, "late", string(kept))

	pc := &prefixConn{Conn: nil, prefix: kept}
	b := make([]byte, 2)
	n, _ := pc.Read(b)
	assert.Equal(t, "la", string(b[:n]))
	n, _ = pc.Read(b)
	assert.Equal(t, "te", string(b[:n]))
}
