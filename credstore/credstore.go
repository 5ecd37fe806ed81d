// Package credstore holds the backend credentials the gateway uses on the
// caller's behalf. Its central types are Credential, what a backend login
// needs, and Store, which resolves a Ref into a Credential. Secrets are typed
// Secret so that formatting, logging or JSON-encoding one by accident prints
// a placeholder instead of the value.
//
// A reference is SCHEME:VALUE:
//
//	env:NAME            an environment variable
//	file:PATH           a file's content without its trailing line break;
//	                    re-read when the file changes
//	exec:PROGRAM ARGS   a command's standard output (below)
//	vault:MOUNT/PATH[?version=N][#FIELD]
//	                    a field (default password) of a HashiCorp Vault KV v2
//	                    secret; see VaultRef
//	inline:VALUE        the value itself (tests and demos, when allowed)
//
// Default resolves env:, file: and inline: with no state. New builds a
// Resolver from a Config that resolves all of them, caches what it
// resolved for a bounded time, and drops it on Purge or Close.
//
// # exec: references
//
// The words after "exec:" are split as SplitCommand says and run directly,
// not through a shell, with the gateway's environment, for at most
// ExecConfig.Timeout. Like a kubectl credential plugin, the command prints
// the secret on standard output, either as plain text (a trailing line
// break is dropped) or as a JSON object
//
//	{"password": "...", "expires_at": "2030-01-02T15:04:05Z"}
//
// whose expires_at (RFC 3339, optional) says how long the secret may be
// reused instead of ExecConfig.TTL. Output that parses as a JSON object is
// always read this way, so a secret that is itself a JSON object must be
// wrapped in one. A command that cannot start, exits non-zero, runs too
// long, or prints nothing is an error naming the program (never its
// arguments, which may hold a secret) and its exit status. Standard output
// never appears in an error, since it is where the secret is. Standard
// error is shown as its last line only, cut to 120 bytes, with any line the
// same run printed on standard output masked, because that line is usually
// the command's own diagnosis ("error: not logged in") and without it an
// operator sees only "exit status 1". A command that may echo the secret
// to standard error (a shell script with set -x) should be configured with
// ExecConfig.HideStderr, which leaves standard error out entirely. The
// ExecConfig.TTL (or expires_at) says how long output is reused;
// concurrent Resolves of one reference share one run, and a failure is
// never cached.
//
// # Secrets in memory
//
// Cached secrets expire by TTL (a timer drops them even if nobody asks
// again) and Purge or Close drops them at once. Go cannot wipe a string,
// so dropping means the garbage collector may reclaim it.
package credstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// Secret is a secret value. Its String, GoString, LogValue and MarshalJSON
// methods never reveal it; call Reveal where the value is really needed.
type Secret struct{ v string }

// NewSecret wraps a value.
func NewSecret(v string) Secret { return Secret{v: v} }

// Reveal returns the secret value.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

const redacted = "[redacted]"

// String implements fmt.Stringer without revealing the secret.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer without revealing the secret.
func (s Secret) GoString() string { return redacted }

// LogValue implements slog.LogValuer without revealing the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON encodes the placeholder, never the secret.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// Credential is what the gateway presents to a backend.
type Credential struct {
	Username string
	Password Secret
}

// Ref says where a target's credential comes from: a user name and a
// reference to the secret, such as "env:PG_PASSWORD", "file:/run/secrets/pg",
// "exec:/usr/local/bin/pg-password orders", "vault:secret/data/pg#password"
// or "inline:..." (tests and demos only).
type Ref struct {
	Username string `yaml:"username" json:"username"`
	Password string `yaml:"password" json:"password"`
}

// Store resolves a reference into a credential.
type Store interface {
	Resolve(ctx context.Context, ref Ref) (Credential, error)
}

