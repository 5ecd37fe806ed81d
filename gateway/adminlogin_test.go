package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/approval/sqlitestore"
	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/identity/oidc"
	"github.com/sluicegw/sluice/internal/oidctest"
	"github.com/sluicegw/sluice/protocol"
)

// The admin sign-in against the in-process test issuer (internal/oidctest,
// a real authorization-code flow with PKCE and signed ID tokens, verified
// by the real identity/oidc authenticator), driven by an HTTP client with
// a cookie jar as a browser would: every redirect is a real HTTP request.

var _ LoginProvider = (*oidc.Authenticator)(nil)

const (
	loginClientID = "sluice-admin"
	loginSecret   = "client-secret-3c9e1f7a" // never in a log or a response
)

// dana is a DBA who signs in; eve is in no approver group.
var (
	danaClaims = map[string]any{"sub": "dana", "name": "Dana DBA", "email": "dana@example.test", "groups": []string{"dba", "ops"}}
	eveClaims  = map[string]any{"sub": "eve", "name": "Eve", "groups": []string{"dev"}}
)

// testClock is a settable time source for session and sign-in expiry.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		return time.Now()
	}
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		c.t = time.Now()
	}
	c.t = c.t.Add(d)
}

// tokenTap records what crosses the token endpoint (the client secret,
// the code and its verifier on the way out, the tokens on the way back),
// so that the tests can look for them where they must not be.
type tokenTap struct {
	mu      sync.Mutex
	secrets []string
	rt      http.RoundTripper
}

func (tp *tokenTap) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		form, _ := url.ParseQuery(string(b))
		tp.add(form.Get("code"), form.Get("code_verifier"), form.Get("client_secret"))
	}
	resp, err := tp.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	var tok struct{ AccessToken, IDToken string }
	var raw map[string]any
	if json.Unmarshal(b, &raw) == nil {
		tok.AccessToken, _ = raw["access_token"].(string)
		tok.IDToken, _ = raw["id_token"].(string)
	}
	tp.add(tok.AccessToken, tok.IDToken)
	return resp, nil
}

func (tp *tokenTap) add(ss ...string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for _, s := range ss {
		if s != "" {
			tp.secrets = append(tp.secrets, s)
		}
	}
}

func (tp *tokenTap) all() []string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]string(nil), tp.secrets...)
}

type loginEnv struct {
	*env
	broker *approval.Broker
	is     *oidctest.Issuer
	base   string // the admin listener, http://127.0.0.1:port
	clk    *testClock
	tap    *tokenTap
}

// newLoginEnv is a gateway with approvals on SQLite, bob's static token,
// an admin token, and single sign-on against a test issuer whose user is
// dana; its admin handler is served on loopback. edit adjusts the
// sign-in configuration.
func newLoginEnv(t *testing.T, edit func(*AdminLoginConfig)) *loginEnv {
	t.Helper()
	ctx := context.Background()
	is := oidctest.New(t)
	is.SetUser(danaClaims)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()
	is.AddClient(oidctest.Client{ID: loginClientID, Secret: loginSecret, RedirectURIs: []string{base + AdminCallbackPath}})

	store, err := sqlitestore.Open(ctx, sqlitestore.Config{Path: filepath.Join(t.TempDir(), sqlitestore.DefaultFile)})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, store.Close()) })
	b, err := approval.New(ctx, approval.Config{Store: store, GatewayID: "gw-test", ApproveURL: base + "/approvals",
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, b.Close()) })

	noKeepAlive := func() *http.Transport { return &http.Transport{DisableKeepAlives: true} }
	oidcAuth, err := oidc.New(oidc.Config{Issuers: []oidc.IssuerConfig{{Issuer: is.URL, Audiences: []string{"sluice", loginClientID}}}},
		oidc.WithHTTPClient(&http.Client{Transport: noKeepAlive(), Timeout: 10 * time.Second}), oidc.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	static, err := identity.NewStaticTokens([]identity.StaticToken{
		{SHA256: identity.HashToken(bobToken), Subject: "bob", Name: "Bob", Groups: []string{"dba"}},
	})
	require.NoError(t, err)
	tap := &tokenTap{rt: noKeepAlive()}
	e := newEnv(t, protoLine, func(c *Config) {
		c.Approvals = b
		c.Authenticator = identity.Chain{static, oidcAuth}
		c.AdminTokenSHA256 = identity.HashToken(adminTok)
		c.AdminLogin = &AdminLoginConfig{
			Provider: oidcAuth, Issuer: is.URL, ClientID: loginClientID, ClientSecret: credstore.NewSecret(loginSecret),
			RedirectURL: base + AdminCallbackPath, HTTPClient: &http.Client{Transport: tap, Timeout: 10 * time.Second},
		}
		if edit != nil {
			edit(c.AdminLogin)
		}
	})
	clk := &testClock{}
	e.g.login.now = clk.Now
	srv := httptest.NewUnstartedServer(e.g.AdminHandler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return &loginEnv{env: e, broker: b, is: is, base: base, clk: clk, tap: tap}
}

// request files a pending request of requester's for group:dba.
func (e *loginEnv) request(t *testing.T, requester identity.Identity, text string) *approval.Pending {
	t.Helper()
	r := approval.NewRequest(protocol.SessionInfo{ID: "sess-1", Identity: &requester,
		Target: &protocol.Target{Name: "prod-db", Protocol: "postgres", Address: "10.0.0.5:5432"}},
		protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: text},
		protocol.Decision{Action: protocol.RequireApproval, Rules: []string{"prod-writes"}, Approvers: []string{"group:dba"}})
	p, err := e.broker.Request(context.Background(), r)
	require.NoError(t, err)
	return p
}

