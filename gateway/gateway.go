// Package gateway is sluice's composition root: it listens for clients of
// each configured target, gives every accepted connection a Session (the
// implementation of protocol.Session) and hands it to the target's protocol
// plugin. The session enforces the order authenticate -> connect check ->
// everything else, runs policy on each command, records the session, and
// resolves the backend credential on the plugin's behalf. Its central type
// is Gateway.
//
//	g, err := gateway.New(cfg)
//	err = g.Start(ctx)
//	http.ListenAndServe(adminAddr, g.AdminHandler())
//	err = g.Shutdown(ctx)
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluicegw/sluice/protocol"
)

// Errors callers may branch on.
var (
	// ErrSessionNotFound is returned by Terminate for an id that is not a
	// live session.
	ErrSessionNotFound = errors.New("gateway: no such live session")
	// ErrClosed is returned by Start after Shutdown.
	ErrClosed = errors.New("gateway: shut down")
)

// terminateWait bounds how long Shutdown waits for terminated sessions to
// end; a plugin whose Serve ignores both its cancelled context and its
// closed connection is reported rather than waited for forever.
const terminateWait = 5 * time.Second

// overLimitBacklog bounds, per target, the connections over MaxSessions
// that are handed to the plugin to be refused in the protocol's own words;
// beyond it they are closed at once, so a flood cannot pile up goroutines.
const overLimitBacklog = 64

type gatewayState int

const (
	stateNew gatewayState = iota
	stateStarting
	stateRunning
	stateClosing
)

// Gateway serves the configured targets. Build it with New, run it with
// Start, stop it with Shutdown.
type Gateway struct {
	cfg      Config
	targets  []*target
	metrics  *metrics
	gatherer prometheus.Gatherer
	adminKey []byte      // SHA-256 of the admin token, nil when none
	login    *adminLogin // human sign-in; nil without Config.AdminLogin

	// baseCtx is the parent of every session context, cancelled at the
	// end of Shutdown.
	baseCtx    context.Context
	cancelBase context.CancelFunc
	closing    chan struct{} // closed when Shutdown begins

	mu       sync.Mutex
	state    gatewayState
	sessions map[string]*session

	maskers maskerCache // compiled maskers by mask entries

	loops      sync.WaitGroup // accept loops
	sessWG     sync.WaitGroup // session goroutines
	shutdownMu sync.Mutex     // serializes Shutdown calls
}

// target is one configured target at run time.
type target struct {
	index  int
	cfg    TargetConfig // defaults applied
	plugin protocol.Plugin
	tls    *tls.Config // client-facing; nil when DisableTLS
	ln     net.Listener
	// metrics are the target's per-command series.
	metrics *targetMetrics

	// Guarded by Gateway.mu: sessions counted against MaxSessions, and
	// connections over the limit being refused.
	active, overLimit int
}

// New validates cfg, applies defaults, registers metrics and builds one
// plugin per target through the protocol registry. It binds nothing; call
// Start.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: invalid config:\n%w", err)
	}
	cfg = cfg.withDefaults()
	g := &Gateway{
		cfg:      cfg,
		sessions: map[string]*session{},
		closing:  make(chan struct{}),
	}
	if cfg.AdminTokenSHA256 != "" {
		g.adminKey, _ = parseDigest(cfg.AdminTokenSHA256) // checked by Validate
	}
	if cfg.AdminLogin != nil {
		g.login = newAdminLogin(*cfg.AdminLogin)
	}
	names := make([]string, 0, len(cfg.Targets))
	for i := range cfg.Targets {
		t := &target{index: i, cfg: cfg.Targets[i], tls: cfg.Targets[i].TLS}
		factory, err := protocol.Lookup(t.cfg.Target.Protocol)
		if err != nil {
			return nil, fmt.Errorf("gateway: targets[%d] (%s): %w", i, t.cfg.Target.Name, err)
		}
		if t.plugin, err = factory(&t.cfg.Target); err != nil {
			return nil, fmt.Errorf("gateway: targets[%d] (%s): %w", i, t.cfg.Target.Name, err)
		}
		if t.plugin == nil {
			return nil, fmt.Errorf("gateway: targets[%d] (%s): protocol %q returned no plugin", i, t.cfg.Target.Name, t.cfg.Target.Protocol)
		}
		if t.cfg.DisableTLS && !t.cfg.AllowPlaintextLoopback {
			cfg.Logger.Warn("target has no TLS and does not allow plaintext loopback: no token can be accepted",
				"target", t.cfg.Target.Name)
		}
		g.targets = append(g.targets, t)
		names = append(names, t.cfg.Target.Name)
	}

	reg := cfg.Registerer
	g.gatherer = cfg.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg, g.gatherer = r, r
	} else if g.gatherer == nil {
		g.gatherer, _ = reg.(prometheus.Gatherer)
	}
	m, err := newMetrics(reg, names)
	if err != nil {
		return nil, fmt.Errorf("gateway: registering metrics: %w", err)
	}
	g.metrics = m
	for _, t := range g.targets {
		t.metrics = m.forTarget(t.cfg.Target.Name)
	}
	g.baseCtx, g.cancelBase = context.WithCancel(context.Background())
	return g, nil
}

