package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/approval/notify"
	"github.com/sluicegw/sluice/approval/pgstore"
	"github.com/sluicegw/sluice/approval/sqlitestore"
	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/credstore/vault"
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/identity/mtls"
	"github.com/sluicegw/sluice/identity/oidc"
	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	_ "github.com/sluicegw/sluice/protocol/http"     // registers "http"
	_ "github.com/sluicegw/sluice/protocol/http/mcp" // the http targets' mcp: true
	_ "github.com/sluicegw/sluice/protocol/postgres" // registers "postgres"
	"github.com/sluicegw/sluice/recording"
)

// shutdownSlack is how long past the grace period a shutdown may take: the
// gateway waits up to 5s for terminated sessions to end.
const shutdownSlack = 10 * time.Second

func (c *cli) serve(ctx context.Context, args []string) error {
	fs := c.newFlags("serve", "serve [--config FILE]")
	configPath := fs.String("config", "", "configuration `FILE` (YAML); without it, run the embedded demo")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("serve takes no arguments (did you mean --config %s?)", pos[0])
	}

	var (
		cfg  *Config
		demo *demoResult
	)
	if *configPath != "" {
		if cfg, err = LoadConfig(*configPath); err != nil {
			return err
		}
	} else {
		if cfg, demo, err = demoConfig(ctx); err != nil {
			return err
		}
	}

	logger, err := newLogger(cfg.Log, c.stderr)
	if err != nil {
		return err
	}
	srv, err := newServer(cfg, logger)
	if err != nil {
		return err
	}
	if err := srv.start(ctx); err != nil {
		srv.closeApprovals()
		return err
	}
	if demo != nil {
		srv.printDemo(c.stdout, demo)
	}
	return srv.wait(ctx)
}

// demoConfig loads the embedded configuration and prepares the demo
// database it points at.
func demoConfig(ctx context.Context) (*Config, *demoResult, error) {
	cfg, err := ParseConfig(exampleConfig, exampleConfigName)
	if err != nil {
		return nil, nil, err
	}
	setup := demoSetup{
		AdminConn: defaultDemoPG,
		Role:      demoRole,
		Database:  demoDatabase,
		Dir:       filepath.Join(cfg.DataDir, "demo"),
	}
	if v := os.Getenv("SLUICE_DEMO_PG"); v != "" {
		setup.AdminConn = v
	}
	res, err := prepareDemo(ctx, cfg, setup, os.Getenv("SLUICE_DEMO_LISTEN"))
	if err != nil {
		return nil, nil, err
	}
	return cfg, res, nil
}

// prepareDemo bootstraps the demo database and points cfg at it.
func prepareDemo(ctx context.Context, cfg *Config, setup demoSetup, listen string) (*demoResult, error) {
	res, err := bootstrapDemo(ctx, setup)
	if err != nil {
		return nil, err
	}
	res.PolicyFile = filepath.Join(cfg.DataDir, demoPolicyFile)
	if err := writeDemoPolicy(res.PolicyFile); err != nil {
		return nil, err
	}
	if err := applyDemo(cfg, setup, res, listen); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return res, nil
}

// printDemo tells the user how to reach the running demo.
func (s *server) printDemo(w io.Writer, demo *demoResult) {
	t := s.cfg.Targets[0]
	for _, tc := range s.cfg.Targets {
		if tc.Name == demoTargetName {
			t = tc
		}
	}
	if a := s.gw.Addr(t.Name); a != nil {
		t.Listen = a.String()
	}
	approvalsLine := ""
	if s.approvals != nil {
		approvalsLine = "Approvals: " + s.adminURL() + "/approvals  (CLI: refserver approvals list --token TOKEN)\n"
	}
	fmt.Fprintf(w, "sluice demo is running. Connect with:\n\n  %s\n\nPolicy: %s  (reads and writes allowed; try DROP TABLE customers; edits reload)\nAdmin API: %s  (sessions: refserver sessions list)\nRecordings: %s  (replay: refserver replay --list)\n%sStop with Ctrl-C.\n",
		demoPsqlLine(t.Listen, t.Database, demo.Token), strings.Join(s.cfg.Policy.Files, " "), s.adminURL(), s.cfg.Recording.Dir, approvalsLine)
}