func (e *loginEnv) state(t *testing.T, id string) approval.State {
	t.Helper()
	r, err := e.broker.Get(context.Background(), id)
	require.NoError(t, err)
	return r.State
}

// agent is an identity of the test issuer's, as an agent's token would
// give it.
func (e *loginEnv) agent(sub string) identity.Identity {
	return identity.Identity{Subject: sub, Issuer: e.is.URL, Method: identity.MethodOIDC, Groups: []string{"agents"}}
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects by itself, so each hop can be checked (and tampered with);
// bodies records every body the gateway answered it.
type browser struct {
	t      *testing.T
	e      *loginEnv
	jar    *cookiejar.Jar
	c      *http.Client
	mu     sync.Mutex
	bodies []string
}

func (e *loginEnv) browser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &browser{t: t, e: e, jar: jar, c: &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}}
}

// do sends a request (a path on the admin listener, or an absolute URL)
// and returns the response with its body read.
func (b *browser) do(method, target, body string, hdr map[string]string) (*http.Response, string) {
	b.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = b.e.base + target
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	require.NoError(b.t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	if strings.HasPrefix(target, b.e.base+"/") {
		b.mu.Lock()
		b.bodies = append(b.bodies, string(data))
		b.mu.Unlock()
	}
	return resp, string(data)
}

// tamper hooks edit a step of the flow: the query of the authorization
// request the gateway sends the browser to, and of the callback the
// issuer sends it back to.
type tamper struct {
	authorize func(url.Values)
	callback  func(url.Values)
}

// login walks the flow hop by hop and returns the callback's response
// and its URL.
func (b *browser) login(tp tamper) (*http.Response, string, string) {
	b.t.Helper()
	cb := b.toCallback(tp)
	resp, body := b.do("GET", cb, "", nil)
	return resp, body, cb
}

// toCallback walks the flow up to the issuer's answer and returns the
// callback URL it sends the browser to, not yet visited.
func (b *browser) toCallback(tp tamper) string {
	b.t.Helper()
	resp, _ := b.do("GET", adminLoginPath, "", nil)
	require.Equal(b.t, http.StatusFound, resp.StatusCode)
	authz, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(b.t, err)
	require.Equal(b.t, b.e.is.URL+"/authorize", authz.Scheme+"://"+authz.Host+authz.Path)
	q := authz.Query()
	if tp.authorize != nil {
		tp.authorize(q)
		authz.RawQuery = q.Encode()
	}
	resp, body := b.do("GET", authz.String(), "", nil)
	require.Equal(b.t, http.StatusFound, resp.StatusCode, body)
	cb, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(b.t, err)
	require.Equal(b.t, b.e.base+AdminCallbackPath, cb.Scheme+"://"+cb.Host+cb.Path)
	if tp.callback != nil {
		q := cb.Query()
		tp.callback(q)
		cb.RawQuery = q.Encode()
	}
	return cb.String()
}

// signIn completes the flow and returns the session as /api/session shows
// it.
func (b *browser) signIn() AdminSessionView {
	b.t.Helper()
	resp, body, _ := b.login(tamper{})
	require.Equal(b.t, http.StatusSeeOther, resp.StatusCode, body)
	s, ok := b.session()
	require.True(b.t, ok, "signed in")
	return s
}

func (b *browser) session() (AdminSessionView, bool) {
	b.t.Helper()
	resp, body := b.do("GET", adminSessionPath, "", nil)
	var s AdminSessionView
	if resp.StatusCode != http.StatusOK {
		require.Equal(b.t, http.StatusUnauthorized, resp.StatusCode, body)
		assert.Contains(b.t, body, `"login": "/auth/login"`)
		return s, false
	}
	require.NoError(b.t, json.Unmarshal([]byte(body), &s))
	return s, true
}

func (b *browser) vote(id, verb string, hdr map[string]string) (int, string) {
	b.t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	for k, v := range hdr {
		h[k] = v
	}
	resp, body := b.do("POST", "/api/approvals/"+id+"/"+verb, `{"reason": "looked fine"}`, h)
	return resp.StatusCode, body
}

func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.e.base)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// The whole flow as a browser follows it, then votes by session cookie:
// refused without the CSRF token, with a wrong one and from another
// origin, accepted with it.
func TestAdminLoginFlowAndCSRF(t *testing.T) {
	e := newLoginEnv(t, nil)
	p := e.request(t, e.agent("alice"), "UPDATE accounts SET balance = 0 WHERE id = 7")
	b := e.browser(t)

	// Signed out: the page learns where to sign in.
	_, ok := b.session()
	require.False(t, ok)

	// A browser following every redirect: login -> issuer -> callback ->
	// the approvals page.
	follow := &http.Client{Jar: b.jar, Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := follow.Get(e.base + adminLoginPath + "?next=/approvals/" + p.ID())
	require.NoError(t, err)
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, e.base+"/approvals/"+p.ID(), resp.Request.URL.String(), "back on the page the sign-in started from")
	assert.Contains(t, string(page), "sluice approvals")
	assert.Nil(t, b.cookie(loginCookie), "the sign-in cookie is used up")

	s, ok := b.session()
	require.True(t, ok)
	assert.Equal(t, "dana", s.Subject)
	assert.Equal(t, e.is.URL, s.Issuer)
	assert.Equal(t, "Dana DBA", s.Name)
	assert.Equal(t, "dana@example.test", s.Email)
	assert.Equal(t, []string{"dba", "ops"}, s.Groups, "groups from the ID token's claims")
	assert.NotEmpty(t, s.CSRFToken)
	assert.Equal(t, "/auth/logout", s.Logout)
	assert.Equal(t, "/auth/login", s.Login)
	assert.WithinDuration(t, time.Now().Add(DefaultAdminSessionTTL), s.ExpiresAt, time.Minute)

	// Reading needs no CSRF token.
	r, body := b.do("GET", "/api/approvals", "", nil)
	require.Equal(t, http.StatusOK, r.StatusCode, body)
	assert.Contains(t, body, p.ID())
	assert.Contains(t, body, `"can_decide": true`)

	csrf := map[string]string{csrfHeader: s.CSRFToken}
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		msg  string
	}{
		{"no CSRF token", nil, "missing or invalid CSRF token"},
		{"wrong CSRF token", map[string]string{csrfHeader: strings.Repeat("A", len(s.CSRFToken))}, "missing or invalid CSRF token"},
		{"another origin", map[string]string{csrfHeader: s.CSRFToken, "Origin": "https://evil.example"}, "cross-site request refused"},
		{"null origin", map[string]string{csrfHeader: s.CSRFToken, "Origin": "null"}, "cross-site request refused"},
		{"cross-site fetch", map[string]string{csrfHeader: s.CSRFToken, "Sec-Fetch-Site": "cross-site"}, "cross-site request refused"},
		{"same-site fetch", map[string]string{csrfHeader: s.CSRFToken, "Sec-Fetch-Site": "same-site"}, "cross-site request refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, verb := range []string{"approve", "deny"} {
				code, body := b.vote(p.ID(), verb, tc.hdr)
				assert.Equal(t, http.StatusForbidden, code, body)
				assert.Contains(t, body, tc.msg)
				assert.Contains(t, body, `"error"`)
			}
			assert.Equal(t, approval.StatePending, e.state(t, p.ID()), "a refused vote changes nothing")
		})
	}
	code, body := b.vote(p.ID(), "approve", map[string]string{csrfHeader: s.CSRFToken, "Origin": e.base, "Sec-Fetch-Site": "same-origin"})
	require.Equal(t, http.StatusOK, code, body)
	var v ApprovalView
	require.NoError(t, json.Unmarshal([]byte(body), &v))
	assert.Equal(t, approval.StateApproved, v.State)
	require.Len(t, v.Decisions, 1)
	assert.Equal(t, "dana", v.Decisions[0].Approver.Subject, "the vote is the signed-in approver's")
	assert.Equal(t, e.is.URL, v.Decisions[0].Approver.Issuer)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	out, err := p.Wait(ctx)
	require.NoError(t, err)
	assert.True(t, out.Approved())

	// The session cookie opens only the approvers' API, not the
	// operator's.
	r, _ = b.do("GET", "/api/sessions", "", nil)
	assert.Equal(t, http.StatusUnauthorized, r.StatusCode)
	r, _ = b.do("DELETE", "/api/sessions/x", "", csrf)
	assert.Equal(t, http.StatusUnauthorized, r.StatusCode)
	r, _ = b.do("GET", "/api/sessions", "", map[string]string{"Authorization": "Bearer " + adminTok})
	assert.Equal(t, http.StatusOK, r.StatusCode, "the admin token still works")
}

