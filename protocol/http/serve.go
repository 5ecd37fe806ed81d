package http

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	nethttp "net/http"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// readHeaderTimeout bounds reading one request's header.
const readHeaderTimeout = 30 * time.Second

// closeGrace bounds a graceful close (HTTP/2 GOAWAY, waiting for the
// streams in flight) before the connection is closed under them.
const closeGrace = 5 * time.Second

// Serve implements protocol.Plugin: it serves HTTP on the client
// connection until the client closes it, it idles out, or the session
// ends.
func (p *Plugin) Serve(ctx context.Context, client net.Conn, s protocol.Session) error {
	conn, state, err := p.handshake(ctx, client, s)
	if err != nil || conn == nil {
		return err
	}
	c := &clientConn{
		p:       p,
		s:       s,
		id:      s.Info().ID,
		log:     s.Logger(),
		conn:    conn,
		tls:     state,
		limits:  s.Limits(),
		gone:    make(chan struct{}),
		started: time.Now(),
	}
	c.transport, c.direct = p.newTransport(c.limits)
	c.srv = c.newServer(ctx)
	p.conns.Add(s, c)
	defer p.conns.Remove(s)
	return c.serve(ctx)
}

// handshake looks at the first byte the client sends: a TLS handshake is
// answered with the target's TLS configuration (ALPN h2 and http/1.1); a
// plaintext request is served as such when the target has no TLS or
// allows plaintext from this client, and otherwise told to use https. It
// returns a nil conn when the connection is done.
func (p *Plugin) handshake(ctx context.Context, client net.Conn, s protocol.Session) (net.Conn, *tls.ConnectionState, error) {
	br := bufio.NewReaderSize(client, 16)
	first, err := br.Peek(1)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("http: reading the first byte: %w", err)
	}
	conn := &peekedConn{Conn: client, r: br}
	cfg := s.TLSConfig()
	const tlsHandshakeRecord = 0x16 // RFC 8446, 5.1: ContentType handshake
	if first[0] != tlsHandshakeRecord {
		if cfg != nil && s.CheckTransport(nil) != nil {
			// As net/http answers plain HTTP on a TLS port.
			_, _ = io.WriteString(client, "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"+
				"sluice: this target speaks HTTPS; send the request with https://\n")
			return nil, nil, errors.New("http: plaintext request to a TLS target")
		}
		return conn, nil, nil
	}
	if cfg == nil {
		return nil, nil, errors.New("http: the client started TLS but the target has no TLS configured")
	}
	cfg = cfg.Clone()
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	tc := tls.Server(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, nil, fmt.Errorf("http: client TLS handshake: %w", err)
	}
	st := tc.ConnectionState()
	return tc, &st, nil
}

// peekedConn is a connection whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// clientConn is one client connection: one session, served by its own
// http.Server over a listener that yields just this connection.
type clientConn struct {
	p         *Plugin
	s         protocol.Session
	id        string // the session's
	log       *slog.Logger
	conn      net.Conn
	tls       *tls.ConnectionState
	limits    protocol.Limits
	transport *nethttp.Transport
	direct    *directPool // GET and HEAD to a plain-HTTP/1.1 backend; nil otherwise
	srv       *nethttp.Server
	started   time.Time

	authMu    sync.Mutex
	authed    bool     // the connect was allowed
	refused   string   // why every request is refused; the connection closes
	tokenHash [32]byte // SHA-256 of the token the session was opened with

	mu       sync.Mutex
	closing  bool           // no handler may start
	handlers sync.WaitGroup // handlers, and goroutines closing the connection
	gone     chan struct{}  // closed when the connection is closed or hijacked
	goneOnce sync.Once
}

// newServer is the connection's HTTP server: HTTP/1.1, and HTTP/2 over
// TLS (ALPN) or, on a plaintext connection, with prior knowledge.
func (c *clientConn) newServer(ctx context.Context) *nethttp.Server {
	protos := new(nethttp.Protocols)
	protos.SetHTTP1(true)
	if c.tls != nil {
		protos.SetHTTP2(true)
	} else {
		protos.SetUnencryptedHTTP2(true)
	}
	return &nethttp.Server{
		Handler: c,
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(ctx, sessionKey{}, c.s)
		},
		ConnState:         c.connState,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       c.p.opts.idleTimeout,
		MaxHeaderBytes:    1 << 20,
		Protocols:         protos,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
	}
}