func newLogger(lc LogConfig, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(lc.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// server is a running refserver: the gateway, the admin listener and, with
// policy files, their reloaders.
type server struct {
	cfg    *Config
	log    *slog.Logger
	gw     *gateway.Gateway
	live   *policy.Live // nil with the built-in decider
	admin  *http.Server
	ln     net.Listener
	adminC chan error

	approvals *approvals // nil when approval.enabled is false
	// creds resolves every secret reference; closed last, dropping the
	// secrets it caches.
	creds *credstore.Resolver

	stopPolicy func() // ends the reloaders; nil until start
}

// newServer turns a validated configuration into constructor calls. The
// policy comes first: a policy that does not compile refuses the start
// before anything is opened.
func newServer(cfg *Config, logger *slog.Logger) (*server, error) {
	decider, live, err := newDecider(cfg, logger)
	if err != nil {
		return nil, err
	}
	creds, err := credstore.New(cfg.Credentials.Config, credstore.Options{Logger: logger.With("component", "credstore"), OpenVault: vault.Open})
	if err != nil {
		return nil, fmt.Errorf("%s: credentials: %w", cfg.file, err)
	}
	gcfg, err := gatewayConfig(cfg, decider, creds, logger)
	if err != nil {
		creds.Close()
		return nil, err
	}
	appr, err := openApprovals(cfg, creds, logger)
	if err != nil {
		creds.Close()
		return nil, err
	}
	if appr != nil {
		gcfg.Approvals = appr.broker
	}
	gw, err := gateway.New(gcfg)
	if err != nil {
		appr.close(logger)
		creds.Close()
		return nil, err
	}
	return &server{cfg: cfg, log: logger, gw: gw, live: live, approvals: appr, creds: creds}, nil
}

// approvals is the approval broker and the store it keeps requests in.
type approvals struct {
	broker *approval.Broker
	store  approval.Store
}

// openApprovalsTimeout bounds opening the store and marking an earlier
// run's requests abandoned.
const openApprovalsTimeout = 30 * time.Second

// openApprovals opens the approval store and starts the broker, or returns
// nil when approval.enabled is false.
func openApprovals(cfg *Config, creds credstore.Store, logger *slog.Logger) (*approvals, error) {
	a := cfg.Approval
	if !a.on() {
		logger.Info("approvals are off (approval.enabled: false): commands that need approval are denied")
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), openApprovalsTimeout)
	defer cancel()
	secret := func(field, ref string) (string, error) {
		c, err := creds.Resolve(ctx, credstore.Ref{Password: ref})
		if err != nil {
			return "", fmt.Errorf("%s: %s: %w", cfg.file, field, err)
		}
		return c.Password.Reveal(), nil
	}
	var notifiers []approval.Notifier
	for i, w := range a.Webhooks {
		field := fmt.Sprintf("approval.webhooks[%d].secret", i)
		key, err := secret(field, w.Secret)
		if err != nil {
			return nil, err
		}
		n := &notify.Webhook{URL: w.URL, Secret: key}
		if err := n.Validate(); err != nil {
			return nil, fmt.Errorf("%s: approval.webhooks[%d]: %w", cfg.file, i, err)
		}
		notifiers = append(notifiers, n)
	}
	if a.Slack.WebhookURL != "" {
		u, err := secret("approval.slack.webhook_url", a.Slack.WebhookURL)
		if err != nil {
			return nil, err
		}
		n := &notify.Slack{WebhookURL: u}
		if err := n.Validate(); err != nil {
			return nil, fmt.Errorf("%s: approval.slack.webhook_url: %w", cfg.file, err)
		}
		notifiers = append(notifiers, n)
	}

	log := logger.With("component", "approval")
	var (
		store approval.Store
		where string
	)
	switch a.Store {
	case "postgres":
		conn, err := secret("approval.postgres", a.Postgres)
		if err != nil {
			return nil, err
		}
		s, err := pgstore.Open(ctx, pgstore.Config{ConnString: conn, Logger: log})
		if err != nil {
			// pgstore's errors do not repeat the connection string.
			return nil, fmt.Errorf("%s: approval.postgres: %w", cfg.file, err)
		}
		store, where = s, "postgres"
	default:
		path := cfg.approvalsDB()
		s, err := sqlitestore.Open(ctx, sqlitestore.Config{Path: path, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("%s: approval: sqlite store %s: %w", cfg.file, path, err)
		}
		store, where = s, path
	}
	b, err := approval.New(ctx, approval.Config{
		Store:          store,
		GatewayID:      a.GatewayID,
		Notifiers:      notifiers,
		ApproveURL:     a.ApproveURL,
		DefaultTimeout: a.DefaultTimeout.Duration,
		MaxTimeout:     a.MaxTimeout.Duration,
		Logger:         logger,
	})
	if err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("%s: approval: %w", cfg.file, err)
	}
	logger.Info("approvals on", "store", where, "gateway_id", a.GatewayID, "approve_url", a.ApproveURL, "notifiers", len(notifiers))
	return &approvals{broker: b, store: store}, nil
}

// close stops the broker, then the store. It is safe on nil.
func (a *approvals) close(logger *slog.Logger) {
	if a == nil {
		return
	}
	if err := a.broker.Close(); err != nil {
		logger.Error("closing the approval broker", "err", err)
	}
	if err := a.store.Close(); err != nil {
		logger.Error("closing the approval store", "err", err)
	}
}

func (s *server) closeApprovals() {
	s.approvals.close(s.log)
	s.approvals = nil
	if s.creds != nil {
		_ = s.creds.Close()
		s.creds = nil
	}
}

// newDecider builds the policy: the CEL engine over policy.files, kept live
// (start runs its reloaders), or the built-in development decider.
func newDecider(cfg *Config, logger *slog.Logger) (policy.Decider, *policy.Live, error) {
	if len(cfg.Policy.Files) == 0 {
		return builtinDecider(cfg.Policy.Default), nil, nil
	}
	files, err := cfg.PolicyFiles()
	if err != nil {
		return nil, nil, err
	}
	live, err := policy.NewLive(logger.With("component", "policy"), files...)
	if err == nil {
		err = knownDetectors(live.Engine())
	}
	if err != nil {
		return nil, nil, policyError(cfg.file, err)
	}
	live.Validate = knownDetectors
	return live, live, nil
}

// gatewayConfig builds the gateway's configuration and its components.
func gatewayConfig(cfg *Config, decider policy.Decider, creds credstore.Store, logger *slog.Logger) (gateway.Config, error) {
	tokens := make([]identity.StaticToken, len(cfg.Identity.Tokens))
	for i, t := range cfg.Identity.Tokens {
		tokens[i] = identity.StaticToken{
			SHA256: t.SHA256, Env: t.Env,
			Subject: t.Subject, Name: t.Name, Email: t.Email, Groups: t.Groups,
		}
	}
	static, err := identity.NewStaticTokens(tokens)
	if err != nil {
		return gateway.Config{}, fmt.Errorf("%s: identity.tokens: %w", cfg.file, err)
	}
	// Static tokens first (a hash lookup), then client certificates, then
	// OIDC: an unreachable identity provider stops the chain (fail
	// closed), so it comes last.
	var chain identity.Chain
	if len(tokens) > 0 {
		chain = append(chain, static)
	}
	if cfg.Identity.MTLS != nil {
		a, err := mtls.New(*cfg.Identity.MTLS)
		if err != nil {
			return gateway.Config{}, fmt.Errorf("%s: identity.mtls: %w", cfg.file, err)
		}
		chain = append(chain, a)
	}
	if cfg.Identity.OIDC != nil {
		a, err := oidc.New(*cfg.Identity.OIDC, oidc.WithLogger(logger.With("component", "oidc")))
		if err != nil {
			return gateway.Config{}, fmt.Errorf("%s: identity.oidc: %w", cfg.file, err)
		}
		pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := a.Prefetch(pctx); err != nil {
			// Not fatal: keys are fetched again on use, and until then
			// OIDC callers are refused (fail closed).
			logger.Warn("identity provider not reachable yet", "error", err)
		}
		cancel()
		chain = append(chain, a)
	}
	if len(chain) == 0 {
		logger.Warn("no identity configured (identity.tokens, identity.oidc, identity.mtls are empty): every connection will be refused")
	}
	var auth identity.Authenticator = chain

	sink, err := recording.NewFileSink(cfg.Recording.Dir, recording.FileOptions{
		Fsync:    recording.FsyncPolicy(cfg.Recording.Fsync),
		Interval: cfg.Recording.FsyncInterval.Duration,
	})
	if err != nil {
		return gateway.Config{}, fmt.Errorf("%s: recording: %w", cfg.file, err)
	}

	maskOpts := masking.Options{RedactToken: cfg.Masking.RedactToken}
	if ref := cfg.Masking.PseudonymKey; ref != "" {
		key, err := creds.Resolve(context.Background(), credstore.Ref{Password: ref})
		if err != nil {
			return gateway.Config{}, fmt.Errorf("%s: masking.pseudonym_key: %w", cfg.file, err)
		}
		if len(key.Password.Reveal()) < 16 {
			return gateway.Config{}, fmt.Errorf("%s: masking.pseudonym_key: the key must be at least 16 bytes", cfg.file)
		}
		maskOpts.PseudonymKey = []byte(key.Password.Reveal())
	}

	var selfSigned *tls.Config
	targets := make([]gateway.TargetConfig, 0, len(cfg.Targets))
	for i, t := range cfg.Targets {
		field := fmt.Sprintf("%s: targets[%d]", cfg.file, i)
		tc := gateway.TargetConfig{
			Target: protocol.Target{
				Name:     t.Name,
				Protocol: t.Protocol,
				Address:  t.Address,
				Labels:   t.Labels,
				Options:  targetOptions(t),
			},
			Listen:                 t.Listen,
			Credential:             t.Credential,
			DisableTLS:             t.TLS.Disable,
			AllowPlaintextLoopback: t.AllowPlaintextLoopback,
			MaxSessions:            t.MaxSessions,
			HandshakeTimeout:       t.HandshakeTimeout.Duration,
			Limits: protocol.Limits{
				MaxMessageSize:     t.MaxMessageSize,
				RecordRows:         t.RecordRows,
				RecordBytes:        t.RecordBytes,
				ConnectTimeout:     t.ConnectTimeout.Duration,
				ClientWriteTimeout: t.ClientWriteTimeout.Duration,
			},
		}
		switch {
		case t.TLS.Disable:
		case t.TLS.CertFile != "":
			cert, err := tls.LoadX509KeyPair(t.TLS.CertFile, t.TLS.KeyFile)
			if err != nil {
				return gateway.Config{}, fmt.Errorf("%s.tls: %w", field, err)
			}
			tc.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		default:
			if selfSigned == nil {
				selfSigned, err = gateway.SelfSignedTLS(filepath.Join(cfg.DataDir, "tls"), selfSignedHosts(cfg))
				if err != nil {
					return gateway.Config{}, fmt.Errorf("%s.tls: self-signed certificate: %w", field, err)
				}
			}
			tc.TLS = selfSigned
		}
		if m := cfg.Identity.MTLS; m != nil && tc.TLS != nil {
			tc.TLS, err = mtls.ServerTLSConfig(tc.TLS, m.CAFile)
			if err != nil {
				return gateway.Config{}, fmt.Errorf("%s: identity.mtls.ca_file: %w", cfg.file, err)
			}
		}
		targets = append(targets, tc)
	}

	var login *gateway.AdminLoginConfig
	if l := cfg.Admin.Login; l != nil {
		provider, err := oidc.New(oidc.Config{Issuers: []oidc.IssuerConfig{l.oidcIssuer()}}, oidc.WithLogger(logger.With("component", "admin-login")))
		if err != nil {
			return gateway.Config{}, fmt.Errorf("%s: admin.login: %w", cfg.file, err)
		}
		login = &gateway.AdminLoginConfig{Provider: provider, Issuer: l.Issuer, ClientID: l.ClientID,
			RedirectURL: l.RedirectURL, Scopes: l.Scopes, SessionTTL: l.SessionTTL.Duration}
		if l.ClientSecret != "" {
			c, err := creds.Resolve(context.Background(), credstore.Ref{Password: l.ClientSecret})
			if err != nil {
				return gateway.Config{}, fmt.Errorf("%s: admin.login.client_secret: %w", cfg.file, err)
			}
			login.ClientSecret = c.Password
		}
	}

	return gateway.Config{
		AdminLogin:    login,
		DataDir:       cfg.DataDir,
		Targets:       targets,
		Authenticator: auth,
		Decider:       decider,
		Credentials:   creds,
		Masking:       maskOpts,
		Recording:     sink,
		Logger:        logger,
		// No Registerer: the gateway keeps a private registry, with the Go
		// and process collectors, that /metrics serves.
		ShutdownGrace:    cfg.ShutdownGrace.Duration,
		ExpiryGrace:      cfg.Identity.ExpiryGrace.Duration,
		AdminTokenSHA256: cfg.Admin.TokenSHA256,
	}, nil
}

// targetOptions merges the PostgreSQL fields into the protocol options.
func targetOptions(t TargetConfig) map[string]string {
	opts := make(map[string]string, len(t.Options)+2)
	for k, v := range t.Options {
		opts[k] = v
	}
	if t.Database != "" {
		opts["database"] = t.Database
	}
	if t.SSLMode != "" {
		opts["sslmode"] = t.SSLMode
	}
	return opts
}

// selfSignedHosts are the names the self-signed certificate covers: the
// listen hosts of the targets, plus localhost.
func selfSignedHosts(cfg *Config) []string {
	seen := map[string]bool{}
	var hosts []string
	add := func(h string) {
		if h != "" && !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	add("localhost")
	add("127.0.0.1")
	for _, t := range cfg.Targets {
		if h, _, err := net.SplitHostPort(t.Listen); err == nil {
			if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
				add(h)
			}
		}
	}
	return hosts
}

// builtinDecider is the development decider used when policy.files is
// empty: "allow" allows every command; "deny" lets sessions connect and
// refuses every command. It has no rules and is not meant for production.
func builtinDecider(def string) policy.Decider {
	return policy.DeciderFunc(func(_ context.Context, in *policy.Input) (protocol.Decision, error) {
		if def == "allow" || (in.Command != nil && in.Command.Kind == protocol.KindConnect) {
			return protocol.Decision{Action: protocol.Allow, Rules: []string{"default:" + def}}, nil
		}
		return protocol.Decision{
			Action:  protocol.Deny,
			Rules:   []string{"default:deny"},
			Message: "denied by the default policy (policy.default: deny)",
		}, nil
	})
}

// start binds the admin listener and starts the gateway.
func (s *server) start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("%s: admin.listen: %w", s.cfg.file, err)
	}
	if err := s.gw.Start(ctx); err != nil {
		ln.Close()
		return err
	}
	s.ln = ln
	if s.cfg.Admin.TokenSHA256 == "" && !isLoopback(ln.Addr()) {
		s.log.Warn("the admin API is reachable beyond this machine without a token; set admin.token_sha256", "listen", ln.Addr().String())
	}
	s.admin = &http.Server{
		Handler:           s.gw.AdminHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.adminC = make(chan error, 1)
	go func() { s.adminC <- s.admin.Serve(ln) }()
	targets := make([]string, 0, len(s.cfg.Targets))
	for _, t := range s.cfg.Targets {
		addr := t.Listen
		if a := s.gw.Addr(t.Name); a != nil {
			addr = a.String()
		}
		targets = append(targets, t.Name+"="+addr)
	}
	policyAttr := slog.String("policy", "built-in development decider, default "+s.cfg.Policy.Default)
	if s.live != nil {
		s.startPolicy(ctx)
		e := s.live.Engine()
		policyAttr = slog.Group("policy", "files", strings.Join(e.Files(), " "), "rules", len(e.Rules()),
			"default", string(e.Default()), "watch", s.cfg.Policy.watching())
	}
	s.log.Info("refserver started", "version", buildVersion(), "admin", s.adminURL(), "targets", strings.Join(targets, " "),
		"recordings", s.cfg.Recording.Dir, policyAttr)
	return nil
}

