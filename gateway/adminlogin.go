package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/identity"
)

// Human sign-in to the approvers' page and API: the OpenID Connect
// authorization code flow with PKCE (RFC 6749 §4.1, RFC 7636) against one
// configured issuer, ending in a server-side session that a cookie names.
//
//	GET  /auth/login     start: redirect to the issuer (?next=/approvals/ID to come back there)
//	GET  /auth/callback  the issuer's redirect back: code exchanged, ID token verified, session cookie set
//	POST /auth/logout    end the session (CSRF-protected); 200
//	GET  /api/session    who is signed in and the session's CSRF token; 401 {"login": "/auth/login"} when no one
//
// A cookie-authenticated request that changes state (any method but GET,
// HEAD and OPTIONS: approve, deny, logout) must carry the session's CSRF
// token in the X-CSRF-Token header, and is refused when its Origin is not
// the admin page's own or the browser marks it as cross-site
// (Sec-Fetch-Site). Bearer-authenticated requests (approvers' identity
// tokens, automation) are not affected: a browser never attaches those by
// itself, so they cannot be forged across sites.
//
// The session cookie is HttpOnly, SameSite=Lax, Path=/, and Secure (named
// with the __Host- prefix) when RedirectURL is https, which Validate
// requires unless its host is a loopback address. Session ids, codes,
// tokens and the client secret never reach a log line or an error
// response; a session appears in the logs as a short hash
// ("admin_session").

// Defaults and limits of AdminLoginConfig.
const (
	// DefaultAdminSessionTTL is how long a sign-in lasts: a working day.
	DefaultAdminSessionTTL = 8 * time.Hour
	// MaxAdminSessionTTL bounds SessionTTL.
	MaxAdminSessionTTL = 7 * 24 * time.Hour
	// DefaultAdminMaxSessions bounds the live sessions kept in memory.
	DefaultAdminMaxSessions = 10000
	// DefaultAdminLoginTimeout is how long a started sign-in may take at
	// the identity provider before its callback is refused.
	DefaultAdminLoginTimeout = 10 * time.Minute
	// AdminCallbackPath is the path of the callback; RedirectURL must end
	// in it.
	AdminCallbackPath = "/auth/callback"
)

// Paths and names of the sign-in flow.
const (
	adminLoginPath   = "/auth/login"
	adminLogoutPath  = "/auth/logout"
	adminSessionPath = "/api/session"
	csrfHeader       = "X-CSRF-Token"
	sessionCookie    = "sluice_admin"
	loginCookie      = "sluice_login"
	// maxPendingLogins bounds sign-ins started but not yet called back;
	// /auth/login is open to anyone, so the oldest is dropped past it.
	maxPendingLogins = 1000
	// exchangeTimeout bounds the callback's calls to the issuer.
	exchangeTimeout = 30 * time.Second
)

// LoginProvider is what the sign-in needs from the OpenID Connect
// provider: the issuer's discovered endpoints and ID-token verification
// (signature, iss, aud containing the client ID, exp, nonce) mapped into
// an identity with its groups. *oidc.Authenticator implements it.
type LoginProvider interface {
	Endpoint(ctx context.Context, issuer string) (oauth2.Endpoint, error)
	VerifyIDToken(ctx context.Context, issuer, rawIDToken, nonce string) (*identity.Identity, error)
}

