package postgres

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// cancelRegistry maps the cancel keys the gateway handed its clients to the
// backend's own keys. A client never learns the backend's process id or
// secret; a CancelRequest carrying a gateway key is forwarded to the
// backend with the backend's key (PostgreSQL docs, "Canceling Requests in
// Progress").
type cancelRegistry struct {
	mu   sync.Mutex
	keys map[uint32]*cancelKey
}

type cancelKey struct {
	secret        [4]byte
	backendPID    uint32
	backendSecret []byte
	network, addr string // where the backend listens
	relay         *relay // the session, once it relays; guarded by the registry's mu
}

// register allocates a fresh client-facing key for a backend key.
func (c *cancelRegistry) register(network, addr string, pid uint32, secret []byte) (uint32, [4]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys == nil {
		c.keys = map[uint32]*cancelKey{}
	}
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id := binary.BigEndian.Uint32(b[:4]) &^ (1 << 31) // positive, as a pid is
		if id == 0 || c.keys[id] != nil {
			continue
		}
		k := &cancelKey{backendPID: pid, backendSecret: append([]byte(nil), secret...), network: network, addr: addr}
		copy(k.secret[:], b[4:])
		c.keys[id] = k
		return id, k.secret
	}
}

// attach ties a registered key to the session's relay, so a cancel can
// also withdraw what the session waits on in the gateway.
func (c *cancelRegistry) attach(id uint32, r *relay) {
	c.mu.Lock()
	if k := c.keys[id]; k != nil {
		k.relay = r
	}
	c.mu.Unlock()
}

func (c *cancelRegistry) unregister(id uint32) {
	c.mu.Lock()
	delete(c.keys, id)
	c.mu.Unlock()
}

// lookup finds the backend key for a client's CancelRequest; the secret is
// compared in constant time.
func (c *cancelRegistry) lookup(pid uint32, secret []byte) (*cancelKey, *relay) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.keys[pid]
	if k == nil || subtle.ConstantTimeCompare(k.secret[:], secret) != 1 {
		return nil, nil
	}
	return k, k.relay
}

// cancelTimeout bounds forwarding one cancel request.
const cancelTimeout = 5 * time.Second

// forward sends the backend's CancelRequest and waits for the backend to
// close the connection, as libpq does.
func (k *cancelKey) forward(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, cancelTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, k.network, k.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(cancelTimeout))
	msg := &pgproto3.CancelRequest{ProcessID: k.backendPID, SecretKey: k.backendSecret}
	buf, err := msg.Encode(nil)
	if err != nil {
		return err
	}
	if _, err := conn.Write(buf); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, conn)
	return nil
}
