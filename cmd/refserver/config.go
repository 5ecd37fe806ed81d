package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/approval/sqlitestore"
	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/identity/mtls"
	"github.com/sluicegw/sluice/identity/oidc"
	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/policy/policytest"
	"github.com/sluicegw/sluice/protocol"
)

// Config is the reference server's configuration file. Relative paths are
// relative to the working directory refserver runs in.
type Config struct {
	// DataDir holds generated state: self-signed TLS keys, recordings
	// (unless recording.dir says otherwise) and the demo's secrets.
	DataDir     string            `yaml:"data_dir"`
	Admin       AdminConfig       `yaml:"admin"`
	Log         LogConfig         `yaml:"log"`
	Identity    IdentityConfig    `yaml:"identity"`
	Targets     []TargetConfig    `yaml:"targets"`
	Policy      PolicyConfig      `yaml:"policy"`
	Recording   RecordingConfig   `yaml:"recording"`
	Credentials CredentialsConfig `yaml:"credentials"`
	Masking     MaskingConfig     `yaml:"masking"`
	Approval    ApprovalConfig    `yaml:"approval"`
	// ShutdownGrace is how long a stopping server lets sessions finish
	// their command before it ends them.
	ShutdownGrace Duration `yaml:"shutdown_grace"`

	// file names the configuration in error messages.
	file string
}

// AdminConfig is the admin HTTP listener: health, metrics and the sessions
// API.
type AdminConfig struct {
	Listen string `yaml:"listen"`
	// TokenSHA256, when set, is the hex SHA-256 of a bearer token that
	// every admin request except /healthz and /readyz must carry.
	TokenSHA256 string `yaml:"token_sha256"`
	// Login lets approvers sign in to the approvals page with OpenID
	// Connect (authorization code flow with PKCE).
	Login *AdminLoginConfig `yaml:"login"`
}

// AdminLoginConfig is the OIDC client the approvals page signs people in
// with.
type AdminLoginConfig struct {
	Issuer       string `yaml:"issuer"`
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"` // a secret reference; empty for a public client
	// RedirectURL is this server's /auth/callback as the browser reaches
	// it (registered with the identity provider).
	RedirectURL string   `yaml:"redirect_url"`
	Scopes      []string `yaml:"scopes"`
	SessionTTL  Duration `yaml:"session_ttl"`
	// GroupsClaim, EmailClaim and NameClaim map the ID token's claims (dotted
	// paths), as in identity.oidc.
	GroupsClaim string `yaml:"groups_claim"`
	EmailClaim  string `yaml:"email_claim"`
	NameClaim   string `yaml:"name_claim"`
}

// oidcIssuer is the token verifier for the login's ID tokens.
func (l *AdminLoginConfig) oidcIssuer() oidc.IssuerConfig {
	return oidc.IssuerConfig{Issuer: l.Issuer, Audiences: []string{l.ClientID},
		GroupsClaim: l.GroupsClaim, EmailClaim: l.EmailClaim, NameClaim: l.NameClaim}
}

// LogConfig sets the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}

// IdentityConfig lists how callers authenticate: static tokens, OIDC
// tokens from trusted issuers, client certificates. A caller is tried
// against each in that order.
type IdentityConfig struct {
	Tokens []TokenConfig `yaml:"tokens"`
	// OIDC verifies JWTs from one or more issuers (identity/oidc).
	OIDC *oidc.Config `yaml:"oidc"`
	// MTLS accepts client certificates from a CA (identity/mtls); every
	// target's TLS then asks clients for a certificate (optional).
	MTLS *mtls.Config `yaml:"mtls"`
	// ExpiryGrace lets a session outlive its caller's token by this much;
	// at the token's expiry plus the grace the session is ended.
	ExpiryGrace Duration `yaml:"expiry_grace"`
}

// TokenConfig is one static token (identity.StaticToken).
type TokenConfig struct {
	Subject string   `yaml:"subject"`
	Name    string   `yaml:"name"`
	Email   string   `yaml:"email"`
	Groups  []string `yaml:"groups"`
	SHA256  string   `yaml:"sha256"`
	Env     string   `yaml:"env"`
}