// Bearer tokens (approvers' own, automation's) are not subject to the
// CSRF checks, with sign-on configured or not.
func TestAdminLoginBearerUnaffected(t *testing.T) {
	e := newLoginEnv(t, nil)
	b := e.browser(t)
	b.signIn()
	p := e.request(t, e.agent("alice"), "DELETE FROM t")
	// A bearer token wins over the cookie the browser also sends.
	code, body := b.vote(p.ID(), "deny", map[string]string{"Authorization": "Bearer " + bobToken, "Origin": "https://elsewhere.example"})
	require.Equal(t, http.StatusOK, code, body)
	var v ApprovalView
	require.NoError(t, json.Unmarshal([]byte(body), &v))
	require.Len(t, v.Decisions, 1)
	assert.Equal(t, "bob", v.Decisions[0].Approver.Subject)

	// Without any credential the answer says both ways in.
	resp, body := e.browser(t).do("GET", "/api/approvals", "", nil)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Contains(t, body, "identity token")
	assert.Contains(t, body, `"login": "/auth/login"`)
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
}

// The response cookie's attributes on http loopback, and the __Host-
// Secure cookie over https.
func TestAdminLoginCookies(t *testing.T) {
	e := newLoginEnv(t, nil)
	resp, body, _ := e.browser(t).login(tamper{})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	assert.Equal(t, "/approvals", resp.Header.Get("Location"))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	var sess, login *http.Cookie
	for _, c := range resp.Cookies() {
		switch c.Name {
		case sessionCookie:
			sess = c
		case loginCookie:
			login = c
		}
	}
	require.NotNil(t, sess)
	assert.True(t, sess.HttpOnly)
	assert.Equal(t, http.SameSiteLaxMode, sess.SameSite)
	assert.Equal(t, "/", sess.Path)
	assert.Empty(t, sess.Domain)
	assert.False(t, sess.Secure, "http on loopback")
	assert.Equal(t, int(DefaultAdminSessionTTL/time.Second), sess.MaxAge)
	assert.GreaterOrEqual(t, len(sess.Value), 43, "32 random bytes")
	require.NotNil(t, login)
	assert.Negative(t, login.MaxAge, "the sign-in cookie is cleared")

	l := newAdminLogin(AdminLoginConfig{RedirectURL: "https://sluice.example.com:8443" + AdminCallbackPath})
	rec := httptest.NewRecorder()
	l.setCookie(rec, sessionCookie, "v", time.Hour)
	c := rec.Result().Cookies()
	require.Len(t, c, 1)
	assert.Equal(t, "__Host-sluice_admin", c[0].Name)
	assert.True(t, c[0].Secure)
	assert.True(t, c[0].HttpOnly)
	assert.Equal(t, "/", c[0].Path)
	assert.Equal(t, "https://sluice.example.com:8443", l.origin)
}

