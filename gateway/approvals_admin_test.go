package gateway

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/approval/sqlitestore"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// Tokens of the approvals tests: alice requests (and is in dba too, to
// show a requester cannot approve through a group), bob is a dba, dave is
// not.
const (
	aliceToken = "alice-token-approvals"
	bobToken   = "bob-token-approvals"
	daveToken  = "dave-token-approvals"
	adminTok   = "admin-token-approvals"
)

var (
	aliceID = identity.Identity{Subject: "alice", Groups: []string{"dev", "dba"}, Method: identity.MethodToken}
)

type approvalsEnv struct {
	*env
	broker *approval.Broker
	h      http.Handler
}

// newApprovalsEnv is a gateway with a real broker on a SQLite store in a
// temporary directory, and the static tokens above.
func newApprovalsEnv(t *testing.T, adminToken string) *approvalsEnv {
	t.Helper()
	ctx := context.Background()
	store, err := sqlitestore.Open(ctx, sqlitestore.Config{Path: filepath.Join(t.TempDir(), sqlitestore.DefaultFile)})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, store.Close()) })
	b, err := approval.New(ctx, approval.Config{Store: store, GatewayID: "gw-test", ApproveURL: "http://admin.example/approvals",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, b.Close()) })
	auth, err := identity.NewStaticTokens([]identity.StaticToken{
		{SHA256: identity.HashToken(aliceToken), Subject: "alice", Groups: []string{"dev", "dba"}},
		{SHA256: identity.HashToken(bobToken), Subject: "bob", Name: "Bob", Groups: []string{"dba"}},
		{SHA256: identity.HashToken(daveToken), Subject: "dave", Groups: []string{"dev"}},
	})
	require.NoError(t, err)
	e := newEnv(t, protoLine, func(c *Config) {
		c.Approvals = b
		c.Authenticator = auth
		if adminToken != "" {
			c.AdminTokenSHA256 = identity.HashToken(adminToken)
		}
	})
	return &approvalsEnv{env: e, broker: b, h: e.g.AdminHandler()}
}

// request files a pending request of alice's for group:dba.
func (e *approvalsEnv) request(t *testing.T, text string) *approval.Pending {
	t.Helper()
	r := approval.NewRequest(protocol.SessionInfo{ID: "sess-1", Identity: &aliceID,
		Target: &protocol.Target{Name: "prod-db", Protocol: "postgres", Address: "10.0.0.5:5432"}},
		protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: text},
		protocol.Decision{Action: protocol.RequireApproval, Rules: []string{"prod-writes"}, Message: "writes on prod need a DBA",
			Approvers: []string{"group:dba"}})
	p, err := e.broker.Request(context.Background(), r)
	require.NoError(t, err)
	return p
}

func approvalsDo(t *testing.T, h http.Handler, method, path, token, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, err := io.ReadAll(rec.Result().Body)
	require.NoError(t, err)
	return rec.Code, rec.Result().Header, string(b)
}

