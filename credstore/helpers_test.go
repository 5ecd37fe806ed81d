package credstore

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/internal/syncbuf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a fake clock for cache expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// harness is a Resolver on a fake clock whose debug log goes to a buffer,
// and which remembers every error it returned so that the test can check
// none of them, nor the log, carries a secret.
type harness struct {
	t    *testing.T
	r    *Resolver
	clk  *clock
	logs *syncbuf.Buffer
	errs []error
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, clk: &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}, logs: &syncbuf.Buffer{}}
	r, err := New(cfg, Options{
		Logger: slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		now:    h.clk.Now,
	})
	require.NoError(t, err)
	h.r = r
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return h
}

func (h *harness) resolve(ref string) (string, error) {
	c, err := h.r.Resolve(context.Background(), Ref{Username: "u", Password: ref})
	if err != nil {
		h.errs = append(h.errs, err)
	}
	return c.Password.Reveal(), err
}

func (h *harness) must(ref string) string {
	h.t.Helper()
	v, err := h.resolve(ref)
	require.NoError(h.t, err)
	return v
}

func (h *harness) fail(ref, want string) error {
	h.t.Helper()
	_, err := h.resolve(ref)
	require.Error(h.t, err)
	assert.Contains(h.t, err.Error(), want)
	return err
}

// assertClean checks that no error and no log line carries any of secrets.
func (h *harness) assertClean(secrets ...string) {
	h.t.Helper()
	texts := []string{h.logs.String()}
	for _, err := range h.errs {
		texts = append(texts, err.Error())
	}
	for _, text := range texts {
		for _, s := range secrets {
			assert.NotContains(h.t, text, s)
		}
	}
}

func (h *harness) logCount(msg string) int {
	return strings.Count(h.logs.String(), `"msg":"`+msg+`"`)
}
