package oidc_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/identity/oidc"
	"github.com/sluicegw/sluice/internal/oidctest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clock is a settable time source shared by the test issuer and the
// authenticator, so that expiry and refresh intervals need no sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const audience = "sluice"

var quiet = slog.New(slog.DiscardHandler)

// setup starts a test issuer and an authenticator trusting it; edit
// adjusts the issuer's configuration.
func setup(t *testing.T, edit func(*oidc.IssuerConfig)) (*oidctest.Issuer, *oidc.Authenticator, *clock) {
	t.Helper()
	clk := newClock()
	is := oidctest.New(t, oidctest.WithClock(clk.Now))
	ic := oidc.IssuerConfig{Issuer: is.URL, Audiences: []string{audience}}
	if edit != nil {
		edit(&ic)
	}
	a, err := oidc.New(oidc.Config{Issuers: []oidc.IssuerConfig{ic}}, oidc.WithClock(clk.Now), oidc.WithLogger(quiet))
	require.NoError(t, err)
	return is, a, clk
}

func auth(a *oidc.Authenticator, token string) (*identity.Identity, error) {
	return a.Authenticate(context.Background(), identity.Credentials{Token: token})
}

// requireRefused checks that err is a refusal for reason, mentions each of
// words, and does not leak the token.
func requireRefused(t *testing.T, err error, reason error, token string, words ...string) {
	t.Helper()
	require.Error(t, err)
	assert.ErrorIs(t, err, identity.ErrUnauthenticated)
	assert.ErrorIs(t, err, reason)
	assert.NotErrorIs(t, err, oidc.ErrProviderUnreachable)
	for _, w := range words {
		assert.Contains(t, err.Error(), w)
	}
	if token != "" {
		assert.NotContains(t, err.Error(), token)
		for _, part := range strings.Split(token, ".") {
			if len(part) > 8 {
				assert.NotContains(t, err.Error(), part, "error leaks part of the token")
			}
		}
	}
}

