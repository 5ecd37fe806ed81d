package postgres

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/protocol"
)

// These plugin-level tests drive the real plugin against the machine's
// PostgreSQL with a minimal in-test Session (the gateway has its own
// tests; the end-to-end ones through refserver and the gateway live in
// test/ and cmd/refserver). The session below implements the contract the
// plugin relies on: token check, a decision function, in-memory events.

const testToken = "plugin-test-token"

func backendAddr() string {
	if a := os.Getenv("SLUICE_TEST_PG_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:5432"
}

// requirePostgres skips (or, under SLUICE_REQUIRE_INTEGRATION=1, fails)
// when the machine's PostgreSQL is not reachable.
func requirePostgres(t testing.TB) {
	t.Helper()
	c, err := net.DialTimeout("tcp", backendAddr(), 2*time.Second)
	if err == nil {
		c.Close()
		return
	}
	msg := fmt.Sprintf("PostgreSQL is not reachable at %s (%v); start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start", backendAddr(), err)
	if os.Getenv("SLUICE_REQUIRE_INTEGRATION") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

type testSession struct {
	h       *harness
	id      string
	mu      sync.Mutex
	ident   *identity.Identity
	allowed bool
}

func (s *testSession) Info() protocol.SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return protocol.SessionInfo{ID: s.id, Identity: s.ident, Target: s.h.target, Start: time.Now()}
}
func (s *testSession) Limits() protocol.Limits { return s.h.limits }
func (s *testSession) PolicyVersion() uint64 {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return s.h.version
}
func (s *testSession) CheckTransport(st *tls.ConnectionState) error {
	if st == nil && s.h.tls != nil {
		return errors.New("sluice: a token must be sent over TLS; connect with sslmode=require")
	}
	return nil
}
func (s *testSession) TLSConfig() *tls.Config { return s.h.tls }
func (s *testSession) Logger() *slog.Logger   { return s.h.log.With("session_id", s.id) }
func (s *testSession) Masker(d protocol.Decision) masking.RowMasker {
	if len(d.Mask) > 0 {
		return s.h.masker
	}
	return nil
}

func (s *testSession) Authenticate(_ context.Context, c identity.Credentials) (*identity.Identity, error) {
	if c.Token != testToken {
		return nil, fmt.Errorf("sluice: authentication failed: token not recognised: %w", identity.ErrUnauthenticated)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ident = &identity.Identity{Subject: "tester", Method: identity.MethodToken}
	return s.ident, nil
}

func (s *testSession) Check(ctx context.Context, cmd *protocol.Command) (protocol.Decision, error) {
	if strings.Contains(cmd.Text, "needs approval") {
		// Stand in for the gateway's approval wait: tell the client, then
		// wait for the test to approve or the client to withdraw.
		if f := protocol.NoticeFrom(ctx); f != nil {
			f("sluice: approval request A1 is pending")
		}
		select {
		case <-s.h.approvals:
		case <-ctx.Done():
			return protocol.Decision{Action: protocol.Deny, Rules: []string{"approval"}, Message: "sluice: approval request A1 was withdrawn"}, nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ident == nil || (cmd.Kind != protocol.KindConnect && !s.allowed) {
		return protocol.Decision{}, protocol.ErrNotAuthorized
	}
	s.h.mu.Lock()
	decide := s.h.decide
	s.h.mu.Unlock()
	d := decide(cmd)
	if cmd.Kind == protocol.KindConnect && d.Allowed() {
		s.allowed = true
	}
	seq := s.h.add(protocol.Event{Type: "command", Message: cmd.Text})
	d.Seq = seq
	s.h.mu.Lock()
	s.h.commands = append(s.h.commands, *cmd)
	s.h.decisions = append(s.h.decisions, d)
	s.h.mu.Unlock()
	if s.h.failCheck.Load() {
		return protocol.Decision{}, fmt.Errorf("%w: disk full", protocol.ErrRecording)
	}
	return d, nil
}

func (s *testSession) Record(_ context.Context, ev protocol.Event) error {
	s.h.add(ev)
	return nil
}

func (s *testSession) Credential(context.Context) (credstore.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.allowed {
		return credstore.Credential{}, protocol.ErrNotAuthorized
	}
	return s.h.cred, nil
}

type atomicBool struct {
	mu sync.Mutex
	v  bool
}

func (b *atomicBool) Load() bool   { b.mu.Lock(); defer b.mu.Unlock(); return b.v }
func (b *atomicBool) Store(v bool) { b.mu.Lock(); b.v = v; b.mu.Unlock() }

type harness struct {
	t      testing.TB
	target *protocol.Target
	plugin *Plugin
	ln     net.Listener
	limits protocol.Limits
	tls    *tls.Config
	log    *slog.Logger
	cred   credstore.Credential
	masker masking.RowMasker
	decide func(*protocol.Command) protocol.Decision

	failCheck atomicBool
	approvals chan struct{} // each receive approves one waiting command
	version   uint64        // PolicyVersion; guarded by mu

	mu        sync.Mutex
	seq       uint64
	events    []protocol.Event
	commands  []protocol.Command
	decisions []protocol.Decision
	serveErrs []error
	wg        sync.WaitGroup
	ctx       context.Context
	cancel    context.CancelFunc
	sessions  map[string]context.CancelFunc
}

func (h *harness) add(ev protocol.Event) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	h.events = append(h.events, ev)
	return h.seq
}

// denyContaining denies any command whose text contains one of words.
func denyContaining(words ...string) func(*protocol.Command) protocol.Decision {
	return func(cmd *protocol.Command) protocol.Decision {
		for _, w := range words {
			if strings.Contains(strings.ToLower(cmd.Text), w) {
				return protocol.Decision{Action: protocol.Deny, Rules: []string{"no-" + w}, Message: w + " is not allowed"}
			}
		}
		return protocol.Decision{Action: protocol.Allow, Rules: []string{"allow-all"}}
	}
}

func newHarness(t testing.TB, opts map[string]string) *harness {
	t.Helper()
	requirePostgres(t)
	target := &protocol.Target{Name: "pg", Protocol: Name, Address: backendAddr(), Options: map[string]string{"database": "postgres", "sslmode": "disable"}}
	for k, v := range opts {
		target.Options[k] = v
	}
	p, err := New(target)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{
		t: t, target: target, plugin: p.(*Plugin), ln: ln,
		limits: protocol.Limits{MaxMessageSize: 1 << 20, RecordRows: 5, RecordBytes: 4096, ConnectTimeout: 5 * time.Second},
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		cred:   credstore.Credential{Username: "postgres"},
		decide: denyContaining("drop"),
		ctx:    ctx, cancel: cancel, sessions: map[string]context.CancelFunc{},
		approvals: make(chan struct{}),
	}
	h.wg.Add(1)
	go h.accept()
	t.Cleanup(h.close)
	return h
}

func (h *harness) accept() {
	defer h.wg.Done()
	n := 0
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		n++
		id := fmt.Sprintf("s%d", n)
		sctx, scancel := context.WithCancel(h.ctx)
		h.mu.Lock()
		h.sessions[id] = scancel
		h.mu.Unlock()
		s := &testSession{h: h, id: id}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			defer scancel()
			err := h.plugin.Serve(sctx, c, s)
			c.Close()
			h.mu.Lock()
			h.serveErrs = append(h.serveErrs, err)
			h.mu.Unlock()
		}()
	}
}

func (h *harness) close() {
	h.ln.Close()
	h.cancel()
	h.wg.Wait()
}

func (h *harness) port() int { return h.ln.Addr().(*net.TCPAddr).Port }

// dsn is a libpq connection string to the plugin.
func (h *harness) dsn(extra string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=tester dbname=postgres password=%s sslmode=disable %s", h.port(), testToken, extra)
}

func (h *harness) resultEvents() []protocol.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []protocol.Event
	for _, e := range h.events {
		if e.Type == protocol.EventResult {
			out = append(out, e)
		}
	}
	return out
}

func (h *harness) errs() []error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]error(nil), h.serveErrs...)
}