// Every way a callback can be wrong is refused with a 4xx, and none
// leaves a session behind.
func TestAdminLoginRefusals(t *testing.T) {
	e := newLoginEnv(t, nil)
	for _, tc := range []struct {
		name string
		tp   tamper
		want int
		msg  string
	}{
		{"state changed", tamper{callback: func(q url.Values) { q.Set("state", "forged-state") }}, http.StatusBadRequest, "does not match"},
		{"state missing", tamper{callback: func(q url.Values) { q.Del("state") }}, http.StatusBadRequest, "does not match"},
		{"nonce changed", tamper{authorize: func(q url.Values) { q.Set("nonce", "attacker-nonce") }}, http.StatusForbidden, "ID token"},
		{"wrong code verifier", tamper{authorize: func(q url.Values) {
			q.Set("code_challenge", oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()))
		}}, http.StatusBadRequest, "refused the sign-in code"},
		{"code changed", tamper{callback: func(q url.Values) { q.Set("code", "made-up-code") }}, http.StatusBadRequest, "refused the sign-in code"},
		{"no code", tamper{callback: func(q url.Values) { q.Del("code") }}, http.StatusBadRequest, "no code"},
		{"issuer mix-up", tamper{callback: func(q url.Values) { q.Set("iss", "https://other-idp.example") }}, http.StatusBadRequest, "another identity provider"},
		{"error from the issuer", tamper{callback: func(q url.Values) {
			q.Del("code")
			q.Set("error", "access_denied")
			q.Set("error_description", "user said no")
		}}, http.StatusForbidden, "access_denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.browser(t)
			resp, body, _ := b.login(tc.tp)
			assert.Equal(t, tc.want, resp.StatusCode, body)
			assert.Contains(t, body, tc.msg)
			assert.Contains(t, body, "/auth/login", "says how to start again")
			assert.Nil(t, b.cookie(sessionCookie))
			_, ok := b.session()
			assert.False(t, ok)
		})
	}

	t.Run("replayed callback", func(t *testing.T) {
		b := e.browser(t)
		resp, body, cb := b.login(tamper{})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
		first := b.cookie(sessionCookie)
		require.NotNil(t, first)
		// The same callback again, even with its sign-in cookie put
		// back: the sign-in (and the issuer's code) is used up.
		state, _ := url.Parse(cb)
		u, _ := url.Parse(e.base)
		b.jar.SetCookies(u, []*http.Cookie{{Name: loginCookie, Value: state.Query().Get("state"), Path: "/"}})
		resp, body = b.do("GET", cb, "", nil)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
		assert.Contains(t, body, "already used")
		for _, c := range resp.Cookies() {
			assert.NotEqual(t, sessionCookie, c.Name, "no new session")
		}
		// In another browser (the callback URL leaked): no sign-in
		// cookie, refused.
		other := e.browser(t)
		resp, body = other.do("GET", cb, "", nil)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
		assert.Contains(t, body, "not started in this browser")
		_, ok := other.session()
		assert.False(t, ok)
	})

	t.Run("login CSRF", func(t *testing.T) {
		// An attacker signs in as themselves and stops at the callback;
		// the victim's browser is made to open it. It carries the
		// victim's own sign-in cookie (or none), never the attacker's.
		attacker := e.browser(t)
		cb := attacker.toCallback(tamper{})
		victim := e.browser(t)
		victim.do("GET", adminLoginPath, "", nil) // a sign-in of the victim's own in progress
		resp, body := victim.do("GET", cb, "", nil)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
		_, ok := victim.session()
		assert.False(t, ok)
	})

	t.Run("sign-in too slow", func(t *testing.T) {
		b := e.browser(t)
		resp, body, _ := b.login(tamper{callback: func(url.Values) { e.clk.Advance(DefaultAdminLoginTimeout + time.Second) }})
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
		assert.Contains(t, body, "took longer than 10m0s")
		_, ok := b.session()
		assert.False(t, ok)
	})

	t.Run("open redirect", func(t *testing.T) {
		for _, next := range []string{"https://evil.example/", "//evil.example/approvals", "/approvals/../api/sessions", "/\\evil.example"} {
			b := e.browser(t)
			resp, _ := b.do("GET", adminLoginPath+"?next="+url.QueryEscape(next), "", nil)
			authz, err := url.Parse(resp.Header.Get("Location"))
			require.NoError(t, err)
			resp, _ = b.do("GET", authz.String(), "", nil)
			resp, body := b.do("GET", resp.Header.Get("Location"), "", nil)
			require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
			assert.Equal(t, "/approvals", resp.Header.Get("Location"), next)
		}
	})
}

