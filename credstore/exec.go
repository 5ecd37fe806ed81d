package credstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os/exec"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluicegw/sluice/credstore/internal/secretcache"
)

// execSource resolves exec: references (see the package documentation).
// Outputs are cached per reference; concurrent Resolves of one reference
// share one run.
type execSource struct {
	cfg   ExecConfig
	now   func() time.Time
	log   *slog.Logger
	cache *secretcache.Cache[Secret]
}

func newExecSource(cfg ExecConfig, now func() time.Time, log *slog.Logger) *execSource {
	return &execSource{cfg: cfg, now: now, log: log, cache: secretcache.New[Secret](now)}
}

func (x *execSource) Lookup(ctx context.Context, rest string) (Secret, error) {
	argv, err := SplitCommand(rest)
	if err != nil {
		return Secret{}, fmt.Errorf("exec reference: %v", err)
	}
	return x.cache.Get(ctx, rest, func(ctx context.Context) (Secret, time.Duration, error) {
		return x.run(ctx, argv)
	})
}

// Purge implements Purger.
func (x *execSource) Purge() { x.cache.Purge() }

// Close kills commands still running and waits for them.
func (x *execSource) Close() error {
	x.cache.Close()
	return nil
}

// run runs the command once and returns its secret and how long to keep
// it. Errors name argv[0] only: arguments may carry a secret of their own.
func (x *execSource) run(ctx context.Context, argv []string) (Secret, time.Duration, error) {
	name := argv[0]
	ctx, cancel := context.WithTimeout(ctx, x.cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, argv[1:]...)
	stdout := &cappedBuffer{max: maxExecStdout}
	stderr := &tailBuffer{max: 4 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// After the command exits (or is killed), stop waiting for children
	// that inherited its output after this long.
	cmd.WaitDelay = time.Second
	killProcessGroup(cmd)

	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		err = nil // it finished; a child of it kept the pipe open
	}
	fail := func(format string, args ...any) (Secret, time.Duration, error) {
		x.log.Debug("credstore: exec command failed", "program", name, "duration", elapsed)
		return Secret{}, 0, fmt.Errorf("exec %s: "+format, append([]any{name}, args...)...)
	}
	switch {
	case err != nil && ctx.Err() == context.DeadlineExceeded:
		return fail("no answer within %s; killed it (exec.timeout)", x.cfg.Timeout)
	case err != nil && ctx.Err() != nil:
		return fail("killed it: the credential store was closed")
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return fail("command not found")
	case errors.Is(err, fs.ErrPermission):
		return fail("cannot run it: permission denied")
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fail("%s%s", ee.ProcessState, x.stderrDetail(stderr.Bytes(), stdout.Bytes()))
		}
		return fail("cannot run it")
	case stdout.overflow:
		return fail("printed more than %d bytes on standard output", maxExecStdout)
	}

	out := stdout.Bytes()
	trimmed := bytes.TrimSpace(out)
	if len(trimmed) == 0 {
		return fail("printed nothing on standard output (it should print the secret)")
	}
	secret, ttl := NewSecret(strings.TrimRight(string(out), "\r\n")), x.cfg.TTL
	if trimmed[0] == '{' && json.Valid(trimmed) {
		var o struct {
			Password  *string `json:"password"`
			ExpiresAt *string `json:"expires_at"`
		}
		if json.Unmarshal(trimmed, &o) != nil || o.Password == nil || *o.Password == "" {
			return fail(`printed a JSON object without a non-empty "password" string (want {"password": "...", "expires_at": "RFC 3339 time"})`)
		}
		secret = NewSecret(*o.Password)
		if o.ExpiresAt != nil {
			at, err := time.Parse(time.RFC3339, *o.ExpiresAt)
			if err != nil {
				return fail(`printed an "expires_at" that is not an RFC 3339 time`)
			}
			left := at.Sub(x.now())
			if left <= 0 {
				return fail("printed a secret that expired at %s", at.Format(time.RFC3339))
			}
			if x.cfg.TTL > 0 {
				ttl = left
			}
		}
	}
	x.log.Debug("credstore: ran exec command", "program", name, "duration", elapsed, "cached_for", max(ttl, 0))
	return secret, ttl, nil
}

// stderrDetail is the last line of a failed command's standard error, cut
// short, with anything it also printed on standard output masked, or
// nothing when HideStderr is set.
func (x *execSource) stderrDetail(stderr, stdout []byte) string {
	if x.cfg.HideStderr {
		return ""
	}
	s := strings.TrimRight(string(stderr), " \t\r\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSpace(s)
	for line := range strings.Lines(string(stdout)) {
		if line = strings.TrimSpace(line); len(line) >= 3 {
			s = strings.ReplaceAll(s, line, redacted)
		}
	}
	if s == "" {
		return ""
	}
	if len(s) > maxExecStderrInErrors {
		cut := maxExecStderrInErrors
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return fmt.Sprintf(" (stderr: %q)", s)
}

// cappedBuffer keeps the first max bytes written and notes whether more
// came. (It wraps rather than embeds bytes.Buffer, whose ReadFrom io.Copy
// would otherwise use, bypassing the cap.)
type cappedBuffer struct {
	buf      bytes.Buffer
	max      int
	overflow bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); len(p) > room {
		b.overflow = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *cappedBuffer) Bytes() []byte { return b.buf.Bytes() }

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) Bytes() []byte { return b.buf }
