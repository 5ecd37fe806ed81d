package main

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

func TestConfigApprovalDefaults(t *testing.T) {
	c := parseValid(t, "data_dir: /var/lib/sluice\n"+goodConfig)
	a := c.Approval
	assert.True(t, a.on(), "approvals are on by default")
	assert.Equal(t, "sqlite", a.Store)
	assert.Equal(t, "/var/lib/sluice/approvals.db", c.approvalsDB())
	c.DataDir = "/elsewhere"
	assert.Equal(t, "/elsewhere/approvals.db", c.approvalsDB(), "follows data_dir set after parsing")
	host, err := os.Hostname()
	require.NoError(t, err)
	assert.Equal(t, host, a.GatewayID)
	assert.Equal(t, "http://127.0.0.1:9090/approvals", a.ApproveURL)

	c = parseValid(t, goodConfig+"admin: {listen: '0.0.0.0:9191'}\napproval: {gateway_id: gw-1, store: postgres, postgres: env:APPROVALS_PG}\n")
	assert.Equal(t, "http://"+host+":9191/approvals", c.Approval.ApproveURL)
	assert.Equal(t, "gw-1", c.Approval.GatewayID)
	assert.Empty(t, c.Approval.SQLitePath)

	c = parseValid(t, goodConfig+"approval: {enabled: false}\n")
	assert.False(t, c.Approval.on())
}

