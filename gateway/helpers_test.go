package gateway

// Test doubles, and why they are doubles: the PostgreSQL plugin and the
// file sink are written in parallel with this package, so the tests drive
// the gateway with a small line protocol ("AUTH token", "CONNECT", "Q sql",
// ...) served over real TCP connections, and record into memory.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/recording"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	goodToken   = "good-token-5f1d0c"
	protoLine   = "linetest"         // line protocol, implements protocol.Drainer
	protoNoDrn  = "linetest-nodrain" // the same without Drainer
	protoFunc   = "functest"         // runs a test's function as Serve
	waitTimeout = 5 * time.Second
)

func init() {
	protocol.Register(protoLine, func(*protocol.Target) (protocol.Plugin, error) {
		return &linePlugin{conns: map[protocol.Session]*lineConn{}}, nil
	})
	protocol.Register(protoNoDrn, func(*protocol.Target) (protocol.Plugin, error) {
		return noDrainPlugin{}, nil
	})
	protocol.Register(protoFunc, func(t *protocol.Target) (protocol.Plugin, error) {
		return funcPlugin{key: t.Options["fn"]}, nil
	})
}

// ---- line protocol plugin ----

type linePlugin struct {
	mu    sync.Mutex
	conns map[protocol.Session]*lineConn
}

func (*linePlugin) Name() string { return protoLine }

func (p *linePlugin) Serve(ctx context.Context, c net.Conn, s protocol.Session) error {
	lc := &lineConn{conn: c}
	p.mu.Lock()
	p.conns[s] = lc
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, s)
		p.mu.Unlock()
	}()
	return serveLines(ctx, lc, s)
}

// Drain ends the session at the next point where no command is in flight.
func (p *linePlugin) Drain(s protocol.Session, _ string) {
	p.mu.Lock()
	lc := p.conns[s]
	p.mu.Unlock()
	if lc == nil {
		return
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.draining = true
	if !lc.busy {
		_ = lc.conn.SetReadDeadline(time.Now()) // wake the idle read
	}
}

type noDrainPlugin struct{}

func (noDrainPlugin) Name() string { return protoNoDrn }
func (noDrainPlugin) Serve(ctx context.Context, c net.Conn, s protocol.Session) error {
	return serveLines(ctx, &lineConn{conn: c}, s)
}

type lineConn struct {
	mu             sync.Mutex
	conn           net.Conn
	busy, draining bool
}

// idle marks the connection idle and reports whether it is draining.
func (lc *lineConn) setBusy(b bool) (draining bool) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.busy = b
	return lc.draining
}

func (lc *lineConn) write(format string, args ...any) {
	lc.mu.Lock()
	c := lc.conn
	lc.mu.Unlock()
	_, _ = fmt.Fprintf(c, format+"\n", args...)
}

func serveLines(ctx context.Context, lc *lineConn, s protocol.Session) error {
	r := bufio.NewReader(lc.conn)
	var tlsState *tls.ConnectionState
	reply := func(d protocol.Decision, err error) bool {
		switch {
		case err != nil:
			lc.write("ERR %v", err)
		case !d.Allowed():
			lc.write("DENIED %s", d.Message)
		default:
			return true
		}
		return false
	}
	for {
		if lc.setBusy(false) {
			lc.write("BYE draining")
			return nil
		}
		line, err := r.ReadString('\n')
		if err != nil {
			if lc.setBusy(true) {
				lc.write("BYE draining")
				return nil
			}
			return err
		}
		lc.setBusy(true)
		verb, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		switch verb {
		case "STARTTLS":
			cfg := s.TLSConfig()
			if cfg == nil {
				lc.write("ERR no tls")
				continue
			}
			lc.write("OK")
			tc := tls.Server(lc.conn, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				return err
			}
			st := tc.ConnectionState()
			tlsState = &st
			lc.mu.Lock()
			lc.conn = tc
			lc.mu.Unlock()
			r = bufio.NewReader(tc)
		case "AUTH":
			id, err := s.Authenticate(ctx, identity.Credentials{Token: arg, TLS: tlsState})
			if err != nil {
				lc.write("ERR %v", err)
				return err
			}
			lc.write("OK %s", id.Subject)
		case "CONNECT":
			d, err := s.Check(ctx, &protocol.Command{Protocol: protoLine, Kind: protocol.KindConnect, Text: "connect"})
			if reply(d, err) {
				lc.write("OK %d", d.Seq)
			}
		case "CRED":
			c, err := s.Credential(ctx)
			if err != nil {
				lc.write("ERR %v", err)
				continue
			}
			lc.write("OK %s", c.Username)
		case "Q":
			d, err := s.Check(ctx, &protocol.Command{Protocol: protoLine, Kind: protocol.KindQuery, Text: arg})
			if !reply(d, err) {
				continue
			}
			err = s.Record(ctx, protocol.Event{Type: protocol.EventResult, CommandSeq: d.Seq, Result: &protocol.Result{
				Tag: "SELECT 1", Rows: 1, Bytes: int64(len(arg)), Duration: time.Millisecond,
			}})
			if err != nil {
				lc.write("ERR %v", err)
				continue
			}
			lc.write("OK %d", d.Seq)
		case "SLEEP":
			dur, _ := time.ParseDuration(arg)
			time.Sleep(dur)
			lc.write("OK slept")
		case "QUIT":
			lc.write("BYE")
			return nil
		default:
			lc.write("ERR unknown verb %q", verb)
		}
	}
}