func (c *clientConn) serve(ctx context.Context) error {
	ln := &connListener{conn: c.conn, done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() { errc <- c.srv.Serve(ln) }()
	var err error
	select {
	case <-c.gone:
		_ = ln.Close()
		<-errc
	case err = <-errc:
		if !errors.Is(err, nethttp.ErrServerClosed) {
			_ = c.conn.Close() // the server could not start
			break
		}
		// A graceful close (closeSoon, drain): the connection ends when
		// its responses are sent.
		select {
		case <-c.gone:
		case <-ctx.Done():
			err = context.Cause(ctx)
			_ = c.srv.Close()
			_ = c.conn.Close()
		}
	case <-ctx.Done():
		err = context.Cause(ctx)
		_ = c.srv.Close()
		_ = c.conn.Close()
		<-errc
	}
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.handlers.Wait()
	c.transport.CloseIdleConnections()
	if c.direct != nil {
		c.direct.close()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, nethttp.ErrServerClosed) {
		err = nil // ended by the gateway, which knows why
	}
	return err
}

func (c *clientConn) connState(_ net.Conn, st nethttp.ConnState) {
	if st == nethttp.StateClosed || st == nethttp.StateHijacked {
		c.goneOnce.Do(func() { close(c.gone) })
	}
}

// enter registers a handler; false when the connection is closing.
func (c *clientConn) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.handlers.Add(1)
	return true
}

// closeSoon closes the connection once the responses in flight are sent:
// HTTP/1.1 by "Connection: close" on the response being written, HTTP/2
// by a graceful shutdown (GOAWAY).
func (c *clientConn) closeSoon(w nethttp.ResponseWriter, r *nethttp.Request) {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
		return
	}
	if !c.enter() {
		return
	}
	go func() {
		defer c.handlers.Done()
		ctx, cancel := context.WithTimeout(context.Background(), closeGrace)
		defer cancel()
		if err := c.srv.Shutdown(ctx); err != nil {
			_ = c.srv.Close()
		}
	}()
}

// drain ends the connection gracefully for a gateway shutdown.
func (c *clientConn) drain(reason string) {
	c.log.Info("draining the connection", "reason", reason)
	c.srv.SetKeepAlivesEnabled(false)
	if !c.enter() {
		return
	}
	go func() {
		defer c.handlers.Done()
		ctx, cancel := context.WithTimeout(context.Background(), closeGrace)
		defer cancel()
		if err := c.srv.Shutdown(ctx); err != nil {
			_ = c.srv.Close()
		}
	}()
}

// ServeHTTP implements http.Handler for the connection's requests.
func (c *clientConn) ServeHTTP(w nethttp.ResponseWriter, r *nethttp.Request) {
	if !c.enter() {
		return
	}
	defer c.handlers.Done()
	if !c.authorize(w, r) {
		return
	}
	(&exchange{c: c, w: w, r: r}).serve()
}

// Messages for callers.
const (
	msgNoToken      = "sluice: send the token as \"Authorization: Bearer <token>\""
	msgOtherToken   = "sluice: this connection is authenticated with another token; open a new connection to use this one"
	msgNotBearer    = "sluice: the Authorization header must be \"Bearer <token>\""
	msgConnRefused  = "sluice: this connection was refused; open a new one"
	msgConnectCheck = "sluice: the session could not be opened"
)