// AdminLoginConfig enables human sign-in (OpenID Connect) to the approvers'
// page and API on the admin listener. Approvers' bearer identity tokens
// and the admin token keep working beside it.
//
// A session lasts SessionTTL from sign-in, however short-lived the ID
// token was: the ID token proves the sign-in, it is not renewed, and an
// approver expects to stay signed in for the working day. Groups are
// those of the ID token at sign-in, so removing someone from an approver
// group takes effect when their session ends (at most SessionTTL) or they
// sign in again; lower SessionTTL for quicker revocation. Sessions live in
// this gateway's memory: a restart signs everyone out, and several
// gateways behind one admin address need sticky routing.
type AdminLoginConfig struct {
	// Provider discovers the issuer's endpoints and verifies ID tokens;
	// normally the *oidc.Authenticator that also checks agents' tokens,
	// whose configuration for Issuer must list ClientID among its
	// audiences. Required.
	Provider LoginProvider
	// Issuer is the issuer identifier users sign in with (one of the
	// Provider's issuers). Required.
	Issuer string
	// ClientID is the gateway's OAuth2 client at the issuer. Required.
	ClientID string
	// ClientSecret authenticates the client at the token endpoint; empty
	// for a public client (PKCE alone).
	ClientSecret credstore.Secret
	// RedirectURL is the callback as the browser reaches it, the admin
	// listener's address followed by /auth/callback
	// ("https://sluice.example.com:8443/auth/callback"), registered with
	// the issuer. It must be https unless its host is a loopback address,
	// and its scheme decides the cookies' Secure flag. Required.
	RedirectURL string
	// Scopes requested; default openid, profile, email. Must include
	// openid. Add the scope that makes the issuer put groups in the ID
	// token if it needs one ("groups").
	Scopes []string
	// SessionTTL is how long a sign-in lasts; default 8h, at most 168h.
	SessionTTL time.Duration
	// MaxSessions bounds the live sessions; past it the oldest is ended.
	// Default 10000.
	MaxSessions int
	// LoginTimeout bounds the time from /auth/login to the callback;
	// default 10m.
	LoginTimeout time.Duration
	// HTTPClient makes the token request (a proxy, a private CA); by
	// default a client with a 30s timeout and no kept-alive connections.
	HTTPClient *http.Client
}

// Validate reports every problem, one per line, each naming its field
// (admin_login.client_id: ...). It does not change c.
func (c *AdminLoginConfig) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("admin_login.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Provider == nil {
		bad("provider", "required: the OpenID Connect authenticator that verifies the ID tokens")
	}
	if c.Issuer == "" {
		bad("issuer", "required")
	} else if u, err := url.Parse(c.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		bad("issuer", "%q is not an http(s) URL", c.Issuer)
	}
	if c.ClientID == "" {
		bad("client_id", "required: the client registered for the gateway at the issuer")
	}
	if c.RedirectURL == "" {
		bad("redirect_url", "required, e.g. https://sluice.example.com:8443%s", AdminCallbackPath)
	} else if u, err := url.Parse(c.RedirectURL); err != nil || u.Host == "" {
		bad("redirect_url", "%q is not an absolute URL", c.RedirectURL)
	} else {
		switch {
		case u.Scheme != "https" && !(u.Scheme == "http" && loopbackHost(u.Hostname())):
			bad("redirect_url", "%q must be https (http only on a loopback address): the session cookie travels over it", c.RedirectURL)
		case u.Path != AdminCallbackPath:
			bad("redirect_url", "%q: the path must be %s, where the admin listener serves the callback", c.RedirectURL, AdminCallbackPath)
		case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			bad("redirect_url", "%q must have no query, fragment or user info", c.RedirectURL)
		}
	}
	if len(c.Scopes) > 0 && !slices.Contains(c.Scopes, "openid") {
		bad("scopes", "must include openid (got %s)", strings.Join(c.Scopes, " "))
	}
	switch {
	case c.SessionTTL < 0:
		bad("session_ttl", "must not be negative, got %s", c.SessionTTL)
	case c.SessionTTL > MaxAdminSessionTTL:
		bad("session_ttl", "at most %s, got %s", MaxAdminSessionTTL, c.SessionTTL)
	}
	if c.MaxSessions < 0 {
		bad("max_sessions", "must not be negative, got %d", c.MaxSessions)
	}
	if c.LoginTimeout < 0 {
		bad("login_timeout", "must not be negative, got %s", c.LoginTimeout)
	}
	return errors.Join(errs...)
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// adminLogin is the sign-in's run-time state: sign-ins in progress and
// live sessions.
type adminLogin struct {
	cfg    AdminLoginConfig // defaults applied
	oauth  oauth2.Config    // without Endpoint, which is discovered per use
	origin string           // scheme://host[:port] of RedirectURL
	secure bool
	client *http.Client
	now    func() time.Time

	mu       sync.Mutex
	pending  map[string]*pendingLogin // by state
	sessions map[[32]byte]*adminSession
	// Bounds, fields so tests can lower them.
	maxPending, maxSessions int
}

// pendingLogin is a sign-in between /auth/login and its callback.
type pendingLogin struct {
	nonce, verifier, next string
	expires               time.Time
}

