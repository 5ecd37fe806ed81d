package protocol

import "sync"

// Conns maps a plugin's live sessions to its per-connection state, so
// that Drainer.Drain can find the connection of a session. The zero value
// is ready to use; it is safe for concurrent use.
type Conns[T any] struct {
	mu sync.Mutex
	m  map[Session]T
}

// Add records v as the state of session s.
func (c *Conns[T]) Add(s Session, v T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[Session]T{}
	}
	c.m[s] = v
}

// Remove forgets session s.
func (c *Conns[T]) Remove(s Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, s)
}

// Get returns the state of session s, if it is recorded.
func (c *Conns[T]) Get(s Session) (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[s]
	return v, ok
}
