package postgres

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// SQLSTATE codes the plugin answers with (PostgreSQL Appendix A).
const (
	codeInsufficientPrivilege = "42501"
	codeInvalidPassword       = "28P01"
	codeInvalidAuthorization  = "28000"
	codeProtocolViolation     = "08P01"
	codeConnectionFailure     = "08006"
	codeCannotConnect         = "08001"
	codeAdminShutdown         = "57P01"
	codeSystemError           = "58000"
	codeFeatureNotSupported   = "0A000"
)

// startupParamsNotForwarded are startup parameters the gateway decides
// itself rather than passing to the backend.
var startupParamsNotForwarded = map[string]bool{"user": true, "database": true, "replication": true}

// Serve implements protocol.Plugin.
func (p *Plugin) Serve(ctx context.Context, client net.Conn, s protocol.Session) error {
	conn := client
	var tlsState *tls.ConnectionState
	var startup *pgproto3.StartupMessage
	for startup == nil {
		msg, err := readStartupPacket(conn)
		if err != nil {
			return fmt.Errorf("postgres: startup: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			cfg := s.TLSConfig()
			if cfg == nil || tlsState != nil {
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return err
				}
				continue
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return err
			}
			tc := tls.Server(conn, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				return fmt.Errorf("postgres: client TLS handshake: %w", err)
			}
			st := tc.ConnectionState()
			tlsState, conn = &st, tc
		case *pgproto3.GSSEncRequest:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return err
			}
		case *pgproto3.CancelRequest:
			return p.handleCancel(ctx, s, m)
		case *pgproto3.StartupMessage:
			startup = m
		}
	}

	fe := newWriter(conn)
	fatal := func(code, msg string) error {
		_ = fe.msg(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
		_ = fe.flush()
		return errors.New(msg)
	}
	if _, ok := startup.Parameters["replication"]; ok {
		return fatal(codeFeatureNotSupported, "sluice: replication connections are not supported")
	}
	// A client asking for protocol 3.2 or for protocol extensions
	// (_pq_.*) is told what this relay speaks, as PostgreSQL does with
	// NegotiateProtocolVersion.
	var unrecognized []string
	for k := range startup.Parameters {
		if strings.HasPrefix(k, "_pq_.") {
			unrecognized = append(unrecognized, k)
		}
	}
	if startup.ProtocolVersion != pgproto3.ProtocolVersion30 || len(unrecognized) > 0 {
		sort.Strings(unrecognized)
		_ = fe.msg(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unrecognized})
	}

	// Ask for the token as a cleartext password (PostgreSQL docs,
	// "AuthenticationCleartextPassword") only on a connection the gateway
	// accepts a secret over: a client that did not negotiate TLS is
	// refused before its token crosses the network.
	if err := s.CheckTransport(tlsState); err != nil {
		return fatal(codeInvalidAuthorization, clientText(err.Error()))
	}
	authFailed := func(err error) error {
		code := codeInvalidPassword
		if !errors.Is(err, identity.ErrUnauthenticated) {
			code = codeCannotConnect // a session limit, a shutdown, no recorder
		}
		return fatal(code, clientText(err.Error()))
	}
	// A client certificate (verified by the TLS handshake against the
	// configured client CAs) may prove the identity on its own, as
	// PostgreSQL's cert authentication does; if it does not, the client is
	// asked for a token as usual.
	var id *identity.Identity
	if tlsState != nil && len(tlsState.PeerCertificates) > 0 {
		var err error
		id, err = s.Authenticate(ctx, identity.Credentials{TLS: tlsState})
		if err != nil && !errors.Is(err, identity.ErrUnauthenticated) {
			return authFailed(err)
		}
	}
	fr := newFrameReader(conn, maxStartupPacket)
	if id == nil {
		_ = fe.msg(&pgproto3.AuthenticationCleartextPassword{})
		if err := fe.flush(); err != nil {
			return err
		}
		typ, body, err := fr.next()
		if err != nil {
			return fmt.Errorf("postgres: reading password: %w", err)
		}
		if typ != 'p' {
			return fatal(codeProtocolViolation, fmt.Sprintf("sluice: expected a password message, got %q", typ))
		}
		var pw pgproto3.PasswordMessage
		if err := pw.Decode(body); err != nil {
			return fatal(codeProtocolViolation, "sluice: malformed password message")
		}
		id, err = s.Authenticate(ctx, identity.Credentials{Token: pw.Password, TLS: tlsState})
		pw.Password = ""
		clear(body)
		if err != nil {
			return authFailed(err)
		}
	}

	database := p.target.Options[OptDatabase]
	if database == "" {
		database = startup.Parameters["database"]
	}
	attrs := map[string]string{"database": database}
	if u := startup.Parameters["user"]; u != "" {
		attrs["client_user"] = u
	}
	if a := startup.Parameters["application_name"]; a != "" {
		attrs["application_name"] = a
	}
	dec, err := s.Check(ctx, &protocol.Command{
		Protocol: Name,
		Kind:     protocol.KindConnect,
		Text:     fmt.Sprintf("connect %s to database %s", id.Subject, database),
		Attrs:    attrs,
	})
	if err != nil {
		return fatal(codeSystemError, clientText(err.Error()))
	}
	if !dec.Allowed() {
		return fatal(codeInvalidAuthorization, denialMessage(dec))
	}

	cred, err := s.Credential(ctx)
	if err != nil {
		return fatal(codeCannotConnect, "sluice: the backend credential is unavailable")
	}
	params := map[string]string{}
	for k, v := range startup.Parameters {
		if !startupParamsNotForwarded[k] && !strings.HasPrefix(k, "_pq_.") {
			params[k] = v
		}
	}
	hj, err := p.connectBackend(ctx, s, cred, database, params)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && !strings.HasPrefix(pgErr.Code, "28") {
			// The backend's own refusal (an unknown database, a bad
			// parameter) is safe and useful to show.
			return fatal(pgErr.Code, pgErr.Message)
		}
		return fatal(codeCannotConnect, fmt.Sprintf("sluice: cannot connect to the backend of target %s", p.target.Name))
	}
	if hj.Frontend.ReadBufferLen() != 0 {
		hj.Conn.Close()
		return fatal(codeProtocolViolation, "sluice: backend sent data before the session started")
	}

	keyID, keySecret := p.cancels.register(p.backendNetwork(), p.backendAddr(), hj.PID, hj.SecretKey)
	defer p.cancels.unregister(keyID)

	_ = fe.msg(&pgproto3.AuthenticationOk{})
	names := make([]string, 0, len(hj.ParameterStatuses))
	for k := range hj.ParameterStatuses {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		_ = fe.msg(&pgproto3.ParameterStatus{Name: k, Value: hj.ParameterStatuses[k]})
	}
	_ = fe.msg(&pgproto3.BackendKeyData{ProcessID: keyID, SecretKey: keySecret[:]})
	_ = fe.msg(&pgproto3.ReadyForQuery{TxStatus: hj.TxStatus})
	if err := fe.flush(); err != nil {
		hj.Conn.Close()
		return err
	}

	r := newRelay(p, s, conn, fe, fr, hj)
	r.database = database
	if _, ok := params["search_path"]; ok {
		r.searchPathChanged.Store(true)
	} else if _, ok := params["options"]; ok {
		r.searchPathChanged.Store(true) // may say -c search_path=...
	}
	p.cancels.attach(keyID, r)
	p.conns.Add(s, r)
	defer p.conns.Remove(s)
	return r.run(ctx)
}

