// Package postgres is the PostgreSQL protocol plugin: a full relay of the
// frontend/backend protocol version 3 that terminates the client's
// connection (TLS, a token carried as the cleartext password), opens its
// own connection to the backend with the gateway's credential, and checks
// every simple query and every Parse through the session before anything
// reaches the backend. Its central type is Plugin; it registers itself as
// "postgres".
//
// Results stream through with bounded memory: each backend message is
// forwarded as it arrives, and the client-side buffer is flushed before the
// relay would block reading from the backend.
//
// A denied command is answered the way PostgreSQL itself answers a failing
// statement: the relay sends the backend a fixed statement that raises an
// error (so the backend's transaction state, ordering of pipelined replies
// and error-until-Sync skipping are PostgreSQL's own), and rewrites that
// error into an ErrorResponse with SQLSTATE 42501 naming the rule.
package postgres

import (
	"fmt"
	"strings"

	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/protocol/postgres/pgsql"
)

// Name is the protocol name targets use.
const Name = "postgres"

func init() { protocol.Register(Name, New) }

// Option keys read from Target.Options.
const (
	// OptDatabase fixes the backend database; when empty the client's
	// database parameter is used.
	OptDatabase = "database"
	// OptSSLMode is the libpq sslmode for the backend connection:
	// disable, allow, prefer (default), require, verify-ca, verify-full.
	OptSSLMode = "sslmode"
	// OptSSLRootCert is a CA file for verify-ca / verify-full.
	OptSSLRootCert = "sslrootcert"
)

// classifierCacheSize bounds the per-target cache of statement
// classifications.
const classifierCacheSize = 4096

// Plugin relays PostgreSQL connections for one target.
type Plugin struct {
	target *protocol.Target
	host   string
	port   string

	cancels    cancelRegistry
	classifier *pgsql.Classifier
	catalog    catalog

	conns protocol.Conns[*relay]
}

// New builds the plugin for a target. The target's Address is host:port
// of the backend server.
func New(t *protocol.Target) (protocol.Plugin, error) {
	host, port, err := splitHostPort(t.Address)
	if err != nil {
		return nil, fmt.Errorf("postgres: target %s: address: %w", t.Name, err)
	}
	switch m := t.Options[OptSSLMode]; m {
	case "", "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
	default:
		return nil, fmt.Errorf("postgres: target %s: options.sslmode %q is not a libpq sslmode", t.Name, m)
	}
	return &Plugin{target: t, host: host, port: port,
		classifier: pgsql.NewClassifier(classifierCacheSize)}, nil
}

// Name implements protocol.Plugin.
func (p *Plugin) Name() string { return Name }

// Drain implements protocol.Drainer: the session's connection is closed
// with an admin-shutdown error as soon as no command is in flight and no
// transaction is open.
func (p *Plugin) Drain(s protocol.Session, reason string) {
	if r, ok := p.conns.Get(s); ok {
		r.drain(reason)
	}
}

func splitHostPort(addr string) (string, string, error) {
	i := strings.LastIndexByte(addr, ':')
	if i <= 0 || i == len(addr)-1 {
		return "", "", fmt.Errorf("%q is not host:port", addr)
	}
	host, port := addr[:i], addr[i+1:]
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return host, port, nil
}
