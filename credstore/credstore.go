// Package credstore holds the backend credentials the gateway uses on the
// caller's behalf. Its central types are Credential, what a backend login
// needs, and Store, which resolves a Ref into a Credential. Secrets are typed
// Secret so that formatting, logging or JSON-encoding one by accident prints
// a placeholder instead of the value.
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
// reference to the secret, such as "env:PG_PASSWORD", "file:/run/secrets/pg"
// or "inline:..." (tests and demos only).
type Ref struct {
	Username string `yaml:"username" json:"username"`
	Password string `yaml:"password" json:"password"`
}

// Store resolves a reference into a credential.
type Store interface {
	Resolve(ctx context.Context, ref Ref) (Credential, error)
}

// ErrNotFound is wrapped when a referenced secret does not exist.
var ErrNotFound = errors.New("credential not found")

// Default resolves the built-in schemes: env:NAME, file:PATH and
// inline:VALUE. An empty password reference resolves to an empty secret (a
// backend that needs none).
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
		return Credential{}, fmt.Errorf("credstore: password reference must be env:NAME, file:PATH or inline:VALUE")
	}
	switch scheme {
	case "env":
		v, ok := os.LookupEnv(rest)
		if !ok {
			return Credential{}, fmt.Errorf("credstore: environment variable %s: %w", rest, ErrNotFound)
		}
		c.Password = NewSecret(v)
	case "file":
		b, err := os.ReadFile(rest)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return Credential{}, fmt.Errorf("credstore: file %s: %w", rest, ErrNotFound)
			}
			return Credential{}, fmt.Errorf("credstore: file %s: cannot read it", rest)
		}
		c.Password = NewSecret(strings.TrimRight(string(b), "\r\n"))
	case "inline":
		if !d.AllowInline {
			return Credential{}, fmt.Errorf("credstore: inline secrets are disabled; use env: or file:")
		}
		c.Password = NewSecret(rest)
	default:
		return Credential{}, fmt.Errorf("credstore: unknown reference scheme %q (want env, file or inline)", scheme)
	}
	return c, nil
}

// ValidateRef checks the syntax of a reference without resolving it.
func ValidateRef(ref Ref) error {
	if ref.Password == "" {
		return nil
	}
	scheme, rest, ok := strings.Cut(ref.Password, ":")
	if !ok || rest == "" {
		return fmt.Errorf("password reference must be env:NAME, file:PATH or inline:VALUE")
	}
	switch scheme {
	case "env", "file", "inline":
		return nil
	}
	return fmt.Errorf("unknown reference scheme %q (want env, file or inline)", scheme)
}
