package oidc_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/identity/oidc"
)

func TestConfigFromYAML(t *testing.T) {
	const doc = `
issuers:
  - issuer: https://login.example.com/realms/agents
    discovery_url: https://idp.internal:8443/realms/agents/.well-known/openid-configuration
    audiences: [sluice, account]
    allowed_algs: [RS256, PS256]
    clock_skew: 1m
    min_refresh_interval: 10s
    key_cache_ttl: 15m
    subject_claim: preferred_username
    email_claim: email
    name_claim: name
    groups_claim: realm_access.roles
    required_claims:
      email_verified: true
      azp: sluice-agents
      realm_access.roles: [sluice]
`
	var cfg oidc.Config
	require.NoError(t, yaml.Unmarshal([]byte(doc), &cfg))
	require.NoError(t, cfg.Validate())
	ic := cfg.Issuers[0]
	assert.Equal(t, time.Minute, ic.ClockSkew)
	assert.Equal(t, 10*time.Second, ic.MinRefreshInterval)
	assert.Equal(t, 15*time.Minute, ic.KeyCacheTTL)
	assert.Equal(t, []string{"sluice", "account"}, ic.Audiences)
	assert.Equal(t, "realm_access.roles", ic.GroupsClaim)
	assert.Equal(t, true, ic.RequiredClaims["email_verified"])
	assert.Equal(t, []any{"sluice"}, ic.RequiredClaims["realm_access.roles"])
	_, err := oidc.New(cfg)
	require.NoError(t, err, "construction does not contact the issuer")
}

func TestConfigValidate(t *testing.T) {
	ok := oidc.IssuerConfig{Issuer: "https://idp.example", Audiences: []string{"sluice"}}
	cases := []struct {
		name string
		edit func(*oidc.IssuerConfig)
		want string // "" = valid
	}{
		{"minimal", func(*oidc.IssuerConfig) {}, ""},
		{"loopback http", func(c *oidc.IssuerConfig) { c.Issuer = "http://127.0.0.1:5556" }, ""},
		{"no issuer", func(c *oidc.IssuerConfig) { c.Issuer = "" }, "issuers[0]: issuer: required"},
		{"plain http", func(c *oidc.IssuerConfig) { c.Issuer = "http://idp.example" }, "must use https"},
		{"relative", func(c *oidc.IssuerConfig) { c.Issuer = "idp.example" }, "not an absolute URL"},
		{"bad discovery url", func(c *oidc.IssuerConfig) { c.DiscoveryURL = "http://idp.example/x" }, "discovery_url"},
		{"no audience", func(c *oidc.IssuerConfig) { c.Audiences = nil }, "audiences: at least one"},
		{"empty audience", func(c *oidc.IssuerConfig) { c.Audiences = []string{""} }, "audiences: empty"},
		{"alg none", func(c *oidc.IssuerConfig) { c.AllowedAlgs = []string{"RS256", "none"} }, `"none" can never be allowed`},
		{"alg HS256", func(c *oidc.IssuerConfig) { c.AllowedAlgs = []string{"HS256"} }, "shared-secret"},
		{"alg unknown", func(c *oidc.IssuerConfig) { c.AllowedAlgs = []string{"ES256K"} }, "unsupported algorithm"},
		{"negative skew", func(c *oidc.IssuerConfig) { c.ClockSkew = -time.Second }, "clock_skew: must not be negative"},
		{"bad claim path", func(c *oidc.IssuerConfig) { c.GroupsClaim = "realm_access..roles" }, "groups_claim"},
		{"bad required value", func(c *oidc.IssuerConfig) { c.RequiredClaims = map[string]any{"level": 3} }, "required_claims[level]"},
		{"empty required list", func(c *oidc.IssuerConfig) { c.RequiredClaims = map[string]any{"roles": []any{}} }, "empty list"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ic := ok
			c.edit(&ic)
			err := oidc.Config{Issuers: []oidc.IssuerConfig{ic}}.Validate()
			if c.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}

	err := oidc.Config{}.Validate()
	assert.ErrorContains(t, err, "at least one issuer")
	err = oidc.Config{Issuers: []oidc.IssuerConfig{ok, ok}}.Validate()
	assert.ErrorContains(t, err, "configured twice")
}