// Start generates missing TLS material, binds every target's listener and
// serves them in the background. If any bind fails, the listeners already
// bound are closed and Start returns the error. ctx bounds only the
// starting; stop the gateway with Shutdown.
func (g *Gateway) Start(ctx context.Context) error {
	g.mu.Lock()
	switch g.state {
	case stateStarting, stateRunning:
		g.mu.Unlock()
		return errors.New("gateway: already started")
	case stateClosing:
		g.mu.Unlock()
		return ErrClosed
	}
	g.state = stateStarting
	g.mu.Unlock()

	lns := make([]net.Listener, 0, len(g.targets))
	fail := func(err error) error {
		for _, ln := range lns {
			_ = ln.Close()
		}
		g.mu.Lock()
		if g.state == stateStarting {
			g.state = stateNew
		}
		g.mu.Unlock()
		return err
	}

	if err := g.generateTLS(); err != nil {
		return fail(err)
	}
	var lc net.ListenConfig
	for _, t := range g.targets {
		ln, err := lc.Listen(ctx, "tcp", t.cfg.Listen)
		if err != nil {
			return fail(fmt.Errorf("gateway: targets[%d] (%s): %w", t.index, t.cfg.Target.Name, err))
		}
		lns = append(lns, ln)
	}

	g.mu.Lock()
	if g.state != stateStarting { // Shutdown ran meanwhile
		g.mu.Unlock()
		_ = fail(nil)
		return ErrClosed
	}
	for i, t := range g.targets {
		t.ln = lns[i]
	}
	g.state = stateRunning
	g.mu.Unlock()
	for _, t := range g.targets {
		mode := "tls"
		if t.tls == nil {
			mode = "none"
		}
		g.cfg.Logger.Info("target listening", "target", t.cfg.Target.Name, "protocol", t.cfg.Target.Protocol,
			"addr", t.ln.Addr().String(), "client_tls", mode)
		g.loops.Add(1)
		go g.acceptLoop(t)
	}
	return nil
}

// generateTLS fills in the self-signed configuration of targets that have
// neither a TLS configuration nor DisableTLS: one certificate for all of
// them, covering localhost and their listen hosts.
func (g *Gateway) generateTLS() error {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	need := false
	for _, t := range g.targets {
		if t.cfg.TLS != nil || t.cfg.DisableTLS {
			continue
		}
		need = true
		if h, _, err := net.SplitHostPort(t.cfg.Listen); err == nil && h != "" {
			if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
				hosts = append(hosts, h)
			}
		}
	}
	if !need {
		return nil
	}
	if hn, err := os.Hostname(); err == nil && hn != "" {
		hosts = append(hosts, hn)
	}
	slices.Sort(hosts)
	hosts = slices.Compact(hosts)
	cfg, err := SelfSignedTLS(filepath.Join(g.cfg.DataDir, "tls"), hosts)
	if err != nil {
		return err
	}
	for _, t := range g.targets {
		if t.cfg.TLS == nil && !t.cfg.DisableTLS {
			t.tls = cfg
		}
	}
	return nil
}

func (g *Gateway) acceptLoop(t *target) {
	defer g.loops.Done()
	var delay time.Duration
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http
			// does rather than spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			g.cfg.Logger.Warn("accept failed; retrying", "target", t.cfg.Target.Name, "error", err, "retry_in", delay)
			select {
			case <-g.closing:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		g.accept(t, conn)
	}
}

func (g *Gateway) accept(t *target, conn net.Conn) {
	now := time.Now()
	// The handshake deadline: a client that does not authenticate in
	// time is cut off, whatever the plugin does (see also the session's
	// handshake timer).
	_ = conn.SetDeadline(now.Add(t.cfg.HandshakeTimeout))
	s := newSession(g, t, conn, now)

	g.mu.Lock()
	if g.state != stateRunning {
		g.mu.Unlock()
		s.handshakeTimer.Stop()
		s.cancel(nil)
		_ = conn.Close()
		return
	}
	if t.active >= t.cfg.MaxSessions {
		if t.overLimit >= overLimitBacklog {
			// Enough clients are already being told about the limit.
			g.mu.Unlock()
			s.handshakeTimer.Stop()
			s.cancel(nil)
			_ = conn.Close()
			g.cfg.Logger.Warn("session limit reached: connection closed", "target", t.cfg.Target.Name,
				"client_addr", s.clientAddr, "max_sessions", t.cfg.MaxSessions)
			return
		}
		t.overLimit++
		s.overLimit = true
	} else {
		t.active++
		s.counted = true
	}
	g.sessions[s.id] = s
	g.sessWG.Add(1)
	g.mu.Unlock()

	s.log.Debug("connection accepted", "client_addr", s.clientAddr)
	go s.run()
}

