package gateway

import (
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/recording"
)

// Defaults applied by New to zero fields.
const (
	DefaultMaxSessions      = 1000
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultShutdownGrace    = 10 * time.Second
	DefaultMaxMessageSize   = 64 << 20
	DefaultRecordRows       = 100
	DefaultRecordBytes      = 64 << 10
	DefaultConnectTimeout   = 10 * time.Second
)

// Config wires a Gateway. Authenticator, Decider, Credentials and Recording
// are required; everything else has a default.
type Config struct {
	// DataDir holds generated state: the self-signed TLS certificate
	// (DataDir/tls/) of targets without a TLS configuration.
	DataDir string
	// Targets are the backends served, one listener each.
	Targets []TargetConfig
	// Authenticator turns a presented token into an identity.
	Authenticator identity.Authenticator
	// ExpiryGrace lets a session outlive its caller's credential by this
	// much (clock skew between the identity provider and the gateway);
	// at expiry plus grace the session is ended. Zero: at expiry.
	ExpiryGrace time.Duration
	// Decider decides each command.
	Decider policy.Decider
	// Credentials resolves the targets' backend credentials.
	Credentials credstore.Store
	// Recording opens one recorder per session. A session whose recorder
	// cannot be opened is refused, and a command that cannot be recorded
	// is denied (fail closed).
	Recording recording.Sink
	// Logger receives structured logs; default slog.Default().
	Logger *slog.Logger
	// Registerer receives the gateway's metrics; nil registers them in a
	// private registry (with Go and process collectors) that
	// AdminHandler's /metrics serves.
	Registerer prometheus.Registerer
	// Gatherer is what /metrics serves when Registerer is set; default:
	// Registerer itself if it is a Gatherer (a *prometheus.Registry is).
	Gatherer prometheus.Gatherer
	// Approvals, when set, holds commands whose decision is
	// require_approval until approvers decide (see approval.Broker);
	// without it such commands are denied.
	Approvals *approval.Broker
	// Masking configures the maskers compiled from decisions' mask entries
	// (the pseudonym key of the hash strategy, the redaction token,
	// custom detectors). A decision whose entries do not compile is
	// denied.
	Masking masking.Options
	// ShutdownGrace is how long Shutdown lets sessions drain before it
	// terminates them; default 10s.
	ShutdownGrace time.Duration
	// AdminTokenSHA256, when set, is the hex SHA-256 of a bearer token
	// that AdminHandler requires on every endpoint but /healthz and
	// /readyz (see WithAdminToken). identity.HashToken computes it.
	AdminTokenSHA256 string
	// AdminLogin, when set, lets approvers sign in to the approvals page
	// and API with OpenID Connect (see AdminLoginConfig); their own
	// identity tokens and the admin token keep working beside it.
	AdminLogin *AdminLoginConfig
}

// TargetConfig is one backend and the listener clients reach it on.
type TargetConfig struct {
	// Target names the backend; Protocol picks the plugin.
	Target protocol.Target
	// Listen is the client-facing address, host:port ("127.0.0.1:6432";
	// port 0 picks a free one, see Gateway.Addr).
	Listen string
	// Credential references the backend credential the gateway logs in
	// with.
	Credential credstore.Ref
	// TLS is the client-facing TLS configuration offered to clients
	// through Session.TLSConfig. Nil (and DisableTLS false) means a
	// self-signed certificate generated into DataDir/tls/ on first start
	// and reused afterwards.
	TLS *tls.Config
	// DisableTLS offers no client-facing TLS at all (tests). Tokens are
	// then accepted only when AllowPlaintextLoopback allows them.
	DisableTLS bool
	// AllowPlaintextLoopback accepts a token over a plaintext connection
	// when the client's address is a loopback address.
	AllowPlaintextLoopback bool
	// MaxSessions bounds concurrent connections to this target; default
	// 1000. Connections over the limit are handed to the plugin so that
	// the client reads its protocol's own error, and Authenticate refuses
	// them.
	MaxSessions int
	// HandshakeTimeout bounds the time from accept to a successful
	// Authenticate; default 10s.
	HandshakeTimeout time.Duration
	// Limits are handed to the plugin; zero fields get defaults
	// (MaxMessageSize 64 MiB, RecordRows 100, RecordBytes 64 KiB,
	// ConnectTimeout 10s).
	Limits protocol.Limits
}