// A session ends at SessionTTL (whatever the ID token's lifetime) and at
// sign-out; neither leaves the old cookie any power.
func TestAdminLoginSessionEnds(t *testing.T) {
	e := newLoginEnv(t, func(c *AdminLoginConfig) { c.SessionTTL = 9 * time.Hour })
	p := e.request(t, e.agent("alice"), "UPDATE t SET x = 1")

	t.Run("expiry", func(t *testing.T) {
		b := e.browser(t)
		s := b.signIn()
		e.clk.Advance(2 * time.Hour)
		_, ok := b.session()
		assert.True(t, ok, "the session outlives the ID token's hour")
		e.clk.Advance(7 * time.Hour)
		_, ok = b.session()
		assert.False(t, ok)
		code, body := b.vote(p.ID(), "approve", map[string]string{csrfHeader: s.CSRFToken})
		assert.Equal(t, http.StatusUnauthorized, code, body)
		assert.Contains(t, body, "sign in again")
		assert.Equal(t, approval.StatePending, e.state(t, p.ID()))
	})

	t.Run("logout", func(t *testing.T) {
		b := e.browser(t)
		s := b.signIn()
		old := b.cookie(sessionCookie)
		require.NotNil(t, old)
		resp, body := b.do("POST", adminLogoutPath, "", nil)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, body)
		assert.Contains(t, body, "missing or invalid CSRF token")
		_, ok := b.session()
		require.True(t, ok, "a forged sign-out does nothing")

		resp, body = b.do("POST", adminLogoutPath, "", map[string]string{csrfHeader: s.CSRFToken})
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Nil(t, b.cookie(sessionCookie), "the cookie is cleared")
		_, ok = b.session()
		assert.False(t, ok)

		// The old cookie, kept by someone, is dead.
		replay := e.browser(t)
		u, _ := url.Parse(e.base)
		replay.jar.SetCookies(u, []*http.Cookie{old})
		code, body := replay.vote(p.ID(), "approve", map[string]string{csrfHeader: s.CSRFToken})
		assert.Equal(t, http.StatusUnauthorized, code, body)
		resp, _ = replay.do("POST", adminLogoutPath, "", map[string]string{csrfHeader: s.CSRFToken})
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		assert.Equal(t, approval.StatePending, e.state(t, p.ID()))
	})

	t.Run("signing in again replaces the session", func(t *testing.T) {
		b := e.browser(t)
		b.signIn()
		old := b.cookie(sessionCookie)
		b.signIn()
		require.NotEqual(t, old.Value, b.cookie(sessionCookie).Value)
		replay := e.browser(t)
		u, _ := url.Parse(e.base)
		replay.jar.SetCookies(u, []*http.Cookie{old})
		_, ok := replay.session()
		assert.False(t, ok)
	})
}

