package policy

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/internal/syncbuf"
	"github.com/sluicegw/sluice/protocol"
)

const (
	allowAgents = "rules:\n  - {name: agents, match: '\"agents\" in identity.groups', action: allow}\n"
	denyAgents  = "rules:\n  - {name: no-agents, match: '\"agents\" in identity.groups', action: deny, message: agents are off}\n"
	brokenRule  = "rules:\n  - {name: broken, match: 'command.sql.wrtes', action: allow}\n"
)

type syncBuffer = syncbuf.Buffer

func newTestLive(t *testing.T, content string) (*Live, string, *syncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	logs := &syncBuffer{}
	l, err := NewLive(slog.New(slog.NewTextHandler(logs, nil)), path)
	require.NoError(t, err)
	return l, path, logs
}

func agentAction(t *testing.T, d Decider) protocol.Action {
	t.Helper()
	dec, err := d.Decide(context.Background(), in([]string{"agents"}, "dev", sqlCmd(false)))
	require.NoError(t, err)
	return dec.Action
}

func TestLiveReload(t *testing.T) {
	l, path, logs := newTestLive(t, allowAgents)
	first := l.Engine()
	assert.Equal(t, protocol.Allow, agentAction(t, l))

	// A broken file: the old engine stays, the error is returned and logged.
	require.NoError(t, os.WriteFile(path, []byte(brokenRule), 0o600))
	err := l.Reload()
	require.ErrorContains(t, err, "undefined field 'wrtes'")
	assert.Same(t, first, l.Engine())
	assert.Equal(t, protocol.Allow, agentAction(t, l))
	assert.Contains(t, logs.String(), "policy reload failed")

	// A missing file: the same.
	require.NoError(t, os.Remove(path))
	require.ErrorIs(t, l.Reload(), os.ErrNotExist)
	assert.Same(t, first, l.Engine())

	// A good file: swapped.
	require.NoError(t, os.WriteFile(path, []byte(denyAgents), 0o600))
	require.NoError(t, l.Reload())
	assert.NotSame(t, first, l.Engine())
	assert.Equal(t, protocol.Deny, agentAction(t, l))
	assert.Contains(t, logs.String(), "policy reloaded")
}

func TestNewLiveFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	require.NoError(t, os.WriteFile(path, []byte(brokenRule), 0o600))
	_, err := NewLive(nil, path)
	require.Error(t, err)
}

func TestWatchFiles(t *testing.T) {
	defer goleak.VerifyNone(t)
	l, path, logs := newTestLive(t, allowAgents)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.WatchFiles(ctx, 5*time.Millisecond) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()

	require.NoError(t, os.WriteFile(path, []byte(denyAgents), 0o600))
	require.Eventually(t, func() bool { return agentAction(t, l) == protocol.Deny }, 5*time.Second, 5*time.Millisecond)

	// A broken version is reported once and does not replace the engine.
	good := l.Engine()
	require.NoError(t, os.WriteFile(path, []byte(brokenRule), 0o600))
	require.Eventually(t, func() bool { return bytes.Contains([]byte(logs.String()), []byte("wrtes")) }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(30 * time.Millisecond) // several more polls
	assert.Equal(t, 1, bytes.Count([]byte(logs.String()), []byte("policy reload failed")))
	assert.Same(t, good, l.Engine())

	// Fixed again (same size as before, to show content, not size, counts).
	require.NoError(t, os.WriteFile(path, []byte(allowAgents), 0o600))
	require.Eventually(t, func() bool { return agentAction(t, l) == protocol.Allow }, 5*time.Second, 5*time.Millisecond)

	// A rewrite with identical content does not reload.
	current := l.Engine()
	require.NoError(t, os.WriteFile(path, []byte(allowAgents), 0o600))
	time.Sleep(30 * time.Millisecond)
	assert.Same(t, current, l.Engine())

	require.Error(t, l.WatchFiles(ctx, 0))
}

func TestReloadOnSignal(t *testing.T) {
	defer goleak.VerifyNone(t)
	l, path, _ := newTestLive(t, allowAgents)
	sig := make(chan os.Signal)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.ReloadOnSignal(ctx, sig); close(done) }()

	require.NoError(t, os.WriteFile(path, []byte(denyAgents), 0o600))
	sig <- os.Interrupt // any value; the server sends what signal.Notify gives it
	sig <- os.Interrupt // the first reload has completed once the second send is taken
	assert.Equal(t, protocol.Deny, agentAction(t, l))
	cancel()
	<-done

	done = make(chan struct{})
	go func() { l.ReloadOnSignal(context.Background(), sig); close(done) }()
	close(sig)
	<-done
}

// TestLiveConcurrent decides while reloading; run with -race.
func TestLiveConcurrent(t *testing.T) {
	l, path, _ := newTestLive(t, allowAgents)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				d, err := l.Decide(context.Background(), in([]string{"agents"}, "dev", sqlCmd(false)))
				if !assert.NoError(t, err) {
					return
				}
				// Always one whole policy or the other.
				switch d.Action {
				case protocol.Allow:
					assert.Equal(t, []string{"agents"}, d.Rules)
				case protocol.Deny:
					assert.Equal(t, []string{"no-agents"}, d.Rules)
					assert.Equal(t, "agents are off", d.Message)
				default:
					t.Errorf("unexpected %v", d.Action)
				}
			}
		})
	}
	for i := range 50 {
		content := allowAgents
		if i%2 == 0 {
			content = denyAgents
		}
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		require.NoError(t, l.Reload())
	}
	cancel()
	wg.Wait()
}
