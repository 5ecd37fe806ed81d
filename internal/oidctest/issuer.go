// Package oidctest runs an OpenID Connect issuer in-process, on a loopback
// httptest server, for tests of token verification and login flows. Its
// central type is Issuer.
//
// An Issuer serves
//
//	/.well-known/openid-configuration  discovery (OpenID Connect Discovery 1.0 §4)
//	/jwks                              the published keys (RFC 7517 §5)
//	/authorize, /token                 the authorization-code flow with PKCE S256 (RFC 6749 §4.1, RFC 7636)
//
// and lets a test mint tokens with any claims and header (Mint, MintWith),
// rotate keys (Rotate), forge tokens (MintForged, MintNone, MintHMAC), take
// the issuer down (Down, Up) and count key-set fetches (JWKSFetches).
//
// It is a test double: it does no user authentication (/authorize logs in
// the configured user at once) and keeps everything in memory.
package oidctest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Outage is how a stopped issuer fails.
type Outage int

// Outage modes for Issuer.Down.
const (
	// Refused closes the listener, so connections are refused.
	Refused Outage = iota + 1
	// Unavailable keeps listening and answers every request with 503.
	Unavailable
)

// Issuer is an in-process OpenID Connect issuer. URL is both its issuer
// identifier (the "iss" of its tokens) and its base URL. All methods are
// safe for concurrent use.
type Issuer struct {
	// URL is the issuer identifier, e.g. http://127.0.0.1:41234.
	URL string

	now func() time.Time

	mu        sync.Mutex
	srv       *httptest.Server
	addr      string
	outage    Outage
	published []*Key          // in the JWKS, newest last
	signing   map[string]*Key // alg → key Mint uses for it
	user      map[string]any
	clients   map[string]Client
	codes     map[string]*grant

	jwksFetches      atomic.Int64
	discoveryFetches atomic.Int64
}

// Option configures an Issuer.
type Option func(*Issuer)

// WithClock makes the issuer read the time from now, for iat/exp defaults
// and authorization-code lifetimes. Tests share it with the verifier.
func WithClock(now func() time.Time) Option {
	return func(is *Issuer) { is.now = now }
}

// Start runs an issuer on a loopback port with two published signing keys,
// one RS256 and one ES256, and the user "alice" for /authorize. Close it
// when done.
func Start(opts ...Option) (*Issuer, error) {
	is := &Issuer{
		now:     time.Now,
		signing: map[string]*Key{},
		clients: map[string]Client{},
		codes:   map[string]*grant{},
		user:    map[string]any{"sub": "alice", "email": "alice@example.test", "name": "Alice"},
	}
	for _, o := range opts {
		o(is)
	}
	for _, alg := range []string{"RS256", "ES256"} {
		k, err := NewKey(alg)
		if err != nil {
			return nil, err
		}
		is.published = append(is.published, k)
		is.signing[alg] = k
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("oidctest: listen: %w", err)
	}
	is.addr = ln.Addr().String()
	is.URL = "http://" + is.addr
	is.serve(ln)
	return is, nil
}

// New is Start for tests: it fails tb on error and closes the issuer when
// the test ends.
func New(tb testing.TB, opts ...Option) *Issuer {
	tb.Helper()
	is, err := Start(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(is.Close)
	return is
}

func (is *Issuer) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", is.handleDiscovery)
	mux.HandleFunc("GET /jwks", is.handleJWKS)
	mux.HandleFunc("GET /authorize", is.handleAuthorize)
	mux.HandleFunc("POST /token", is.handleToken)
	srv := httptest.NewUnstartedServer(is.unavailable(mux))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	is.srv = srv
}