// ---- a plugin that runs a test's function ----

type serveFunc func(ctx context.Context, c net.Conn, s protocol.Session) error

var serveFuncs sync.Map // key -> serveFunc

type funcPlugin struct{ key string }

func (funcPlugin) Name() string { return protoFunc }
func (p funcPlugin) Serve(ctx context.Context, c net.Conn, s protocol.Session) error {
	f, ok := serveFuncs.Load(p.key)
	if !ok {
		return fmt.Errorf("no serve func %q", p.key)
	}
	return f.(serveFunc)(ctx, c, s)
}

// ---- in-memory recording sink ----

type memSink struct {
	mu       sync.Mutex
	recs     []*memRec
	openErr  error
	writeErr func(e *recording.Entry) error
}

func (m *memSink) Open(_ context.Context, info protocol.SessionInfo) (recording.Recorder, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.openErr != nil {
		return nil, m.openErr
	}
	r := &memRec{sink: m, info: info}
	m.recs = append(m.recs, r)
	return r, nil
}

func (m *memSink) setWriteErr(f func(e *recording.Entry) error) {
	m.mu.Lock()
	m.writeErr = f
	m.mu.Unlock()
}

func (m *memSink) setOpenErr(err error) {
	m.mu.Lock()
	m.openErr = err
	m.mu.Unlock()
}

func (m *memSink) rec(id string) *memRec {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.recs {
		if r.info.ID == id {
			return r
		}
	}
	return nil
}

func (m *memSink) all() []*memRec {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*memRec(nil), m.recs...)
}

// closed waits until the session's recording is closed and returns its
// entries.
func (m *memSink) closed(t *testing.T, id string) []recording.Entry {
	t.Helper()
	var out []recording.Entry
	require.Eventually(t, func() bool {
		r := m.rec(id)
		if r == nil {
			return false
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		out = append([]recording.Entry(nil), r.entries...)
		return r.closes > 0
	}, waitTimeout, 5*time.Millisecond, "recording of session %s not closed", id)
	return out
}

type memRec struct {
	sink    *memSink
	info    protocol.SessionInfo
	mu      sync.Mutex
	entries []recording.Entry
	closes  int
}

func (r *memRec) Write(e *recording.Entry) error {
	r.sink.mu.Lock()
	f := r.sink.writeErr
	r.sink.mu.Unlock()
	if f != nil {
		if err := f(e); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closes > 0 {
		return errors.New("write after close")
	}
	r.entries = append(r.entries, *e)
	return nil
}

func (r *memRec) Close() error {
	r.mu.Lock()
	r.closes++
	r.mu.Unlock()
	return nil
}

func (r *memRec) snapshot() []recording.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recording.Entry(nil), r.entries...)
}

// ---- the test environment ----

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type env struct {
	g      *Gateway
	sink   *memSink
	logs   *syncBuffer
	decide atomic.Pointer[func(*policy.Input) (protocol.Decision, error)]
}

func (e *env) setDecider(f func(*policy.Input) (protocol.Decision, error)) { e.decide.Store(&f) }

