package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/internal/pgtest"
)

// TestApprovalEndToEnd runs the built refserver against the machine's
// PostgreSQL: alice's INSERT through the gateway waits for approval,
// `refserver approvals approve` as bob (a dba) lets it finish, and a
// second INSERT denied by bob fails with the deny reason.
func TestApprovalEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and needs PostgreSQL")
	}
	admin := requirePostgres(t)
	role, database := demoNames(t, admin)
	bin := buildRefserver(t)
	dir := t.TempDir()
	demo, err := bootstrapDemo(t.Context(), demoSetup{AdminConn: testPG, Role: role, Database: database, Dir: filepath.Join(dir, "secrets")})
	require.NoError(t, err)
	const bobToken = "bob-the-dba-token"

	policyFile := filepath.Join(dir, "policy.yaml")
	require.NoError(t, os.WriteFile(policyFile, []byte(`rules:
  - name: inserts-need-a-dba
    match: command.kind == "query" && command.sql.statements.exists(s, s.kind == "INSERT")
    action: require_approval
    approvers: [group:dba]
    timeout: 1m
    message: inserts need a DBA's approval
  - name: updates-need-a-dba-once-per-10m
    match: command.kind == "query" && command.sql.statements.exists(s, s.kind == "UPDATE")
    action: require_approval
    approvers: [group:dba]
    timeout: 1m
    grant_window: 10m
  - name: everything-else
    match: "true"
    action: allow
`), 0o600))
	adminAddr, listen := pgtest.FreeAddr(t), pgtest.FreeAddr(t)
	config := filepath.Join(dir, "refserver.yaml")
	require.NoError(t, os.WriteFile(config, fmt.Appendf(nil, `
data_dir: %[1]s/data
admin: {listen: %[2]s}
log: {level: debug, format: text}
identity:
  tokens:
    - {subject: alice, groups: [dev], sha256: %[3]s}
    - {subject: bob, name: Bob, groups: [dba], sha256: %[4]s}
targets:
  - name: pg
    protocol: postgres
    listen: %[5]s
    address: 127.0.0.1:5432
    database: %[6]s
    sslmode: disable
    credential: {username: %[7]s, password: 'file:%[8]s'}
policy: {files: ['%[9]s'], watch: false}
recording: {dir: %[1]s/recordings}
approval: {gateway_id: e2e}
shutdown_grace: 2s
`, dir, adminAddr, identity.HashToken(demo.Token), identity.HashToken(bobToken), listen, database, role, demo.PasswordFile, policyFile), 0o600))
	s := startServe(t, bin, config, adminAddr, listen)

	resp, err := http.Get(s.admin + "/approvals")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get("Content-Security-Policy"))

	host, port, _ := net.SplitHostPort(listen)
	conn, err := pgx.Connect(t.Context(), fmt.Sprintf("host=%s port=%s dbname=%s user=alice password=%s sslmode=require connect_timeout=5", host, port, database, demo.Token))
	require.NoError(t, err)
	defer conn.Close(context.Background())

	idRE := regexp.MustCompile(`(?m)^([0-9A-Z]{26})\s+pending\s+alice\s+pg\s`)
	// waitFor runs a statement in the background and finds its pending
	// request with `refserver approvals list`.
	waitFor := func(sql string, args ...any) (id string, done chan error) {
		done = make(chan error, 1)
		go func() {
			// The simple protocol sends the text with the value in it:
			// each INSERT is its own command, and the approver sees the
			// value.
			_, err := conn.Exec(t.Context(), sql, append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
			done <- err
		}()
		require.Eventually(t, func() bool {
			r := runBinary(t, bin, "", "approvals", "list", "--admin", s.admin, "--token", bobToken)
			if m := idRE.FindStringSubmatch(r.stdout); m != nil {
				id = m[1]
				return true
			}
			return false
		}, 15*time.Second, 100*time.Millisecond, "no pending request appeared:\n%s", s.stderr.String())
		select {
		case err := <-done:
			t.Fatalf("the INSERT finished before approval: %v", err)
		default:
		}
		return id, done
	}
	insert := func(name string) (string, chan error) {
		return waitFor("INSERT INTO customers (name) VALUES ($1)", name)
	}

	id, done := insert("Katherine Johnson")
	r := runBinary(t, bin, "", "approvals", "show", id, "--admin", s.admin, "--token", bobToken)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `(?m)^INSERT INTO customers \(name\) VALUES \( ?'Katherine Johnson' ?\)$`, r.stdout, "the exact text, value included")
	assert.Contains(t, r.stdout, "You may decide: yes")
	// alice cannot approve her own request.
	// --token=VALUE: a generated token may begin with "-".
	r = runBinary(t, bin, "", "approvals", "approve", id, "--admin", s.admin, "--token="+demo.Token)
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, "403")
	r = runBinary(t, bin, "", "approvals", "approve", id, "--admin", s.admin, "--token", bobToken, "--reason", "e2e")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "it is now approved")
	select {
	case err := <-done:
		require.NoError(t, err, "the approved INSERT must run")
	case <-time.After(15 * time.Second):
		t.Fatalf("the approved INSERT did not finish:\n%s", s.stderr.String())
	}
	var n int
	require.NoError(t, conn.QueryRow(t.Context(), "SELECT count(*) FROM customers WHERE name = 'Katherine Johnson'").Scan(&n))
	assert.Equal(t, 1, n)

	id, done = insert("Mallory")
	t.Setenv(approverTokenEnv, bobToken) // inherited by the binary
	r = runBinary(t, bin, "", "approvals", "deny", id, "--admin", s.admin, "--reason", "not in prod")
	require.Equal(t, 0, r.code, r.stderr)
	select {
	case err := <-done:
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr)
		assert.Equal(t, "42501", pgErr.Code)
		assert.True(t, strings.Contains(pgErr.Message, "not in prod") || strings.Contains(pgErr.Message, "denied"), pgErr.Message)
	case <-time.After(15 * time.Second):
		t.Fatalf("the denied INSERT did not end:\n%s", s.stderr.String())
	}
	require.NoError(t, conn.QueryRow(t.Context(), "SELECT count(*) FROM customers WHERE name = 'Mallory'").Scan(&n))
	assert.Equal(t, 0, n)

	r = runBinary(t, bin, "", "approvals", "list", "--all", "--admin", s.admin)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `approved\s+alice\s+pg\s+inserts-need-a-dba`, r.stdout)
	assert.Regexp(t, `denied\s+alice\s+pg\s+inserts-need-a-dba`, r.stdout)

	// A rule with grant_window: the approval also covers the same
	// statement from alice for ten minutes; another statement waits.
	const rename = "UPDATE customers SET name = 'K. Johnson' WHERE name = 'Katherine Johnson'"
	id, done = waitFor(rename)
	r = runBinary(t, bin, "", "approvals", "approve", id, "--admin", s.admin)
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, <-done)
	start := time.Now()
	_, err = conn.Exec(t.Context(), rename, pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err, "the grant window covers the same statement")
	assert.Less(t, time.Since(start), 10*time.Second)
	r = runBinary(t, bin, "", "approvals", "list", "--admin", s.admin)
	assert.NotRegexp(t, idRE, r.stdout, "no new request for the repeat")
	id, done = waitFor("UPDATE customers SET name = 'X' WHERE name = 'Ada'")
	r = runBinary(t, bin, "", "approvals", "deny", id, "--admin", s.admin, "--reason", "no")
	require.Equal(t, 0, r.code, r.stderr)
	require.Error(t, <-done, "a different statement is not covered")

	// A gateway killed while a command waits: the client loses its
	// connection, and the restarted gateway marks the request abandoned,
	// never approved; nothing runs.
	id, done = insert("Not Yet Approved")
	require.NoError(t, s.cmd.Process.Kill())
	<-s.done
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("the waiting client did not notice the gateway's death")
	}
	s = startServe(t, bin, config, adminAddr, listen)
	r = runBinary(t, bin, "", "approvals", "show", id, "--admin", s.admin)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, id+" (abandoned)")
	r = runBinary(t, bin, "", "approvals", "approve", id, "--admin", s.admin)
	assert.NotEqual(t, 0, r.code, "an abandoned request cannot be approved")
	admin2, err := pgx.Connect(t.Context(), testPG+" dbname="+database)
	require.NoError(t, err)
	defer admin2.Close(context.Background())
	require.NoError(t, admin2.QueryRow(t.Context(), "SELECT count(*) FROM customers WHERE name = 'Not Yet Approved'").Scan(&n))
	assert.Equal(t, 0, n)

	require.NoError(t, conn.Close(context.Background()))
	s.stop(t)
	_, err = os.Stat(filepath.Join(dir, "data", "approvals.db"))
	assert.NoError(t, err)
}