// The broker's rules hold for a signed-in approver: a requester cannot
// approve their own request, and someone outside the approver groups
// cannot vote.
func TestAdminLoginApproverRules(t *testing.T) {
	e := newLoginEnv(t, nil)

	t.Run("self-approval", func(t *testing.T) {
		// dana's agent token (same issuer, same subject) asked.
		p := e.request(t, identity.Identity{Subject: "dana", Issuer: e.is.URL, Method: identity.MethodOIDC, Groups: []string{"dba"}}, "DROP TABLE t")
		b := e.browser(t)
		s := b.signIn()
		resp, body := b.do("GET", "/api/approvals/"+p.ID(), "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Contains(t, body, `"can_decide": false`)
		code, body := b.vote(p.ID(), "approve", map[string]string{csrfHeader: s.CSRFToken})
		assert.Equal(t, http.StatusForbidden, code, body)
		assert.Contains(t, body, "requester cannot decide")
		assert.Equal(t, approval.StatePending, e.state(t, p.ID()))
	})

	t.Run("not an approver", func(t *testing.T) {
		p := e.request(t, e.agent("alice"), "TRUNCATE t")
		e.is.SetUser(eveClaims)
		defer e.is.SetUser(danaClaims)
		b := e.browser(t)
		s := b.signIn()
		assert.Equal(t, []string{"dev"}, s.Groups)
		code, body := b.vote(p.ID(), "approve", map[string]string{csrfHeader: s.CSRFToken})
		assert.Equal(t, http.StatusForbidden, code, body)
		assert.Contains(t, body, "group:dba")
		assert.Equal(t, approval.StatePending, e.state(t, p.ID()))
	})
}

// The stores are bounded: past MaxSessions the oldest session ends, past
// the pending bound the oldest unfinished sign-in is dropped.
func TestAdminLoginBounds(t *testing.T) {
	e := newLoginEnv(t, func(c *AdminLoginConfig) { c.MaxSessions = 2 })
	bs := []*browser{e.browser(t), e.browser(t), e.browser(t)}
	for _, b := range bs {
		b.signIn()
		e.clk.Advance(time.Second)
	}
	_, ok := bs[0].session()
	assert.False(t, ok, "the oldest session was ended")
	for _, b := range bs[1:] {
		_, ok := b.session()
		assert.True(t, ok)
	}
	assert.Contains(t, e.logs.String(), "session limit reached")

	e.g.login.maxPending = 2
	first := e.browser(t)
	_, body, _ := first.login(tamper{callback: func(url.Values) {
		for range 2 {
			e.clk.Advance(time.Second)
			e.browser(t).do("GET", adminLoginPath, "", nil)
		}
	}})
	assert.Contains(t, body, "already used or is unknown")
}

// No secret of the flow reaches the log or a response: the client secret,
// the codes, the PKCE verifiers, the issuer's tokens, the session ids and
// the CSRF tokens.
func TestAdminLoginSecretsStayOut(t *testing.T) {
	e := newLoginEnv(t, nil)
	p := e.request(t, e.agent("alice"), "UPDATE t SET x = 2")
	b := e.browser(t)
	var secrets []string
	keep := func(q url.Values) { secrets = append(secrets, q.Get("code")) }

	s := b.signIn()
	secrets = append(secrets, s.CSRFToken, b.cookie(sessionCookie).Value)
	// Failures log too.
	b.login(tamper{callback: func(q url.Values) { keep(q); q.Set("state", "x") }})
	b.login(tamper{authorize: func(q url.Values) { q.Set("nonce", "n") }, callback: keep})
	b.login(tamper{authorize: func(q url.Values) {
		q.Set("code_challenge", oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()))
	}, callback: keep})
	s = b.signIn()
	secrets = append(secrets, s.CSRFToken, b.cookie(sessionCookie).Value)
	b.vote(p.ID(), "approve", nil)
	b.vote(p.ID(), "approve", map[string]string{csrfHeader: "wrong-" + s.CSRFToken})
	code, body := b.vote(p.ID(), "approve", map[string]string{csrfHeader: s.CSRFToken})
	require.Equal(t, http.StatusOK, code, body)
	b.do("POST", adminLogoutPath, "", map[string]string{csrfHeader: s.CSRFToken})
	b.vote(p.ID(), "deny", map[string]string{csrfHeader: s.CSRFToken})

	tapped := e.tap.all()
	require.GreaterOrEqual(t, len(tapped), 8, "codes, verifiers, the client secret and tokens were seen")
	secrets = append(secrets, tapped...)
	secrets = append(secrets, loginSecret)

	logs := e.logs.String()
	require.Contains(t, logs, "admin login: signed in", "the sign-ins were logged")
	require.Contains(t, logs, "CSRF token missing or wrong")
	require.Contains(t, logs, "ID token refused")
	require.Contains(t, logs, `"admin_session"`)
	b.mu.Lock()
	bodies := strings.Join(b.bodies, "\n")
	b.mu.Unlock()
	for i, sec := range secrets {
		require.NotEmpty(t, sec)
		for _, part := range strings.Split(sec, ".") { // a JWT's parts too
			if len(part) > 20 {
				assert.False(t, strings.Contains(logs, part), "secret %d of %d is in the log", i, len(secrets))
			}
		}
	}
	// The gateway's answers carry none of them either, but for the
	// caller's own CSRF token, which /api/session exists to hand out.
	for i, sec := range append(tapped, loginSecret) {
		assert.False(t, strings.Contains(bodies, sec), "secret %d is in a response", i)
	}

	// Nor does printing the configuration show the client secret.
	cfg := AdminLoginConfig{ClientID: loginClientID, ClientSecret: credstore.NewSecret(loginSecret)}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "admin_login", cfg)
	assert.NotContains(t, buf.String(), loginSecret)
}

