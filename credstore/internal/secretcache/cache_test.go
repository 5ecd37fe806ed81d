package secretcache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func counting(v string, ttl time.Duration, n *atomic.Int32) Fetch[string] {
	return func(context.Context) (string, time.Duration, error) {
		n.Add(1)
		return v, ttl, nil
	}
}

func TestGetCachesUntilTTL(t *testing.T) {
	clk := &clock{t: time.Unix(0, 0)}
	c := New[string](clk.Now)
	var n atomic.Int32
	ctx := context.Background()
	for range 3 {
		v, err := c.Get(ctx, "k", counting("v1", time.Minute, &n))
		require.NoError(t, err)
		assert.Equal(t, "v1", v)
	}
	assert.EqualValues(t, 1, n.Load())
	clk.Advance(time.Minute)
	v, err := c.Get(ctx, "k", counting("v2", time.Minute, &n))
	require.NoError(t, err)
	assert.Equal(t, "v2", v)
	assert.EqualValues(t, 2, n.Load())

	_, _ = c.Get(ctx, "once", counting("x", 0, &n))
	_, _ = c.Get(ctx, "once", counting("x", -1, &n))
	assert.EqualValues(t, 4, n.Load(), "ttl <= 0 keeps nothing")
	assert.Equal(t, 1, c.Len())

	c.Delete("k")
	assert.Equal(t, 0, c.Len())
}

func TestErrorsAreNotCached(t *testing.T) {
	c := New[string](nil)
	var n atomic.Int32
	fail := func(context.Context) (string, time.Duration, error) {
		n.Add(1)
		return "", time.Hour, errors.New("boom")
	}
	for range 2 {
		_, err := c.Get(context.Background(), "k", fail)
		assert.EqualError(t, err, "boom")
	}
	assert.EqualValues(t, 2, n.Load())
}

func TestTimerDropsEntries(t *testing.T) {
	c := New[string](nil)
	_, err := c.Get(context.Background(), "k", func(context.Context) (string, time.Duration, error) { return "v", 20 * time.Millisecond, nil })
	require.NoError(t, err)
	assert.Equal(t, 1, c.Len())
	assert.Eventually(t, func() bool { return c.Len() == 0 }, 2*time.Second, 5*time.Millisecond, "dropped without being asked for")
}

func TestCoalescesAndPurgeDuringFetch(t *testing.T) {
	c := New[string](nil)
	release := make(chan struct{})
	var n atomic.Int32
	slow := func(context.Context) (string, time.Duration, error) {
		n.Add(1)
		<-release
		return "v", time.Hour, nil
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			v, err := c.Get(context.Background(), "k", slow)
			assert.NoError(t, err)
			assert.Equal(t, "v", v)
		})
	}
	require.Eventually(t, func() bool { return n.Load() == 1 }, time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	c.Purge()
	close(release)
	wg.Wait()
	assert.EqualValues(t, 1, n.Load(), "one fetch for all callers")
	assert.Equal(t, 0, c.Len(), "a fetch begun before Purge is not stored")
}

func TestCallerContext(t *testing.T) {
	c := New[string](nil)
	release := make(chan struct{})
	fetchCtx := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, "k", func(fctx context.Context) (string, time.Duration, error) {
			<-release
			fetchCtx <- fctx.Err()
			return "v", time.Hour, nil
		})
		done <- err
	}()
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
	close(release)
	assert.NoError(t, <-fetchCtx, "the fetch outlives the caller that started it")
	assert.Eventually(t, func() bool { return c.Len() == 1 }, time.Second, time.Millisecond)
	c.Purge()
}

func TestCloseCancelsAndWaits(t *testing.T) {
	c := New[string](nil)
	started := make(chan struct{})
	var finished atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, "k", func(fctx context.Context) (string, time.Duration, error) {
			close(started)
			<-fctx.Done()
			time.Sleep(20 * time.Millisecond)
			finished.Store(true)
			return "", 0, fctx.Err()
		})
		errc <- err
	}()
	<-started
	cancel() // the caller leaves; the fetch goes on
	assert.ErrorIs(t, <-errc, context.Canceled)
	c.Close()
	assert.True(t, finished.Load(), "Close waited for the fetch it cancelled")
	_, err := c.Get(context.Background(), "k", func(context.Context) (string, time.Duration, error) { return "v", time.Hour, nil })
	assert.ErrorIs(t, err, ErrClosed)
}