func TestApprovalsAPIDecisions(t *testing.T) {
	e := newApprovalsEnv(t, "")
	p := e.request(t, "UPDATE accounts SET balance = 0 WHERE id = 7 -- <script>alert(1)</script>")
	id := p.ID()
	path := "/api/approvals/" + id

	// List as bob: one pending request he may decide, snake_case fields.
	code, _, body := approvalsDo(t, e.h, "GET", "/api/approvals", bobToken, "")
	require.Equal(t, http.StatusOK, code, body)
	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list, 1)
	got := list[0]
	assert.Equal(t, id, got["id"])
	assert.Equal(t, "pending", got["state"])
	assert.Equal(t, true, got["can_decide"])
	assert.Equal(t, "alice", got["requester"].(map[string]any)["subject"])
	assert.Equal(t, "prod-db", got["target"].(map[string]any)["name"])
	assert.Equal(t, "UPDATE accounts SET balance = 0 WHERE id = 7 -- <script>alert(1)</script>", got["command"].(map[string]any)["text"])
	assert.Equal(t, []any{"prod-writes"}, got["rules"])
	assert.Equal(t, "http://admin.example/approvals/"+id, got["url"])
	for _, k := range []string{"created_at", "expires_at", "session_id", "gateway_id", "approvers"} {
		assert.Contains(t, got, k)
	}
	for _, secret := range []string{bobToken, aliceToken, "grant_key", "claims", "10.0.0.5"} {
		assert.NotContains(t, body, secret)
	}

	// alice sees it but may not decide it.
	code, _, body = approvalsDo(t, e.h, "GET", path, aliceToken, "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"can_decide": false`)

	for _, tc := range []struct {
		name, token, verb string
		want              int
		msg               string
	}{
		{"requester approves", aliceToken, "approve", http.StatusForbidden, "requester cannot decide"},
		{"non-member approves", daveToken, "approve", http.StatusForbidden, "group:dba"},
		{"non-member denies", daveToken, "deny", http.StatusForbidden, "not one of"},
		{"no token", "", "approve", http.StatusUnauthorized, "identity token"},
		{"unknown token", "nope", "approve", http.StatusUnauthorized, "not recognised"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := approvalsDo(t, e.h, "POST", path+"/"+tc.verb, tc.token, `{"reason":"x"}`)
			assert.Equal(t, tc.want, code, body)
			assert.Contains(t, body, tc.msg)
		})
	}

	code, _, body = approvalsDo(t, e.h, "POST", path+"/approve", bobToken, `{"reason": "ticket OPS-1"}`)
	require.Equal(t, http.StatusOK, code, body)
	var v ApprovalView
	require.NoError(t, json.Unmarshal([]byte(body), &v))
	assert.Equal(t, approval.StateApproved, v.State)
	require.Len(t, v.Decisions, 1)
	assert.Equal(t, "bob", v.Decisions[0].Approver.Subject)
	assert.Equal(t, "ticket OPS-1", v.Decisions[0].Reason)
	assert.False(t, v.CanDecide)

	// The waiting command is released.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	out, err := p.Wait(ctx)
	require.NoError(t, err)
	assert.True(t, out.Approved())

	// A second decision conflicts.
	code, _, body = approvalsDo(t, e.h, "POST", path+"/deny", bobToken, "")
	assert.Equal(t, http.StatusConflict, code, body)
	assert.Contains(t, body, "already resolved")

	// Resolved requests leave the pending list but show with state=all.
	code, _, body = approvalsDo(t, e.h, "GET", "/api/approvals?state=pending", bobToken, "")
	require.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, "[]", body)
	code, _, body = approvalsDo(t, e.h, "GET", "/api/approvals?state=all", bobToken, "")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, id)
	code, _, body = approvalsDo(t, e.h, "GET", "/api/approvals?state=approved&limit=1", bobToken, "")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, id)
}