// Errors callers may branch on with errors.Is.
var (
	// ErrNotFound is wrapped when a referenced secret does not exist.
	ErrNotFound = errors.New("credential not found")
	// ErrDenied is wrapped when the secret's store refuses access (Vault's
	// 403 for a valid token).
	ErrDenied = errors.New("access to the credential denied")
	// ErrClosed is returned by a Resolver after Close.
	ErrClosed = errors.New("credential store closed")
)

// refForms lists the reference forms for error messages.
const refForms = "env:NAME, file:PATH, exec:COMMAND, vault:MOUNT/PATH#FIELD or inline:VALUE"

// Default resolves the stateless schemes: env:NAME, file:PATH (read on
// every Resolve) and inline:VALUE. exec: and vault: need a Resolver from
// New. An empty password reference resolves to an empty secret (a backend
// that needs none).
type Default struct {
	// AllowInline permits inline: references. Off unless a configuration
	// says so, since an inline secret lives in a config file.
	AllowInline bool
}

// Resolve implements Store. Errors name the reference's scheme and source,
// never the secret.
func (d Default) Resolve(_ context.Context, ref Ref) (Credential, error) {
	c := Credential{Username: ref.Username}
	if ref.Password == "" {
		return c, nil
	}
	scheme, rest, ok := strings.Cut(ref.Password, ":")
	if !ok {
		return Credential{}, errors.New("credstore: password reference must be " + refForms)
	}
	var err error
	switch scheme {
	case "env":
		c.Password, err = lookupEnv(rest)
	case "file":
		c.Password, err = readFile(rest)
	case "inline":
		if !d.AllowInline {
			return Credential{}, errors.New("credstore: inline secrets are disabled; use an env or file reference")
		}
		c.Password = NewSecret(rest)
	case "exec", "vault":
		return Credential{}, fmt.Errorf("credstore: %s: references need a store built by credstore.New (Default resolves env:, file: and inline:)", scheme)
	default:
		return Credential{}, fmt.Errorf("credstore: %w", unknownScheme(scheme))
	}
	if err != nil {
		return Credential{}, fmt.Errorf("credstore: %w", err)
	}
	return c, nil
}

func lookupEnv(name string) (Secret, error) {
	v, ok := os.LookupEnv(name)
	if !ok {
		return Secret{}, fmt.Errorf("environment variable %s: %w", name, ErrNotFound)
	}
	return NewSecret(v), nil
}

func readFile(path string) (Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Secret{}, fileError(path, err)
	}
	return NewSecret(strings.TrimRight(string(b), "\r\n")), nil
}

// fileError describes a failure to read a secret file without the
// operating system's wording beyond its kind.
func fileError(path string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("file %s: %w", path, ErrNotFound)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("file %s: cannot read it: permission denied", path)
	}
	return fmt.Errorf("file %s: cannot read it", path)
}

// ValidateRef checks the syntax of a reference without resolving it. It
// does not know whether a store enables the scheme; Config.ValidateRef
// does.
func ValidateRef(ref Ref) error {
	if ref.Password == "" {
		return nil
	}
	scheme, rest, ok := strings.Cut(ref.Password, ":")
	if !ok || rest == "" {
		return errors.New("password reference must be " + refForms)
	}
	switch scheme {
	case "env", "file", "inline":
		return nil
	case "exec":
		if _, err := SplitCommand(rest); err != nil {
			return fmt.Errorf("exec reference: %v", err)
		}
		return nil
	case "vault":
		_, err := ParseVaultRef(rest)
		return err
	}
	return unknownScheme(scheme)
}

// unknownScheme names a scheme it does not know, unless the "scheme" does
// not look like one: then the reference is probably a literal password
// with a colon in it, and none of it is echoed.
func unknownScheme(scheme string) error {
	const want = "want env, file, exec, vault or inline"
	ok := len(scheme) <= 16
	for i, c := range scheme {
		if !(c >= 'a' && c <= 'z' || i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.')) {
			ok = false
		}
	}
	if !ok {
		return errors.New("unknown reference scheme (" + want + ")")
	}
	return fmt.Errorf("unknown reference scheme %q (%s)", scheme, want)
}
