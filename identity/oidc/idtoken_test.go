package oidc_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/identity/oidc"
	"github.com/sluicegw/sluice/internal/oidctest"
)

// The admin login flow end to end: endpoints from discovery, an
// authorization-code exchange with PKCE against the test issuer, and the
// returned ID token verified by VerifyIDToken.
func TestVerifyIDTokenFromLogin(t *testing.T) {
	const clientID, redirect = "sluice-admin", "http://127.0.0.1/callback"
	is, a, _ := setup(t, func(ic *oidc.IssuerConfig) { ic.Audiences = append(ic.Audiences, clientID) })
	is.AddClient(oidctest.Client{ID: clientID, Secret: "admin-secret", RedirectURIs: []string{redirect}})
	is.SetUser(map[string]any{"sub": "u-42", "email": "ops@example.test", "name": "Ops", "groups": []string{"sluice-admins"}})

	ctx := context.Background()
	ep, err := a.Endpoint(ctx, is.URL)
	require.NoError(t, err)
	conf := &oauth2.Config{ClientID: clientID, ClientSecret: "admin-secret", Endpoint: ep, RedirectURL: redirect, Scopes: []string{"openid", "email"}}
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("st4te", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "n0nce"))

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(authURL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	back, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	require.Equal(t, "st4te", back.Query().Get("state"))

	tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	require.NoError(t, err)
	raw, _ := tok.Extra("id_token").(string)
	require.NotEmpty(t, raw)

	id, err := a.VerifyIDToken(ctx, is.URL, raw, "n0nce")
	require.NoError(t, err)
	assert.Equal(t, "u-42", id.Subject)
	assert.Equal(t, "ops@example.test", id.Email)
	assert.Equal(t, []string{"sluice-admins"}, id.Groups)
	assert.Equal(t, identity.MethodOIDC, id.Method)

	_, err = a.VerifyIDToken(ctx, is.URL, raw, "another-nonce")
	requireRefused(t, err, oidc.ErrClaim, raw, "nonce")

	_, err = a.VerifyIDToken(ctx, "https://other-idp.example", raw, "n0nce")
	requireRefused(t, err, oidc.ErrUnknownIssuer, raw, "expected")

	// The access token from the same exchange is a bearer for Authenticate.
	id, err = a.Authenticate(ctx, identity.Credentials{Token: tok.AccessToken})
	require.NoError(t, err)
	assert.Equal(t, "u-42", id.Subject)
}
