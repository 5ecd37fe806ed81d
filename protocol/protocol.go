// Package protocol is the contract between the gateway and protocol
// plugins, and the protocol-neutral vocabulary they share: Target, Session,
// Command, Decision, Event. A plugin speaks one wire protocol; everything
// else (who the caller is, what policy says, recording, credentials) it
// reaches through the Session the gateway hands it.
//
// Plugins register themselves by name, like database/sql drivers:
//
//	func init() { protocol.Register("postgres", postgres.New) }
package protocol

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/masking"
)

// Plugin serves client connections of one protocol.
type Plugin interface {
	// Name is the protocol name targets refer to ("postgres").
	Name() string
	// Serve handles one client connection until it ends. The gateway
	// closes client after Serve returns; ctx is cancelled when the session
	// is terminated or the gateway shuts down.
	Serve(ctx context.Context, client net.Conn, s Session) error
}

// Drainer is an optional Plugin capability: Drain asks the plugin to end a
// session's connection at the next point where no command is in flight,
// for graceful shutdown. reason is recorded as the end reason.
type Drainer interface {
	Drain(s Session, reason string)
}

// PolicyVersioner is an optional Session capability. PolicyVersion changes
// whenever the policy deciding the session's commands changes; a plugin
// that keeps a decision for later use (a prepared statement checked at
// Parse, executed many times) checks again when the version it was decided
// under is no longer current.
type PolicyVersioner interface {
	PolicyVersion() uint64
}

// Session is what a plugin sees of the gateway for one client connection.
//
// The order of calls is fixed and enforced: Authenticate, then Check of a
// KindConnect command, then Credential and any other Check. Calls out of
// order fail with ErrNotAuthorized, so a plugin cannot reach a backend on
// behalf of an unchecked caller.
type Session interface {
	// Info describes the session; Identity is nil until Authenticate
	// succeeds.
	Info() SessionInfo
	// Limits are the limits the plugin must apply.
	Limits() Limits
	// TLSConfig is the client-facing TLS configuration, or nil when the
	// target has none.
	TLSConfig() *tls.Config
	// CheckTransport reports, before the caller sends a secret, whether
	// one may be sent over a connection with this TLS state (nil:
	// plaintext). A plugin calls it before asking for a password, so that
	// a refused client never puts its token on the wire; the error is
	// safe to show the client. Authenticate enforces the same rule.
	CheckTransport(state *tls.ConnectionState) error
	// Authenticate verifies the caller's credentials. It refuses a token
	// presented without TLS unless the target allows plaintext from the
	// client's address. The returned error is safe to show the client.
	Authenticate(ctx context.Context, c identity.Credentials) (*identity.Identity, error)
	// Check runs policy on a command, waits for approval if needed, and
	// records the command with its decision before returning. A recording
	// failure returns an error, and the plugin must not forward the
	// command. The Decision's Message is safe to show the client.
	//
	// While a command waits for approval, Check calls the NoticeFunc the
	// plugin put in ctx (WithNotice) to tell the client where to get it
	// approved; cancelling ctx (the client cancelled, or went away)
	// withdraws the request and the command is denied.
	Check(ctx context.Context, cmd *Command) (Decision, error)
	// Record records a plugin event (a result, output, an error). An error
	// means the recording is broken; later Checks fail closed.
	Record(ctx context.Context, ev Event) error
	// Credential resolves the target's backend credential. Never send it,
	// log it or record it.
	Credential(ctx context.Context) (credstore.Credential, error)
	// Masker returns the row masker a decision carries, or nil when there
	// is nothing to mask.
	Masker(d Decision) masking.RowMasker
	// Logger returns a logger that tags every line with the session id.
	Logger() *slog.Logger
}

// Limits bound what one session may use.
type Limits struct {
	// MaxMessageSize is the largest protocol message accepted from the
	// client, in bytes.
	MaxMessageSize int
	// RecordRows caps the rows of one result kept in the recording.
	RecordRows int
	// RecordBytes caps the bytes of one result's data kept in the
	// recording.
	RecordBytes int
	// ConnectTimeout bounds dialling and authenticating to the backend.
	ConnectTimeout time.Duration
	// ClientWriteTimeout ends a session whose client takes nothing the
	// gateway writes to it for this long: a client that stopped reading
	// in the middle of a result, which otherwise holds its session and
	// its backend connection until it goes away. A client that reads
	// slowly but steadily is not cut off; one that stops is noticed
	// between one and two timeouts later. Zero means no timeout, as with
	// PostgreSQL itself. Honoured by the postgres plugin.
	ClientWriteTimeout time.Duration
}

// Errors a plugin may branch on.
var (
	// ErrNotAuthorized is returned by Session calls made out of order.
	ErrNotAuthorized = errors.New("session is not authorized for this call")
	// ErrRecording is wrapped when the recorder cannot record; the command
	// is refused.
	ErrRecording = errors.New("recording unavailable, command refused")
	// ErrCredentialExpired is the cause of a session's context when the
	// gateway ends the session because the caller's credential expired; a
	// plugin tells its client so in the protocol's own terms.
	ErrCredentialExpired = errors.New("the caller's credential expired")
)

// Factory builds a plugin for one target from its protocol options.
type Factory func(t *Target) (Plugin, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Factory{}
)

// Register makes a plugin factory available by name. It panics if the name
// is empty or already registered, like database/sql.Register.
func Register(name string, f Factory) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if name == "" || f == nil {
		panic("protocol: Register with empty name or nil factory")
	}
	if _, dup := registry[name]; dup {
		panic("protocol: Register called twice for " + name)
	}
	registry[name] = f
}

// Lookup returns the factory registered under name.
func Lookup(name string) (Factory, error) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	f, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("protocol: no plugin registered for %q (registered: %v)", name, namesLocked())
	}
	return f, nil
}

// Protocols lists the registered plugin names, sorted.
func Protocols() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	return namesLocked()
}

func namesLocked() []string {
	n := make([]string, 0, len(registry))
	for k := range registry {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}
