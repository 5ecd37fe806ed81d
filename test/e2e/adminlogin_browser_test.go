package e2e

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/identity/oidc"
	"github.com/sluicegw/sluice/internal/oidctest"
	"github.com/sluicegw/sluice/internal/pgtest"
	"github.com/sluicegw/sluice/policy"
)

// TestAdminLoginInBrowser: an approver signs in to the approvals page
// with single sign-on in headless Chromium, against the in-process test
// issuer (authorization code with PKCE; a real ID token verified by
// identity/oidc), and approves a psql INSERT held for a DBA. The page
// shows who is signed in, the vote (sent with the session's CSRF token by
// the page) lets psql finish and is recorded as the signed-in user's, the
// session cookie is invisible to the page's script, and Sign out ends the
// session.
func TestAdminLoginInBrowser(t *testing.T) {
	pgtest.Require(t)
	requireTool(t, "psql")
	requireChromium(t)
	admin := pgtest.AdminConn(t, "test")
	ctx, cancel := context.WithTimeout(context.Background(), 2*browserTimeout)
	defer cancel()
	_, err := admin.Exec(ctx, "drop table if exists e2e_sso_approval; create table e2e_sso_approval(v int)")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "drop table if exists e2e_sso_approval") })

	const clientID, clientSecret = "sluice-admin", "e2e-client-secret-5d2b"
	is := oidctest.New(t)
	is.SetUser(map[string]any{"sub": "dana", "name": "Dana DBA", "email": "dana@example.test", "groups": []string{"dba"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()
	is.AddClient(oidctest.Client{ID: clientID, Secret: clientSecret, RedirectURIs: []string{base + gateway.AdminCallbackPath}})
	provider, err := oidc.New(oidc.Config{Issuers: []oidc.IssuerConfig{{Issuer: is.URL, Audiences: []string{clientID}}}},
		oidc.WithHTTPClient(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}),
		oidc.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)

	broker := newBroker(t, ctx, "e2e-sso")
	engine, err := policy.Parse("sso.yaml", []byte(`
rules:
  - name: connect
    match: command.kind == "connect"
    action: allow
  - name: reads
    match: '!command.sql.writes'
    action: allow
  - name: writes-need-a-dba
    match: command.sql.writes
    action: require_approval
    approvers: [group:dba]
    timeout: 2m
default: deny
`))
	require.NoError(t, err)
	requester := identity.StaticToken{Subject: subject, Name: "Alice Agent", Groups: []string{"agents"}}
	unused := identity.StaticToken{Subject: "token-approver", Groups: []string{"dba"}}
	e, _ := startApprovalsGateway(t, engine, broker, requester, unused, func(c *gateway.Config) {
		c.AdminLogin = &gateway.AdminLoginConfig{
			Provider: provider, Issuer: is.URL, ClientID: clientID, ClientSecret: credstore.NewSecret(clientSecret),
			RedirectURL: base + gateway.AdminCallbackPath,
		}
	})
	srv := httptest.NewUnstartedServer(e.g.AdminHandler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)

	page := startBrowser(t)
	bctx, bcancel := context.WithTimeout(page, browserTimeout)
	defer bcancel()

	// Signed out, the page offers single sign-on beside the token form.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate(base+"/approvals"),
		chromedp.WaitVisible(chromedp.ID("sso-link")),
		chromedp.WaitVisible(chromedp.ID("token")),
	), "the page offers single sign-on")
	// Sign in: to the issuer and back, onto the page, signed in.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Click(chromedp.ID("sso-link")),
		chromedp.WaitVisible(chromedp.ID("main")),
		chromedp.WaitVisible(chromedp.ID("empty")),
	), "signing in with SSO")
	whoami, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("whoami")))
	require.NoError(t, err)
	assert.Equal(t, "Signed in as Dana DBA (dana).", whoami)
	location, err := chromedp.Run(bctx, chromedp.Location())
	require.NoError(t, err)
	assert.Equal(t, base+"/approvals", location, "back on the page, without the code in the address")
	cookies, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.cookie`))
	require.NoError(t, err)
	assert.NotContains(t, cookies, "sluice_admin", "the session cookie is HttpOnly")
	stored, err := chromedp.Run(bctx, chromedp.Evaluate[int](`sessionStorage.length + localStorage.length`))
	require.NoError(t, err)
	assert.Zero(t, stored, "nothing is kept in the page's storage")

	// An INSERT waits for a DBA; dana approves it on the page.
	const sql = "insert into e2e_sso_approval values (1)"
	done := startPsql(ctx, t, e, sql)
	require.NoError(t, chromedp.Do(bctx, chromedp.WaitVisible(chromedp.CSS(`#list .req button`))), "the request appears")
	id, err := chromedp.Run(bctx, chromedp.Evaluate[string](
		`[...document.querySelectorAll("#list .req dt")].find((dt) => dt.textContent === "Request").nextElementSibling.textContent`))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(bctx, chromedp.Click(chromedp.Search(`//div[@id="list"]//button[text()="Approve"]`))))
	r := waitPsql(ctx, t, done)
	assert.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Contains(t, r.stdout, "INSERT 0 1")
	require.NoError(t, chromedp.Do(bctx, chromedp.WaitNotPresent(chromedp.CSS(`#list .req`))))
	req, err := broker.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, approval.StateApproved, req.State)
	require.Len(t, req.Decisions, 1)
	assert.Equal(t, "dana", req.Decisions[0].Approver.Subject, "the vote is the signed-in user's")
	assert.Equal(t, is.URL, req.Decisions[0].Approver.Issuer)
	assert.Equal(t, []string{"dba"}, req.Decisions[0].Approver.Groups)

	// Sign out: the sign-in choices come back, and the session is gone
	// (a reload does not sign in again).
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("sso-link")),
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.ID("sso-link")),
	), "signing out")
	status, err := chromedp.Run(bctx, chromedp.Evaluate[int](`fetch("/api/session").then((r) => r.status)`, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnauthorized, status)

	assert.False(t, strings.Contains(e.logs.String(), clientSecret), "the client secret is not logged")
	assert.Contains(t, e.logs.String(), "admin login: signed in")
}