// baseConfig is one plaintext-loopback target of the given protocol.
func baseConfig(t *testing.T, e *env, proto string) Config {
	auth, err := identity.NewStaticTokens([]identity.StaticToken{{
		SHA256: identity.HashToken(goodToken), Subject: "alice", Groups: []string{"agents"},
	}})
	require.NoError(t, err)
	return Config{
		DataDir: t.TempDir(),
		Targets: []TargetConfig{{
			Target: protocol.Target{
				Name: "t1", Protocol: proto, Address: "backend.invalid:5432",
				Labels: map[string]string{"env": "test"}, Options: map[string]string{"fn": t.Name()},
			},
			Listen:                 "127.0.0.1:0",
			Credential:             credstore.Ref{Username: "app", Password: "inline:backend-pw"},
			DisableTLS:             true,
			AllowPlaintextLoopback: true,
		}},
		Authenticator: auth,
		Decider: policy.DeciderFunc(func(_ context.Context, in *policy.Input) (protocol.Decision, error) {
			if f := e.decide.Load(); f != nil {
				return (*f)(in)
			}
			return protocol.Decision{Action: protocol.Allow, Rules: []string{"allow-all"}}, nil
		}),
		Credentials:   credstore.Default{AllowInline: true},
		Recording:     e.sink,
		Logger:        slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ShutdownGrace: 2 * time.Second,
	}
}

// newEnv builds and starts a gateway; mutate adjusts the config first.
// The gateway is shut down when the test ends.
func newEnv(t *testing.T, proto string, mutate func(*Config)) *env {
	t.Helper()
	e := &env{sink: &memSink{}, logs: &syncBuffer{}}
	cfg := baseConfig(t, e, proto)
	if mutate != nil {
		mutate(&cfg)
	}
	g, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, g.Start(context.Background()))
	e.g = g
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	return e
}

// serveWith makes the functest plugin run f for this test's target.
func serveWith(t *testing.T, f serveFunc) {
	serveFuncs.Store(t.Name(), f)
	t.Cleanup(func() { serveFuncs.Delete(t.Name()) })
}

// ---- a line-protocol client ----

type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr net.Addr) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), waitTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

// send writes a line and returns the reply line.
func (c *client) send(line string) string {
	c.t.Helper()
	_ = c.conn.SetDeadline(time.Now().Add(waitTimeout))
	_, err := fmt.Fprintf(c.conn, "%s\n", line)
	require.NoError(c.t, err)
	return c.read()
}

func (c *client) read() string {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	s, err := c.r.ReadString('\n')
	require.NoError(c.t, err, "reading a reply")
	return strings.TrimRight(s, "\n")
}

// expectClosed asserts that the server closes the connection.
func (c *client) expectClosed() {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	b, err := c.r.ReadString('\n')
	require.Error(c.t, err, "connection still open; read %q", b)
	var ne net.Error
	require.False(c.t, errors.As(err, &ne) && ne.Timeout(), "timed out waiting for the server to close: %v", err)
}

// startTLS upgrades the client connection (the test trusts any server
// certificate).
func (c *client) startTLS() *tls.ConnectionState {
	c.t.Helper()
	require.Equal(c.t, "OK", c.send("STARTTLS"))
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test against a self-signed server
	require.NoError(c.t, tc.Handshake())
	c.conn, c.r = tc, bufio.NewReader(tc)
	st := tc.ConnectionState()
	return &st
}

// connected dials and authenticates and connects, returning the client
// and its session id.
func (e *env) connected(t *testing.T) (*client, string) {
	t.Helper()
	c := dial(t, e.g.Addr("t1"))
	require.Equal(t, "OK alice", c.send("AUTH "+goodToken))
	require.Regexp(t, `^OK \d+$`, c.send("CONNECT"))
	return c, e.onlySessionID(t)
}

// onlySessionID returns the id of the single live authenticated session.
func (e *env) onlySessionID(t *testing.T) string {
	t.Helper()
	var id string
	for _, v := range e.g.Sessions() {
		if v.State != "handshake" {
			require.Empty(t, id, "more than one session")
			id = v.ID
		}
	}
	require.NotEmpty(t, id, "no authenticated session")
	return id
}

func (e *env) waitNoSessions(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool { return len(e.g.Sessions()) == 0 }, waitTimeout, 5*time.Millisecond)
}

// metricValue reads a counter or gauge.
func metricValue(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// seriesCount counts the series a collector has.
func seriesCount(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}
