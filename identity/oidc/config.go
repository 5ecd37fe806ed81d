package oidc

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Defaults applied to zero fields of IssuerConfig.
const (
	DefaultClockSkew          = 30 * time.Second
	DefaultMinRefreshInterval = 30 * time.Second
	DefaultKeyCacheTTL        = time.Hour
	DefaultSubjectClaim       = "sub"
	DefaultEmailClaim         = "email"
	DefaultNameClaim          = "name"
	DefaultGroupsClaim        = "groups"
)

// DefaultAllowedAlgs are the signing algorithms accepted when an issuer sets
// none.
var DefaultAllowedAlgs = []string{"RS256", "ES256"}

// supportedAlgs are the public-key JWS algorithms (RFC 7518 §3.1) a key set
// can verify. Shared-secret (HS*) algorithms and "none" are never
// supported: a verifier that accepts them can be fooled by anyone holding
// the issuer's public key, or by no one at all.
var supportedAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Config is the OIDC authenticator's configuration: the issuers whose
// tokens are trusted.
type Config struct {
	Issuers []IssuerConfig `yaml:"issuers"`
}

// IssuerConfig is one trusted token issuer. Zero fields take the defaults
// named on each.
type IssuerConfig struct {
	// Issuer is the issuer identifier. A token's "iss" must equal it
	// exactly (no trailing-slash folding), and so must the "issuer" of the
	// discovery document. It must be https, or http on a loopback host.
	Issuer string `yaml:"issuer"`
	// DiscoveryURL overrides where the discovery document is fetched from;
	// by default Issuer + "/.well-known/openid-configuration".
	DiscoveryURL string `yaml:"discovery_url,omitempty"`
	// Audiences are the accepted "aud" values; a token must name at least
	// one. Required. For the admin login flow, include the client ID.
	Audiences []string `yaml:"audiences"`
	// AllowedAlgs are the accepted signing algorithms; default RS256 and
	// ES256. Only public-key algorithms may be listed; "none" and HS* never.
	AllowedAlgs []string `yaml:"allowed_algs,omitempty"`
	// ClockSkew is the tolerance applied to exp, nbf and iat; default 30s.
	ClockSkew time.Duration `yaml:"clock_skew,omitempty"`
	// MinRefreshInterval is the least time between two fetches of the
	// issuer's keys (and discovery retries), so that tokens with unknown key
	// ids cannot make the gateway hammer the issuer; default 30s.
	MinRefreshInterval time.Duration `yaml:"min_refresh_interval,omitempty"`
	// KeyCacheTTL is how old the cached keys may grow before the next
	// verification refreshes them (to notice removed keys); default 1h. If
	// the refresh fails the cached keys stay in use.
	KeyCacheTTL time.Duration `yaml:"key_cache_ttl,omitempty"`

	// SubjectClaim, EmailClaim, NameClaim and GroupsClaim name the claims
	// mapped into the Identity, as dotted paths into nested objects
	// ("realm_access.roles"); a key that itself contains dots (URL-style
	// claim names) is matched whole first. Defaults sub, email, name,
	// groups. The groups claim may be a list of strings or one string.
	SubjectClaim string `yaml:"subject_claim,omitempty"`
	EmailClaim   string `yaml:"email_claim,omitempty"`
	NameClaim    string `yaml:"name_claim,omitempty"`
	GroupsClaim  string `yaml:"groups_claim,omitempty"`

	// RequiredClaims maps claim paths to required values. A string or bool
	// value must equal the claim, or be an element of it when the claim is
	// a list; a list value requires every element to be present that way.
	RequiredClaims map[string]any `yaml:"required_claims,omitempty"`
}

// Validate checks every issuer and names the first bad field.
func (c Config) Validate() error {
	if len(c.Issuers) == 0 {
		return errors.New("oidc: issuers: at least one issuer is required")
	}
	seen := map[string]bool{}
	for i, is := range c.Issuers {
		if err := is.Validate(); err != nil {
			return fmt.Errorf("oidc: issuers[%d]: %w", i, err)
		}
		if seen[is.Issuer] {
			return fmt.Errorf("oidc: issuers[%d]: issuer %q is configured twice", i, is.Issuer)
		}
		seen[is.Issuer] = true
	}
	return nil
}