func TestAuthenticate(t *testing.T) {
	type tc struct {
		name   string
		config func(*oidc.IssuerConfig)
		// token mints the token under test from a fresh claim set.
		token  func(is *oidctest.Issuer, c map[string]any, now time.Time) string
		reason error    // nil: accepted
		words  []string // expected in the refusal message
		check  func(t *testing.T, id *identity.Identity, now time.Time)
	}
	withClaims := func(edit func(c map[string]any, now time.Time)) func(*oidctest.Issuer, map[string]any, time.Time) string {
		return func(is *oidctest.Issuer, c map[string]any, now time.Time) string {
			edit(c, now)
			return is.Mint(c)
		}
	}
	cases := []tc{
		{
			name: "valid RS256",
			token: withClaims(func(c map[string]any, _ time.Time) {
				c["email"], c["name"], c["groups"] = "agent@example.test", "Report Agent", []string{"agents", "readers"}
			}),
			check: func(t *testing.T, id *identity.Identity, now time.Time) {
				assert.Equal(t, identity.MethodOIDC, id.Method)
				assert.Equal(t, "agent-1", id.Subject)
				assert.Equal(t, "agent@example.test", id.Email)
				assert.Equal(t, "Report Agent", id.Name)
				assert.Equal(t, []string{"agents", "readers"}, id.Groups)
				assert.Equal(t, now.Add(time.Hour).Unix(), id.Expiry.Unix())
				assert.Equal(t, "agent-1", id.Claims["sub"])
				assert.Equal(t, audience, id.Claims["aud"])
			},
		},
		{
			name: "valid ES256",
			token: func(is *oidctest.Issuer, c map[string]any, _ time.Time) string {
				return is.MintWith(is.SigningKey("ES256"), c, nil)
			},
			check: func(t *testing.T, id *identity.Identity, _ time.Time) { assert.Equal(t, "agent-1", id.Subject) },
		},
		{
			name:  "audience list containing ours",
			token: withClaims(func(c map[string]any, _ time.Time) { c["aud"] = []string{"other", audience} }),
		},
		{
			name:   "expired",
			token:  withClaims(func(c map[string]any, now time.Time) { c["exp"] = now.Add(-time.Hour).Unix() }),
			reason: oidc.ErrExpired,
			words:  []string{"expired at", "1h0m0s ago"},
		},
		{
			name:  "expired within clock skew",
			token: withClaims(func(c map[string]any, now time.Time) { c["exp"] = now.Add(-20 * time.Second).Unix() }),
		},
		{
			name:   "expired just beyond clock skew",
			token:  withClaims(func(c map[string]any, now time.Time) { c["exp"] = now.Add(-31 * time.Second).Unix() }),
			reason: oidc.ErrExpired,
			words:  []string{"allowed clock skew 30s"},
		},
		{
			name:   "larger configured skew",
			config: func(ic *oidc.IssuerConfig) { ic.ClockSkew = 2 * time.Minute },
			token:  withClaims(func(c map[string]any, now time.Time) { c["exp"] = now.Add(-90 * time.Second).Unix() }),
		},
		{
			name:   "no exp",
			token:  withClaims(func(c map[string]any, _ time.Time) { delete(c, "exp") }),
			reason: oidc.ErrClaim,
			words:  []string{`no "exp"`},
		},
		{
			name:   "nbf in the future",
			token:  withClaims(func(c map[string]any, now time.Time) { c["nbf"] = now.Add(5 * time.Minute).Unix() }),
			reason: oidc.ErrNotYetValid,
			words:  []string{"not valid before", "5m0s from now"},
		},
		{
			name:  "nbf within clock skew",
			token: withClaims(func(c map[string]any, now time.Time) { c["nbf"] = now.Add(20 * time.Second).Unix() }),
		},
		{
			name:   "iat in the future",
			token:  withClaims(func(c map[string]any, now time.Time) { c["iat"] = now.Add(time.Hour).Unix() }),
			reason: oidc.ErrNotYetValid,
			words:  []string{"issued in the future"},
		},
		{
			name:   "wrong audience",
			token:  withClaims(func(c map[string]any, _ time.Time) { c["aud"] = "billing-api" }),
			reason: oidc.ErrAudience,
			words:  []string{`"billing-api"`, `expected one of ["sluice"]`},
		},
		{
			name:   "no audience",
			token:  withClaims(func(c map[string]any, _ time.Time) { delete(c, "aud") }),
			reason: oidc.ErrAudience,
			words:  []string{"no audience"},
		},
		{
			name:   "unconfigured issuer",
			token:  withClaims(func(c map[string]any, _ time.Time) { c["iss"] = "https://idp.attacker.test" }),
			reason: oidc.ErrUnknownIssuer,
			words:  []string{`"https://idp.attacker.test" is not configured`},
		},
		{
			name: "issuer with trailing slash is another issuer",
			token: func(is *oidctest.Issuer, c map[string]any, _ time.Time) string {
				c["iss"] = is.URL + "/"
				return is.Mint(c)
			},
			reason: oidc.ErrUnknownIssuer,
		},
		{
			name:   "no issuer",
			token:  withClaims(func(c map[string]any, _ time.Time) { delete(c, "iss") }),
			reason: oidc.ErrUnknownIssuer,
			words:  []string{`no "iss"`},
		},
		{
			name: "bad signature: unpublished key under a published kid",
			token: func(is *oidctest.Issuer, c map[string]any, _ time.Time) string {
				return is.MintForged(is.SigningKey("RS256").ID, c)
			},
			reason: oidc.ErrSignature,
			words:  []string{"signature does not verify"},
		},
		{
			name: "payload swapped after signing",
			token: func(is *oidctest.Issuer, c map[string]any, _ time.Time) string {
				good := strings.Split(is.Mint(c), ".")
				c["sub"] = "admin"
				evil := strings.Split(is.Mint(c), ".")
				return good[0] + "." + evil[1] + "." + good[2]
			},
			reason: oidc.ErrSignature,
		},
		{
			name:   "alg none",
			token:  func(is *oidctest.Issuer, c map[string]any, _ time.Time) string { return is.MintNone(c) },
			reason: oidc.ErrAlgorithm,
			words:  []string{`"none"`},
		},
		{
			name: "HS256 with the public key as secret",
			token: func(is *oidctest.Issuer, c map[string]any, _ time.Time) string {
				k := is.SigningKey("RS256")
				return oidctest.MintHMAC(k.PublicPEM(), k.ID, c)
			},
			reason: oidc.ErrAlgorithm,
			words:  []string{`"HS256" is not allowed`},
		},
		{
			name:   "ES256 when only RS256 is allowed",
			config: func(ic *oidc.IssuerConfig) { ic.AllowedAlgs = []string{"RS256"} },
			token: func(is *oidctest.Issuer, c map[string]any, _ time.Time) string {
				return is.MintWith(is.SigningKey("ES256"), c, nil)
			},
			reason: oidc.ErrAlgorithm,
			words:  []string{`"ES256" is not allowed (allowed: RS256)`},
		},
		{
			name: "header claims RS256 for an EC key",
			token: func(is *oidctest.Issuer, c map[string]any, _ time.Time) string {
				return is.MintWith(is.SigningKey("ES256"), c, map[string]any{"alg": "RS256"})
			},
			reason: oidc.ErrAlgorithm,
			words:  []string{"cannot verify RS256"},
		},
		{
			name:   "opaque token",
			token:  func(*oidctest.Issuer, map[string]any, time.Time) string { return "s3cret-agent-token" },
			reason: oidc.ErrMalformed,
			words:  []string{"not a JWT"},
		},
		{
			name:   "encrypted token",
			token:  func(*oidctest.Issuer, map[string]any, time.Time) string { return "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d" },
			reason: oidc.ErrMalformed,
			words:  []string{"JWE"},
		},
		{
			name:   "no subject",
			token:  withClaims(func(c map[string]any, _ time.Time) { delete(c, "sub") }),
			reason: oidc.ErrClaim,
			words:  []string{`missing subject claim "sub"`},
		},
		{
			name:   "subject from another claim",
			config: func(ic *oidc.IssuerConfig) { ic.SubjectClaim = "preferred_username" },
			token:  withClaims(func(c map[string]any, _ time.Time) { c["preferred_username"] = "report-agent" }),
			check: func(t *testing.T, id *identity.Identity, _ time.Time) {
				assert.Equal(t, "report-agent", id.Subject)
			},
		},
		{
			name:   "nested groups claim",
			config: func(ic *oidc.IssuerConfig) { ic.GroupsClaim = "realm_access.roles" },
			token: withClaims(func(c map[string]any, _ time.Time) {
				c["realm_access"] = map[string]any{"roles": []string{"db-readers", "ssh-ops"}}
			}),
			check: func(t *testing.T, id *identity.Identity, _ time.Time) {
				assert.Equal(t, []string{"db-readers", "ssh-ops"}, id.Groups)
			},
		},
		{
			name:   "single-string groups claim",
			config: func(ic *oidc.IssuerConfig) { ic.GroupsClaim = "role" },
			token:  withClaims(func(c map[string]any, _ time.Time) { c["role"] = "auditor" }),
			check: func(t *testing.T, id *identity.Identity, _ time.Time) {
				assert.Equal(t, []string{"auditor"}, id.Groups)
			},
		},
		{
			name:   "URL-style claim name with dots",
			config: func(ic *oidc.IssuerConfig) { ic.GroupsClaim = "https://sluice.example/groups" },
			token: withClaims(func(c map[string]any, _ time.Time) {
				c["https://sluice.example/groups"] = []string{"agents"}
			}),
			check: func(t *testing.T, id *identity.Identity, _ time.Time) {
				assert.Equal(t, []string{"agents"}, id.Groups)
			},
		},
		{
			name:   "groups claim of the wrong type",
			token:  withClaims(func(c map[string]any, _ time.Time) { c["groups"] = []any{"agents", 7} }),
			reason: oidc.ErrClaim,
			words:  []string{"element 1 is a number"},
		},
		{
			name: "required claims satisfied",
			config: func(ic *oidc.IssuerConfig) {
				ic.RequiredClaims = map[string]any{
					"tenant":             "acme",
					"email_verified":     true,
					"realm_access.roles": []any{"sluice-agent", "db"},
				}
			},
			token: withClaims(func(c map[string]any, _ time.Time) {
				c["tenant"], c["email_verified"] = "acme", true
				c["realm_access"] = map[string]any{"roles": []string{"db", "sluice-agent", "other"}}
			}),
		},
		{
			name:   "required claim missing",
			config: func(ic *oidc.IssuerConfig) { ic.RequiredClaims = map[string]any{"tenant": "acme"} },
			token:  withClaims(func(map[string]any, time.Time) {}),
			reason: oidc.ErrClaim,
			words:  []string{`missing required claim "tenant"`},
		},
		{
			name:   "required claim with another value",
			config: func(ic *oidc.IssuerConfig) { ic.RequiredClaims = map[string]any{"email_verified": true} },
			token:  withClaims(func(c map[string]any, _ time.Time) { c["email_verified"] = "true" }),
			reason: oidc.ErrClaim,
			words:  []string{`claim "email_verified" does not have the required value true`},
		},
		{
			name:   "required list membership not met",
			config: func(ic *oidc.IssuerConfig) { ic.RequiredClaims = map[string]any{"realm_access.roles": "sluice-agent"} },
			token: withClaims(func(c map[string]any, _ time.Time) {
				c["realm_access"] = map[string]any{"roles": []string{"db"}}
			}),
			reason: oidc.ErrClaim,
			words:  []string{`"realm_access.roles" does not have the required value "sluice-agent"`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			is, a, clk := setup(t, c.config)
			token := c.token(is, is.Claims("agent-1", audience), clk.Now())
			id, err := auth(a, token)
			if c.reason != nil {
				requireRefused(t, err, c.reason, token, c.words...)
				assert.Nil(t, id)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, is.URL, id.Issuer)
			assert.Equal(t, identity.MethodOIDC, id.Method)
			if c.check != nil {
				c.check(t, id, clk.Now())
			}
		})
	}
}

