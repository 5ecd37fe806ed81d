package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/internal/pgtest"
	"github.com/sluicegw/sluice/internal/syncbuf"
)

type syncBuffer = syncbuf.Buffer

// served is a refserver process started with `serve --config`.
type served struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{} // closed when the process has exited
	err            error         // its exit status, once done
	admin, listen  string
}

// startServe runs the binary with the configuration and waits until the
// admin API says it is ready.
func startServe(t *testing.T, bin, config, admin, listen string) *served {
	t.Helper()
	s := &served{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{}), admin: "http://" + admin, listen: listen}
	s.cmd = exec.Command(bin, "serve", "--config", config)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	require.NoError(t, s.cmd.Start())
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(s.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-s.done:
			t.Fatalf("refserver exited before it was ready (%v):\n%s", s.err, s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("refserver not ready after 20s:\n%s", s.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and requires a clean exit.
func (s *served) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-s.done:
		require.NoError(t, s.err, "refserver must exit 0 on SIGTERM:\n%s", s.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("refserver did not stop within 30s of SIGTERM:\n%s", s.stderr.String())
	}
	assert.Contains(t, s.stderr.String(), "msg=stopped")
}

// TestServeEndToEnd runs the built refserver against the machine's
// PostgreSQL: a client query through the gateway, the sessions command
// against the live admin API, termination, graceful shutdown on SIGTERM,
// and replay of what was recorded.
func TestServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and needs PostgreSQL")
	}
	admin := requirePostgres(t)
	role, database := demoNames(t, admin)
	bin := buildRefserver(t)
	dir := t.TempDir()
	demo, err := bootstrapDemo(t.Context(), demoSetup{AdminConn: testPG, Role: role, Database: database, Dir: filepath.Join(dir, "secrets")})
	require.NoError(t, err)
	const adminToken = "admin-token-for-the-test"

	writeConfig := func(name, policy, adminAddr, listen string) string {
		path := filepath.Join(dir, name)
		cfg := fmt.Sprintf(`
data_dir: %[1]s/data
admin:
  listen: %[2]s
  token_sha256: %[3]s
log: {level: debug, format: text}
identity:
  tokens:
    - subject: alice
      groups: [dba]
      sha256: %[4]s
targets:
  - name: pg
    protocol: postgres
    listen: %[5]s
    address: 127.0.0.1:5432
    database: %[6]s
    sslmode: disable
    labels: {env: test}
    credential:
      username: %[7]s
      password: file:%[8]s
    handshake_timeout: 5s
policy: %[9]s
recording:
  dir: %[1]s/recordings
  fsync: always
shutdown_grace: 2s
`, dir, adminAddr, identity.HashToken(adminToken), identity.HashToken(demo.Token), listen, database, role, demo.PasswordFile, policy)
		require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
		return path
	}
	connect := func(t *testing.T, listen string) *pgx.Conn {
		host, port, _ := net.SplitHostPort(listen)
		conn, err := pgx.Connect(t.Context(), fmt.Sprintf("host=%s port=%s dbname=%s user=alice password=%s sslmode=require connect_timeout=5", host, port, database, demo.Token))
		require.NoError(t, err)
		return conn
	}

	t.Run("allow", func(t *testing.T) {
		adminAddr, listen := pgtest.FreeAddr(t), pgtest.FreeAddr(t)
		config := writeConfig("allow.yaml", "{default: allow}", adminAddr, listen)
		s := startServe(t, bin, config, adminAddr, listen)

		// Health is open; everything else needs the admin token.
		resp, err := http.Get(s.admin + "/healthz")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		resp, err = http.Get(s.admin + "/metrics")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)

		conn := connect(t, listen)
		defer conn.Close(context.Background())
		var n int
		require.NoError(t, conn.QueryRow(t.Context(), "SELECT count(*) FROM customers").Scan(&n))
		assert.Equal(t, len(demoRows), n)

		r := runBinary(t, bin, "", "sessions", "list", "--admin", s.admin)
		assert.Equal(t, 1, r.code, "no token: %s", r.stdout)
		assert.Contains(t, r.stderr, "--token or SLUICE_ADMIN_TOKEN")

		r = runBinary(t, bin, "", "sessions", "list", "--admin", s.admin, "--token", adminToken)
		require.Equal(t, 0, r.code, r.stderr)
		m := regexp.MustCompile(`(?m)^(\S+)\s+pg\s+postgres\s+alice\s+127\.0\.0\.1:\d+\s+.*\s+(\d+)\s+active$`).FindStringSubmatch(r.stdout)
		require.NotNil(t, m, "sessions list:\n%s", r.stdout)
		id := m[1]

		r = runBinary(t, bin, "", "sessions", "kill", id, "--admin", s.admin, "--token", adminToken, "--reason", "e2e test")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, "session "+id+": terminating\n", r.stdout)
		require.Eventually(t, func() bool {
			return conn.Ping(t.Context()) != nil
		}, 10*time.Second, 50*time.Millisecond, "the killed session's connection must end")

		// A second session stays open over the shutdown: SIGTERM still
		// ends the process cleanly within the grace period.
		conn2 := connect(t, listen)
		defer conn2.Close(context.Background())
		s.stop(t)

		r = runBinary(t, bin, "", "replay", "--config", config, "--list")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Regexp(t, `(?m)^`+id+`\s+\S+ \S+\s+alice\s+pg\s+complete\s+`, r.stdout)

		r = runBinary(t, bin, "", "replay", "--config", config, id)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, "SELECT count(*) FROM customers")
		assert.Contains(t, r.stdout, "terminated by admin: e2e test")
		assert.Contains(t, r.stdout, "hash chain: intact")
		pw, err := os.ReadFile(demo.PasswordFile)
		require.NoError(t, err)
		all := r.stdout + s.stdout.String() + s.stderr.String()
		assert.NotContains(t, all, strings.TrimSpace(string(pw)), "the backend password must not appear in logs or recordings")
		assert.NotContains(t, all, demo.Token, "the caller's token must not appear in logs or recordings")
	})

	// A CEL policy: alice (group dba) may connect and run SQL, DROP is
	// denied by a rule that reads the classified statements.
	const basePolicy = `
default: deny
rules:
  - name: dba-connect
    match: command.kind == "connect" && "dba" in identity.groups
    action: allow
  - name: dba-sql
    match: command.kind == "query" && "dba" in identity.groups
    action: allow
  - name: no-drop
    match: command.sql.statements.exists(s, s.kind == "DROP")
    action: deny
    message: DROP is not allowed here
`
	const noSelectRule = `
  - name: no-select
    match: command.sql.statements.exists(s, s.kind == "SELECT")
    action: deny
    message: SELECT is switched off
`
	pgDenied := func(t *testing.T, err error) *pgconn.PgError {
		t.Helper()
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe), "want a PostgreSQL error, got %v", err)
		assert.Equal(t, "42501", pe.Code)
		return pe
	}
	// The simple protocol sends the text each time: pgx's default
	// prepares a statement once, and the gateway checks a prepared
	// statement when it is parsed.
	countRows := func(conn *pgx.Conn) error {
		var n int
		return conn.QueryRow(t.Context(), "SELECT count(*) FROM customers", pgx.QueryExecModeSimpleProtocol).Scan(&n)
	}

	t.Run("cel policy reloads on SIGHUP", func(t *testing.T) {
		adminAddr, listen := pgtest.FreeAddr(t), pgtest.FreeAddr(t)
		pol := filepath.Join(dir, "hup-policy.yaml")
		require.NoError(t, os.WriteFile(pol, []byte(basePolicy), 0o600))
		config := writeConfig("hup.yaml", "{files: ['"+pol+"'], watch: false}", adminAddr, listen)
		s := startServe(t, bin, config, adminAddr, listen)
		defer s.stop(t)
		assert.Contains(t, s.stderr.String(), "policy.rules=3")

		conn := connect(t, listen)
		defer conn.Close(context.Background())
		require.NoError(t, countRows(conn))
		_, err := conn.Exec(t.Context(), "/* oops */ DROP TABLE customers")
		pe := pgDenied(t, err)
		assert.Contains(t, pe.Message, "DROP is not allowed here (rule dba-sql, no-drop)")

		// Not watched: a change waits for SIGHUP.
		require.NoError(t, os.WriteFile(pol, []byte(basePolicy+noSelectRule), 0o600))
		time.Sleep(300 * time.Millisecond)
		require.NoError(t, countRows(conn))
		require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
		require.Eventually(t, func() bool { return strings.Contains(s.stderr.String(), "policy reloaded") }, 10*time.Second, 20*time.Millisecond)
		pe = pgDenied(t, countRows(conn))
		assert.Contains(t, pe.Message, "SELECT is switched off (rule dba-sql, no-select)")

		// A policy that does not compile is refused; the last good one stays.
		require.NoError(t, os.WriteFile(pol, []byte(basePolicy+"  - name: typo\n    match: command.sql.wrtes\n    action: deny\n"), 0o600))
		require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
		require.Eventually(t, func() bool { return strings.Contains(s.stderr.String(), "policy reload failed") }, 10*time.Second, 20*time.Millisecond)
		assert.Contains(t, s.stderr.String(), "undefined field 'wrtes'")
		pgDenied(t, countRows(conn))
	})

	t.Run("cel policy reloads when the file changes", func(t *testing.T) {
		adminAddr, listen := pgtest.FreeAddr(t), pgtest.FreeAddr(t)
		pdir := filepath.Join(dir, "policies")
		require.NoError(t, os.MkdirAll(pdir, 0o700))
		pol := filepath.Join(pdir, "policy.yaml")
		require.NoError(t, os.WriteFile(pol, []byte(basePolicy), 0o600))
		// A test file beside the policy is not part of it.
		require.NoError(t, os.WriteFile(filepath.Join(pdir, "policy_test.yaml"), []byte("cases: []\n"), 0o600))
		config := writeConfig("watch.yaml", "{files: ['"+pdir+"'], watch_interval: 50ms}", adminAddr, listen)
		s := startServe(t, bin, config, adminAddr, listen)
		defer s.stop(t)

		conn := connect(t, listen)
		defer conn.Close(context.Background())
		require.NoError(t, countRows(conn))
		require.NoError(t, os.WriteFile(pol, []byte(basePolicy+noSelectRule), 0o600))
		require.Eventually(t, func() bool {
			err := countRows(conn)
			var pe *pgconn.PgError
			return errors.As(err, &pe) && strings.Contains(pe.Message, "SELECT is switched off")
		}, 10*time.Second, 20*time.Millisecond, "the changed policy must be loaded")
	})

	t.Run("deny", func(t *testing.T) {
		adminAddr, listen := pgtest.FreeAddr(t), pgtest.FreeAddr(t)
		config := writeConfig("deny.yaml", "{default: deny}", adminAddr, listen)
		s := startServe(t, bin, config, adminAddr, listen)
		defer s.stop(t)

		// Connecting is allowed; every command is refused the PostgreSQL
		// way, and the session stays usable.
		conn := connect(t, listen)
		defer conn.Close(context.Background())
		for range 2 {
			_, err := conn.Exec(t.Context(), "SELECT 1")
			var pe *pgconn.PgError
			require.True(t, errors.As(err, &pe), "want a PostgreSQL error, got %v", err)
			assert.Equal(t, "42501", pe.Code)
			assert.Contains(t, pe.Message, "policy.default: deny")
		}
	})
}