// The page offers single sign-on when the gateway does, and sends the
// CSRF token on votes.
func TestAdminLoginPage(t *testing.T) {
	e := newLoginEnv(t, nil)
	b := e.browser(t)
	resp, body := b.do("GET", adminSessionPath, "", nil)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.JSONEq(t, `{"error": "not signed in", "login": "/auth/login"}`, body)

	_, html := b.do("GET", "/approvals", "", nil)
	assert.Contains(t, html, `<a id="sso-link" href="/auth/login">Sign in with SSO</a>`)
	assert.Contains(t, html, `id="token"`, "the token form stays for token users")
	assert.NotContains(t, html, "<script>", "no inline script")
	resp, js := b.do("GET", "/approvals/ui/app.js", "", nil)
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")
	for _, s := range []string{`"X-CSRF-Token"`, `"/api/session"`, `"/auth/logout"`, "csrf_token", "Sign out"} {
		assert.Contains(t, js, s)
	}
	assert.NotContains(t, js, "innerHTML")
	assert.NotContains(t, js, "document.cookie", "the session cookie is HttpOnly and never touched")

	// Without sign-on the page is told so.
	plain := newApprovalsEnv(t, "")
	code, _, body := approvalsDo(t, plain.h, "GET", adminSessionPath, "", "")
	assert.Equal(t, http.StatusNotFound, code)
	assert.Contains(t, body, "not configured")
	code, _, _ = approvalsDo(t, plain.h, "GET", adminLoginPath, "", "")
	assert.Equal(t, http.StatusNotFound, code)
}

