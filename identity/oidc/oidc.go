// Package oidc authenticates callers by OpenID Connect / OAuth2 JWTs (access
// or ID tokens) from one or more configured issuers. Its central type is
// Authenticator, an identity.Authenticator.
//
// A token is matched to an issuer by its unverified "iss" claim, the only
// thing read before the signature is checked; its signature is then
// verified against that issuer's published key set (fetched through
// OpenID Connect discovery), and exp/nbf/iat, aud and the configured
// required claims are checked. Keys are cached: a token with an unknown key
// id triggers a refetch, at most once per MinRefreshInterval per issuer,
// and while the issuer is unreachable the cached keys keep verifying
// tokens until those tokens expire.
//
// Refusals wrap identity.ErrUnauthenticated and a reason (ErrExpired,
// ErrAudience, ...). When no key can be had because the issuer cannot be
// reached, the error wraps ErrProviderUnreachable instead, so that an
// identity.Chain fails closed. No error contains the token.
package oidc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/sluicegw/sluice/identity"
)

// maxTokenSize bounds the tokens parsed at all.
const maxTokenSize = 64 << 10

// Authenticator verifies JWTs from the configured issuers. It is safe for
// concurrent use and does no network I/O until a token needs keys.
type Authenticator struct {
	issuers map[string]*provider
	names   []string // configured issuer identifiers, for messages
	now     func() time.Time
}

var _ identity.Authenticator = (*Authenticator)(nil)

// Option adjusts an Authenticator.
type Option func(*options)

type options struct {
	client *http.Client
	now    func() time.Time
	log    *slog.Logger
}

// WithHTTPClient sets the client for discovery and key-set requests (for a
// proxy or a private CA). By default a client with a 10s timeout.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithClock sets the time source for token validity and refresh intervals.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLogger sets the logger for key refreshes; by default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// New validates cfg and builds the authenticator. It does not contact the
// issuers: discovery happens on first use (or Prefetch) and is retried
// while it fails, so an issuer that is down at startup does not stop the
// gateway.
func New(cfg Config, opts ...Option) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{client: &http.Client{Timeout: fetchTimeout}, now: time.Now, log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	a := &Authenticator{issuers: map[string]*provider{}, now: o.now}
	for _, ic := range cfg.Issuers {
		ic = ic.withDefaults()
		a.issuers[ic.Issuer] = newProvider(ic, o.client, o.now, o.log)
		a.names = append(a.names, ic.Issuer)
	}
	return a, nil
}

// Prefetch discovers every issuer and fetches its keys, returning the
// failures joined. A failure is not fatal (Authenticate retries); callers
// use it at startup to warm the cache and report misconfiguration early.
func (a *Authenticator) Prefetch(ctx context.Context) error {
	var errs []error
	for _, name := range a.names {
		p := a.issuers[name]
		p.refresh(ctx)
		p.mu.Lock()
		err := p.lastErr
		p.mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("oidc: issuer %s: %w: %w", name, ErrProviderUnreachable, err))
		}
	}
	return errors.Join(errs...)
}

// Authenticate implements identity.Authenticator for a bearer JWT in
// c.Token. The identity's Expiry is the token's exp.
func (a *Authenticator) Authenticate(ctx context.Context, c identity.Credentials) (*identity.Identity, error) {
	if c.Token == "" {
		return nil, fmt.Errorf("oidc: no token presented: %w", identity.ErrUnauthenticated)
	}
	return a.verify(ctx, c.Token, "", "")
}

// VerifyIDToken verifies an ID token obtained by the admin login flow
// (authorization code with PKCE) from issuer: the same checks as
// Authenticate, and also that the token comes from that issuer (not
// another configured one) and, when nonce is not empty, that its "nonce"
// claim equals it. The login's client ID must be among the issuer's
// audiences.
func (a *Authenticator) VerifyIDToken(ctx context.Context, issuer, rawIDToken, nonce string) (*identity.Identity, error) {
	if issuer == "" {
		return nil, errors.New("oidc: VerifyIDToken: issuer is required")
	}
	if rawIDToken == "" {
		return nil, fmt.Errorf("oidc: no ID token: %w", identity.ErrUnauthenticated)
	}
	return a.verify(ctx, rawIDToken, issuer, nonce)
}