// authorize authenticates the request's caller: the first request opens
// the session (Authenticate, then the connect check); every later one
// must carry the same token.
func (c *clientConn) authorize(w nethttp.ResponseWriter, r *nethttp.Request) bool {
	tok, present, ok := bearerToken(r.Header)
	sum := sha256.Sum256([]byte(tok))
	c.authMu.Lock()
	defer c.authMu.Unlock()
	switch {
	case c.refused != "":
		c.closeSoon(w, r)
		writeProblem(w, nethttp.StatusUnauthorized, problem{Type: problemUnauthenticated, Detail: msgConnRefused})
		return false
	case c.authed:
		if subtle.ConstantTimeCompare(sum[:], c.tokenHash[:]) == 1 && ok {
			return true
		}
		if !present {
			c.unauthorized(w, r, msgNoToken, false, false)
			return false
		}
		c.log.Warn("a request carried another token than the session's; closing the connection")
		c.unauthorized(w, r, msgOtherToken, true, true)
		return false
	case !ok:
		c.unauthorized(w, r, msgNotBearer, true, false)
		return false
	case !present && (c.tls == nil || len(c.tls.PeerCertificates) == 0):
		// Many clients send a first request without credentials and
		// retry after the 401: keep the connection for the retry.
		c.unauthorized(w, r, msgNoToken, false, false)
		return false
	}

	id, err := c.s.Authenticate(r.Context(), identity.Credentials{Token: tok, TLS: c.tls})
	if err != nil {
		c.refused = err.Error()
		if errors.Is(err, identity.ErrUnauthenticated) {
			c.unauthorized(w, r, clientText(err.Error()), present, true)
		} else {
			c.closeSoon(w, r)
			writeProblem(w, nethttp.StatusServiceUnavailable, problem{Type: problemUnavailable, Detail: clientText(err.Error())})
		}
		return false
	}
	alpn := "http/1.1"
	if r.ProtoMajor == 2 {
		alpn = "h2"
	}
	attrs := map[string]string{"proto": alpn, "tls": "false"}
	if c.tls != nil {
		attrs["tls"] = tls.VersionName(c.tls.Version)
	}
	d, err := c.s.Check(r.Context(), &protocol.Command{
		Protocol: Name,
		Kind:     protocol.KindConnect,
		Text:     fmt.Sprintf("connect %s to %s", id.Subject, c.p.opts.base.Redacted()),
		Attrs:    attrs,
	})
	switch {
	case err != nil:
		c.refused = err.Error()
		c.closeSoon(w, r)
		writeProblem(w, statusForCheckError(err), problem{Type: problemUnavailable, Detail: clientText(err.Error())})
		return false
	case !d.Allowed():
		c.refused = msgConnectCheck
		c.closeSoon(w, r)
		writeProblem(w, nethttp.StatusForbidden, deniedProblem(d))
		return false
	}
	c.tokenHash, c.authed = sum, true
	return true
}

// unauthorized answers 401 with a Bearer challenge (RFC 6750, 3) and a
// problem body.
func (c *clientConn) unauthorized(w nethttp.ResponseWriter, r *nethttp.Request, msg string, invalidToken, closeConn bool) {
	ch := `Bearer realm="sluice"`
	if invalidToken {
		ch += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", ch)
	if closeConn {
		c.closeSoon(w, r)
	}
	writeProblem(w, nethttp.StatusUnauthorized, problem{Type: problemUnauthenticated, Detail: msg})
}

// bearerToken returns the bearer token of the request; present is false
// when there is no Authorization header at all, and ok false when there is
// one that is not a single well-formed bearer token.
func bearerToken(h nethttp.Header) (tok string, present, ok bool) {
	vs := h.Values("Authorization")
	switch len(vs) {
	case 0:
		return "", false, true
	case 1:
	default:
		return "", true, false
	}
	scheme, rest, found := strings.Cut(vs[0], " ")
	rest = strings.TrimSpace(rest)
	if !found || !strings.EqualFold(scheme, "Bearer") || rest == "" || strings.ContainsAny(rest, " \t") {
		return "", true, false
	}
	return rest, true, true
}

// connListener yields one connection, then blocks until closed.
type connListener struct {
	conn net.Conn
	once sync.Once
	done chan struct{}
	used bool
	mu   sync.Mutex
}

func (l *connListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.used {
		l.used = true
		l.mu.Unlock()
		return l.conn, nil
	}
	l.mu.Unlock()
	<-l.done
	return nil, net.ErrClosed
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.conn.LocalAddr() }
