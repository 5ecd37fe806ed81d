package oidctest

import (
	"crypto/sha256"
	"crypto/subtle"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Client is an OAuth2 client registered with the issuer.
type Client struct {
	ID     string
	Secret string
	// RedirectURIs are compared exactly with the redirect_uri of a request.
	RedirectURIs []string
}

// grant is an issued authorization code.
type grant struct {
	clientID    string
	redirectURI string
	challenge   string
	nonce       string
	scope       string
	user        map[string]any
	expires     time.Time
}

// codeLifetime is how long an authorization code can be exchanged.
const codeLifetime = time.Minute

// AddClient registers (or replaces) an OAuth2 client.
func (is *Issuer) AddClient(c Client) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.clients[c.ID] = c
}

// SetUser sets the claims of the user /authorize logs in; they go into the
// ID and access tokens /token returns. It should hold "sub".
func (is *Issuer) SetUser(claims map[string]any) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.user = maps.Clone(claims)
}

// handleAuthorize is the authorization endpoint (RFC 6749 §4.1.1). It
// requires PKCE with S256 (RFC 7636 §4.3) and redirects at once with a code
// for the configured user, as if they had logged in and consented.
func (is *Issuer) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	is.mu.Lock()
	c, ok := is.clients[q.Get("client_id")]
	is.mu.Unlock()
	redirect := q.Get("redirect_uri")
	// An unknown client or redirect URI must not be redirected to
	// (RFC 6749 §4.1.2.1).
	if !ok {
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	}
	if !slices.Contains(c.RedirectURIs, redirect) {
		http.Error(w, "redirect_uri not registered for this client", http.StatusBadRequest)
		return
	}
	back, err := url.Parse(redirect)
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	answer := back.Query()
	if s := q.Get("state"); s != "" {
		answer.Set("state", s)
	}
	fail := func(code, desc string) {
		answer.Set("error", code)
		answer.Set("error_description", desc)
		back.RawQuery = answer.Encode()
		http.Redirect(w, r, back.String(), http.StatusFound)
	}
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		fail("invalid_scope", "scope must include openid")
		return
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
		return
	}
	code := randomString(24)
	is.mu.Lock()
	is.codes[code] = &grant{
		clientID:    c.ID,
		redirectURI: redirect,
		challenge:   q.Get("code_challenge"),
		nonce:       q.Get("nonce"),
		scope:       q.Get("scope"),
		user:        maps.Clone(is.user),
		expires:     is.now().Add(codeLifetime),
	}
	is.mu.Unlock()
	answer.Set("code", code)
	answer.Set("iss", is.URL) // RFC 9207
	back.RawQuery = answer.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// handleToken is the token endpoint for grant_type=authorization_code
// (RFC 6749 §4.1.3). The client authenticates with HTTP Basic or with
// client_id/client_secret in the body (§2.3.1); the code is single-use and
// the code_verifier must hash to the code_challenge (RFC 7636 §4.6).
func (is *Issuer) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		// Basic credentials are form-encoded first (RFC 6749 §2.3.1).
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	is.mu.Lock()
	c, ok := is.clients[id]
	is.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="oidctest"`)
		tokenError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "only authorization_code is supported")
		return
	}
	code := r.PostForm.Get("code")
	is.mu.Lock()
	g := is.codes[code]
	delete(is.codes, code) // single use, even when the exchange fails
	is.mu.Unlock()
	now := is.now()
	switch {
	case g == nil:
		tokenError(w, http.StatusBadRequest, "invalid_grant", "unknown or used code")
		return
	case now.After(g.expires):
		tokenError(w, http.StatusBadRequest, "invalid_grant", "code expired")
		return
	case g.clientID != c.ID:
		tokenError(w, http.StatusBadRequest, "invalid_grant", "code was issued to another client")
		return
	case g.redirectURI != r.PostForm.Get("redirect_uri"):
		tokenError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the authorization request")
		return
	case !pkceMatches(r.PostForm.Get("code_verifier"), g.challenge):
		tokenError(w, http.StatusBadRequest, "invalid_grant", "code_verifier does not match code_challenge")
		return
	}

	idClaims := maps.Clone(g.user)
	maps.Copy(idClaims, map[string]any{
		"iss": is.URL,
		"aud": c.ID,
		"azp": c.ID,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	})
	if g.nonce != "" {
		idClaims["nonce"] = g.nonce
	}
	atClaims := maps.Clone(idClaims)
	delete(atClaims, "nonce")
	atClaims["scope"] = g.scope
	key := is.SigningKey("RS256")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": key.sign(atClaims, map[string]any{"typ": "at+jwt"}),
		"token_type":   "Bearer",
		"expires_in":   int(time.Hour.Seconds()),
		"id_token":     key.sign(idClaims, nil),
		"scope":        g.scope,
	})
}

// pkceMatches checks BASE64URL(SHA256(verifier)) == challenge, with the
// verifier's length and alphabet as RFC 7636 §4.1 requires.
func pkceMatches(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	for _, r := range verifier {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~", r)) {
			return false
		}
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(b64(sum[:])), []byte(challenge)) == 1
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}
