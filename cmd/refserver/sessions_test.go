package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/gateway"
)

// fakeAdmin serves the admin API's JSON for the sessions command. It is a
// stand-in for the gateway's AdminHandler with sessions that a test cannot
// otherwise hold open without a backend; the end-to-end test drives the
// real one.
type fakeAdmin struct {
	token string
	mu    sync.Mutex
	views []gateway.SessionView
	kills []string // "id reason"
}

func (f *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"token not recognised"}`))
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/sessions":
		_ = json.NewEncoder(w).Encode(f.views)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/api/sessions/"):
		id := strings.TrimPrefix(r.URL.Path, "/api/sessions/")
		for i, v := range f.views {
			if v.ID == id {
				f.views = append(f.views[:i], f.views[i+1:]...)
				f.kills = append(f.kills, id+" "+r.URL.Query().Get("reason"))
				w.WriteHeader(http.StatusAccepted)
				_ = json.NewEncoder(w).Encode(map[string]string{"id": id, "status": "terminating"})
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":"no live session ` + id + `"}`))
	default:
		http.NotFound(w, r)
	}
}

func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, strings.NewReader(""), &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

func TestSessionsCommand(t *testing.T) {
	start := time.Now().Add(-90 * time.Second)
	fa := &fakeAdmin{token: "admintok", views: []gateway.SessionView{
		{ID: "01JSESSIONA", Target: "pg", Protocol: "postgres", Subject: "alice", ClientAddr: "127.0.0.1:5000", Start: start, Commands: 3, State: "active"},
		{ID: "01JSESSIONB", Target: "pg", Protocol: "postgres", ClientAddr: "127.0.0.1:5001", Start: start, State: "handshake"},
	}}
	srv := httptest.NewServer(fa)
	defer srv.Close()

	r := runCLI(t, "sessions", "list", "--admin", srv.URL, "--token", "admintok")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3)
	assert.Regexp(t, `^ID\s+TARGET\s+PROTOCOL\s+SUBJECT\s+CLIENT\s+STARTED \(UTC\)\s+AGE\s+COMMANDS\s+STATE$`, lines[0])
	assert.Regexp(t, `^01JSESSIONA\s+pg\s+postgres\s+alice\s+127\.0\.0\.1:5000\s+\S+ \S+\s+1m3\ds\s+3\s+active$`, lines[1])
	assert.Regexp(t, `^01JSESSIONB\s+pg\s+postgres\s+-\s+`, lines[2])

	// The token may come from the environment; flags may follow the ID.
	t.Setenv("SLUICE_ADMIN_TOKEN", "admintok")
	r = runCLI(t, "sessions", "kill", "01JSESSIONA", "--admin", srv.URL, "--reason", "leaving")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "session 01JSESSIONA: terminating\n", r.stdout)
	assert.Equal(t, []string{"01JSESSIONA leaving"}, fa.kills)

	r = runCLI(t, "sessions", "kill", "01JSESSIONA", "--admin", srv.URL)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "no live session 01JSESSIONA")

	t.Setenv("SLUICE_ADMIN_TOKEN", "")
	r = runCLI(t, "sessions", "list", "--admin", srv.URL, "--token", "wrong")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "token not recognised")
	assert.Contains(t, r.stderr, "--token or SLUICE_ADMIN_TOKEN")

	fa.mu.Lock()
	fa.views = nil
	fa.mu.Unlock()
	r = runCLI(t, "sessions", "list", "--admin", srv.URL, "--token", "admintok")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "no live sessions\n", r.stdout)
}

func TestSessionsCommandErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close() // nothing listens there any more

	r := runCLI(t, "sessions", "list", "--admin", addr)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "is refserver running?")

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"sessions"}, "sessions needs a subcommand"},
		{[]string{"sessions", "stop"}, `unknown sessions subcommand "stop"`},
		{[]string{"sessions", "kill"}, "sessions kill needs exactly one session ID"},
		{[]string{"sessions", "list", "extra"}, "sessions list takes no arguments"},
		{[]string{"sessions", "list", "--admin", "localhost:9090"}, "want a URL such as http://127.0.0.1:9090"},
	} {
		r := runCLI(t, tt.args...)
		assert.Equal(t, 2, r.code, "%v", tt.args)
		assert.Contains(t, r.stderr, tt.want)
	}
}
