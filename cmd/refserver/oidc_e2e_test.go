package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/internal/oidctest"
	"github.com/sluicegw/sluice/internal/pgtest"
)

// TestOIDCEndToEnd runs the built refserver with identity.oidc and
// admin.login against an in-process issuer: an agent connects with an
// OIDC access token as its password; its INSERT waits for approval; an
// approver signs in to the admin page through the authorization code flow
// (an HTTP client following redirects) and approves with the CSRF token,
// after a forged approve without it was refused.
func TestOIDCEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and needs PostgreSQL")
	}
	admin := requirePostgres(t)
	role, database := demoNames(t, admin)
	bin := buildRefserver(t)
	dir := t.TempDir()
	demo, err := bootstrapDemo(t.Context(), demoSetup{AdminConn: testPG, Role: role, Database: database, Dir: filepath.Join(dir, "secrets")})
	require.NoError(t, err)

	iss := oidctest.New(t)
	adminAddr, listen := pgtest.FreeAddr(t), pgtest.FreeAddr(t)
	const clientSecret = "admin-client-secret-e2e"
	iss.AddClient(oidctest.Client{ID: "sluice-admin", Secret: clientSecret, RedirectURIs: []string{"http://" + adminAddr + "/auth/callback"}})
	iss.SetUser(map[string]any{"sub": "dana", "name": "Dana DBA", "groups": []any{"dba"}})
	t.Setenv("SLUICE_E2E_LOGIN_SECRET", clientSecret)

	policyFile := filepath.Join(dir, "policy.yaml")
	require.NoError(t, os.WriteFile(policyFile, []byte(`rules:
  - name: inserts-need-a-dba
    match: command.kind == "query" && command.sql.statements.exists(s, s.kind == "INSERT")
    action: require_approval
    approvers: [group:dba]
    timeout: 1m
  - name: agents
    match: '"agents" in identity.groups'
    action: allow
`), 0o600))
	config := filepath.Join(dir, "refserver.yaml")
	require.NoError(t, os.WriteFile(config, fmt.Appendf(nil, `
data_dir: %[1]s/data
admin:
  listen: %[2]s
  login:
    issuer: %[3]s
    client_id: sluice-admin
    client_secret: env:SLUICE_E2E_LOGIN_SECRET
    redirect_url: http://%[2]s/auth/callback
identity:
  oidc:
    issuers:
      - issuer: %[3]s
        audiences: [sluice]
targets:
  - name: pg
    protocol: postgres
    listen: %[4]s
    address: 127.0.0.1:5432
    database: %[5]s
    sslmode: disable
    credential: {username: %[6]s, password: 'file:%[7]s'}
policy: {files: ['%[8]s'], watch: false}
shutdown_grace: 2s
`, dir, adminAddr, iss.URL, listen, database, role, demo.PasswordFile, policyFile), 0o600))
	s := startServe(t, bin, config, adminAddr, listen)

	claims := iss.Claims("agent-7", "sluice")
	claims["groups"] = []any{"agents"}
	token := iss.Mint(claims)
	host, port, _ := net.SplitHostPort(listen)
	conn, err := pgx.Connect(t.Context(), fmt.Sprintf("host=%s port=%s dbname=%s user=agent password=%s sslmode=require connect_timeout=5", host, port, database, token))
	require.NoError(t, err, "the OIDC token is accepted: %s", s.stderr.String())
	defer conn.Close(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(t.Context(), "INSERT INTO customers (name) VALUES ('Via SSO')", pgx.QueryExecModeSimpleProtocol)
		done <- err
	}()

	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := browser.Get(s.admin + "/auth/login")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "/approvals", resp.Request.URL.Path, "back on the page after signing in")
	var sess struct {
		Subject   string   `json:"subject"`
		Groups    []string `json:"groups"`
		CSRFToken string   `json:"csrf_token"`
	}
	getJSON := func(path string, v any) {
		t.Helper()
		resp, err := browser.Get(s.admin + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
	}
	getJSON("/api/session", &sess)
	assert.Equal(t, "dana", sess.Subject)
	assert.Equal(t, []string{"dba"}, sess.Groups)
	require.NotEmpty(t, sess.CSRFToken)

	var id string
	require.Eventually(t, func() bool {
		var views []struct{ ID string }
		getJSON("/api/approvals?state=pending", &views)
		if len(views) == 1 {
			id = views[0].ID
		}
		return id != ""
	}, 15*time.Second, 100*time.Millisecond)

	post := func(csrf string) (int, string) {
		req, err := http.NewRequest("POST", s.admin+"/api/approvals/"+id+"/approve", strings.NewReader(`{"reason":"sso"}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if csrf != "" {
			req.Header.Set("X-CSRF-Token", csrf)
		}
		resp, err := browser.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := post("")
	assert.Equal(t, http.StatusForbidden, code, "a forged approve without the CSRF token: %s", body)
	select {
	case err := <-done:
		t.Fatalf("the INSERT finished after a forged approve: %v", err)
	default:
	}
	code, body = post(sess.CSRFToken)
	require.Equal(t, http.StatusOK, code, body)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("the approved INSERT did not finish")
	}
	var n int
	require.NoError(t, conn.QueryRow(t.Context(), "SELECT count(*) FROM customers WHERE name = 'Via SSO'").Scan(&n))
	assert.Equal(t, 1, n)
	assert.NotContains(t, s.stderr.String(), clientSecret)
	assert.NotContains(t, s.stderr.String(), token)
	require.NoError(t, conn.Close(context.Background()))
	s.stop(t)
}
