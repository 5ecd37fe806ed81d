package policy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/protocol"
)

// Live is a Decider over policy files that can be reloaded while the
// gateway runs. It holds the current *Engine in an atomic pointer: Decide
// uses whichever engine is current when it starts, and a reload swaps the
// whole engine at once, so no command ever sees half a policy. A reload that
// fails (a YAML or CEL error, a missing file) keeps the previous engine.
//
// Reload is the hook for SIGHUP; the library installs no signal handler.
// A server wires it like this:
//
//	hup := make(chan os.Signal, 1)
//	signal.Notify(hup, syscall.SIGHUP)
//	go live.ReloadOnSignal(ctx, hup)
//
// or polls the files with WatchFiles.
type Live struct {
	// Validate, when set (before reloads start), vets each reloaded
	// policy beyond compiling; an error keeps the current policy, as a
	// compile error does.
	Validate func(*Engine) error

	paths []string
	log   *slog.Logger

	cur     atomic.Pointer[Engine]
	version atomic.Uint64 // bumped by every successful reload

	mu         sync.Mutex        // serialises reloads; guards the fields below
	failed     [sha256.Size]byte // fingerprint of the last sources that failed to compile
	unreadable bool              // the last read failed (reported once by WatchFiles)
	pending    [sha256.Size]byte // changed sources seen by the last poll, not yet loaded
}

// NewLive loads the policy files (see Load for paths) and returns a Live
// serving them; it fails if the first load fails. logger receives reload
// reports; nil means slog.Default().
func NewLive(logger *slog.Logger, paths ...string) (*Live, error) {
	if logger == nil {
		logger = slog.Default()
	}
	e, err := Load(paths...)
	if err != nil {
		return nil, err
	}
	l := &Live{paths: append([]string(nil), paths...), log: logger}
	l.cur.Store(e)
	return l, nil
}

// Decide implements Decider with the current engine.
func (l *Live) Decide(ctx context.Context, in *Input) (protocol.Decision, error) {
	return l.cur.Load().Decide(ctx, in)
}

// Engine returns the current engine.
func (l *Live) Engine() *Engine { return l.cur.Load() }

// Version implements Versioned: it changes with every successful reload.
func (l *Live) Version() uint64 { return l.version.Load() }

// Reload reads and compiles the policy files again and, if that succeeds,
// makes the result the current engine. On failure the current engine stays,
// the error is logged and returned.
func (l *Live) Reload() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reload()
}

// reload is Reload with l.mu held.
func (l *Live) reload() error {
	srcs, err := readSources(l.paths)
	if err != nil {
		l.unreadable = true
		l.log.Error("policy reload failed; keeping the current policy", "err", err)
		return err
	}
	l.unreadable = false
	return l.apply(srcs, fingerprint(srcs))
}

// apply compiles srcs and swaps the engine on success; l.mu is held.
func (l *Live) apply(srcs []Source, sum [sha256.Size]byte) error {
	e, err := Compile(srcs...)
	if err == nil && l.Validate != nil {
		err = l.Validate(e)
	}
	if err != nil {
		l.failed = sum
		l.log.Error("policy reload failed; keeping the current policy", "err", err)
		return err
	}
	l.cur.Store(e)
	l.version.Add(1)
	l.failed = [sha256.Size]byte{}
	l.log.Info("policy reloaded", "files", e.files, "rules", len(e.rules), "default", string(e.def))
	return nil
}

// WatchFiles polls the policy files every interval and reloads when their
// content has changed (files added to or removed from a policy directory
// count) and then stayed the same for one more interval, so that a file
// caught while being written is not loaded. It reads and hashes the files
// rather than trusting modification times, which can miss a rewrite within
// the same tick; policy files are small. A broken version is logged once,
// not at every poll, and the previous engine stays until the files
// compile. WatchFiles returns nil when ctx is done.
func (l *Live) WatchFiles(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("policy: WatchFiles: interval must be positive, got %v", interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			l.poll()
		}
	}
}

// poll reloads if the files differ from both the current engine's sources
// and the last version that failed to compile.
func (l *Live) poll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	srcs, err := readSources(l.paths)
	if err != nil {
		if !l.unreadable {
			l.unreadable = true
			l.log.Error("policy files unreadable; keeping the current policy", "err", err)
		}
		return
	}
	l.unreadable = false
	sum := fingerprint(srcs)
	if sum == l.cur.Load().sum || sum == l.failed {
		l.pending = [sha256.Size]byte{}
		return
	}
	if sum != l.pending {
		// Changed: wait one more interval for the content to settle, so
		// that a file caught half-written is not loaded (an empty file is
		// a valid, deny-everything policy).
		l.pending = sum
		return
	}
	l.pending = [sha256.Size]byte{}
	_ = l.apply(srcs, sum)
}

// ReloadOnSignal calls Reload each time a value arrives on c, until ctx is
// done or c is closed. The caller owns c (signal.Notify(c, syscall.SIGHUP)).
func (l *Live) ReloadOnSignal(ctx context.Context, c <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-c:
			if !ok {
				return
			}
			_ = l.Reload()
		}
	}
}

// fingerprint identifies a set of sources: names, order and contents.
func fingerprint(srcs []Source) [sha256.Size]byte {
	h := sha256.New()
	for _, s := range srcs {
		fmt.Fprintf(h, "%q %d\n", s.Name, len(s.Data))
		h.Write(s.Data)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}