// TargetConfig is one backend the gateway serves on its own listen address.
type TargetConfig struct {
	Name     string `yaml:"name"`
	Protocol string `yaml:"protocol"`
	Listen   string `yaml:"listen"`
	Address  string `yaml:"address"`
	// Database and SSLMode are the PostgreSQL options that every target
	// needs; they go into protocol.Target.Options.
	Database string            `yaml:"database"`
	SSLMode  string            `yaml:"sslmode"`
	Options  map[string]string `yaml:"options"`
	Labels   map[string]string `yaml:"labels"`

	Credential             credstore.Ref `yaml:"credential"`
	TLS                    TLSConfig     `yaml:"tls"`
	AllowPlaintextLoopback bool          `yaml:"allow_plaintext_loopback"`
	MaxSessions            int           `yaml:"max_sessions"`
	HandshakeTimeout       Duration      `yaml:"handshake_timeout"`
	ConnectTimeout         Duration      `yaml:"connect_timeout"`
	ClientWriteTimeout     Duration      `yaml:"client_write_timeout"`
	MaxMessageSize         int           `yaml:"max_message_size"`
	RecordRows             int           `yaml:"record_rows"`
	RecordBytes            int           `yaml:"record_bytes"`
}

// TLSConfig is the client-facing TLS of a target. With neither files nor
// disable, the gateway uses a self-signed certificate kept in the data
// directory.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	Disable  bool   `yaml:"disable"`
}

// PolicyConfig chooses the decider: CEL policy files (docs/policy.md), or,
// without files, the built-in development decider.
type PolicyConfig struct {
	// Files are policy files or directories; a directory contributes the
	// *.yaml and *.yml files directly inside it except *_test.yaml (policy
	// tests), expanded when the server starts.
	Files []string `yaml:"files"`
	// Default selects the built-in development decider when Files is
	// empty: allow runs every command; deny lets sessions connect and
	// refuses every command. With Files the policy's own default applies,
	// and this must be unset.
	Default string `yaml:"default"`
	// Watch reloads the files when their content changes (default true);
	// SIGHUP reloads them either way.
	Watch *bool `yaml:"watch"`
	// WatchInterval is how often the files are checked (default 1s); a
	// change is loaded once it has stayed the same for one more interval.
	WatchInterval Duration `yaml:"watch_interval"`
}

// watching reports whether the policy files are watched for changes.
func (p PolicyConfig) watching() bool { return len(p.Files) > 0 && (p.Watch == nil || *p.Watch) }

// RecordingConfig configures the file recording sink.
type RecordingConfig struct {
	Dir           string   `yaml:"dir"`
	Fsync         string   `yaml:"fsync"` // interval, always, never
	FsyncInterval Duration `yaml:"fsync_interval"`
}

// CredentialsConfig configures the backend credential store
// (credstore.Config: allow_inline, file, exec, vault).
type CredentialsConfig struct {
	credstore.Config `yaml:",inline"`
}

// MaskingConfig configures the maskers built from policies' mask entries.
type MaskingConfig struct {
	// PseudonymKey references the key of the hash strategy (env:NAME,
	// file:PATH, or inline:VALUE with credentials.allow_inline), at least
	// 16 bytes. Keep it stable: pseudonyms are equal only under one key.
	// Without it, a policy entry using hash denies the command.
	PseudonymKey string `yaml:"pseudonym_key"`
	// RedactToken replaces redacted text; default "[REDACTED]".
	RedactToken string `yaml:"redact_token"`
}

