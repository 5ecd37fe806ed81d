// Package secretcache keeps resolved secrets for a bounded time and
// coalesces concurrent fetches of the same key. Its central type is Cache.
//
// An entry is dropped when its time is up (a timer removes it even if
// nobody asks for it again), on Delete and on Purge. Go cannot wipe a
// string's memory, so "dropped" means no longer referenced: the garbage
// collector reclaims it.
package secretcache

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Cache maps keys to values of type V with a time to live each. The zero
// value is not usable; call New.
type Cache[V any] struct {
	now     func() time.Time
	closing context.Context // done once Close is called
	close   context.CancelFunc
	flights sync.WaitGroup

	mu      sync.Mutex
	entries map[string]*entry[V]
	gen     uint64 // bumped by Purge so that fetches started before it are not stored
	group   singleflight.Group
}

type entry[V any] struct {
	v       V
	expires time.Time
	timer   *time.Timer
}

// New returns an empty cache. now is the clock expiry is judged by (nil
// means time.Now); tests pass a fake one.
func New[V any](now func() time.Time) *Cache[V] {
	if now == nil {
		now = time.Now
	}
	closing, close := context.WithCancel(context.Background())
	return &Cache[V]{now: now, closing: closing, close: close, entries: make(map[string]*entry[V])}
}

// Fetch produces a value and how long it may be kept; a ttl <= 0 means
// "use it once, keep nothing".
type Fetch[V any] func(ctx context.Context) (v V, ttl time.Duration, err error)

// Get returns the live entry for key, or calls fetch. Concurrent callers
// for one key share a single fetch. The fetch runs with ctx's values but
// not its cancellation, so one caller giving up does not fail the others:
// fetch must bound itself (the sources do, with their own timeouts), and
// Close cancels it. Each caller still returns as soon as its own ctx is
// done.
func (c *Cache[V]) Get(ctx context.Context, key string, fetch Fetch[V]) (V, error) {
	if v, ok := c.lookup(key); ok {
		return v, nil
	}
	c.mu.Lock()
	gen := c.gen
	if c.closing.Err() != nil {
		c.mu.Unlock()
		var zero V
		return zero, ErrClosed
	}
	// Every caller counts as a flight until the fetch it waits for ends,
	// so that Close can wait for fetches to return.
	c.flights.Add(1)
	c.mu.Unlock()
	// The generation is part of the flight's key: a caller arriving after
	// Purge starts a fresh fetch rather than joining one begun before it.
	ch := c.group.DoChan(strconv.FormatUint(gen, 10)+"/"+key, func() (any, error) {
		// Another caller may have stored it between lookup and DoChan.
		if v, ok := c.lookup(key); ok {
			return v, nil
		}
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		defer context.AfterFunc(c.closing, cancel)()
		v, ttl, err := fetch(fctx)
		if err != nil {
			return nil, err
		}
		c.store(key, v, ttl, gen)
		return v, nil
	})
	select {
	case r := <-ch:
		c.flights.Done()
		if r.Err != nil {
			var zero V
			return zero, r.Err
		}
		return r.Val.(V), nil
	case <-ctx.Done():
		go func() { <-ch; c.flights.Done() }()
		var zero V
		return zero, ctx.Err()
	}
}

func (c *Cache[V]) lookup(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		var zero V
		return zero, false
	}
	if !c.now().Before(e.expires) {
		c.dropLocked(key, e)
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *Cache[V]) store(key string, v V, ttl time.Duration, gen uint64) {
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return // purged while fetching
	}
	if old, ok := c.entries[key]; ok {
		c.dropLocked(key, old)
	}
	e := &entry[V]{v: v, expires: c.now().Add(ttl)}
	e.timer = time.AfterFunc(ttl, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.entries[key] == e {
			delete(c.entries, key)
		}
	})
	c.entries[key] = e
}

func (c *Cache[V]) dropLocked(key string, e *entry[V]) {
	e.timer.Stop()
	delete(c.entries, key)
}

// Delete drops key's entry, if any.
func (c *Cache[V]) Delete(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		c.dropLocked(key, e)
	}
}

// Purge drops every entry. A fetch in flight when Purge is called still
// answers its callers but is not stored.
func (c *Cache[V]) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for k, e := range c.entries {
		c.dropLocked(k, e)
	}
}

// ErrClosed is returned by Get after Close.
var ErrClosed = errors.New("closed")

// Close purges the cache, cancels fetches in flight and waits for them to
// return. Get fails with ErrClosed afterwards.
func (c *Cache[V]) Close() {
	c.mu.Lock()
	c.close()
	c.mu.Unlock()
	c.Purge()
	c.flights.Wait()
}

// Len is the number of entries held, expired or not (tests).
func (c *Cache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
