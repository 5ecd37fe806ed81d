package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/recording"
)

// testPG is the superuser connection the integration tests use: the
// machine's PostgreSQL, trust auth on 127.0.0.1.
const testPG = "host=127.0.0.1 port=5432 user=postgres dbname=postgres sslmode=disable connect_timeout=5"

// requirePostgres connects to the local PostgreSQL, or skips the test with
// how to start it (fails instead under SLUICE_REQUIRE_INTEGRATION=1).
func requirePostgres(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testPG)
	if err != nil {
		msg := "PostgreSQL is not reachable at 127.0.0.1:5432 as user postgres (" + connectReason(err) +
			"); start it with `pg_ctlcluster --skip-systemctl-redirect 15 main start`"
		if os.Getenv("SLUICE_REQUIRE_INTEGRATION") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// demoNames returns a role and database name no other run uses, and drops
// both when the test ends.
func demoNames(t *testing.T, admin *pgx.Conn) (role, database string) {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	role, database = "sluice_test_role_"+suffix, "sluice_test_db_"+suffix
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{database}.Sanitize()+" WITH (FORCE)")
		assert.NoError(t, err, "drop test database")
		_, err = admin.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize())
		assert.NoError(t, err, "drop test role")
	})
	return role, database
}

func TestBootstrapDemo(t *testing.T) {
	admin := requirePostgres(t)
	role, database := demoNames(t, admin)
	ctx := t.Context()
	setup := demoSetup{AdminConn: testPG, Role: role, Database: database, Dir: filepath.Join(t.TempDir(), "demo")}

	first, err := bootstrapDemo(ctx, setup)
	require.NoError(t, err)

	// Secrets: 32 random bytes, base64url, files 0600 in a 0700 directory.
	assert.Len(t, first.Token, 43)
	assert.NotContains(t, first.Token, "=")
	for _, name := range []string{demoPasswordFile, demoTokenFile} {
		fi, err := os.Stat(filepath.Join(setup.Dir, name))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), name)
	}
	fi, err := os.Stat(setup.Dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	password, err := os.ReadFile(first.PasswordFile)
	require.NoError(t, err)
	assert.NotEqual(t, first.Token, strings.TrimSpace(string(password)), "the token and the backend password are different secrets")

	// The role logs in and has a SCRAM-SHA-256 verifier.
	var canLogin bool
	var verifier string
	require.NoError(t, admin.QueryRow(ctx, "SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&canLogin, &verifier))
	assert.True(t, canLogin)
	assert.True(t, strings.HasPrefix(verifier, "SCRAM-SHA-256$"), "rolpassword is %.14s...", verifier)
	var scram bool
	require.NoError(t, admin.QueryRow(ctx, "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = $1", role).Scan(&scram))
	assert.True(t, scram)

	// The database belongs to the role, and so does the table with its
	// rows; the role can read it.
	var owner string
	require.NoError(t, admin.QueryRow(ctx, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", database).Scan(&owner))
	assert.Equal(t, role, owner)
	cfg, err := pgx.ParseConfig(testPG)
	require.NoError(t, err)
	cfg.Database, cfg.User, cfg.Password = database, role, strings.TrimSpace(string(password))
	asRole, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer asRole.Close(context.Background())
	var n int
	require.NoError(t, asRole.QueryRow(ctx, "SELECT count(*) FROM customers WHERE email LIKE '%@example.com' AND card IS NOT NULL").Scan(&n))
	assert.Equal(t, len(demoRows), n)

	// Idempotent: the second run reuses both secrets, keeps the rows and
	// leaves a verifier for the same password.
	_, err = asRole.Exec(ctx, "INSERT INTO customers (name) VALUES ('added between runs')")
	require.NoError(t, err)
	second, err := bootstrapDemo(ctx, setup)
	require.NoError(t, err)
	assert.Equal(t, first.Token, second.Token)
	assert.Equal(t, first.PasswordFile, second.PasswordFile)
	password2, err := os.ReadFile(second.PasswordFile)
	require.NoError(t, err)
	assert.Equal(t, password, password2)
	require.NoError(t, asRole.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n))
	assert.Equal(t, len(demoRows)+1, n, "the second run must not recreate or refill the table")
	require.NoError(t, admin.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&verifier))
	assert.True(t, strings.HasPrefix(verifier, "SCRAM-SHA-256$"))
	var roles, dbs int
	require.NoError(t, admin.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", role).Scan(&roles))
	require.NoError(t, admin.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", database).Scan(&dbs))
	assert.Equal(t, 1, roles)
	assert.Equal(t, 1, dbs)
}

func TestBootstrapDemoUnreachable(t *testing.T) {
	setup := demoSetup{
		// Port 1 on loopback: nothing listens there.
		AdminConn: "host=127.0.0.1 port=1 user=postgres password=s3cret-admin dbname=postgres connect_timeout=2",
		Role:      "r", Database: "d", Dir: t.TempDir(),
	}
	_, err := bootstrapDemo(t.Context(), setup)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "127.0.0.1:1")
	assert.Contains(t, err.Error(), "pg_ctlcluster --skip-systemctl-redirect 15 main start")
	assert.NotContains(t, err.Error(), "s3cret-admin", "the error must not carry the connection string's password")

	_, err = bootstrapDemo(t.Context(), demoSetup{AdminConn: "host=x port=notaport password=s3cret-admin", Dir: t.TempDir()})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret-admin")
}

func TestReadOrCreateSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	a, err := readOrCreateSecret(path)
	require.NoError(t, err)
	b, err := readOrCreateSecret(path)
	require.NoError(t, err)
	assert.Equal(t, a, b)

	require.NoError(t, os.WriteFile(path, []byte("\n"), 0o600))
	_, err = readOrCreateSecret(path)
	assert.ErrorContains(t, err, "is empty; delete it")
}

func TestQuoteLiteral(t *testing.T) {
	assert.Equal(t, `'abc'`, quoteLiteral("abc"))
	assert.Equal(t, `'it''s'`, quoteLiteral("it's"))
	assert.Equal(t, `E'a\\b''c'`, quoteLiteral(`a\b'c`))
}

func TestDemoPsqlLine(t *testing.T) {
	assert.Equal(t, `psql "host=127.0.0.1 port=6432 dbname=sluice_demo user=demo sslmode=require password=T"`,
		demoPsqlLine("127.0.0.1:6432", "sluice_demo", "T"))
	assert.Equal(t, `psql "host=127.0.0.1 port=7000 dbname=db user=demo sslmode=require password=T"`,
		demoPsqlLine("0.0.0.0:7000", "db", "T"))
	assert.Equal(t, `psql "host=::1 port=7000 dbname=db user=demo sslmode=require password=T"`,
		demoPsqlLine("[::1]:7000", "db", "T"))
}

// TestDemoServe runs the demo as `serve` without --config does (with its
// own role, database and ports), and connects with the real psql using the
// line the demo prints.
func TestDemoServe(t *testing.T) {
	admin := requirePostgres(t)
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql is not installed (apt-get install postgresql-client)")
	}
	role, database := demoNames(t, admin)
	dir := t.TempDir()
	cfg, err := ParseConfig(exampleConfig, exampleConfigName)
	require.NoError(t, err)
	cfg.DataDir = dir
	cfg.Recording.Dir = filepath.Join(dir, "recordings")
	cfg.Admin.Listen = "127.0.0.1:0"
	setup := demoSetup{AdminConn: testPG, Role: role, Database: database, Dir: filepath.Join(dir, "demo")}
	res, err := prepareDemo(t.Context(), cfg, setup, "127.0.0.1:0")
	require.NoError(t, err)

	logs := &syncBuffer{}
	logger, err := newLogger(cfg.Log, logs)
	require.NoError(t, err)
	srv, err := newServer(cfg, logger)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	require.NoError(t, srv.start(ctx))
	var banner bytes.Buffer
	srv.printDemo(&banner, res)
	m := regexp.MustCompile(`(?m)^  psql "([^"]+)"$`).FindStringSubmatch(banner.String())
	require.NotNil(t, m, "banner:\n%s", banner.String())
	assert.Contains(t, m[1], "dbname="+database+" user=demo sslmode=require password="+res.Token)
	assert.Contains(t, banner.String(), srv.adminURL())
	assert.Contains(t, banner.String(), "Approvals: "+srv.adminURL()+"/approvals", "the demo supports approvals")

	out, err := exec.CommandContext(ctx, psql, "-X", "-At", m[1], "-c", "SELECT name FROM customers ORDER BY id LIMIT 1").CombinedOutput()
	require.NoError(t, err, "psql: %s\nlogs:\n%s", out, logs.String())
	assert.Equal(t, "Ada Lovelace\n", string(out))

	// The demo policy, written to the data directory, refuses what would
	// destroy the demo data.
	assert.Equal(t, []string{filepath.Join(dir, "policy.yaml")}, cfg.Policy.Files)
	written, err := os.ReadFile(filepath.Join(dir, "policy.yaml"))
	require.NoError(t, err)
	assert.Equal(t, demoPolicy, written)
	assert.Contains(t, banner.String(), "Policy: "+filepath.Join(dir, "policy.yaml"))
	for sql, want := range map[string]string{
		"DROP TABLE customers":   "DROP and TRUNCATE are not allowed in the demo (rule demo-sql, no-drop-or-truncate)",
		"DELETE FROM customers":  "DELETE and UPDATE need a WHERE clause in the demo",
		"SELEC name FROM people": "the statement could not be parsed",
	} {
		out, err = exec.CommandContext(ctx, psql, "-X", "-At", m[1], "-c", sql).CombinedOutput()
		require.Error(t, err, "psql %q must fail: %s", sql, out)
		assert.Contains(t, string(out), want, sql)
	}
	out, err = exec.CommandContext(ctx, psql, "-X", "-At", m[1], "-c", "SELECT count(*) FROM customers").CombinedOutput()
	require.NoError(t, err, "psql: %s", out)
	assert.Equal(t, fmt.Sprintf("%d\n", len(demoRows)), string(out), "nothing was deleted")

	// The self-signed certificate was generated in the data directory.
	_, err = os.Stat(filepath.Join(dir, "tls", "cert.pem"))
	assert.NoError(t, err)

	cancel() // what SIGINT does
	require.NoError(t, srv.wait(ctx))
	assert.Contains(t, logs.String(), "msg=stopped")
	sums, err := recording.List(cfg.Recording.Dir)
	require.NoError(t, err)
	require.Len(t, sums, 5, "one session per psql run")
	for _, sum := range sums {
		assert.Equal(t, "demo", sum.Subject)
		assert.True(t, sum.Complete)
	}
}