func TestNoToken(t *testing.T) {
	_, a, _ := setup(t, nil)
	_, err := auth(a, "")
	require.ErrorIs(t, err, identity.ErrUnauthenticated)
	assert.Contains(t, err.Error(), "no token presented")
}

// Unknown-kid refetches are rate limited per issuer: a token signed with a
// key the issuer has not published yet is refused without a fetch inside
// the interval, and accepted with exactly one fetch once the issuer has
// rotated and the interval has passed.
func TestKeyRotation(t *testing.T) {
	is, a, clk := setup(t, nil)

	_, err := auth(a, is.Mint(is.Claims("agent-1", audience)))
	require.NoError(t, err)
	require.Equal(t, 1, is.JWKSFetches(), "first use fetches the key set")

	next, err := oidctest.NewKey("RS256")
	require.NoError(t, err)
	early := is.MintWith(next, is.Claims("agent-1", audience), nil)
	_, err = auth(a, early)
	requireRefused(t, err, oidc.ErrUnknownKey, early, "unknown key id", next.ID, "refetched at most every 30s")
	assert.Equal(t, 1, is.JWKSFetches(), "no refetch within the interval")

	clk.Advance(31 * time.Second)
	_, err = auth(a, early)
	requireRefused(t, err, oidc.ErrUnknownKey, early, next.ID)
	assert.Equal(t, 2, is.JWKSFetches(), "after the interval an unknown kid refetches once")

	// The issuer rotates, keeping the old key published.
	old := is.SigningKey("RS256")
	rotated := is.Rotate("RS256", true)
	clk.Advance(31 * time.Second)
	id, err := auth(a, is.Mint(is.Claims("agent-2", audience)))
	require.NoError(t, err)
	assert.Equal(t, "agent-2", id.Subject)
	assert.Equal(t, 3, is.JWKSFetches(), "exactly one refetch for the rotated key")

	// Both keys verify now without further fetches.
	_, err = auth(a, is.MintWith(old, is.Claims("agent-1", audience), nil))
	require.NoError(t, err)
	_, err = auth(a, is.MintWith(rotated, is.Claims("agent-1", audience), nil))
	require.NoError(t, err)
	assert.Equal(t, 3, is.JWKSFetches())
}

