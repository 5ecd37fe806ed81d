package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/identity"
)

func adminDo(t *testing.T, h http.Handler, method, path, token string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, err := io.ReadAll(rec.Result().Body)
	require.NoError(t, err)
	return rec.Code, string(body)
}

func TestAdminEndpoints(t *testing.T) {
	e := newEnv(t, protoLine, nil)
	h := e.g.AdminHandler()
	c, id := e.connected(t)
	c.send("Q select 1")

	code, _ := adminDo(t, h, "GET", "/healthz", "")
	assert.Equal(t, http.StatusOK, code)
	code, _ = adminDo(t, h, "GET", "/readyz", "")
	assert.Equal(t, http.StatusOK, code)

	code, body := adminDo(t, h, "GET", "/metrics", "")
	assert.Equal(t, http.StatusOK, code)
	for _, m := range []string{
		`sluice_sessions_active{target="t1"} 1`,
		`sluice_sessions_total{result="authenticated",target="t1"} 1`,
		`sluice_commands_total{action="allow",target="t1"} 2`,
		`sluice_commands_total{action="deny",target="t1"} 0`, // every action's series exists from the start
		`sluice_commands_total{action="require_approval",target="t1"} 0`,
		`sluice_check_duration_seconds_count{target="t1"} 2`,
		`sluice_result_rows_total{target="t1"} 1`,
		`sluice_result_bytes_total{target="t1"} 8`,
		`sluice_command_duration_seconds_count{target="t1"} 1`,
		`go_goroutines`,
	} {
		assert.Contains(t, body, m)
	}

	code, body = adminDo(t, h, "GET", "/api/sessions", "")
	assert.Equal(t, http.StatusOK, code)
	var list []SessionView
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list, 1)
	assert.Equal(t, id, list[0].ID)
	assert.Equal(t, "alice", list[0].Subject)
	assert.Equal(t, uint64(2), list[0].Commands)
	assert.Equal(t, "active", list[0].State)

	code, body = adminDo(t, h, "GET", "/api/sessions/"+id, "")
	assert.Equal(t, http.StatusOK, code)
	var one SessionView
	require.NoError(t, json.Unmarshal([]byte(body), &one))
	assert.Equal(t, list[0], one)

	code, _ = adminDo(t, h, "GET", "/api/sessions/nope", "")
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = adminDo(t, h, "DELETE", "/api/sessions/nope", "")
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = adminDo(t, h, "POST", "/api/sessions", "")
	assert.Equal(t, http.StatusMethodNotAllowed, code)

	code, _ = adminDo(t, h, "DELETE", "/api/sessions/"+id+"?reason=too+many+rows", "")
	assert.Equal(t, http.StatusAccepted, code)
	c.expectClosed()
	entries := e.sink.closed(t, id)
	assert.Equal(t, "terminated by admin: too many rows", entries[len(entries)-1].Reason)

	e.waitNoSessions(t)
	_, body = adminDo(t, h, "GET", "/api/sessions", "")
	assert.Equal(t, "[]", strings.TrimSpace(body))

	require.NoError(t, e.g.Shutdown(context.Background()))
	code, _ = adminDo(t, h, "GET", "/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, code)
}

func TestAdminToken(t *testing.T) {
	const token = "admin-token-123"
	e := newEnv(t, protoLine, func(c *Config) { c.AdminTokenSHA256 = identity.HashToken(token) })
	h := e.g.AdminHandler()

	for _, path := range []string{"/healthz", "/readyz"} {
		code, _ := adminDo(t, h, "GET", path, "")
		assert.Equal(t, http.StatusOK, code, "%s stays open for probes", path)
	}
	for _, path := range []string{"/metrics", "/api/sessions"} {
		code, _ := adminDo(t, h, "GET", path, "")
		assert.Equal(t, http.StatusUnauthorized, code, path)
		code, body := adminDo(t, h, "GET", path, "wrong")
		assert.Equal(t, http.StatusUnauthorized, code, path)
		assert.NotContains(t, body, "wrong")
		code, _ = adminDo(t, h, "GET", path, token)
		assert.Equal(t, http.StatusOK, code, path)
	}
	code, _ := adminDo(t, h, "DELETE", "/api/sessions/x", "")
	assert.Equal(t, http.StatusUnauthorized, code)

	// WithAdminToken with an invalid digest fails closed.
	bad := WithAdminToken(http.NotFoundHandler(), "not-hex")
	code, _ = adminDo(t, bad, "GET", "/api/sessions", token)
	assert.Equal(t, http.StatusUnauthorized, code)
	good := WithAdminToken(http.NotFoundHandler(), identity.HashToken(token))
	code, _ = adminDo(t, good, "GET", "/api/sessions", token)
	assert.Equal(t, http.StatusNotFound, code, "passed through")
}

func TestAdminOverHTTP(t *testing.T) {
	e := newEnv(t, protoLine, nil)
	srv := httptest.NewServer(e.g.AdminHandler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/api/sessions")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
}