// adminSession is a signed-in approver.
type adminSession struct {
	who     identity.Identity // no raw claims
	csrf    string
	handle  string // for logs; not the id
	expires time.Time
}

func newAdminLogin(cfg AdminLoginConfig) *adminLogin {
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"openid", "profile", "email"}
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = DefaultAdminSessionTTL
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = DefaultAdminMaxSessions
	}
	if cfg.LoginTimeout == 0 {
		cfg.LoginTimeout = DefaultAdminLoginTimeout
	}
	client := cfg.HTTPClient
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DisableKeepAlives = true // one request per sign-in; nothing lingers
		client = &http.Client{Timeout: exchangeTimeout, Transport: tr}
	}
	u, _ := url.Parse(cfg.RedirectURL) // checked by Validate
	return &adminLogin{
		cfg: cfg,
		oauth: oauth2.Config{
			ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret.Reveal(),
			RedirectURL: cfg.RedirectURL, Scopes: cfg.Scopes,
		},
		origin:      strings.ToLower(u.Scheme + "://" + u.Host),
		secure:      u.Scheme == "https",
		client:      client,
		now:         time.Now,
		pending:     map[string]*pendingLogin{},
		sessions:    map[[32]byte]*adminSession{},
		maxPending:  maxPendingLogins,
		maxSessions: cfg.MaxSessions,
	}
}

// cookieName prefixes name with __Host- for Secure cookies: the browser
// then accepts it only from this host, over https, for Path=/, so a
// neighbouring subdomain cannot plant one.
func (l *adminLogin) cookieName(name string) string {
	if l.secure {
		return "__Host-" + name
	}
	return name
}

func (l *adminLogin) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name: l.cookieName(name), Value: value, Path: "/",
		HttpOnly: true, Secure: l.secure, SameSite: http.SameSiteLaxMode,
		MaxAge: int(maxAge / time.Second),
	}
	if maxAge <= 0 {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// randomToken is 32 random bytes, base64url.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// nextPage matches the pages a sign-in may return to: only the
// approvals page itself, so ?next= cannot redirect elsewhere.
var nextPage = regexp.MustCompile(`^/approvals(/[A-Za-z0-9_-]{1,64})?$`)

// routeAdminLogin adds the sign-in endpoints to mux. Without AdminLogin
// they answer 404, which tells the page to offer only the token form.
func (g *Gateway) routeAdminLogin(mux *http.ServeMux) {
	l := g.login
	off := func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "single sign-on is not configured on this gateway; use your identity token")
	}
	if l == nil {
		for _, p := range []string{"GET " + adminLoginPath, "GET " + AdminCallbackPath, "POST " + adminLogoutPath, "GET " + adminSessionPath} {
			mux.HandleFunc(p, off)
		}
		return
	}
	mux.HandleFunc("GET "+adminLoginPath, g.handleLogin)
	mux.HandleFunc("GET "+AdminCallbackPath, g.handleCallback)
	mux.HandleFunc("POST "+adminLogoutPath, g.handleLogout)
	mux.HandleFunc("GET "+adminSessionPath, g.handleSession)
}

