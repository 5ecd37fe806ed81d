package oidc

import (
	"errors"
	"fmt"

	"github.com/sluicegw/sluice/identity"
)

// Reasons a token is refused. Every refusal wraps one of these and
// identity.ErrUnauthenticated, so callers can branch on either.
var (
	ErrMalformed     = errors.New("malformed token")
	ErrUnknownIssuer = errors.New("unknown issuer")
	ErrAlgorithm     = errors.New("disallowed signing algorithm")
	ErrUnknownKey    = errors.New("unknown signing key")
	ErrSignature     = errors.New("bad signature")
	ErrExpired       = errors.New("token expired")
	ErrNotYetValid   = errors.New("token not yet valid")
	ErrAudience      = errors.New("wrong audience")
	ErrClaim         = errors.New("missing or mismatched claim")
)

// ErrProviderUnreachable is wrapped when no key could be had to verify a
// token because the issuer's discovery document or key set could not be
// fetched. It does NOT wrap identity.ErrUnauthenticated: the caller is not
// refused for who they are, the gateway cannot tell, and an
// identity.Chain fails closed instead of trying the next authenticator.
var ErrProviderUnreachable = errors.New("identity provider unreachable")

// refusal is a token refusal: a reason sentinel plus a message for people.
// The message never includes the token.
type refusal struct {
	reason error
	issuer string
	msg    string
}

func refuse(reason error, issuer, format string, args ...any) error {
	return &refusal{reason: reason, issuer: issuer, msg: fmt.Sprintf(format, args...)}
}

func (r *refusal) Error() string {
	if r.issuer != "" {
		return fmt.Sprintf("oidc: issuer %s: %s: %v", r.issuer, r.msg, identity.ErrUnauthenticated)
	}
	return fmt.Sprintf("oidc: %s: %v", r.msg, identity.ErrUnauthenticated)
}

func (r *refusal) Unwrap() []error { return []error{r.reason, identity.ErrUnauthenticated} }
