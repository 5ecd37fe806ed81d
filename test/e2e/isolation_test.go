package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/internal/pgtest"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/recording"
)

// TestCredentialIsolation is the credential isolation suite: a backend
// role with a distinctive SCRAM password, which the gateway gets by
// running a command (exec:), serves sessions that log in, fail, are
// denied, wait for and get approval, and have results masked; afterwards
// the recordings are replayed. The password appears nowhere: not in what
// clients received, not in the gateway's or the credential store's logs,
// not in recordings or their transcripts, not in the metrics, not in any
// admin API answer. Nor does the agents' token.
func TestCredentialIsolation(t *testing.T) {
	pgtest.Require(t)
	cl, superPW := pgtest.StartScramCluster(t)
	appPW := "IsoPw-" + pgtest.RandomSecret(18)
	cl.Exec(t, superPW, "create role app login password '"+appPW+"'")
	cl.Exec(t, superPW, "create database appdb owner app")

	dir := t.TempDir()
	pwFile := filepath.Join(dir, "app-password")
	require.NoError(t, os.WriteFile(pwFile, []byte(appPW+"\n"), 0o600))
	credLogs := &syncBuffer{}
	creds, err := credstore.New(credstore.Config{}, credstore.Options{
		Logger: slog.New(slog.NewTextHandler(credLogs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	require.NoError(t, err)
	t.Cleanup(func() { creds.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	broker := newBroker(t, ctx, "iso")

	engine, err := policy.Parse("iso.yaml", []byte(`
rules:
  - name: no-drop
    match: command.kind == "query" && command.sql.statements.exists(s, s.kind.startsWith("DROP"))
    action: deny
  - name: inserts-need-a-dba
    match: command.kind == "query" && command.sql.statements.exists(s, s.kind == "INSERT")
    action: require_approval
    approvers: [group:dba]
    timeout: 30s
  - name: everything-masked
    match: "true"
    action: allow
    mask: [email]
default: deny
`))
	require.NoError(t, err)

	agentToken, approverToken := "agent-"+pgtest.RandomSecret(16), "dba-"+pgtest.RandomSecret(16)
	auth, err := identity.NewStaticTokens([]identity.StaticToken{
		{SHA256: identity.HashToken(agentToken), Subject: subject, Groups: []string{"agents"}},
		{SHA256: identity.HashToken(approverToken), Subject: "dana", Groups: []string{"dba"}},
	})
	require.NoError(t, err)

	tc := pgTarget("iso")
	tc.Target.Address = cl.Addr()
	tc.Target.Options["database"] = "appdb"
	tc.Credential = credstore.Ref{Username: "app", Password: "exec:/bin/cat " + pwFile}
	tc.DisableTLS, tc.AllowPlaintextLoopback = true, true
	bad := pgTarget("iso-wrong")
	bad.Target.Address = cl.Addr()
	bad.Credential = credstore.Ref{Username: "app", Password: "exec:/bin/echo not-" + appPW[:6]}
	bad.DisableTLS, bad.AllowPlaintextLoopback = true, true
	e := startGatewayWith(t, gatewayOptions{grace: 2 * time.Second, decider: engine, approvals: broker,
		auth: auth, token: agentToken, creds: creds}, tc, bad)
	tp := startTap(t, e.g.Addr("iso").String())
	admin := httptest.NewServer(e.g.AdminHandler())
	t.Cleanup(admin.Close)

	var apiAnswers bytes.Buffer
	call := func(method, path, token, body string) []byte {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, admin.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		apiAnswers.Write(b)
		return b
	}

	host, port := tp.addr()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=%s dbname=appdb password=%s sslmode=disable", host, port, subject, agentToken))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "create table people(email text, note text)")
	require.NoError(t, err)

	// An INSERT waits for approval; dana approves it through the API.
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "insert into people values ('carol@example.com', 'hello')", pgx.QueryExecModeSimpleProtocol)
		done <- err
	}()
	var id string
	require.Eventually(t, func() bool {
		var views []struct{ ID string }
		if json.Unmarshal(call("GET", "/api/approvals?state=pending", approverToken, ""), &views) == nil && len(views) == 1 {
			id = views[0].ID
		}
		return id != ""
	}, 15*time.Second, 50*time.Millisecond)
	call("GET", "/api/approvals/"+id, approverToken, "")
	call("POST", "/api/approvals/"+id+"/approve", approverToken, `{"reason":"ok"}`)
	require.NoError(t, <-done)

	// Sessions listing while one is open; then masking, an error, a denial.
	call("GET", "/api/sessions", "", "")
	var email string
	require.NoError(t, conn.QueryRow(ctx, "select email from people").Scan(&email))
	assert.NotEqual(t, "carol@example.com", email, "masked")
	_, err = conn.Exec(ctx, "select 1/0")
	require.Error(t, err)
	_, err = conn.Exec(ctx, "drop table people")
	var pe *pgconn.PgError
	require.True(t, errors.As(err, &pe), "got %v", err)
	assert.Equal(t, "42501", pe.Code)
	require.NoError(t, conn.Close(ctx))

	// A target whose backend password is wrong: the client learns only
	// that the gateway could not log in.
	bh, bp := e.hostPort(t, "iso-wrong")
	_, err = pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=%s dbname=appdb password=%s sslmode=disable", bh, bp, subject, agentToken))
	require.True(t, errors.As(err, &pe), "got %v", err)
	assert.Equal(t, "08001", pe.Code)

	metrics := call("GET", "/metrics", "", "")
	call("GET", "/api/approvals?state=all", approverToken, "")
	require.Eventually(t, func() bool { return len(e.g.Sessions()) == 0 }, 10*time.Second, 10*time.Millisecond)
	recs := waitRecordings(t, e.recDir, 2)
	var recorded, transcripts bytes.Buffer
	for _, r := range recs {
		recorded.Write(r.raw)
		_, err := recording.WriteTranscript(&transcripts, bytes.NewReader(r.raw))
		require.NoError(t, err)
	}

	// The captures hold what they should, so that finding nothing in
	// them means something.
	_, down := tp.bytes()
	assert.Contains(t, string(down), "42501")
	assert.Contains(t, transcripts.String(), "insert into people")
	assert.Contains(t, transcripts.String(), "division by zero")
	assert.Contains(t, string(metrics), "sluice_")
	assert.Contains(t, apiAnswers.String(), "carol@example.com", "the approver saw the exact command")
	assert.Contains(t, e.logs.String(), "backend connection failed")
	assert.NotEmpty(t, credLogs.String(), "the credential store logged its runs")

	up, down := tp.bytes()
	for _, s := range []struct{ name, value string }{{"the backend password", appPW}, {"the agent's token", agentToken}, {"the approver's token", approverToken}} {
		assertNoSecret(t, s.name, s.value, "what the client received", down)
		assertNoSecret(t, s.name, s.value, "the gateway's logs", []byte(e.logs.String()))
		assertNoSecret(t, s.name, s.value, "the credential store's logs", []byte(credLogs.String()))
		assertNoSecret(t, s.name, s.value, "the recordings", recorded.Bytes())
		assertNoSecret(t, s.name, s.value, "the replayed transcripts", transcripts.Bytes())
		assertNoSecret(t, s.name, s.value, "the metrics", metrics)
		assertNoSecret(t, s.name, s.value, "the admin API's answers", apiAnswers.Bytes())
	}
	assertNoSecret(t, "the backend password", appPW, "what the client sent", up)
}