// Validate reports every problem in c, one per line, each naming its field
// (`targets[1].listen: ...`). It does not change c.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Authenticator == nil {
		bad("authenticator", "required")
	}
	if c.Decider == nil {
		bad("decider", "required (use an allow-all decider only for development)")
	}
	if c.Credentials == nil {
		bad("credentials", "required")
	}
	if c.Recording == nil {
		bad("recording", "required: sessions are refused when they cannot be recorded")
	}
	if c.ShutdownGrace < 0 {
		bad("shutdown_grace", "must not be negative, got %s", c.ShutdownGrace)
	}
	if c.AdminTokenSHA256 != "" {
		if _, err := parseDigest(c.AdminTokenSHA256); err != nil {
			bad("admin_token_sha256", "%v", err)
		}
	}
	if c.AdminLogin != nil {
		if err := c.AdminLogin.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(c.Targets) == 0 {
		bad("targets", "at least one target is required")
	}
	names := map[string]int{}
	listens := map[string]int{}
	for i := range c.Targets {
		t := &c.Targets[i]
		p := fmt.Sprintf("targets[%d]", i)
		switch {
		case t.Target.Name == "":
			bad(p+".name", "required")
		case strings.TrimSpace(t.Target.Name) != t.Target.Name || strings.ContainsAny(t.Target.Name, " \t\r\n/"):
			bad(p+".name", "%q must not contain spaces or slashes", t.Target.Name)
		default:
			if j, dup := names[t.Target.Name]; dup {
				bad(p+".name", "%q is already the name of targets[%d]", t.Target.Name, j)
			} else {
				names[t.Target.Name] = i
			}
		}
		if t.Target.Protocol == "" {
			bad(p+".protocol", "required (registered: %s)", strings.Join(protocol.Protocols(), ", "))
		} else if _, err := protocol.Lookup(t.Target.Protocol); err != nil {
			bad(p+".protocol", "%v", err)
		}
		if t.Target.Address == "" {
			bad(p+".address", "required")
		}
		if t.Listen == "" {
			bad(p+".listen", "required, e.g. 127.0.0.1:6432")
		} else if host, port, err := net.SplitHostPort(t.Listen); err != nil {
			bad(p+".listen", "%q is not host:port: %v", t.Listen, err)
		} else if n, err := strconv.ParseUint(port, 10, 16); err != nil {
			bad(p+".listen", "%q: port must be a number from 0 to 65535", t.Listen)
		} else if n != 0 {
			key := net.JoinHostPort(host, port)
			if j, dup := listens[key]; dup {
				bad(p+".listen", "%s is already the listen address of targets[%d]", t.Listen, j)
			} else {
				listens[key] = i
			}
		}
		if err := credstore.ValidateRef(t.Credential); err != nil {
			bad(p+".credential.password", "%v", err)
		}
		if t.TLS != nil && t.DisableTLS {
			bad(p+".disable_tls", "set either tls or disable_tls, not both")
		}
		if t.TLS == nil && !t.DisableTLS && c.DataDir == "" {
			bad("data_dir", "required to generate a TLS certificate for %s (or set %s.tls or %s.disable_tls)", p, p, p)
		}
		if t.MaxSessions < 0 {
			bad(p+".max_sessions", "must not be negative, got %d", t.MaxSessions)
		}
		if t.HandshakeTimeout < 0 {
			bad(p+".handshake_timeout", "must not be negative, got %s", t.HandshakeTimeout)
		}
		if t.Limits.MaxMessageSize < 0 {
			bad(p+".limits.max_message_size", "must not be negative, got %d", t.Limits.MaxMessageSize)
		}
		if t.Limits.RecordRows < 0 {
			bad(p+".limits.record_rows", "must not be negative, got %d", t.Limits.RecordRows)
		}
		if t.Limits.RecordBytes < 0 {
			bad(p+".limits.record_bytes", "must not be negative, got %d", t.Limits.RecordBytes)
		}
		if t.Limits.ConnectTimeout < 0 {
			bad(p+".limits.connect_timeout", "must not be negative, got %s", t.Limits.ConnectTimeout)
		}
		if t.Limits.ClientWriteTimeout < 0 {
			bad(p+".limits.client_write_timeout", "must not be negative, got %s", t.Limits.ClientWriteTimeout)
		}
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of c with defaults in its zero fields.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	ts := make([]TargetConfig, len(c.Targets))
	for i, t := range c.Targets {
		if t.MaxSessions == 0 {
			t.MaxSessions = DefaultMaxSessions
		}
		if t.HandshakeTimeout == 0 {
			t.HandshakeTimeout = DefaultHandshakeTimeout
		}
		if t.Limits.MaxMessageSize == 0 {
			t.Limits.MaxMessageSize = DefaultMaxMessageSize
		}
		if t.Limits.RecordRows == 0 {
			t.Limits.RecordRows = DefaultRecordRows
		}
		if t.Limits.RecordBytes == 0 {
			t.Limits.RecordBytes = DefaultRecordBytes
		}
		if t.Limits.ConnectTimeout == 0 {
			t.Limits.ConnectTimeout = DefaultConnectTimeout
		}
		ts[i] = t
	}
	c.Targets = ts
	return c
}

func parseDigest(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != 32 {
		return nil, errors.New("must be the 64 hex digits of a SHA-256 digest")
	}
	return b, nil
}