// ApprovalConfig configures just-in-time approval: where requests are kept
// and who is told about them. It is on by default, with a SQLite store in
// the data directory; without it a rule asking for approval denies.
type ApprovalConfig struct {
	// Enabled turns approvals on (default true).
	Enabled *bool `yaml:"enabled"`
	// Store is sqlite (default: <data_dir>/approvals.db) or postgres
	// (several gateways sharing the requests).
	Store string `yaml:"store"`
	// SQLitePath overrides the SQLite file; empty means
	// <data_dir>/approvals.db (see Config.approvalsDB).
	SQLitePath string `yaml:"sqlite_path"`
	// Postgres references the connection string of the postgres store
	// (env:NAME, file:PATH, or inline:VALUE with credentials.allow_inline).
	Postgres string `yaml:"postgres"`
	// GatewayID names this gateway, stable across restarts (default: the
	// host name).
	GatewayID string `yaml:"gateway_id"`
	// ApproveURL is the base of the approval page linked from
	// notifications (default http://<admin.listen>/approvals).
	ApproveURL string `yaml:"approve_url"`
	// DefaultTimeout is how long a request waits when its rule sets no
	// timeout (default 10m); MaxTimeout caps any wait (default 24h).
	DefaultTimeout Duration `yaml:"default_timeout"`
	MaxTimeout     Duration `yaml:"max_timeout"`
	// Webhooks receive every new and resolved request, signed with their
	// secret.
	Webhooks []WebhookConfig `yaml:"webhooks"`
	// Slack posts to an incoming webhook.
	Slack SlackConfig `yaml:"slack"`
}

// approvalsDB is the SQLite store's file: approval.sqlite_path, else
// <data_dir>/approvals.db (resolved here, not at parse time, so that a
// data_dir changed after parsing moves it too).
func (c *Config) approvalsDB() string {
	if c.Approval.SQLitePath != "" {
		return c.Approval.SQLitePath
	}
	return filepath.Join(c.DataDir, sqlitestore.DefaultFile)
}

// on reports whether approvals are enabled.
func (a ApprovalConfig) on() bool { return a.Enabled == nil || *a.Enabled }

// WebhookConfig is one signed webhook.
type WebhookConfig struct {
	URL string `yaml:"url"`
	// Secret references the HMAC key receivers verify with.
	Secret string `yaml:"secret"`
}

// SlackConfig is a Slack incoming webhook.
type SlackConfig struct {
	// WebhookURL references the webhook's URL, which is a secret.
	WebhookURL string `yaml:"webhook_url"`
}

// Duration is a time.Duration written in Go syntax ("30s", "5m"). A value
// that does not parse is kept and reported by Validate with its field name.
type Duration struct {
	time.Duration
	bad string
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		d.bad = "(not a scalar)"
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.bad = n.Value
		return nil
	}
	d.Duration, d.bad = v, ""
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Defaults.
const (
	defaultDataDir     = "./sluice-data"
	defaultAdminListen = "127.0.0.1:9090"
	defaultGrace       = 10 * time.Second
	defaultWatch       = time.Second
)

// LoadConfig reads, defaults and validates a configuration file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := ParseConfig(b, filepath.Base(path))
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// ParseConfig decodes a configuration and applies defaults; it does not
// validate. name is used in error messages. Unknown keys are an error.
func ParseConfig(b []byte, name string) (*Config, error) {
	c := &Config{file: name}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %s", name, yamlMessage(err))
	}
	// A second document is almost certainly a mistake ("---" in the
	// middle of the file); refuse rather than ignore it.
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s: more than one YAML document; refserver reads one", name)
	}
	c.applyDefaults()
	return c, nil
}

var yamlTypeRE = regexp.MustCompile(`field (\S+) not found in type \S+`)

// yamlMessage shortens yaml.v3's errors: "unknown field" instead of a Go
// type name a user never wrote.
func yamlMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	msg = yamlTypeRE.ReplaceAllString(msg, `unknown field "$1"`)
	lines := strings.Split(msg, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "; ")
}