// Close stops the issuer for good.
func (is *Issuer) Close() {
	is.mu.Lock()
	srv := is.srv
	is.srv = nil
	is.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Down simulates an outage: with Refused the listener is closed (clients see
// "connection refused"), with Unavailable every endpoint answers 503.
func (is *Issuer) Down(o Outage) {
	is.mu.Lock()
	is.outage = o
	srv := is.srv
	if o == Refused {
		is.srv = nil
	}
	is.mu.Unlock()
	if o == Refused && srv != nil {
		srv.Close()
	}
}

// Up ends an outage, listening again on the same address if needed.
func (is *Issuer) Up() error {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.outage = 0
	if is.srv != nil {
		return nil
	}
	ln, err := net.Listen("tcp", is.addr)
	if err != nil {
		return fmt.Errorf("oidctest: listen again on %s: %w", is.addr, err)
	}
	is.serve(ln)
	return nil
}

func (is *Issuer) unavailable(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jwks" {
			is.jwksFetches.Add(1)
		}
		if r.URL.Path == "/.well-known/openid-configuration" {
			is.discoveryFetches.Add(1)
		}
		is.mu.Lock()
		o := is.outage
		is.mu.Unlock()
		if o == Unavailable {
			http.Error(w, "issuer unavailable", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// JWKSFetches is how many requests reached the key-set endpoint, including
// those answered 503 during an Unavailable outage.
func (is *Issuer) JWKSFetches() int { return int(is.jwksFetches.Load()) }

// DiscoveryFetches is how many requests reached the discovery endpoint.
func (is *Issuer) DiscoveryFetches() int { return int(is.discoveryFetches.Load()) }

// JWKSURL is the URL of the key set.
func (is *Issuer) JWKSURL() string { return is.URL + "/jwks" }

// DiscoveryURL is the URL of the discovery document.
func (is *Issuer) DiscoveryURL() string { return is.URL + "/.well-known/openid-configuration" }

func (is *Issuer) handleDiscovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                is.URL,
		"authorization_endpoint":                is.URL + "/authorize",
		"token_endpoint":                        is.URL + "/token",
		"jwks_uri":                              is.JWKSURL(),
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256", "PS256", "ES256", "ES384"},
		"scopes_supported":                      []string{"openid", "profile", "email"},
		"grant_types_supported":                 []string{"authorization_code"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
	})
}

func (is *Issuer) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	is.mu.Lock()
	set := jose.JSONWebKeySet{}
	for _, k := range is.published {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: k.ID, Algorithm: k.Alg, Use: "sig"})
	}
	is.mu.Unlock()
	writeJSON(w, http.StatusOK, set)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// SigningKey is the key Mint uses for alg ("RS256" or "ES256" from the
// start, others once rotated in), or nil.
func (is *Issuer) SigningKey(alg string) *Key {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.signing[alg]
}

// Publish adds k to the key set.
func (is *Issuer) Publish(k *Key) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.published = append(is.published, k)
}

// Unpublish removes the key with id kid from the key set.
func (is *Issuer) Unpublish(kid string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.published = slices.DeleteFunc(is.published, func(k *Key) bool { return k.ID == kid })
}

// Rotate makes a new key for alg (new kid), publishes it and makes it the
// one Mint uses for alg. Unless keepOld, the previous keys for alg are
// unpublished.
func (is *Issuer) Rotate(alg string, keepOld bool) *Key {
	k := mustKey(alg)
	is.mu.Lock()
	defer is.mu.Unlock()
	if !keepOld {
		is.published = slices.DeleteFunc(is.published, func(p *Key) bool { return p.Alg == alg })
	}
	is.published = append(is.published, k)
	is.signing[alg] = k
	return k
}

// Claims returns the usual claims of an access token for sub: iss, sub,
// aud, iat (now) and exp (now + 1h). Change or delete entries before
// minting.
func (is *Issuer) Claims(sub string, aud ...string) map[string]any {
	now := is.now()
	c := map[string]any{
		"iss": is.URL,
		"sub": sub,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
	switch len(aud) {
	case 0:
	case 1:
		c["aud"] = aud[0]
	default:
		c["aud"] = aud
	}
	return c
}

// Mint signs claims, exactly as given, with the RS256 signing key.
func (is *Issuer) Mint(claims map[string]any) string {
	return is.SigningKey("RS256").sign(claims, nil)
}

// MintWith signs claims with k, which need not be published. Entries of
// header override the default header {"alg", "typ": "JWT", "kid"}; a nil
// value removes the field.
func (is *Issuer) MintWith(k *Key, claims, header map[string]any) string {
	return k.sign(claims, header)
}

// MintForged returns a token whose header names the published key kid but
// which is signed by a fresh key of the same algorithm that was never
// published: a bad signature.
func (is *Issuer) MintForged(kid string, claims map[string]any) string {
	alg := "RS256"
	is.mu.Lock()
	for _, k := range is.published {
		if k.ID == kid {
			alg = k.Alg
		}
	}
	is.mu.Unlock()
	return mustKey(alg).sign(claims, map[string]any{"kid": kid})
}

// MintNone returns an unsigned ("alg": "none") token over claims.
func (is *Issuer) MintNone(claims map[string]any) string { return MintNone(claims) }
