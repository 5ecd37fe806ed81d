package oidctest_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/oauth2"

	"github.com/sluicegw/sluice/internal/oidctest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func getJSON(t *testing.T, u string, v any) int {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
	}
	return resp.StatusCode
}

func jwks(t *testing.T, is *oidctest.Issuer) jose.JSONWebKeySet {
	t.Helper()
	var set jose.JSONWebKeySet
	require.Equal(t, http.StatusOK, getJSON(t, is.JWKSURL(), &set))
	return set
}

func TestDiscoveryAndKeys(t *testing.T) {
	is := oidctest.New(t)
	require.True(t, strings.HasPrefix(is.URL, "http://127.0.0.1:"), "loopback only")

	var doc map[string]any
	require.Equal(t, http.StatusOK, getJSON(t, is.DiscoveryURL(), &doc))
	assert.Equal(t, is.URL, doc["issuer"])
	assert.Equal(t, is.JWKSURL(), doc["jwks_uri"])
	assert.Equal(t, []any{"S256"}, doc["code_challenge_methods_supported"])

	set := jwks(t, is)
	require.Len(t, set.Keys, 2)
	rs, es := is.SigningKey("RS256"), is.SigningKey("ES256")
	require.Len(t, set.Key(rs.ID), 1)
	require.Len(t, set.Key(es.ID), 1)
	assert.True(t, set.Key(rs.ID)[0].IsPublic(), "only public keys are published")

	// Minted tokens verify against the published keys with go-jose.
	for _, k := range []*oidctest.Key{rs, es} {
		tok := is.MintWith(k, is.Claims("alice", "aud"), map[string]any{"typ": "at+jwt"})
		jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
		require.NoError(t, err)
		assert.Equal(t, k.ID, jws.Signatures[0].Header.KeyID)
		assert.Equal(t, "at+jwt", jws.Signatures[0].Header.ExtraHeaders["typ"])
		payload, err := jws.Verify(set.Key(k.ID)[0])
		require.NoError(t, err)
		var claims map[string]any
		require.NoError(t, json.Unmarshal(payload, &claims))
		assert.Equal(t, is.URL, claims["iss"])
		assert.Equal(t, "alice", claims["sub"])
	}
	assert.Equal(t, 1, is.JWKSFetches())
	assert.Equal(t, 1, is.DiscoveryFetches())
}

func TestForgedTokens(t *testing.T) {
	is := oidctest.New(t)
	set := jwks(t, is)
	rs := is.SigningKey("RS256")
	algs := []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.HS256}

	forged := is.MintForged(rs.ID, is.Claims("alice", "aud"))
	jws, err := jose.ParseSignedCompact(forged, algs)
	require.NoError(t, err)
	assert.Equal(t, rs.ID, jws.Signatures[0].Header.KeyID)
	_, err = jws.Verify(set.Key(rs.ID)[0])
	assert.Error(t, err, "a forged token does not verify with the published key")

	none := is.MintNone(is.Claims("alice", "aud"))
	assert.True(t, strings.HasSuffix(none, "."), "empty signature")
	hdr, err := base64.RawURLEncoding.DecodeString(strings.Split(none, ".")[0])
	require.NoError(t, err)
	assert.JSONEq(t, `{"alg":"none","typ":"JWT"}`, string(hdr))

	hs := oidctest.MintHMAC(rs.PublicPEM(), rs.ID, is.Claims("alice", "aud"))
	jws, err = jose.ParseSignedCompact(hs, algs)
	require.NoError(t, err)
	_, err = jws.Verify(rs.PublicPEM())
	assert.NoError(t, err, "the HMAC is keyed with the public key PEM")

	// A header entry with a nil value is dropped.
	noKid := is.MintWith(rs, is.Claims("alice", "aud"), map[string]any{"kid": nil})
	jws, err = jose.ParseSignedCompact(noKid, algs)
	require.NoError(t, err)
	assert.Empty(t, jws.Signatures[0].Header.KeyID)
}

func TestRotate(t *testing.T) {
	is := oidctest.New(t)
	old := is.SigningKey("RS256")

	kept := is.Rotate("RS256", true)
	assert.NotEqual(t, old.ID, kept.ID)
	assert.Equal(t, kept, is.SigningKey("RS256"))
	set := jwks(t, is)
	assert.Len(t, set.Key(old.ID), 1, "old key kept")
	assert.Len(t, set.Key(kept.ID), 1)

	replaced := is.Rotate("RS256", false)
	set = jwks(t, is)
	assert.Empty(t, set.Key(old.ID))
	assert.Empty(t, set.Key(kept.ID))
	assert.Len(t, set.Key(replaced.ID), 1)
	assert.Len(t, set.Key(is.SigningKey("ES256").ID), 1, "other algorithms untouched")

	extra, err := oidctest.NewKey("ES384")
	require.NoError(t, err)
	is.Publish(extra)
	set = jwks(t, is)
	assert.Len(t, set.Key(extra.ID), 1)
	is.Unpublish(extra.ID)
	set = jwks(t, is)
	assert.Empty(t, set.Key(extra.ID))
}