func (c *Config) applyDefaults() {
	if c.DataDir == "" {
		c.DataDir = defaultDataDir
	}
	if c.Admin.Listen == "" {
		c.Admin.Listen = defaultAdminListen
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.ShutdownGrace.Duration == 0 && c.ShutdownGrace.bad == "" {
		c.ShutdownGrace.Duration = defaultGrace
	}
	if len(c.Policy.Files) == 0 && c.Policy.Default == "" {
		c.Policy.Default = "deny"
	}
	if c.Policy.watching() && c.Policy.WatchInterval.Duration == 0 && c.Policy.WatchInterval.bad == "" {
		c.Policy.WatchInterval.Duration = defaultWatch
	}
	if c.Recording.Dir == "" {
		c.Recording.Dir = filepath.Join(c.DataDir, "recordings")
	}
	if c.Recording.Fsync == "" {
		c.Recording.Fsync = "interval"
	}
	if c.Approval.on() {
		a := &c.Approval
		if a.Store == "" {
			a.Store = "sqlite"
		}
		if a.GatewayID == "" {
			a.GatewayID = defaultGatewayID()
		}
		if a.ApproveURL == "" {
			a.ApproveURL = "http://" + approveHost(c.Admin.Listen) + "/approvals"
		}
	}
	if c.Recording.FsyncInterval.Duration == 0 && c.Recording.FsyncInterval.bad == "" && c.Recording.Fsync == "interval" {
		c.Recording.FsyncInterval.Duration = time.Second
	}
}

var (
	targetNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Validate checks every field and returns all problems at once, each naming
// the file and the field.
func (c *Config) Validate() error {
	v := &validator{file: c.file}
	if v.file == "" {
		v.file = "config"
	}
	if c.DataDir == "" {
		v.add("data_dir", "must not be empty")
	}
	v.hostPort("admin.listen", c.Admin.Listen)
	if c.Admin.TokenSHA256 != "" {
		v.sha256("admin.token_sha256", c.Admin.TokenSHA256)
	}
	if l := c.Admin.Login; l != nil {
		if l.ClientID == "" {
			v.add("admin.login.client_id", "is required")
		} else if err := l.oidcIssuer().Validate(); err != nil {
			v.add("admin.login", err.Error())
		}
		if l.RedirectURL == "" {
			v.add("admin.login.redirect_url", "is required (this server's /auth/callback as browsers reach it)")
		}
		if l.ClientSecret != "" {
			v.secretRef(c, "admin.login.client_secret", l.ClientSecret)
		}
		v.duration("admin.login.session_ttl", l.SessionTTL)
	}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")

	for i, t := range c.Identity.Tokens {
		f := fmt.Sprintf("identity.tokens[%d]", i)
		if t.Subject == "" {
			v.add(f+".subject", "is required")
		}
		switch {
		case t.SHA256 != "" && t.Env != "":
			v.add(f, "set sha256 or env, not both")
		case t.SHA256 != "":
			v.sha256(f+".sha256", t.SHA256)
		case t.Env != "":
			if !envNameRE.MatchString(t.Env) {
				v.add(f+".env", fmt.Sprintf("%q is not an environment variable name", t.Env))
			}
		default:
			v.add(f, "one of sha256 (the token's SHA-256, from `refserver token hash`) or env is required")
		}
	}

	if len(c.Targets) == 0 {
		v.add("targets", "at least one target is required")
	}
	names := map[string]int{}
	listens := map[string]string{c.Admin.Listen: "admin.listen"}
	for i, t := range c.Targets {
		f := fmt.Sprintf("targets[%d]", i)
		switch {
		case t.Name == "":
			v.add(f+".name", "is required")
		case !targetNameRE.MatchString(t.Name):
			v.add(f+".name", fmt.Sprintf("%q: use letters, digits, '.', '_' and '-'", t.Name))
		default:
			if j, dup := names[t.Name]; dup {
				v.add(f+".name", fmt.Sprintf("%q is already used by targets[%d]", t.Name, j))
			}
			names[t.Name] = i
		}
		if t.Protocol == "" {
			v.add(f+".protocol", "is required")
		} else if _, err := protocol.Lookup(t.Protocol); err != nil {
			v.add(f+".protocol", fmt.Sprintf("unknown protocol %q (available: %s)", t.Protocol, strings.Join(protocol.Protocols(), ", ")))
		}
		if v.hostPort(f+".listen", t.Listen) && !strings.HasSuffix(t.Listen, ":0") { // port 0: any free port
			if other, dup := listens[t.Listen]; dup {
				v.add(f+".listen", fmt.Sprintf("%s is already used by %s", t.Listen, other))
			}
			listens[t.Listen] = f + ".listen"
		}
		if t.Protocol == "http" && (strings.HasPrefix(t.Address, "http://") || strings.HasPrefix(t.Address, "https://")) {
			if u, err := url.Parse(t.Address); err != nil || u.Host == "" {
				v.add(f+".address", fmt.Sprintf("%q: want host:port or http(s)://host:port[/prefix]", t.Address))
			}
		} else {
			v.hostPort(f+".address", t.Address)
		}
		if t.Protocol != "postgres" && (t.Database != "" || t.SSLMode != "") {
			v.add(f, "database and sslmode are for postgres targets")
		}
		if t.SSLMode != "" {
			v.oneOf(f+".sslmode", t.SSLMode, "disable", "allow", "prefer", "require", "verify-ca", "verify-full")
		}
		for _, k := range []string{"database", "sslmode"} {
			if _, ok := t.Options[k]; ok {
				v.add(f+".options."+k, fmt.Sprintf("set it with %s.%s", f, k))
			}
		}
		if t.Credential.Username == "" && (t.Protocol == "postgres" || t.Options["credential_scheme"] == "basic") {
			v.add(f+".credential.username", "is required (the backend user the gateway logs in as)")
		}
		if fac, err := protocol.Lookup(t.Protocol); err == nil && t.Address != "" {
			// The plugin checks its own options (an http target's
			// credential_scheme, max_body, ...).
			if _, err := fac(&protocol.Target{Name: t.Name, Protocol: t.Protocol, Address: t.Address, Options: targetOptions(t)}); err != nil {
				v.add(f+".options", err.Error())
			}
		}
		v.secretRef(c, f+".credential.password", t.Credential.Password)
		switch {
		case t.TLS.Disable && (t.TLS.CertFile != "" || t.TLS.KeyFile != ""):
			v.add(f+".tls", "disable cannot be combined with cert_file/key_file")
		case (t.TLS.CertFile == "") != (t.TLS.KeyFile == ""):
			v.add(f+".tls", "set both cert_file and key_file, or neither for a self-signed certificate")
		}
		v.nonNegative(f+".max_sessions", t.MaxSessions)
		v.duration(f+".handshake_timeout", t.HandshakeTimeout)
		v.duration(f+".connect_timeout", t.ConnectTimeout)
		v.duration(f+".client_write_timeout", t.ClientWriteTimeout)
		v.nonNegative(f+".max_message_size", t.MaxMessageSize)
		v.nonNegative(f+".record_rows", t.RecordRows)
		v.nonNegative(f+".record_bytes", t.RecordBytes)
	}

	if c.Identity.OIDC != nil {
		if err := c.Identity.OIDC.Validate(); err != nil {
			v.add("identity.oidc", strings.TrimPrefix(err.Error(), "oidc: "))
		}
	}
	if c.Identity.MTLS != nil {
		if c.Identity.MTLS.CAFile == "" {
			v.add("identity.mtls.ca_file", "is required (the CA that issues client certificates)")
		} else if err := c.Identity.MTLS.Validate(); err != nil {
			v.add("identity.mtls", strings.TrimPrefix(err.Error(), "mtls: "))
		}
		for i, t := range c.Targets {
			if t.TLS.Disable {
				v.add(fmt.Sprintf("targets[%d].tls.disable", i), "client certificates (identity.mtls) need TLS")
			}
		}
	}
	v.duration("identity.expiry_grace", c.Identity.ExpiryGrace)
	v.nested("credentials", c.Credentials.Config.Validate())

	v.duration("shutdown_grace", c.ShutdownGrace)
	c.validatePolicy(v)

	if c.Recording.Dir == "" {
		v.add("recording.dir", "must not be empty")
	}
	v.oneOf("recording.fsync", c.Recording.Fsync, "interval", "always", "never")
	if k := c.Masking.PseudonymKey; k != "" {
		v.secretRef(c, "masking.pseudonym_key", k)
	}
	v.duration("recording.fsync_interval", c.Recording.FsyncInterval)
	if c.Recording.Fsync != "interval" && c.Recording.FsyncInterval.Duration != 0 {
		v.add("recording.fsync_interval", "only applies with fsync: interval")
	}
	c.validateApproval(v)
	return v.err()
}

func (c *Config) validateApproval(v *validator) {
	a := c.Approval
	if !a.on() {
		return
	}
	// secret checks a reference to a secret, as credentials do.
	secret := func(field, ref string) { v.secretRef(c, field, ref) }
	v.oneOf("approval.store", a.Store, "sqlite", "postgres")
	switch a.Store {
	case "sqlite":
		if a.SQLitePath != "" && strings.TrimSpace(a.SQLitePath) == "" {
			v.add("approval.sqlite_path", "must not be blank (omit it for <data_dir>/"+sqlitestore.DefaultFile+")")
		}
		if a.Postgres != "" {
			v.add("approval.postgres", "only applies with store: postgres")
		}
	case "postgres":
		if a.Postgres == "" {
			v.add("approval.postgres", "is required with store: postgres (env:NAME, file:PATH or inline:VALUE holding a connection string)")
		} else {
			secret("approval.postgres", a.Postgres)
		}
		if a.SQLitePath != "" {
			v.add("approval.sqlite_path", "only applies with store: sqlite")
		}
	}
	if strings.TrimSpace(a.GatewayID) == "" {
		v.add("approval.gateway_id", "must not be empty (a name for this gateway that stays the same across restarts)")
	}
	if !httpURL(a.ApproveURL) {
		v.add("approval.approve_url", fmt.Sprintf("%q: want an http(s) URL such as https://sluice.example/approvals", a.ApproveURL))
	}
	v.duration("approval.default_timeout", a.DefaultTimeout)
	v.duration("approval.max_timeout", a.MaxTimeout)
	if a.DefaultTimeout.Duration > 0 && a.MaxTimeout.Duration > 0 && a.DefaultTimeout.Duration > a.MaxTimeout.Duration {
		v.add("approval.default_timeout", "must not be longer than approval.max_timeout")
	}
	for i, w := range a.Webhooks {
		f := fmt.Sprintf("approval.webhooks[%d]", i)
		if !httpURL(w.URL) {
			v.add(f+".url", "want an http(s) URL")
		}
		if w.Secret == "" {
			v.add(f+".secret", "is required (receivers verify the signature with it): env:NAME, file:PATH or inline:VALUE")
		} else {
			secret(f+".secret", w.Secret)
		}
	}
	if a.Slack.WebhookURL != "" {
		secret("approval.slack.webhook_url", a.Slack.WebhookURL)
	}
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// defaultGatewayID is the host name, or "refserver" when there is none.
func defaultGatewayID() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "refserver"
}

// approveHost is the host:port of the default approval page: the admin
// listen address, with a wildcard host replaced by the host name.
func approveHost(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = defaultGatewayID()
	}
	return net.JoinHostPort(host, port)
}

func (c *Config) validatePolicy(v *validator) {
	p := c.Policy
	if len(p.Files) == 0 {
		v.oneOf("policy.default", p.Default, "allow", "deny")
		if p.Watch != nil {
			v.add("policy.watch", "only applies with policy.files")
		}
		if p.WatchInterval.Duration != 0 || p.WatchInterval.bad != "" {
			v.add("policy.watch_interval", "only applies with policy.files")
		}
		return
	}
	if p.Default != "" {
		v.add("policy.default", "selects the built-in development decider, which policy.files replaces; "+
			"remove it and give default: in a policy file")
	}
	for i, f := range p.Files {
		field := fmt.Sprintf("policy.files[%d]", i)
		switch {
		case strings.TrimSpace(f) == "":
			v.add(field, "must not be empty")
		case policytest.IsTestFile(f):
			v.add(field, fmt.Sprintf("%q is a policy test file (*%s); list the policy files it tests", f, policytest.TestFileSuffix))
		}
	}
	v.duration("policy.watch_interval", p.WatchInterval)
	if !p.watching() && p.WatchInterval.Duration != 0 {
		v.add("policy.watch_interval", "only applies with watch: true")
	}
}

// PolicyFiles expands policy.files: directories become the policy files
// directly inside them (*.yaml and *.yml, not *_test.yaml), in name order.
func (c *Config) PolicyFiles() ([]string, error) {
	var files []string
	for i, f := range c.Policy.Files {
		pols, tests, err := policytest.Discover(f)
		if err != nil {
			return nil, fmt.Errorf("%s: policy.files[%d]: %s", c.file, i, strings.TrimPrefix(err.Error(), "policytest: "))
		}
		if len(pols) == 0 {
			return nil, fmt.Errorf("%s: policy.files[%d]: %s holds only policy tests (%s); no policy files", c.file, i, f, strings.Join(tests, ", "))
		}
		files = append(files, pols...)
	}
	return files, nil
}

// CheckPolicy compiles the policy files, as serve does before it starts;
// without files there is nothing to compile.
func (c *Config) CheckPolicy() (*policy.Engine, error) {
	if len(c.Policy.Files) == 0 {
		return nil, nil
	}
	files, err := c.PolicyFiles()
	if err != nil {
		return nil, err
	}
	e, err := policy.Load(files...)
	if err == nil {
		err = knownDetectors(e)
	}
	if err != nil {
		return nil, policyError(c.file, err)
	}
	return e, nil
}

// knownDetectors refuses a policy whose mask entries name detectors that
// are neither built in nor defined in its files: refserver adds none of
// its own, so every command asking for one would be refused.
func knownDetectors(e *policy.Engine) error {
	if u := e.UnknownDetectors(); len(u) > 0 {
		return fmt.Errorf("mask entries name unknown detectors %s (built in: %s; define others under detectors:)",
			strings.Join(u, ", "), strings.Join(masking.BuiltinNames(), ", "))
	}
	return nil
}

// policyError introduces the errors of a policy that does not load; each
// of them names its policy file, line and rule.
func policyError(file string, err error) error {
	return fmt.Errorf("%s: policy.files: the policy does not load:\n%w", file, err)
}

type validator struct {
	file string
	errs []error
}

func (v *validator) add(field, msg string) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s: %s", v.file, field, msg))
}