func TestApprovalsAPIDeny(t *testing.T) {
	e := newApprovalsEnv(t, "")
	p := e.request(t, "DELETE FROM accounts WHERE id = 1")
	code, _, body := approvalsDo(t, e.h, "POST", "/api/approvals/"+p.ID()+"/deny", bobToken, `{"reason":"not today"}`)
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"state": "denied"`)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	out, err := p.Wait(ctx)
	require.NoError(t, err)
	assert.False(t, out.Approved())
	assert.Contains(t, out.Message(), "not today")
}

func TestApprovalsAPIErrors(t *testing.T) {
	e := newApprovalsEnv(t, "")
	p := e.request(t, "UPDATE t SET x = 1 WHERE y = 2")
	for _, tc := range []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"list without token", "GET", "/api/approvals", "", "", http.StatusUnauthorized},
		{"get without token", "GET", "/api/approvals/" + p.ID(), "", "", http.StatusUnauthorized},
		{"list bad token", "GET", "/api/approvals", "wrong", "", http.StatusUnauthorized},
		{"unknown id", "GET", "/api/approvals/01ARZ3NDEKTSV4RRFFQ69G5FAV", bobToken, "", http.StatusNotFound},
		{"approve unknown id", "POST", "/api/approvals/01ARZ3NDEKTSV4RRFFQ69G5FAV/approve", bobToken, "", http.StatusNotFound},
		{"bad state", "GET", "/api/approvals?state=weird", bobToken, "", http.StatusBadRequest},
		{"bad limit", "GET", "/api/approvals?state=all&limit=0", bobToken, "", http.StatusBadRequest},
		{"bad body", "POST", "/api/approvals/" + p.ID() + "/approve", bobToken, `{"reasn":"x"}`, http.StatusBadRequest},
		{"not json", "POST", "/api/approvals/" + p.ID() + "/approve", bobToken, `reason=x`, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := approvalsDo(t, e.h, tc.method, tc.path, tc.token, tc.body)
			assert.Equal(t, tc.want, code, body)
			if tc.want == http.StatusUnauthorized {
				assert.Contains(t, hdr.Get("WWW-Authenticate"), "Bearer")
			}
		})
	}
	// Still pending after all that.
	r, err := e.broker.Get(context.Background(), p.ID())
	require.NoError(t, err)
	assert.Equal(t, approval.StatePending, r.State)
}

func TestApprovalsAPIExpired(t *testing.T) {
	e := newApprovalsEnv(t, "")
	r := approval.NewRequest(protocol.SessionInfo{ID: "s", Identity: &aliceID, Target: &protocol.Target{Name: "db", Protocol: "postgres"}},
		protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: "UPDATE t SET x = 1"},
		protocol.Decision{Action: protocol.RequireApproval, Approvers: []string{"group:dba"}, Timeout: 50 * time.Millisecond})
	p, err := e.broker.Request(context.Background(), r)
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	code, _, body := approvalsDo(t, e.h, "POST", "/api/approvals/"+p.ID()+"/approve", bobToken, "")
	assert.Equal(t, http.StatusConflict, code, body)
}

// The approvers' routes take the approver's identity token, not the admin
// token; the rest of the admin API still takes only the admin token.
func TestApprovalsAPIBypassesAdminToken(t *testing.T) {
	e := newApprovalsEnv(t, adminTok)
	e.request(t, "UPDATE t SET x = 1 WHERE y = 2")
	code, _, body := approvalsDo(t, e.h, "GET", "/api/approvals", bobToken, "")
	assert.Equal(t, http.StatusOK, code, body)
	code, _, _ = approvalsDo(t, e.h, "GET", "/api/approvals", adminTok, "")
	assert.Equal(t, http.StatusUnauthorized, code, "the admin token is no identity")
	code, _, _ = approvalsDo(t, e.h, "GET", "/api/sessions", bobToken, "")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _, _ = approvalsDo(t, e.h, "GET", "/api/sessions", adminTok, "")
	assert.Equal(t, http.StatusOK, code)
	code, _, _ = approvalsDo(t, e.h, "GET", "/approvals", "", "")
	assert.Equal(t, http.StatusOK, code)
}

func TestApprovalsPage(t *testing.T) {
	e := newApprovalsEnv(t, "")
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/approvals", "text/html", `<script src="/approvals/ui/app.js"`},
		{"/approvals/01ARZ3NDEKTSV4RRFFQ69G5FAV", "text/html", "sluice approvals"},
		{"/approvals/ui/app.js", "text/javascript", "textContent"},
		{"/approvals/ui/app.css", "text/css", ".req"},
	} {
		code, hdr, body := approvalsDo(t, e.h, "GET", tc.path, "", "")
		require.Equal(t, http.StatusOK, code, tc.path)
		assert.Contains(t, hdr.Get("Content-Type"), tc.ctype, tc.path)
		csp := hdr.Get("Content-Security-Policy")
		assert.Contains(t, csp, "default-src 'none'", tc.path)
		assert.Contains(t, csp, "script-src 'self'", tc.path)
		assert.NotContains(t, csp, "unsafe-inline", tc.path)
		assert.Equal(t, "nosniff", hdr.Get("X-Content-Type-Options"))
		assert.Contains(t, body, tc.contains, tc.path)
	}
	// The script never writes data as HTML.
	_, _, js := approvalsDo(t, e.h, "GET", "/approvals/ui/app.js", "", "")
	assert.NotContains(t, js, "innerHTML")
	assert.Contains(t, js, "sessionStorage")
	assert.Contains(t, js, "2000")
}

func TestApprovalsAPIDisabled(t *testing.T) {
	e := newEnv(t, protoLine, nil)
	code, _, body := approvalsDo(t, e.g.AdminHandler(), "GET", "/api/approvals", goodToken, "")
	assert.Equal(t, http.StatusNotFound, code)
	assert.Contains(t, body, "not enabled")
}