// backendConfig is the pgconn configuration for logging in to the backend
// as the gateway's credential.
func (p *Plugin) backendConfig(cred credstore.Credential, database string) (*pgconn.Config, error) {
	conninfo := fmt.Sprintf("host=%s port=%s sslmode=%s", quoteConnValue(p.host), quoteConnValue(p.port), quoteConnValue(p.sslmode()))
	if rc := p.target.Options[OptSSLRootCert]; rc != "" {
		conninfo += " sslrootcert=" + quoteConnValue(rc)
	}
	cfg, err := pgconn.ParseConfig(conninfo)
	if err != nil {
		return nil, fmt.Errorf("postgres: backend config: %w", err)
	}
	cfg.User = cred.Username
	cfg.Password = cred.Password.Reveal()
	cfg.Database = database
	return cfg, nil
}

// connectBackend opens and authenticates the backend connection with the
// gateway's credential, then takes the raw connection over from pgconn.
// Errors never contain the password.
func (p *Plugin) connectBackend(ctx context.Context, s protocol.Session, cred credstore.Credential, database string, params map[string]string) (*pgconn.HijackedConn, error) {
	limits := s.Limits()
	cfg, err := p.backendConfig(cred, database)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams = params
	cfg.AfterNetConnect = func(_ context.Context, _ *pgconn.Config, c net.Conn) (net.Conn, error) {
		return &handoverConn{Conn: c}, nil
	}
	if limits.ConnectTimeout > 0 {
		cfg.ConnectTimeout = limits.ConnectTimeout
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limits.ConnectTimeout)
		defer cancel()
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		s.Logger().Warn("backend connection failed", "error", redact(err.Error(), cred.Password.Reveal()))
		return nil, err
	}
	hj, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return nil, fmt.Errorf("postgres: taking over the backend connection: %w", err)
	}
	if h, ok := hj.Conn.(*handoverConn); ok {
		kept, err := h.detach()
		if err != nil {
			h.Conn.Close()
			return nil, err
		}
		hj.Conn = h.Conn
		if len(kept) > 0 {
			hj.Conn = &prefixConn{Conn: h.Conn, prefix: kept}
		}
	}
	return hj, nil
}

