package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

const (
	// fetchTimeout bounds one discovery or key-set request.
	fetchTimeout = 10 * time.Second
	// maxDocument bounds the size of a discovery document or key set.
	maxDocument = 1 << 20
	// minRSABits is the smallest RSA key accepted from a key set.
	minRSABits = 2048
)

// provider is the verifier's view of one issuer: its discovered metadata
// and a cache of its signing keys, refreshed on demand at most once per
// MinRefreshInterval.
//
// go-oidc's RemoteKeySet is not used for the cache: it refetches on every
// signature that fails to verify (a known key id with a bad signature
// included) with no rate limit, fetches from a goroutine that outlives the
// call, and flattens fetch failures into strings, so a verifier built on it
// cannot tell "unknown key" from "issuer unreachable".
type provider struct {
	cfg    IssuerConfig
	algs   []jose.SignatureAlgorithm
	client *http.Client
	now    func() time.Time
	log    *slog.Logger

	mu          sync.Mutex
	op          *gooidc.Provider // nil until discovered
	jwksURL     string
	keys        []publicKey
	fetchedAt   time.Time     // last successful key-set fetch
	attemptedAt time.Time     // last refresh attempt, successful or not
	lastErr     error         // error of the last attempt; nil if it succeeded
	inflight    chan struct{} // closed when the running refresh ends
}

// publicKey is one usable key of the issuer's key set.
type publicKey struct {
	id  string
	alg string // the key's "alg", empty if it named none
	key crypto.PublicKey
}

func newProvider(cfg IssuerConfig, client *http.Client, now func() time.Time, log *slog.Logger) *provider {
	p := &provider{cfg: cfg, client: client, now: now, log: log.With("issuer", cfg.Issuer)}
	for _, a := range cfg.AllowedAlgs {
		p.algs = append(p.algs, jose.SignatureAlgorithm(a))
	}
	return p
}

// verificationKeys returns the cached keys that could have signed a token
// with key id kid (any key if kid is empty) and algorithm alg, refreshing
// the key set first when no key fits or the cache is older than
// KeyCacheTTL. When the refresh fails, cached keys stay in use; with none
// fitting, the error wraps ErrProviderUnreachable, not a refusal.
func (p *provider) verificationKeys(ctx context.Context, kid, alg string) ([]publicKey, error) {
	keys, fresh := p.cached(kid, alg)
	if len(keys) > 0 && fresh {
		return keys, nil
	}
	p.refresh(ctx)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("oidc: issuer %s: waiting for keys: %w", p.cfg.Issuer, err)
	}
	if keys, _ = p.cached(kid, alg); len(keys) > 0 {
		return keys, nil
	}
	p.mu.Lock()
	lastErr, fetchedAt := p.lastErr, p.fetchedAt
	p.mu.Unlock()
	if lastErr != nil {
		return nil, fmt.Errorf("oidc: issuer %s: %w: %w", p.cfg.Issuer, ErrProviderUnreachable, lastErr)
	}
	if p.hasKey(kid) {
		return nil, refuse(ErrAlgorithm, p.cfg.Issuer, "key %q cannot verify %s signatures", kid, alg)
	}
	if kid == "" {
		return nil, refuse(ErrUnknownKey, p.cfg.Issuer, "token has no key id and no key in the issuer's key set fits %s", alg)
	}
	return nil, refuse(ErrUnknownKey, p.cfg.Issuer,
		"unknown key id %q: not in the issuer's key set (fetched %s ago; refetched at most every %s)",
		kid, p.now().Sub(fetchedAt).Round(time.Second), p.cfg.MinRefreshInterval)
}

// cached returns the cached keys that fit kid and alg, and whether the
// cache is younger than KeyCacheTTL.
func (p *provider) cached(kid, alg string) ([]publicKey, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []publicKey
	for _, k := range p.keys {
		if (kid == "" || k.id == kid) && (k.alg == "" || k.alg == alg) && keyFits(k.key, alg) {
			out = append(out, k)
		}
	}
	fresh := !p.fetchedAt.IsZero() && p.now().Sub(p.fetchedAt) < p.cfg.KeyCacheTTL
	return out, fresh
}

// hasKey reports whether a key with id kid is cached, whatever its type.
func (p *provider) hasKey(kid string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return kid != "" && slices.ContainsFunc(p.keys, func(k publicKey) bool { return k.id == kid })
}

