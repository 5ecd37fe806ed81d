package e2e

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
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
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/internal/pgtest"
)

// secretForms are the ways a secret could show up if it leaked: as is,
// base64 (padded, unpadded, URL-safe) and hex (both cases).
func secretForms(s string) []string {
	b := []byte(s)
	return []string{
		s,
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		hex.EncodeToString(b),
		strings.ToUpper(hex.EncodeToString(b)),
	}
}

// assertNoSecret fails for every form of secret found in what.
func assertNoSecret(t *testing.T, secretName, secret, whereName string, what []byte) {
	t.Helper()
	for _, f := range secretForms(secret) {
		assert.False(t, strings.Contains(string(what), f), "%s appears in %s (as %q)", secretName, whereName, f)
	}
}

// TestSCRAMBackend runs the gateway in front of a throwaway cluster whose
// pg_hba.conf demands scram-sha-256, with a role whose password is stored
// as a SCRAM verifier and which the gateway reads from file: and env:
// references. Real clients work through it, and the backend password and
// the caller's token never leak: not to clients, not to logs, not to
// recordings, whether sessions succeed or fail at the backend.
func TestSCRAMBackend(t *testing.T) {
	pgtest.Require(t)
	requireTool(t, "psql")
	cl, superPW := pgtest.StartScramCluster(t)
	appPW := pgtest.RandomSecret(12)
	wrongPW := pgtest.RandomSecret(12)
	cl.Exec(t, superPW, "create role app login password '"+appPW+"'")
	cl.Exec(t, superPW, "create database appdb owner app")

	dir := t.TempDir()
	pwFile := filepath.Join(dir, "app-password")
	require.NoError(t, os.WriteFile(pwFile, []byte(appPW+"\n"), 0o600))
	wrongFile := filepath.Join(dir, "wrong-password")
	require.NoError(t, os.WriteFile(wrongFile, []byte(wrongPW+"\n"), 0o600))
	const envName = "SLUICE_E2E_APP_PASSWORD"
	t.Setenv(envName, appPW)

	// The gateway's own traffic to the backend of one target passes a tap
	// too, to see that the password never crosses it (SCRAM sends a proof).
	backendTap := startTap(t, cl.Addr())
	target := func(name, address, password string, plaintext bool) gateway.TargetConfig {
		tc := pgTarget(name)
		tc.Target.Address = address
		tc.Credential = credstore.Ref{Username: "app", Password: password}
		if plaintext {
			// Plaintext from loopback, so that a tap between client and
			// gateway sees every byte the client receives in clear.
			tc.DisableTLS, tc.AllowPlaintextLoopback = true, true
		}
		return tc
	}
	e := startGateway(t, 2*time.Second,
		target("tls-file", cl.Addr(), "file:"+pwFile, false),
		target("plain-env", backendTap.ln.Addr().String(), "env:"+envName, true),
		target("plain-file", cl.Addr(), "file:"+pwFile, true),
		target("plain-wrong", cl.Addr(), "file:"+wrongFile, true),
	)
	taps := map[string]*tap{}
	for _, name := range []string{"plain-env", "plain-file", "plain-wrong"} {
		taps[name] = startTap(t, e.g.Addr(name).String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	viaTap := func(name, database string) string {
		host, port := taps[name].addr()
		return fmt.Sprintf("host=%s port=%s user=%s dbname=%s password=%s sslmode=disable connect_timeout=5",
			host, port, subject, database, e.token)
	}

	t.Run("clients", func(t *testing.T) {
		r := e.psql(t, "tls-file", "appdb", "require", "-At", "-c", "select current_user, current_database()")
		require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
		assert.Equal(t, "app|appdb\n", r.stdout)

		c := e.pgx(t, "tls-file", "appdb")
		var who string
		require.NoError(t, c.QueryRow(ctx, "select current_user").Scan(&who))
		assert.Equal(t, "app", who)
		_, err := c.Exec(ctx, "create table t(id int); insert into t select generate_series(1, 10)")
		require.NoError(t, err)
		var n int
		require.NoError(t, c.QueryRow(ctx, "select count(*) from t where id > $1", 5).Scan(&n))
		assert.Equal(t, 5, n)
		require.NoError(t, c.Close(ctx))

		// The cluster really demands the password, and keeps it as SCRAM.
		_, err = pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=app dbname=appdb password=nope sslmode=disable", cl.Port))
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe), "a wrong password must be refused by the cluster, got %v", err)
		assert.Equal(t, "28P01", pe.Code)
		su, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres password=%s sslmode=disable", cl.Port, superPW))
		require.NoError(t, err)
		defer su.Close(context.Background())
		var stored string
		require.NoError(t, su.QueryRow(ctx, "select rolpassword from pg_authid where rolname = 'app'").Scan(&stored))
		assert.True(t, strings.HasPrefix(stored, "SCRAM-SHA-256$"), "rolpassword is %.20q...", stored)
	})

	t.Run("secrets never leak", func(t *testing.T) {
		// Sessions that succeed, with a failing statement in them.
		for _, name := range []string{"plain-env", "plain-file"} {
			c, err := pgx.Connect(ctx, viaTap(name, "appdb"))
			require.NoError(t, err, name)
			var who string
			require.NoError(t, c.QueryRow(ctx, "select current_user").Scan(&who))
			assert.Equal(t, "app", who)
			_, err = c.Exec(ctx, "select 1/0")
			require.Error(t, err)
			_, err = c.Exec(ctx, "select * from pg_authid")
			var pe *pgconn.PgError
			require.True(t, errors.As(err, &pe), "got %v", err)
			assert.Equal(t, "42501", pe.Code, "app is no superuser")
			require.NoError(t, c.Close(ctx))
		}

		// A wrong backend password: the client learns only that the
		// gateway could not log in.
		_, err := pgx.Connect(ctx, viaTap("plain-wrong", "appdb"))
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe), "got %v", err)
		assert.Equal(t, "08001", pe.Code)
		assert.Equal(t, "sluice: cannot connect to the backend of target plain-wrong", pe.Message)

		// An unknown database: the backend's own refusal is relayed.
		_, err = pgx.Connect(ctx, viaTap("plain-env", "no_such_db"))
		require.True(t, errors.As(err, &pe), "got %v", err)
		assert.Equal(t, "3D000", pe.Code)
		assert.Contains(t, pe.Message, `database "no_such_db" does not exist`)

		// A wrong token: refused by the gateway, nothing recorded.
		_, err = pgx.Connect(ctx, strings.Replace(viaTap("plain-file", "appdb"), e.token, "tok-wrong", 1))
		require.True(t, errors.As(err, &pe), "got %v", err)
		assert.Equal(t, "28P01", pe.Code)

		require.Eventually(t, func() bool { return len(e.g.Sessions()) == 0 }, 10*time.Second, 10*time.Millisecond)
		// psql and pgx above, two successes, the wrong password, the
		// unknown database: six recorded sessions.
		recs := waitRecordings(t, e.recDir, 6)

		var recorded []byte
		for _, r := range recs {
			recorded = append(recorded, r.raw...)
		}
		logs := []byte(e.logs.String())
		// The captures hold what they should, so that finding no secret
		// in them means something.
		assert.Contains(t, string(recorded), "select current_user")
		assert.Contains(t, string(recorded), "22012: division by zero")
		assert.Contains(t, string(logs), "backend connection failed")
		assert.Contains(t, string(logs), "password authentication failed")
		beUp, beDown := backendTap.bytes()
		assert.Contains(t, string(beUp), "SCRAM-SHA-256", "the gateway authenticates to the backend with SCRAM")
		for _, pw := range []struct{ name, value string }{{"the backend password", appPW}, {"the wrong backend password", wrongPW}} {
			for name, tp := range taps {
				up, down := tp.bytes()
				require.NotEmpty(t, down)
				assertNoSecret(t, pw.name, pw.value, "what clients of "+name+" received", down)
				assertNoSecret(t, pw.name, pw.value, "what clients of "+name+" sent", up)
			}
			assertNoSecret(t, pw.name, pw.value, "the gateway's logs", logs)
			assertNoSecret(t, pw.name, pw.value, "the recordings", recorded)
			assertNoSecret(t, pw.name, pw.value, "the gateway's traffic to the backend", append(beUp, beDown...))
		}
		for name, tp := range taps {
			_, down := tp.bytes()
			assertNoSecret(t, "the token", e.token, "what clients of "+name+" received", down)
		}
		assertNoSecret(t, "the token", e.token, "the gateway's logs", logs)
		assertNoSecret(t, "the token", e.token, "the recordings", recorded)
		assertNoSecret(t, "the token", "tok-wrong", "the gateway's logs", logs)
	})
}