func TestAdminLoginConfigValidate(t *testing.T) {
	good := func() *AdminLoginConfig {
		return &AdminLoginConfig{
			Provider: &oidc.Authenticator{}, Issuer: "https://idp.example.com", ClientID: "sluice",
			RedirectURL: "https://sluice.example.com:8443/auth/callback",
		}
	}
	require.NoError(t, good().Validate())
	loop := good()
	loop.RedirectURL = "http://127.0.0.1:8080/auth/callback"
	require.NoError(t, loop.Validate(), "plain http on loopback")
	for _, tc := range []struct {
		name string
		edit func(*AdminLoginConfig)
		msg  string
	}{
		{"no provider", func(c *AdminLoginConfig) { c.Provider = nil }, "admin_login.provider: required"},
		{"no issuer", func(c *AdminLoginConfig) { c.Issuer = "" }, "admin_login.issuer: required"},
		{"bad issuer", func(c *AdminLoginConfig) { c.Issuer = "idp.example.com" }, "admin_login.issuer:"},
		{"no client", func(c *AdminLoginConfig) { c.ClientID = "" }, "admin_login.client_id: required"},
		{"no redirect", func(c *AdminLoginConfig) { c.RedirectURL = "" }, "admin_login.redirect_url: required"},
		{"http redirect", func(c *AdminLoginConfig) { c.RedirectURL = "http://sluice.example.com/auth/callback" }, "must be https"},
		{"wrong path", func(c *AdminLoginConfig) { c.RedirectURL = "https://sluice.example.com/callback" }, "the path must be /auth/callback"},
		{"query", func(c *AdminLoginConfig) { c.RedirectURL = "https://sluice.example.com/auth/callback?x=1" }, "no query"},
		{"no openid", func(c *AdminLoginConfig) { c.Scopes = []string{"profile"} }, "admin_login.scopes: must include openid"},
		{"ttl", func(c *AdminLoginConfig) { c.SessionTTL = 30 * 24 * time.Hour }, "admin_login.session_ttl: at most"},
		{"negative ttl", func(c *AdminLoginConfig) { c.SessionTTL = -time.Second }, "admin_login.session_ttl"},
		{"max sessions", func(c *AdminLoginConfig) { c.MaxSessions = -1 }, "admin_login.max_sessions"},
		{"login timeout", func(c *AdminLoginConfig) { c.LoginTimeout = -1 }, "admin_login.login_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(c)
			err := c.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
	// Config.Validate reports them with the rest.
	cfg := Config{AdminLogin: &AdminLoginConfig{}}
	err := cfg.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "admin_login.client_id: required")
}

// An issuer that cannot be reached stops the sign-in with a 503 that says
// to try again, before any state is kept.
func TestAdminLoginIssuerDown(t *testing.T) {
	e := newLoginEnv(t, nil)
	e.is.Down(oidctest.Refused)
	b := e.browser(t)
	resp, body := b.do("GET", adminLoginPath, "", nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
	assert.Contains(t, body, "could not be reached; try again")
	assert.Nil(t, b.cookie(loginCookie))
	assert.Empty(t, e.g.login.pending)
	assert.Contains(t, e.logs.String(), "issuer discovery failed")
}