// keyFits reports whether key can verify signatures of alg, so a key of
// the wrong type or curve is never tried.
func keyFits(key crypto.PublicKey, alg string) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// refresh discovers the issuer if needed and fetches its key set, unless
// another refresh is running (it waits for that one) or the last attempt
// was less than MinRefreshInterval ago (it does nothing). The fetch runs in
// the caller's goroutine, detached from the caller's cancellation so that
// callers waiting on it are not failed by one that gave up, and bounded by
// fetchTimeout.
func (p *provider) refresh(ctx context.Context) {
	p.mu.Lock()
	if wait := p.inflight; wait != nil {
		p.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
		}
		return
	}
	now := p.now()
	if !p.attemptedAt.IsZero() && now.Sub(p.attemptedAt) < p.cfg.MinRefreshInterval {
		p.mu.Unlock()
		return
	}
	done := make(chan struct{})
	p.inflight, p.attemptedAt = done, now
	op, jwksURL := p.op, p.jwksURL
	p.mu.Unlock()

	// The fetch outlives a caller that gives up (others may wait on it),
	// but not the caller's own deadline when that is sooner: a handshake
	// must be able to refuse before it is cut off.
	deadline := now.Add(fetchTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	fctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	var err error
	if op == nil {
		op, jwksURL, err = p.discover(fctx)
	}
	var keys []publicKey
	if err == nil {
		keys, err = p.fetchKeys(fctx, jwksURL)
	}

	p.mu.Lock()
	if op != nil {
		p.op, p.jwksURL = op, jwksURL
	}
	p.lastErr = err
	if err == nil {
		p.keys, p.fetchedAt = keys, p.now()
	}
	p.inflight = nil
	cached := len(p.keys)
	p.mu.Unlock()
	close(done)

	if err != nil {
		p.log.Warn("oidc: cannot refresh issuer keys; cached keys stay in use", "err", err, "cached_keys", cached)
	} else {
		p.log.Debug("oidc: fetched issuer keys", "keys", len(keys))
	}
}

// discover fetches the discovery document (OpenID Connect Discovery 1.0
// §4) from DiscoveryURL. It is decoded into go-oidc's ProviderConfig, whose
// Provider later yields the OAuth2 endpoints; go-oidc's own NewProvider is
// not used because it cannot fetch from a URL other than the issuer's
// well-known one. As §4.3 requires, the document's issuer must equal the
// configured one exactly.
func (p *provider) discover(ctx context.Context) (*gooidc.Provider, string, error) {
	var doc gooidc.ProviderConfig
	if err := p.getJSON(ctx, p.cfg.DiscoveryURL, &doc); err != nil {
		return nil, "", fmt.Errorf("discovery: %w", err)
	}
	if doc.IssuerURL != p.cfg.Issuer {
		return nil, "", fmt.Errorf("discovery: document at %s names issuer %q, expected %q", p.cfg.DiscoveryURL, doc.IssuerURL, p.cfg.Issuer)
	}
	if doc.JWKSURL == "" {
		return nil, "", fmt.Errorf("discovery: document at %s has no jwks_uri", p.cfg.DiscoveryURL)
	}
	if err := checkURL(doc.JWKSURL); err != nil {
		return nil, "", fmt.Errorf("discovery: jwks_uri: %w", err)
	}
	return doc.NewProvider(ctx), doc.JWKSURL, nil
}

// fetchKeys fetches and parses the key set (RFC 7517 §5). Keys that are
// not for signatures, of a type not understood, symmetric, or RSA keys
// under 2048 bits are skipped (§5: implementations SHOULD ignore JWKs they
// do not understand) rather than failing the whole set.
func (p *provider) fetchKeys(ctx context.Context, url string) ([]publicKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := p.getJSON(ctx, url, &set); err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	var keys []publicKey
	for i, raw := range set.Keys {
		var jwk jose.JSONWebKey
		if err := json.Unmarshal(raw, &jwk); err != nil {
			p.log.Debug("oidc: skipping key set entry", "index", i, "err", err)
			continue
		}
		if jwk.Use != "" && jwk.Use != "sig" {
			continue
		}
		if !jwk.IsPublic() {
			jwk = jwk.Public() // a private key published by mistake: keep only its public half
		}
		switch k := jwk.Key.(type) {
		case *rsa.PublicKey:
			if k.N.BitLen() < minRSABits {
				p.log.Warn("oidc: skipping short RSA key", "kid", jwk.KeyID, "bits", k.N.BitLen())
				continue
			}
		case *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			p.log.Debug("oidc: skipping key set entry of unsupported type", "kid", jwk.KeyID)
			continue
		}
		keys = append(keys, publicKey{id: jwk.KeyID, alg: jwk.Algorithm, key: jwk.Key})
	}
	return keys, nil
}

func (p *provider) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return fmt.Errorf("GET %s: reading body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if len(body) > maxDocument {
		return fmt.Errorf("GET %s: document larger than %d bytes", url, maxDocument)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: decoding JSON: %w", url, err)
	}
	return nil
}

// discovered returns the discovered go-oidc provider, discovering it first
// if needed.
func (p *provider) discovered(ctx context.Context) (*gooidc.Provider, error) {
	p.mu.Lock()
	op := p.op
	p.mu.Unlock()
	if op != nil {
		return op, nil
	}
	p.refresh(ctx)
	p.mu.Lock()
	op, err := p.op, p.lastErr
	p.mu.Unlock()
	if op == nil {
		if err == nil {
			err = errors.New("not discovered yet")
		}
		return nil, fmt.Errorf("oidc: issuer %s: %w: %w", p.cfg.Issuer, ErrProviderUnreachable, err)
	}
	return op, nil
}