func TestConfigApprovalValidate(t *testing.T) {
	for _, tc := range []struct{ name, block, want string }{
		{"bad store", "{store: redis}", `test.yaml: approval.store: "redis" is not one of sqlite, postgres`},
		{"postgres without conn", "{store: postgres}", "test.yaml: approval.postgres: is required with store: postgres"},
		{"postgres not a reference", "{store: postgres, postgres: 'host=db user=x'}", "test.yaml: approval.postgres:"},
		{"postgres inline refused", "{store: postgres, postgres: 'inline:host=db'}", "test.yaml: approval.postgres: inline secrets are refused"},
		{"postgres with sqlite store", "{postgres: env:X}", "test.yaml: approval.postgres: only applies with store: postgres"},
		{"sqlite path with postgres", "{store: postgres, postgres: env:X, sqlite_path: /a.db}", "test.yaml: approval.sqlite_path: only applies with store: sqlite"},
		{"blank sqlite path", "{sqlite_path: ' '}", "test.yaml: approval.sqlite_path: must not be blank"},
		{"blank gateway id", "{gateway_id: ' '}", "test.yaml: approval.gateway_id: must not be empty"},
		{"bad approve url", "{approve_url: 'ftp://x/approvals'}", `test.yaml: approval.approve_url: "ftp://x/approvals": want an http(s) URL`},
		{"bad timeout", "{default_timeout: 10}", `test.yaml: approval.default_timeout: "10" is not a duration`},
		{"default over max", "{default_timeout: 2h, max_timeout: 1h}", "test.yaml: approval.default_timeout: must not be longer than approval.max_timeout"},
		{"webhook bad url", "{webhooks: [{url: 'nope', secret: env:S}]}", "test.yaml: approval.webhooks[0].url: want an http(s) URL"},
		{"webhook no secret", "{webhooks: [{url: 'https://hooks.example/x'}]}", "test.yaml: approval.webhooks[0].secret: is required"},
		{"webhook secret not a reference", "{webhooks: [{url: 'https://hooks.example/x', secret: hunter2}]}", "test.yaml: approval.webhooks[0].secret:"},
		{"slack not a reference", "{slack: {webhook_url: 'https://hooks.slack.com/services/T/B/X'}}", "test.yaml: approval.slack.webhook_url:"},
		{"unknown key", "{stor: sqlite}", `unknown field "stor"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(goodConfig+"approval: "+tc.block+"\n"), "test.yaml")
			if err == nil {
				err = c.Validate()
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "hunter2", "secrets stay out of errors")
			assert.NotContains(t, err.Error(), "hooks.slack.com", "secrets stay out of errors")
		})
	}
	// A disabled block is not checked further.
	parseValid(t, goodConfig+"approval: {enabled: false, store: postgres}\n")
	// Every field at once, valid.
	t.Setenv("S", "webhook-secret")
	parseValid(t, goodConfig+`approval:
  store: postgres
  postgres: env:APPROVALS_PG
  gateway_id: gw-a
  approve_url: https://sluice.example/approvals
  default_timeout: 5m
  max_timeout: 1h
  webhooks: [{url: 'https://hooks.example/sluice', secret: env:S}]
  slack: {webhook_url: file:/run/secrets/slack}
`)
}

// approvalServer runs refserver's own wiring (newServer with a SQLite
// store in a temporary data directory) and serves its admin handler.
func approvalServer(t *testing.T) (*server, *httptest.Server) {
	t.Helper()
	dir := t.TempDir()
	yml := strings.ReplaceAll(`data_dir: DIR
identity:
  tokens:
    - {subject: alice, groups: [dev], sha256: ALICE}
    - {subject: bob, name: Bob, groups: [dba], sha256: BOB}
targets:
  - name: pg
    protocol: postgres
    listen: 127.0.0.1:0
    address: 127.0.0.1:5432
    tls: {disable: true}
    credential: {username: app, password: env:PG_PASSWORD}
approval:
  gateway_id: gw-test
  approve_url: http://admin.example/approvals
`, "DIR", dir)
	yml = strings.ReplaceAll(yml, "ALICE", identity.HashToken("alice-tok"))
	yml = strings.ReplaceAll(yml, "BOB", identity.HashToken("bob-tok"))
	cfg := parseValid(t, yml)
	srv, err := newServer(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NotNil(t, srv.approvals)
	t.Cleanup(srv.closeApprovals)
	_, err = os.Stat(filepath.Join(dir, "approvals.db"))
	require.NoError(t, err, "the SQLite store lives in the data directory")
	hs := httptest.NewServer(srv.gw.AdminHandler())
	t.Cleanup(hs.Close)
	return srv, hs
}

func fileRequest(t *testing.T, b *approval.Broker, text string) *approval.Pending {
	t.Helper()
	alice := identity.Identity{Subject: "alice", Groups: []string{"dev"}, Method: identity.MethodToken}
	p, err := b.Request(context.Background(), approval.NewRequest(
		protocol.SessionInfo{ID: "sess-9", Identity: &alice, Target: &protocol.Target{Name: "pg", Protocol: "postgres"}},
		protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: text},
		protocol.Decision{Action: protocol.RequireApproval, Rules: []string{"writes-need-dba"}, Message: "a DBA must approve writes",
			Approvers: []string{"group:dba"}}))
	require.NoError(t, err)
	return p
}

func TestApprovalsCommand(t *testing.T) {
	srv, hs := approvalServer(t)
	b := srv.approvals.broker
	p := fileRequest(t, b, "INSERT INTO orders (id, total)\nVALUES (1, 10)")
	q := fileRequest(t, b, "DELETE FROM orders WHERE id = 1")

	r := runCLI(t, "approvals", "list", "--admin", hs.URL, "--token", "bob-tok")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "YOU MAY DECIDE")
	assert.Contains(t, r.stdout, p.ID())
	assert.Contains(t, r.stdout, "INSERT INTO orders (id, total) VALUES (1, 10)")
	assert.Contains(t, r.stdout, "writes-need-dba")

	t.Setenv(approverTokenEnv, "bob-tok")
	r = runCLI(t, "approvals", "show", p.ID(), "--admin", hs.URL)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Requester:  alice")
	assert.Contains(t, r.stdout, "You may decide: yes")
	assert.Contains(t, r.stdout, "INSERT INTO orders (id, total)\nVALUES (1, 10)", "show prints the exact text")

	// The requester cannot approve her own request.
	r = runCLI(t, "approvals", "approve", p.ID(), "--admin", hs.URL, "--token", "alice-tok")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "403 Forbidden")

	r = runCLI(t, "approvals", "approve", p.ID(), "--admin", hs.URL, "--reason", "ticket 42")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "request "+p.ID()+": you approved it; it is now approved (1 of 1 approvals)")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	out, err := p.Wait(ctx)
	require.NoError(t, err)
	assert.True(t, out.Approved())

	r = runCLI(t, "approvals", "deny", p.ID(), "--admin", hs.URL)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "409 Conflict")

	r = runCLI(t, "approvals", "deny", q.ID(), "--admin", hs.URL, "--reason", "no")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "it is now denied")

	r = runCLI(t, "approvals", "list", "--admin", hs.URL)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "no pending approval requests\n", r.stdout)
	r = runCLI(t, "approvals", "list", "--all", "--admin", hs.URL)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, p.ID())
	assert.Contains(t, r.stdout, q.ID())

	r = runCLI(t, "approvals", "show", p.ID(), "--admin", hs.URL)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Decision:   Bob (bob) approved at")
	assert.Contains(t, r.stdout, ": ticket 42")
}

func TestApprovalsCommandErrors(t *testing.T) {
	_, hs := approvalServer(t)
	t.Setenv(approverTokenEnv, "")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"approvals"}, 2, "approvals needs a subcommand"},
		{[]string{"approvals", "vote"}, 2, `unknown approvals subcommand "vote"`},
		{[]string{"approvals", "approve"}, 2, "needs exactly one request ID"},
		{[]string{"approvals", "list", "extra"}, 2, "takes no arguments"},
		{[]string{"approvals", "list", "--admin", "nope"}, 2, "want a URL"},
		{[]string{"approvals", "list", "--admin", hs.URL}, 1, "give your own identity token with --token or SLUICE_APPROVER_TOKEN"},
		{[]string{"approvals", "list", "--admin", hs.URL, "--token", "wrong"}, 1, "token not recognised"},
		{[]string{"approvals", "show", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--admin", hs.URL, "--token", "bob-tok"}, 1, "404 Not Found"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := runCLI(t, tc.args...)
			assert.Equal(t, tc.code, r.code, r.stderr)
			assert.Contains(t, r.stderr, tc.want)
		})
	}
}

func TestApprovalsOff(t *testing.T) {
	cfg := parseValid(t, "data_dir: '"+t.TempDir()+"'\n"+strings.Replace(goodConfig, "listen: 127.0.0.1:6432", "listen: 127.0.0.1:0", 1)+"approval: {enabled: false}\n")
	srv, err := newServer(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	assert.Nil(t, srv.approvals)
	_, err = os.Stat(filepath.Join(cfg.DataDir, "approvals.db"))
	assert.True(t, os.IsNotExist(err), "no store is opened")
}

func TestEmbeddedExampleApprovals(t *testing.T) {
	c, err := ParseConfig(exampleConfig, exampleConfigName)
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	assert.True(t, c.Approval.on(), "the demo supports approvals")
	assert.Equal(t, "sqlite", c.Approval.Store)
	assert.Equal(t, filepath.Join("sluice-data", "approvals.db"), c.approvalsDB())
	assert.Equal(t, 10*time.Minute, c.Approval.DefaultTimeout.Duration)
}