// handleLogin starts a sign-in: a fresh state, nonce and PKCE verifier are
// kept server-side under the state, the state also goes into a cookie that
// binds the sign-in to this browser, and the browser is sent to the
// issuer.
func (g *Gateway) handleLogin(w http.ResponseWriter, r *http.Request) {
	l := g.login
	ctx, cancel := context.WithTimeout(r.Context(), exchangeTimeout)
	defer cancel()
	ep, err := l.cfg.Provider.Endpoint(ctx, l.cfg.Issuer)
	if err != nil {
		g.cfg.Logger.Error("admin login: issuer discovery failed", "issuer", l.cfg.Issuer, "err", err)
		writeError(w, http.StatusServiceUnavailable, "the identity provider could not be reached; try again shortly")
		return
	}
	next := r.URL.Query().Get("next")
	if !nextPage.MatchString(next) {
		next = "/approvals"
	}
	state, nonce, verifier := randomToken(), randomToken(), oauth2.GenerateVerifier()
	l.addPending(state, &pendingLogin{nonce: nonce, verifier: verifier, next: next, expires: l.now().Add(l.cfg.LoginTimeout)})
	l.setCookie(w, loginCookie, state, l.cfg.LoginTimeout)
	conf := l.oauth
	conf.Endpoint = ep
	noStore(w)
	http.Redirect(w, r, conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", nonce)), http.StatusFound)
}

// handleCallback completes a sign-in: the state must be the one this
// browser started (its cookie) and still pending (single use), the code is
// exchanged with the PKCE verifier, and the ID token must verify with the
// sign-in's nonce. Only then is a session created.
func (g *Gateway) handleCallback(w http.ResponseWriter, r *http.Request) {
	l := g.login
	log := g.cfg.Logger.With("remote", r.RemoteAddr)
	noStore(w)
	q := r.URL.Query()
	refuse := func(code int, reason, msg string) {
		log.Warn("admin login: sign-in refused", "reason", reason)
		writeError(w, code, msg)
	}
	const again = "; start again at " + adminLoginPath

	// The pending sign-in is taken (and its cookie cleared) before
	// anything else is checked: whatever happens, a callback is used up.
	var p *pendingLogin
	bound := ""
	if c, err := r.Cookie(l.cookieName(loginCookie)); err == nil {
		bound = c.Value
		p = l.takePending(bound)
	}
	l.setCookie(w, loginCookie, "", 0)
	state := q.Get("state")
	switch {
	case bound == "":
		refuse(http.StatusBadRequest, "no sign-in cookie", "this sign-in was not started in this browser"+again)
		return
	case state == "" || subtle.ConstantTimeCompare([]byte(state), []byte(bound)) != 1:
		refuse(http.StatusBadRequest, "state does not match the sign-in cookie", "this sign-in does not match the one started in this browser"+again)
		return
	case p == nil:
		refuse(http.StatusBadRequest, "unknown or used state", "this sign-in was already used or is unknown"+again)
		return
	case !l.now().Before(p.expires):
		refuse(http.StatusBadRequest, "sign-in took too long", "this sign-in took longer than "+l.cfg.LoginTimeout.String()+again)
		return
	}
	// RFC 9207: an issuer that names itself must be the one we sent the
	// browser to (a mix-up defence when several issuers are in use).
	if iss := q.Get("iss"); iss != "" && iss != l.cfg.Issuer {
		refuse(http.StatusBadRequest, "iss parameter names another issuer", "the answer came from another identity provider"+again)
		return
	}
	if e := q.Get("error"); e != "" {
		log.Warn("admin login: the identity provider refused the sign-in", "error", clipText(e), "description", clipText(q.Get("error_description")))
		writeError(w, http.StatusForbidden, "the identity provider refused the sign-in ("+clipText(e)+")"+again)
		return
	}
	code := q.Get("code")
	if code == "" {
		refuse(http.StatusBadRequest, "no code", "the identity provider returned no code"+again)
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), exchangeTimeout)
	defer cancel()
	ep, err := l.cfg.Provider.Endpoint(ctx, l.cfg.Issuer)
	if err != nil {
		log.Error("admin login: issuer discovery failed", "issuer", l.cfg.Issuer, "err", err)
		writeError(w, http.StatusServiceUnavailable, "the identity provider could not be reached"+again)
		return
	}
	conf := l.oauth
	conf.Endpoint = ep
	tok, err := conf.Exchange(context.WithValue(ctx, oauth2.HTTPClient, l.client), code, oauth2.VerifierOption(p.verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// Only the RFC 6749 §5.2 fields: the raw body is the
			// issuer's and is not logged.
			status := 0
			if re.Response != nil {
				status = re.Response.StatusCode
			}
			log.Warn("admin login: the token request was refused", "status", status,
				"error", clipText(re.ErrorCode), "description", clipText(re.ErrorDescription))
			if re.ErrorCode == "invalid_grant" {
				writeError(w, http.StatusBadRequest, "the identity provider refused the sign-in code"+again)
				return
			}
			writeError(w, http.StatusBadGateway, "the identity provider refused the gateway's token request; ask an operator to check the gateway log")
			return
		}
		log.Error("admin login: token request failed", "err", scrubURLError(err))
		writeError(w, http.StatusServiceUnavailable, "the identity provider could not be reached"+again)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		log.Error("admin login: the token response has no id_token; is the openid scope granted?")
		writeError(w, http.StatusBadGateway, "the identity provider returned no ID token; ask an operator to check the gateway log")
		return
	}
	who, err := l.cfg.Provider.VerifyIDToken(ctx, l.cfg.Issuer, raw, p.nonce)
	switch {
	case errors.Is(err, identity.ErrUnauthenticated):
		log.Warn("admin login: ID token refused", "err", err)
		writeError(w, http.StatusForbidden, "the ID token from the identity provider was not accepted"+again+"; if it keeps failing, ask an operator to check the gateway log")
		return
	case err != nil || who == nil:
		log.Error("admin login: ID token could not be verified", "err", err)
		writeError(w, http.StatusServiceUnavailable, "the identity provider's keys could not be fetched"+again)
		return
	}

	// A sign-in replaces the session this browser had.
	if c, err := r.Cookie(l.cookieName(sessionCookie)); err == nil {
		l.endSession(c.Value)
	}
	id, s, evicted := l.newSession(*who)
	if evicted {
		log.Warn("admin login: session limit reached; the oldest session was ended", "max_sessions", l.maxSessions)
	}
	l.setCookie(w, sessionCookie, id, l.cfg.SessionTTL)
	log.Info("admin login: signed in", "admin_session", s.handle, "subject", s.who.Subject, "issuer", s.who.Issuer,
		"groups", s.who.Groups, "expires", s.expires)
	http.Redirect(w, r, p.next, http.StatusSeeOther)
}