// Endpoint returns the discovered OAuth2 authorization and token endpoints
// of a configured issuer, for the admin login flow.
func (a *Authenticator) Endpoint(ctx context.Context, issuer string) (oauth2.Endpoint, error) {
	p := a.issuers[issuer]
	if p == nil {
		return oauth2.Endpoint{}, fmt.Errorf("oidc: issuer %q is not configured", issuer)
	}
	op, err := p.discovered(ctx)
	if err != nil {
		return oauth2.Endpoint{}, err
	}
	return op.Endpoint(), nil
}

// header is the part of the JOSE header read before verification.
type header struct {
	Alg string `json:"alg"`
}

func (a *Authenticator) verify(ctx context.Context, raw, wantIssuer, nonce string) (*identity.Identity, error) {
	if len(raw) > maxTokenSize {
		return nil, refuse(ErrMalformed, "", "token longer than %d bytes", maxTokenSize)
	}
	parts := strings.Split(raw, ".")
	switch len(parts) {
	case 3:
	case 5:
		return nil, refuse(ErrMalformed, "", "encrypted (JWE) tokens are not supported")
	default:
		return nil, refuse(ErrMalformed, "", "not a JWT (want three dot-separated parts)")
	}
	var h header
	if err := decodeSegment(parts[0], &h); err != nil {
		return nil, refuse(ErrMalformed, "", "header: %v", err)
	}
	if strings.EqualFold(h.Alg, "none") {
		return nil, refuse(ErrAlgorithm, "", `alg "none" (an unsigned token) is never accepted`)
	}

	// The unverified read: "iss" picks the issuer whose keys and rules
	// apply. Nothing else is trusted before the signature is checked.
	var peek struct {
		Iss any `json:"iss"`
	}
	if err := decodeSegment(parts[1], &peek); err != nil {
		return nil, refuse(ErrMalformed, "", "payload: %v", err)
	}
	iss, _ := peek.Iss.(string)
	if iss == "" {
		return nil, refuse(ErrUnknownIssuer, "", "token has no \"iss\" claim")
	}
	p := a.issuers[iss]
	if p == nil {
		return nil, refuse(ErrUnknownIssuer, "", "issuer %q is not configured (configured: %s)", clip(iss), strings.Join(a.names, ", "))
	}
	if wantIssuer != "" && iss != wantIssuer {
		return nil, refuse(ErrUnknownIssuer, "", "token issued by %q, expected %q", clip(iss), wantIssuer)
	}
	cfg := p.cfg
	if !slices.Contains(cfg.AllowedAlgs, h.Alg) {
		return nil, refuse(ErrAlgorithm, iss, "algorithm %q is not allowed (allowed: %s)", clip(h.Alg), strings.Join(cfg.AllowedAlgs, ", "))
	}
	jws, err := jose.ParseSignedCompact(raw, p.algs)
	if err != nil {
		return nil, refuse(ErrMalformed, iss, "cannot parse JWS: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, refuse(ErrMalformed, iss, "want exactly one signature, got %d", len(jws.Signatures))
	}
	sig := jws.Signatures[0]
	alg := sig.Header.Algorithm

	keys, err := p.verificationKeys(ctx, sig.Header.KeyID, alg)
	if err != nil {
		return nil, err
	}
	var payload []byte
	for _, k := range keys {
		if payload, err = jws.Verify(k.key); err == nil {
			break
		}
	}
	if payload == nil {
		return nil, refuse(ErrSignature, iss, "signature does not verify with key %q", sig.Header.KeyID)
	}

	// From here on the claims are verified.
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil || claims == nil {
		return nil, refuse(ErrMalformed, iss, "payload is not a JSON object")
	}
	if claims["iss"] != iss {
		return nil, refuse(ErrMalformed, iss, "verified \"iss\" differs from the parsed one")
	}
	expiry, err := a.checkTimes(claims, cfg)
	if err != nil {
		return nil, err
	}
	aud, err := audiences(claims)
	if err != nil {
		return nil, refuse(ErrMalformed, iss, "%v", err)
	}
	if !slices.ContainsFunc(aud, func(s string) bool { return slices.Contains(cfg.Audiences, s) }) {
		if len(aud) == 0 {
			return nil, refuse(ErrAudience, iss, "token has no audience; expected one of %q", cfg.Audiences)
		}
		return nil, refuse(ErrAudience, iss, "token is for %q; expected one of %q", clipAll(aud), cfg.Audiences)
	}
	if nonce != "" {
		if got, _ := claims["nonce"].(string); got != nonce {
			return nil, refuse(ErrClaim, iss, "nonce does not match the login request")
		}
	}
	for _, path := range slices.Sorted(maps.Keys(cfg.RequiredClaims)) {
		if why := checkRequired(claims, path, cfg.RequiredClaims[path]); why != "" {
			return nil, refuse(ErrClaim, iss, "%s", why)
		}
	}
	return mapIdentity(claims, cfg, expiry)
}

// checkTimes applies exp (required), nbf and iat with the clock skew, and
// returns the expiry.
func (a *Authenticator) checkTimes(claims map[string]any, cfg IssuerConfig) (time.Time, error) {
	iss, skew, now := cfg.Issuer, cfg.ClockSkew, a.now()
	exp, ok, err := numericDate(claims, "exp")
	if err != nil {
		return time.Time{}, refuse(ErrMalformed, iss, "%v", err)
	}
	if !ok {
		return time.Time{}, refuse(ErrClaim, iss, "token has no \"exp\" claim; tokens that never expire are not accepted")
	}
	if now.After(exp.Add(skew)) {
		return time.Time{}, refuse(ErrExpired, iss, "token expired at %s (%s ago; allowed clock skew %s)",
			exp.UTC().Format(time.RFC3339), now.Sub(exp).Round(time.Second), skew)
	}
	nbf, ok, err := numericDate(claims, "nbf")
	if err != nil {
		return time.Time{}, refuse(ErrMalformed, iss, "%v", err)
	}
	if ok && nbf.After(now.Add(skew)) {
		return time.Time{}, refuse(ErrNotYetValid, iss, "token not valid before %s (%s from now; allowed clock skew %s)",
			nbf.UTC().Format(time.RFC3339), nbf.Sub(now).Round(time.Second), skew)
	}
	iat, ok, err := numericDate(claims, "iat")
	if err != nil {
		return time.Time{}, refuse(ErrMalformed, iss, "%v", err)
	}
	if ok && iat.After(now.Add(skew)) {
		return time.Time{}, refuse(ErrNotYetValid, iss, "token issued in the future, at %s (%s from now; allowed clock skew %s)",
			iat.UTC().Format(time.RFC3339), iat.Sub(now).Round(time.Second), skew)
	}
	return exp, nil
}

func mapIdentity(claims map[string]any, cfg IssuerConfig, expiry time.Time) (*identity.Identity, error) {
	iss := cfg.Issuer
	sub, err := stringClaim(claims, cfg.SubjectClaim)
	if err != nil {
		return nil, refuse(ErrClaim, iss, "%v", err)
	}
	if sub == "" {
		return nil, refuse(ErrClaim, iss, "missing subject claim %q", cfg.SubjectClaim)
	}
	email, err := stringClaim(claims, cfg.EmailClaim)
	if err != nil {
		return nil, refuse(ErrClaim, iss, "%v", err)
	}
	name, err := stringClaim(claims, cfg.NameClaim)
	if err != nil {
		return nil, refuse(ErrClaim, iss, "%v", err)
	}
	groups, err := groupsClaim(claims, cfg.GroupsClaim)
	if err != nil {
		return nil, refuse(ErrClaim, iss, "%v", err)
	}
	return &identity.Identity{
		Method:  identity.MethodOIDC,
		Subject: sub,
		Issuer:  iss,
		Email:   email,
		Name:    name,
		Groups:  groups,
		Claims:  claims,
		Expiry:  expiry,
	}, nil
}

// decodeSegment decodes one base64url JSON segment of a compact JWS.
func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return errors.New("not base64url")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errors.New("not a JSON object")
	}
	return nil
}

// clip shortens attacker-chosen strings before they go into messages.
func clip(s string) string {
	const limit = 128
	if len(s) > limit {
		return s[:limit] + "…"
	}
	return s
}

func clipAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = clip(s)
	}
	return out
}