// A burst of tokens with unknown key ids costs at most one fetch per
// interval, however many arrive and however concurrently.
func TestUnknownKidBurst(t *testing.T) {
	is, a, clk := setup(t, nil)
	_, err := auth(a, is.Mint(is.Claims("agent-1", audience)))
	require.NoError(t, err)
	clk.Advance(time.Minute)
	before := is.JWKSFetches()

	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range errs {
		wg.Go(func() {
			k, err := oidctest.NewKey("ES256")
			if err != nil {
				errs[i] = err
				return
			}
			_, errs[i] = auth(a, is.MintWith(k, is.Claims("attacker", audience), nil))
		})
	}
	wg.Wait()
	for _, err := range errs {
		requireRefused(t, err, oidc.ErrUnknownKey, "")
	}
	assert.Equal(t, before+1, is.JWKSFetches(), "one refetch for the whole burst")

	clk.Advance(10 * time.Second)
	k, err := oidctest.NewKey("ES256")
	require.NoError(t, err)
	_, err = auth(a, is.MintWith(k, is.Claims("attacker", audience), nil))
	requireRefused(t, err, oidc.ErrUnknownKey, "")
	assert.Equal(t, before+1, is.JWKSFetches(), "still inside the interval")
}

// A bad signature under a known key id never triggers a refetch: only
// unknown key ids do.
func TestBadSignatureDoesNotRefetch(t *testing.T) {
	is, a, clk := setup(t, nil)
	_, err := auth(a, is.Mint(is.Claims("agent-1", audience)))
	require.NoError(t, err)
	clk.Advance(time.Minute)
	for range 5 {
		_, err = auth(a, is.MintForged(is.SigningKey("RS256").ID, is.Claims("agent-1", audience)))
		requireRefused(t, err, oidc.ErrSignature, "")
	}
	assert.Equal(t, 1, is.JWKSFetches())
}