// Validate checks one issuer's settings; zero values mean the defaults.
func (c IssuerConfig) Validate() error {
	if c.Issuer == "" {
		return errors.New("issuer: required")
	}
	if err := checkURL(c.Issuer); err != nil {
		return fmt.Errorf("issuer: %w", err)
	}
	if c.DiscoveryURL != "" {
		if err := checkURL(c.DiscoveryURL); err != nil {
			return fmt.Errorf("discovery_url: %w", err)
		}
	}
	if len(c.Audiences) == 0 {
		return fmt.Errorf("audiences: at least one audience is required for %s", c.Issuer)
	}
	if slices.Contains(c.Audiences, "") {
		return errors.New("audiences: empty audience")
	}
	for _, a := range c.AllowedAlgs {
		switch {
		case strings.EqualFold(a, "none"):
			return errors.New(`allowed_algs: "none" can never be allowed`)
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			return fmt.Errorf("allowed_algs: %s is a shared-secret algorithm; only public-key algorithms can be verified against the issuer's key set", a)
		case !slices.Contains(supportedAlgs, a):
			return fmt.Errorf("allowed_algs: unsupported algorithm %q (supported: %s)", a, strings.Join(supportedAlgs, ", "))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"clock_skew", c.ClockSkew},
		{"min_refresh_interval", c.MinRefreshInterval},
		{"key_cache_ttl", c.KeyCacheTTL},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s: must not be negative", d.name)
		}
	}
	for _, p := range []struct{ name, v string }{
		{"subject_claim", c.SubjectClaim},
		{"email_claim", c.EmailClaim},
		{"name_claim", c.NameClaim},
		{"groups_claim", c.GroupsClaim},
	} {
		if p.v != "" && !validPath(p.v) {
			return fmt.Errorf("%s: %q is not a claim path", p.name, p.v)
		}
	}
	for _, path := range slices.Sorted(maps.Keys(c.RequiredClaims)) {
		if !validPath(path) {
			return fmt.Errorf("required_claims: %q is not a claim path", path)
		}
		if err := checkRequiredValue(c.RequiredClaims[path]); err != nil {
			return fmt.Errorf("required_claims[%s]: %w", path, err)
		}
	}
	return nil
}

func checkRequiredValue(v any) error {
	switch v := v.(type) {
	case string, bool:
		return nil
	case []string:
		if len(v) == 0 {
			return errors.New("empty list")
		}
		return nil
	case []any:
		if len(v) == 0 {
			return errors.New("empty list")
		}
		for _, e := range v {
			switch e.(type) {
			case string, bool:
			default:
				return fmt.Errorf("list element %v (%T) must be a string or bool", e, e)
			}
		}
		return nil
	default:
		return fmt.Errorf("value %v (%T) must be a string, a bool or a list of them", v, v)
	}
}

func validPath(p string) bool {
	return p != "" && !strings.HasPrefix(p, ".") && !strings.HasSuffix(p, ".") && !strings.Contains(p, "..")
}

// checkURL requires an absolute https URL, or http to a loopback host (test
// issuers and local development).
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL", raw)
	}
	switch {
	case u.Host == "":
		return fmt.Errorf("%q is not an absolute URL", raw)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	default:
		return fmt.Errorf("%q must use https (http is allowed only for loopback hosts)", raw)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// withDefaults returns c with zero fields set to their defaults.
func (c IssuerConfig) withDefaults() IssuerConfig {
	if c.DiscoveryURL == "" {
		c.DiscoveryURL = strings.TrimSuffix(c.Issuer, "/") + "/.well-known/openid-configuration"
	}
	if len(c.AllowedAlgs) == 0 {
		c.AllowedAlgs = DefaultAllowedAlgs
	}
	c.AllowedAlgs = slices.Clone(c.AllowedAlgs)
	c.Audiences = slices.Clone(c.Audiences)
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ClockSkew, DefaultClockSkew)
	def(&c.MinRefreshInterval, DefaultMinRefreshInterval)
	def(&c.KeyCacheTTL, DefaultKeyCacheTTL)
	str := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	str(&c.SubjectClaim, DefaultSubjectClaim)
	str(&c.EmailClaim, DefaultEmailClaim)
	str(&c.NameClaim, DefaultNameClaim)
	str(&c.GroupsClaim, DefaultGroupsClaim)
	return c
}