// startPolicy runs the policy reloaders until wait stops them: on SIGHUP,
// and, with policy.watch, when the files change. A reload that fails keeps
// the current policy and is logged.
func (s *server) startPolicy(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var wg sync.WaitGroup
	wg.Go(func() { s.live.ReloadOnSignal(ctx, hup) })
	if s.cfg.Policy.watching() {
		wg.Go(func() {
			if err := s.live.WatchFiles(ctx, s.cfg.Policy.WatchInterval.Duration); err != nil {
				s.log.Error("policy files are not watched", "err", err)
			}
		})
	}
	s.stopPolicy = func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}

func (s *server) adminURL() string {
	if s.ln == nil {
		return "http://" + s.cfg.Admin.Listen
	}
	return "http://" + s.ln.Addr().String()
}

// wait serves until ctx is cancelled (SIGINT, SIGTERM) or the admin
// listener fails, then shuts down: sessions get the grace period to finish
// their command, the whole shutdown a little more.
func (s *server) wait(ctx context.Context) error {
	var serveErr error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down", "grace", s.cfg.ShutdownGrace.String())
	case serveErr = <-s.adminC:
		s.log.Error("admin listener failed; shutting down", "err", serveErr)
		serveErr = fmt.Errorf("admin listener: %w", serveErr)
	}
	if s.stopPolicy != nil {
		s.stopPolicy()
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownGrace.Duration+shutdownSlack)
	defer cancel()
	errs := []error{serveErr}
	if err := s.gw.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("gateway shutdown: %w", err))
	}
	if err := s.admin.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("admin shutdown: %w", err))
	}
	// After the gateway: no session waits on the broker any more.
	s.closeApprovals()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.log.Info("stopped")
	return nil
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