// handleLogout ends the caller's session; it is CSRF-protected like every
// state change.
func (g *Gateway) handleLogout(w http.ResponseWriter, r *http.Request) {
	l := g.login
	s, id, ok := g.cookieSession(w, r)
	if !ok {
		return
	}
	if s == nil {
		l.setCookie(w, sessionCookie, "", 0)
		writeError(w, http.StatusUnauthorized, "not signed in")
		return
	}
	l.endSession(id)
	l.setCookie(w, sessionCookie, "", 0)
	g.cfg.Logger.Info("admin login: signed out", "admin_session", s.handle, "subject", s.who.Subject)
	writeJSON(w, http.StatusOK, map[string]string{"status": "signed out"})
}

// AdminSessionView is GET /api/session: who is signed in, until when, the
// CSRF token the page sends back on every vote, and where to sign out
// and in again.
type AdminSessionView struct {
	PersonView
	ExpiresAt time.Time `json:"expires_at"`
	CSRFToken string    `json:"csrf_token"`
	Logout    string    `json:"logout"`
	Login     string    `json:"login"`
}

func (g *Gateway) handleSession(w http.ResponseWriter, r *http.Request) {
	s, _, ok := g.cookieSession(w, r)
	if !ok {
		return
	}
	if s == nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "not signed in", "login": adminLoginPath})
		return
	}
	writeJSON(w, http.StatusOK, AdminSessionView{PersonView: personView(s.who), ExpiresAt: s.expires, CSRFToken: s.csrf, Logout: adminLogoutPath, Login: adminLoginPath})
}

// cookieCaller authenticates r by its session cookie for the approvers'
// API. It returns the identity when r carries a live session (and, for a
// state change, passes the CSRF checks); answered reports that it wrote a
// refusal (an ended session, a failed CSRF check). Both zero: no cookie,
// the caller may try other credentials.
func (g *Gateway) cookieCaller(w http.ResponseWriter, r *http.Request) (who *identity.Identity, answered bool) {
	if g.login == nil {
		return nil, false
	}
	c, err := r.Cookie(g.login.cookieName(sessionCookie))
	if err != nil || c.Value == "" {
		return nil, false
	}
	s, _, ok := g.cookieSession(w, r)
	if !ok {
		return nil, true
	}
	if s == nil {
		g.login.setCookie(w, sessionCookie, "", 0)
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice approvals"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "your sign-in has ended; sign in again", "login": adminLoginPath})
		return nil, true
	}
	id := s.who
	return &id, false
}