// With the issuer down after its keys were cached, tokens keep verifying
// until they expire, and then are refused as expired (a refusal, not an
// outage).
func TestIssuerDownKeysCached(t *testing.T) {
	for _, outage := range []oidctest.Outage{oidctest.Refused, oidctest.Unavailable} {
		t.Run(map[oidctest.Outage]string{oidctest.Refused: "refused", oidctest.Unavailable: "503"}[outage], func(t *testing.T) {
			is, a, clk := setup(t, nil)
			token := is.Mint(is.Claims("agent-1", audience)) // expires in 1h
			_, err := auth(a, token)
			require.NoError(t, err)

			is.Down(outage)
			clk.Advance(30 * time.Minute)
			id, err := auth(a, token)
			require.NoError(t, err, "cached keys keep verifying while the issuer is down")
			assert.Equal(t, "agent-1", id.Subject)

			// Past the key cache TTL a refresh is tried, fails, and the
			// cached keys stay in use.
			clk.Advance(29 * time.Minute)
			fresh := is.Mint(is.Claims("agent-1", audience))
			clk.Advance(2 * time.Minute) // 61 minutes since the fetch
			_, err = auth(a, fresh)
			require.NoError(t, err, "stale keys stay in use while the refresh fails")

			clk.Advance(time.Hour)
			_, err = auth(a, token)
			requireRefused(t, err, oidc.ErrExpired, token, "expired at")

			// An unknown key id while the issuer is down cannot be
			// decided: fail closed, not a refusal.
			clk.Advance(time.Minute)
			k, err := oidctest.NewKey("RS256")
			require.NoError(t, err)
			_, err = auth(a, is.MintWith(k, is.Claims("agent-1", audience), nil))
			require.ErrorIs(t, err, oidc.ErrProviderUnreachable)
			assert.NotErrorIs(t, err, identity.ErrUnauthenticated)
		})
	}
}

// With the issuer down before any key was fetched, Authenticate fails with
// an outage error that an identity.Chain does not skip; discovery is
// retried (at most once per interval) and succeeds once the issuer is back.
func TestIssuerDownNoKeys(t *testing.T) {
	is, a, clk := setup(t, nil)
	token := is.Mint(is.Claims("agent-1", audience))
	is.Down(oidctest.Refused)

	_, err := auth(a, token)
	require.Error(t, err)
	assert.ErrorIs(t, err, oidc.ErrProviderUnreachable)
	assert.NotErrorIs(t, err, identity.ErrUnauthenticated)
	assert.Contains(t, err.Error(), "identity provider unreachable")
	assert.Contains(t, err.Error(), "connection refused")
	assert.NotContains(t, err.Error(), token)

	static, err := identity.NewStaticTokens([]identity.StaticToken{{Subject: "dev", SHA256: identity.HashToken("dev-token")}})
	require.NoError(t, err)
	chain := identity.Chain{a, static}
	_, err = chain.Authenticate(context.Background(), identity.Credentials{Token: token})
	require.ErrorIs(t, err, oidc.ErrProviderUnreachable, "the chain fails closed")
	id, err := chain.Authenticate(context.Background(), identity.Credentials{Token: "dev-token"})
	require.NoError(t, err, "a non-JWT is refused by oidc without network and handled by the next authenticator")
	assert.Equal(t, "dev", id.Subject)

	// 503 instead of refused: the message names the status, and retries
	// within the interval do not reach the issuer.
	require.NoError(t, is.Up())
	is.Down(oidctest.Unavailable)
	clk.Advance(31 * time.Second)
	_, err = auth(a, token)
	require.ErrorIs(t, err, oidc.ErrProviderUnreachable)
	assert.Contains(t, err.Error(), "503")
	discovery := is.DiscoveryFetches()
	_, err = auth(a, token)
	require.ErrorIs(t, err, oidc.ErrProviderUnreachable)
	assert.Equal(t, discovery, is.DiscoveryFetches(), "no retry within the interval")

	require.NoError(t, is.Up())
	clk.Advance(31 * time.Second)
	id, err = auth(a, token)
	require.NoError(t, err, "lazy discovery succeeds once the issuer is back")
	assert.Equal(t, "agent-1", id.Subject)
}