func TestOutages(t *testing.T) {
	is := oidctest.New(t)
	is.Down(oidctest.Unavailable)
	assert.Equal(t, http.StatusServiceUnavailable, getJSON(t, is.JWKSURL(), nil))
	assert.Equal(t, 1, is.JWKSFetches(), "503 answers are counted")

	is.Down(oidctest.Refused)
	_, err := http.Get(is.JWKSURL())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connection refused")

	require.NoError(t, is.Up())
	assert.Len(t, jwks(t, is).Keys, 2, "same address, same keys after the outage")
	assert.Equal(t, 2, is.JWKSFetches())
}

// login runs /authorize and returns the redirect's query.
func login(t *testing.T, authURL string) url.Values {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authURL)
	require.NoError(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("authorize: %s: %s", resp.Status, body)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	return u.Query()
}

func TestAuthorizationCodeFlow(t *testing.T) {
	const redirect = "http://127.0.0.1:9/cb"
	is := oidctest.New(t)
	is.AddClient(oidctest.Client{ID: "admin-ui", Secret: "s3cret", RedirectURIs: []string{redirect}})
	is.SetUser(map[string]any{"sub": "u-1", "email": "ops@example.test", "groups": []string{"admins"}})
	conf := &oauth2.Config{
		ClientID: "admin-ui", ClientSecret: "s3cret", RedirectURL: redirect, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: is.URL + "/authorize", TokenURL: is.URL + "/token"},
	}
	ctx := context.Background()

	verifier := oauth2.GenerateVerifier()
	q := login(t, conf.AuthCodeURL("xyz", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "abc")))
	require.Equal(t, "xyz", q.Get("state"))
	require.Equal(t, is.URL, q.Get("iss"))
	code := q.Get("code")
	require.NotEmpty(t, code)

	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	require.NoError(t, err)
	assert.Equal(t, "Bearer", tok.TokenType)
	raw, _ := tok.Extra("id_token").(string)
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	require.NoError(t, err)
	payload, err := jws.Verify(is.SigningKey("RS256").Public())
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(payload, &claims))
	assert.Equal(t, "u-1", claims["sub"])
	assert.Equal(t, "admin-ui", claims["aud"])
	assert.Equal(t, "abc", claims["nonce"])
	assert.Equal(t, []any{"admins"}, claims["groups"])

	_, err = conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	assert.ErrorContains(t, err, "invalid_grant", "codes are single-use")

	t.Run("wrong verifier", func(t *testing.T) {
		q := login(t, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		_, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
		assert.ErrorContains(t, err, "code_verifier does not match")
	})
	t.Run("no verifier", func(t *testing.T) {
		q := login(t, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)))
		_, err := conf.Exchange(ctx, q.Get("code"))
		assert.ErrorContains(t, err, "invalid_grant")
	})
	t.Run("wrong secret", func(t *testing.T) {
		q := login(t, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)))
		bad := *conf
		bad.ClientSecret = "guess"
		_, err := bad.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
		assert.ErrorContains(t, err, "invalid_client")
	})
	t.Run("client secret in the body", func(t *testing.T) {
		q := login(t, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)))
		post := *conf
		post.Endpoint.AuthStyle = oauth2.AuthStyleInParams
		_, err := post.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
		assert.NoError(t, err)
	})
	t.Run("PKCE required", func(t *testing.T) {
		q := login(t, conf.AuthCodeURL("s"))
		assert.Equal(t, "invalid_request", q.Get("error"))
		assert.Equal(t, "s", q.Get("state"))
		assert.Empty(t, q.Get("code"))
	})
	t.Run("plain PKCE refused", func(t *testing.T) {
		q := login(t, conf.AuthCodeURL("s", oauth2.SetAuthURLParam("code_challenge", verifier), oauth2.SetAuthURLParam("code_challenge_method", "plain")))
		assert.Equal(t, "invalid_request", q.Get("error"))
	})
	t.Run("unregistered redirect", func(t *testing.T) {
		bad := *conf
		bad.RedirectURL = "http://127.0.0.1:9/evil"
		resp, err := http.Get(bad.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "no redirect to an unregistered URI")
	})
	t.Run("challenge is S256 of verifier", func(t *testing.T) {
		// Hand-built request, independent of the oauth2 package's helpers.
		v := strings.Repeat("a", 43)
		sum := sha256.Sum256([]byte(v))
		u := is.URL + "/authorize?" + url.Values{
			"response_type": {"code"}, "client_id": {"admin-ui"}, "redirect_uri": {redirect}, "scope": {"openid"},
			"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
		}.Encode()
		q := login(t, u)
		_, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(v))
		assert.NoError(t, err)
	})
}