// backendNetwork and backendAddr say where the backend listens: a TCP
// host:port, or, when the target's host is a directory (as libpq reads
// host=/var/run/postgresql), the Unix socket .s.PGSQL.<port> in it.
func (p *Plugin) backendNetwork() string {
	if strings.HasPrefix(p.host, "/") {
		return "unix"
	}
	return "tcp"
}

func (p *Plugin) backendAddr() string {
	if strings.HasPrefix(p.host, "/") {
		return filepath.Join(p.host, ".s.PGSQL."+p.port)
	}
	return net.JoinHostPort(p.host, p.port)
}

func (p *Plugin) sslmode() string {
	if m := p.target.Options[OptSSLMode]; m != "" {
		return m
	}
	return "prefer"
}

// handleCancel forwards a client's CancelRequest carrying a key this
// gateway handed out. Like PostgreSQL, it answers nothing either way.
func (p *Plugin) handleCancel(ctx context.Context, s protocol.Session, m *pgproto3.CancelRequest) error {
	k, r := p.cancels.lookup(m.ProcessID, m.SecretKey)
	if k == nil {
		s.Logger().Info("cancel request with an unknown key ignored")
		return nil
	}
	if r != nil && r.withdraw() {
		s.Logger().Info("cancel request withdrew a command waiting in the gateway")
	}
	if err := k.forward(ctx); err != nil {
		s.Logger().Warn("forwarding cancel request failed", "error", err)
		return nil
	}
	s.Logger().Info("cancel request forwarded to the backend")
	return nil
}

// quoteConnValue quotes a libpq keyword/value connection string value.
func quoteConnValue(v string) string {
	if v != "" && !strings.ContainsAny(v, ` '\`) {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// redact removes a secret from a string meant for a log.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[redacted]")
}

// clientText prefixes a message for the client with "sluice: " unless the
// gateway already did.
func clientText(msg string) string {
	if strings.HasPrefix(msg, "sluice: ") {
		return msg
	}
	return "sluice: " + msg
}

// denialMessage is the text a client reads for a denied command: the
// decision's message and the rules that decided it.
func denialMessage(d protocol.Decision) string {
	msg := d.Message
	if msg == "" {
		msg = "command denied by policy"
	}
	msg = clientText(msg)
	if len(d.Rules) > 0 && !strings.Contains(msg, "(rule ") {
		msg += fmt.Sprintf(" (rule %s)", strings.Join(d.Rules, ", "))
	}
	return msg
}