func TestPrefetch(t *testing.T) {
	is, a, _ := setup(t, nil)
	require.NoError(t, a.Prefetch(context.Background()))
	assert.Equal(t, 1, is.JWKSFetches())
	_, err := auth(a, is.Mint(is.Claims("agent-1", audience)))
	require.NoError(t, err)
	assert.Equal(t, 1, is.JWKSFetches(), "keys were warm")

	down, b, _ := setup(t, nil)
	down.Down(oidctest.Refused)
	err = b.Prefetch(context.Background())
	require.ErrorIs(t, err, oidc.ErrProviderUnreachable)
	assert.Contains(t, err.Error(), down.URL)
}

func TestTwoIssuers(t *testing.T) {
	clk := newClock()
	corp := oidctest.New(t, oidctest.WithClock(clk.Now))
	kc := oidctest.New(t, oidctest.WithClock(clk.Now))
	a, err := oidc.New(oidc.Config{Issuers: []oidc.IssuerConfig{
		{Issuer: corp.URL, Audiences: []string{"sluice"}},
		{Issuer: kc.URL, Audiences: []string{"sluice-agents", "account"}, GroupsClaim: "realm_access.roles",
			RequiredClaims: map[string]any{"azp": "sluice-agents"}},
	}}, oidc.WithClock(clk.Now), oidc.WithLogger(quiet))
	require.NoError(t, err)

	c := corp.Claims("alice", "sluice")
	c["groups"] = []string{"dba"}
	id, err := auth(a, corp.Mint(c))
	require.NoError(t, err)
	assert.Equal(t, corp.URL, id.Issuer)
	assert.Equal(t, []string{"dba"}, id.Groups)

	c = kc.Claims("svc-report", "account")
	c["azp"] = "sluice-agents"
	c["realm_access"] = map[string]any{"roles": []string{"reporting"}}
	id, err = auth(a, kc.MintWith(kc.SigningKey("ES256"), c, nil))
	require.NoError(t, err)
	assert.Equal(t, kc.URL, id.Issuer)
	assert.Equal(t, []string{"reporting"}, id.Groups)

	// Each issuer's own rules apply: corp's audience is not accepted for kc.
	c = kc.Claims("svc-report", "sluice")
	c["azp"] = "sluice-agents"
	tok := kc.Mint(c)
	_, err = auth(a, tok)
	requireRefused(t, err, oidc.ErrAudience, tok, kc.URL)

	// A token claiming kc as issuer but signed with corp's key is refused.
	c = kc.Claims("svc-report", "account")
	c["azp"] = "sluice-agents"
	tok = corp.Mint(c)
	_, err = auth(a, tok)
	requireRefused(t, err, oidc.ErrUnknownKey, tok)
}

func TestDiscovery(t *testing.T) {
	t.Run("discovery_url override", func(t *testing.T) {
		is, a, _ := setup(t, func(ic *oidc.IssuerConfig) {
			ic.DiscoveryURL = "http://localhost:" + strings.Split(ic.Issuer, ":")[2] + "/.well-known/openid-configuration"
		})
		_, err := auth(a, is.Mint(is.Claims("agent-1", audience)))
		require.NoError(t, err)
		assert.Equal(t, 1, is.DiscoveryFetches())
	})
	t.Run("document for another issuer", func(t *testing.T) {
		other := oidctest.New(t)
		is, a, _ := setup(t, func(ic *oidc.IssuerConfig) { ic.DiscoveryURL = other.DiscoveryURL() })
		_, err := auth(a, is.Mint(is.Claims("agent-1", audience)))
		require.ErrorIs(t, err, oidc.ErrProviderUnreachable)
		assert.Contains(t, err.Error(), "names issuer")
	})
	t.Run("endpoint", func(t *testing.T) {
		is, a, _ := setup(t, nil)
		ep, err := a.Endpoint(context.Background(), is.URL)
		require.NoError(t, err)
		assert.Equal(t, is.URL+"/authorize", ep.AuthURL)
		assert.Equal(t, is.URL+"/token", ep.TokenURL)
		_, err = a.Endpoint(context.Background(), "https://unknown.example")
		require.Error(t, err)
	})
}

func TestCanceledContextIsNotARefusal(t *testing.T) {
	is, a, _ := setup(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := a.Authenticate(ctx, identity.Credentials{Token: is.Mint(is.Claims("agent-1", audience))})
	require.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, identity.ErrUnauthenticated)
}
