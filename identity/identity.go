// Package identity says who is calling. Its central type is Identity, the
// verified caller of a session, produced by an Authenticator from whatever
// secret the protocol carried (a token in a PostgreSQL password, an HTTP
// bearer, a client certificate).
package identity

import (
	"context"
	"crypto/tls"
	"errors"
	"time"
)

// Method says how an Identity was established.
type Method string

// Authentication methods.
const (
	MethodOIDC    Method = "oidc"
	MethodToken   Method = "token"
	MethodMTLS    Method = "mtls"
	MethodSSHCert Method = "ssh-cert"
)

// Identity is a verified caller.
type Identity struct {
	Subject string         `json:"subject"`
	Issuer  string         `json:"issuer,omitempty"`
	Name    string         `json:"name,omitempty"`
	Email   string         `json:"email,omitempty"`
	Groups  []string       `json:"groups,omitempty"`
	Claims  map[string]any `json:"claims,omitempty"`
	Method  Method         `json:"method"`
	// Expiry is when the credential that proved this identity stops being
	// valid; zero means it does not expire.
	Expiry time.Time `json:"expiry,omitzero"`
}

// InGroup reports whether the identity is a member of group g.
func (id *Identity) InGroup(g string) bool {
	if id == nil {
		return false
	}
	for _, x := range id.Groups {
		if x == g {
			return true
		}
	}
	return false
}

// Credentials is what a caller presented. Token is the bearer secret (it is
// never logged); TLS is the client connection's TLS state, nil on a
// plaintext connection.
type Credentials struct {
	Token string
	TLS   *tls.ConnectionState
}

// Authenticator turns presented credentials into an Identity. It returns an
// error wrapping ErrUnauthenticated when the credentials do not prove an
// identity; the error never contains the secret.
type Authenticator interface {
	Authenticate(ctx context.Context, c Credentials) (*Identity, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, c Credentials) (*Identity, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, c Credentials) (*Identity, error) {
	return f(ctx, c)
}

// ErrUnauthenticated is wrapped by every authentication refusal.
var ErrUnauthenticated = errors.New("authentication failed")

// Chain tries each authenticator in turn and returns the first identity. A
// refusal (ErrUnauthenticated) moves on to the next; any other error (an
// unreachable identity provider) stops the chain and fails closed.
type Chain []Authenticator

// Authenticate implements Authenticator.
func (c Chain) Authenticate(ctx context.Context, cr Credentials) (*Identity, error) {
	var last error = ErrUnauthenticated
	for _, a := range c {
		id, err := a.Authenticate(ctx, cr)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, ErrUnauthenticated) {
			return nil, err
		}
		last = err
	}
	return nil, last
}