func (v *validator) err() error { return errors.Join(v.errs...) }

// secretRef checks a reference to a secret against the credential store's
// configuration (its syntax, and that its scheme is enabled).
func (v *validator) secretRef(c *Config, field, ref string) {
	if err := c.Credentials.ValidateRef(credstore.Ref{Password: ref}); err != nil {
		msg := err.Error()
		if strings.HasPrefix(msg, "inline secrets are refused") {
			msg = "inline secrets are refused unless credentials.allow_inline is true; use an env, file, exec or vault reference"
		}
		v.add(field, msg)
	}
}

// nested adds each problem an embedded configuration's Validate reports,
// under prefix.
func (v *validator) nested(prefix string, err error) {
	if err == nil {
		return
	}
	var multi interface{ Unwrap() []error }
	errs := []error{err}
	if errors.As(err, &multi) {
		errs = multi.Unwrap()
	}
	for _, e := range errs {
		var fe *credstore.FieldError
		if errors.As(e, &fe) {
			v.add(prefix+"."+fe.Field, fe.Msg)
		} else {
			v.add(prefix, e.Error())
		}
	}
}

func (v *validator) oneOf(field, val string, allowed ...string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	v.add(field, fmt.Sprintf("%q is not one of %s", val, strings.Join(allowed, ", ")))
}

// hostPort checks a host:port address and reports whether it is valid.
func (v *validator) hostPort(field, val string) bool {
	if val == "" {
		v.add(field, "is required (host:port)")
		return false
	}
	_, port, err := net.SplitHostPort(val)
	if err != nil {
		v.add(field, fmt.Sprintf("%q: must be host:port", val))
		return false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add(field, fmt.Sprintf("%q: port must be a number from 0 to 65535", val))
		return false
	}
	return true
}

func (v *validator) sha256(field, val string) {
	b, err := hex.DecodeString(strings.TrimSpace(val))
	if err != nil || len(b) != 32 {
		v.add(field, "must be 64 hex digits (see `refserver token hash`)")
	}
}

func (v *validator) nonNegative(field string, n int) {
	if n < 0 {
		v.add(field, "must not be negative")
	}
}

func (v *validator) duration(field string, d Duration) {
	switch {
	case d.bad != "":
		v.add(field, fmt.Sprintf("%q is not a duration (use Go syntax such as 30s or 5m)", d.bad))
	case d.Duration < 0:
		v.add(field, "must not be negative")
	}
}