// cookieSession looks up r's session. For a method that changes state it
// also applies the CSRF checks and, when they fail, answers 403 and
// returns ok false. s is nil when r has no live session.
func (g *Gateway) cookieSession(w http.ResponseWriter, r *http.Request) (s *adminSession, id string, ok bool) {
	l := g.login
	if c, err := r.Cookie(l.cookieName(sessionCookie)); err == nil {
		id = c.Value
		s = l.session(id)
	}
	if s == nil || safeMethod(r.Method) {
		return s, id, true
	}
	if why := l.crossSite(r); why != "" {
		g.cfg.Logger.Warn("admin login: cross-site request refused", "admin_session", s.handle, "subject", s.who.Subject,
			"remote", r.RemoteAddr, "path", r.URL.Path, "reason", why)
		writeError(w, http.StatusForbidden, "cross-site request refused: "+why)
		return nil, "", false
	}
	got := r.Header.Get(csrfHeader)
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
		g.cfg.Logger.Warn("admin login: CSRF token missing or wrong", "admin_session", s.handle, "subject", s.who.Subject,
			"remote", r.RemoteAddr, "path", r.URL.Path, "present", got != "")
		writeError(w, http.StatusForbidden, "missing or invalid CSRF token: send the "+csrfHeader+" header with the csrf_token from GET "+adminSessionPath)
		return nil, "", false
	}
	return s, id, true
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// crossSite says why r did not come from the admin page itself: its
// Origin is another one, or the browser's Fetch Metadata says it was sent
// from another site. Requests without either header (non-browser
// clients) pass; the CSRF token still applies to them.
func (l *adminLogin) crossSite(r *http.Request) string {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return "Sec-Fetch-Site is " + clipText(site)
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	origin = strings.ToLower(origin)
	if origin == l.origin {
		return ""
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if r.Host != "" && origin == strings.ToLower(scheme+"://"+r.Host) {
		return ""
	}
	return "the Origin is not this admin page"
}

func noStore(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
}

// clipText bounds and sanitises text from the identity provider or the
// browser before it goes into a log line or a response.
func clipText(s string) string {
	const limit = 200
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// scrubURLError drops the URL from a transport error: the token
// endpoint's URL holds no secret, but a misconfigured one might.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s token endpoint: %w", ue.Op, ue.Err)
	}
	return err
}

// ---- the stores ----

func (l *adminLogin) addPending(state string, p *pendingLogin) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) >= l.maxPending {
		now := l.now()
		var oldest string
		for k, v := range l.pending {
			if !now.Before(v.expires) {
				delete(l.pending, k)
			} else if oldest == "" || v.expires.Before(l.pending[oldest].expires) {
				oldest = k
			}
		}
		if len(l.pending) >= l.maxPending {
			delete(l.pending, oldest)
		}
	}
	l.pending[state] = p
}

func (l *adminLogin) takePending(state string) *pendingLogin {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.pending[state]
	delete(l.pending, state)
	return p
}

// sessionKey is how a session id is kept: hashed, so the map holds
// nothing a cookie could be rebuilt from.
func sessionKey(id string) [32]byte { return sha256.Sum256([]byte(id)) }

// newSession signs who in. When MaxSessions are live the one closest to
// its end is ended for it, and evicted says so.
func (l *adminLogin) newSession(who identity.Identity) (id string, s *adminSession, evicted bool) {
	who.Claims = nil
	who.Groups = slices.Clone(who.Groups)
	id = randomToken()
	key := sessionKey(id)
	now := l.now()
	s = &adminSession{who: who, csrf: randomToken(), handle: hex.EncodeToString(key[:6]), expires: now.Add(l.cfg.SessionTTL)}
	s.who.Expiry = s.expires
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.sessions) >= l.maxSessions {
		var oldest [32]byte
		var found bool
		for k, v := range l.sessions {
			if !now.Before(v.expires) {
				delete(l.sessions, k)
			} else if !found || v.expires.Before(l.sessions[oldest].expires) {
				oldest, found = k, true
			}
		}
		if len(l.sessions) >= l.maxSessions && found {
			delete(l.sessions, oldest)
			evicted = true
		}
	}
	l.sessions[key] = s
	return id, s, evicted
}

// session returns the live session id names, or nil.
func (l *adminLogin) session(id string) *adminSession {
	if id == "" {
		return nil
	}
	key := sessionKey(id)
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sessions[key]
	if s != nil && !l.now().Before(s.expires) {
		delete(l.sessions, key)
		return nil
	}
	return s
}

func (l *adminLogin) endSession(id string) {
	key := sessionKey(id)
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.sessions, key)
}