// removeSession forgets an ended session.
func (g *Gateway) removeSession(s *session) {
	g.mu.Lock()
	delete(g.sessions, s.id)
	if s.counted {
		s.t.active--
	}
	if s.overLimit {
		s.t.overLimit--
	}
	g.mu.Unlock()
}

func (g *Gateway) isClosing() bool {
	select {
	case <-g.closing:
		return true
	default:
		return false
	}
}

// Addr returns the bound address of the named target's listener, or nil
// when the target is unknown or the gateway is not started.
func (g *Gateway) Addr(target string) net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, t := range g.targets {
		if t.cfg.Target.Name == target && t.ln != nil {
			return t.ln.Addr()
		}
	}
	return nil
}

// Ready reports whether the gateway is serving: started and not shutting
// down.
func (g *Gateway) Ready() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state == stateRunning
}

// SessionView describes a live session for operators (AdminHandler's
// /api/sessions).
type SessionView struct {
	ID         string    `json:"id"`
	Target     string    `json:"target"`
	Protocol   string    `json:"protocol"`
	Subject    string    `json:"subject,omitempty"`
	Groups     []string  `json:"groups,omitempty"`
	ClientAddr string    `json:"client_addr"`
	Start      time.Time `json:"start"`
	// Commands counts the commands checked (allowed or denied).
	Commands uint64 `json:"commands"`
	// State is handshake (not yet authenticated), authenticated (no
	// connect allowed yet), active, or ending (terminated or draining,
	// not yet ended).
	State string `json:"state"`
}

// Sessions lists the live sessions, oldest first, including connections
// still in their handshake.
func (g *Gateway) Sessions() []SessionView {
	live := g.liveSessions()
	out := make([]SessionView, 0, len(live))
	for _, s := range live {
		out = append(out, s.view())
	}
	return out
}

// session returns the live session with the given id, or nil.
func (g *Gateway) session(id string) *session {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sessions[id]
}

// liveSessions returns the live sessions sorted by id (ULIDs sort by
// start time).
func (g *Gateway) liveSessions() []*session {
	g.mu.Lock()
	out := make([]*session, 0, len(g.sessions))
	for _, s := range g.sessions {
		out = append(out, s)
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b *session) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	return out
}

// Terminate ends a live session: its context is cancelled and its client
// connection closed. The recording's end reason is "terminated by admin:
// <reason>". It returns without waiting for the plugin to return;
// ErrSessionNotFound if id is not live.
func (g *Gateway) Terminate(id, reason string) error {
	s := g.session(id)
	if s == nil {
		return fmt.Errorf("%w: %q", ErrSessionNotFound, id)
	}
	r := "terminated by admin"
	if reason != "" {
		r += ": " + reason
	}
	s.log.Info("terminating session", "reason", r)
	s.terminate(r)
	return nil
}

// Shutdown stops accepting connections, asks plugins that implement
// protocol.Drainer to drain each session, and waits until every session
// has ended, or ShutdownGrace has passed, or ctx is done; then it
// terminates the remaining sessions (end reason "gateway shutdown") and
// waits for their goroutines. It returns ctx.Err() if ctx ended the wait,
// and an error if terminated sessions did not end within 5s. It may be
// called more than once.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.shutdownMu.Lock()
	defer g.shutdownMu.Unlock()

	g.mu.Lock()
	if g.state != stateClosing {
		g.state = stateClosing
		close(g.closing)
	}
	for _, t := range g.targets {
		if t.ln != nil {
			_ = t.ln.Close()
		}
	}
	g.mu.Unlock()
	g.loops.Wait() // no session is added after this

	const reason = "gateway shutdown"
	live := g.liveSessions()
	if len(live) > 0 {
		g.cfg.Logger.Info("gateway shutting down: draining sessions", "sessions", len(live), "grace", g.cfg.ShutdownGrace)
	}
	for _, s := range live {
		if d, ok := s.t.plugin.(protocol.Drainer); ok {
			s.setEndReason(reason)
			d.Drain(s, reason)
		}
	}

	done := make(chan struct{})
	go func() { g.sessWG.Wait(); close(done) }()
	grace := time.NewTimer(g.cfg.ShutdownGrace)
	defer grace.Stop()
	var ctxErr error
	select {
	case <-done:
	case <-grace.C:
	case <-ctx.Done():
		ctxErr = ctx.Err()
	}
	if rest := g.liveSessions(); len(rest) > 0 {
		g.cfg.Logger.Info("terminating sessions still open", "sessions", len(rest))
		for _, s := range rest {
			s.terminate(reason)
		}
	}
	wait := time.NewTimer(terminateWait)
	defer wait.Stop()
	select {
	case <-done:
	case <-wait.C:
		return fmt.Errorf("gateway: %d sessions did not end after termination (a plugin ignores its context)", len(g.liveSessions()))
	}
	g.cancelBase()
	g.cfg.Logger.Info("gateway stopped")
	return ctxErr
}
