package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/sluicegw/sluice/internal/pgtest"
)

// TestPsqlOverTLS drives the psql CLI through the gateway over TLS (the
// gateway's self-signed certificate, generated into its data directory)
// with the token as PGPASSWORD.
func TestPsqlOverTLS(t *testing.T) {
	pgtest.Require(t)
	requireTool(t, "psql")
	e := startGateway(t, 2*time.Second, pgTarget("pg"))
	sessions := 0

	t.Run("query", func(t *testing.T) {
		r := e.psql(t, "pg", "test", "require", "-At", "-c", "select 40 + 2, current_database()")
		require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
		assert.Equal(t, "42|test\n", r.stdout)
		sessions++
	})

	t.Run("connection is TLS with the gateway's certificate", func(t *testing.T) {
		cert := filepath.Join(e.dataDir, "tls", "cert.pem")
		require.FileExists(t, cert)
		// verify-full against the certificate in the data directory
		// proves the client talked TLS to this gateway, not to anyone.
		host, port := e.hostPort(t, "pg")
		r := e.psql(t, "pg", "test", "verify-full", "-At",
			"-d", fmt.Sprintf("host=localhost port=%s sslrootcert=%s", port, cert), "-c", `\conninfo`)
		require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
		assert.Contains(t, r.stdout, "SSL connection (protocol: TLSv1.")
		assert.Equal(t, "127.0.0.1", host)
		sessions++
	})

	t.Run("multi-statement script", func(t *testing.T) {
		script := filepath.Join(t.TempDir(), "script.sql")
		require.NoError(t, os.WriteFile(script, []byte(`
create temp table fruit(id int primary key, name text not null);
insert into fruit values (1, 'apple'), (2, 'banana'), (3, 'cherry');
update fruit set name = upper(name) where id = 2;
delete from fruit where id = 3;
select id, name from fruit order by id;
select count(*) as n from fruit; select 'two statements on one line';
`), 0o600))
		r := e.psql(t, "pg", "test", "require", "-At", "-v", "ON_ERROR_STOP=1", "-f", script)
		require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
		assert.Equal(t, "CREATE TABLE\nINSERT 0 3\nUPDATE 1\nDELETE 1\n1|apple\n2|BANANA\n2\ntwo statements on one line\n", r.stdout)
		assert.Empty(t, r.stderr)
		sessions++
	})

	t.Run("copy in and out", func(t *testing.T) {
		dir := t.TempDir()
		in, out := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv")
		var b strings.Builder
		for i := 1; i <= 5000; i++ {
			fmt.Fprintf(&b, "%d,\"row %d, with a comma\",%d.5\n", i, i, i*3)
		}
		require.NoError(t, os.WriteFile(in, []byte(b.String()), 0o600))
		r := e.psql(t, "pg", "test", "require", "-At", "-v", "ON_ERROR_STOP=1",
			"-c", "create temp table cp(id int, label text, amount numeric)",
			"-c", fmt.Sprintf(`\copy cp from '%s' csv`, in),
			"-c", "select count(*), sum(id), sum(amount) from cp",
			"-c", fmt.Sprintf(`\copy (select * from cp order by id) to '%s' csv`, out))
		require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
		assert.Equal(t, "CREATE TABLE\nCOPY 5000\n5000|12502500|37510000.0\nCOPY 5000\n", r.stdout)
		got, err := os.ReadFile(out)
		require.NoError(t, err)
		assert.Equal(t, b.String(), string(got), "what \\copy wrote out must be what it read in")
		sessions++
	})

	t.Run("error then success", func(t *testing.T) {
		script := filepath.Join(t.TempDir(), "script.sql")
		require.NoError(t, os.WriteFile(script, []byte("select 1/0;\nselect 'after the error';\n"), 0o600))
		// Without ON_ERROR_STOP psql goes on after the error and exits 0.
		r := e.psql(t, "pg", "test", "require", "-At", "-f", script)
		assert.Equal(t, 0, r.code, "stderr: %s", r.stderr)
		assert.Contains(t, r.stderr, "ERROR:  division by zero")
		assert.Equal(t, "after the error\n", r.stdout)

		// With ON_ERROR_STOP the script stops: exit status 3.
		r = e.psql(t, "pg", "test", "require", "-At", "-v", "ON_ERROR_STOP=1", "-f", script)
		assert.Equal(t, 3, r.code, "stderr: %s", r.stderr)
		assert.Contains(t, r.stderr, "division by zero")
		assert.Empty(t, r.stdout)

		// A failing -c: exit status 1.
		r = e.psql(t, "pg", "test", "require", "-At", "-c", "select * from no_such_table")
		assert.Equal(t, 1, r.code, "stderr: %s", r.stderr)
		assert.Contains(t, r.stderr, `relation "no_such_table" does not exist`)
		sessions += 3
	})

	t.Run("wrong token", func(t *testing.T) {
		host, port := e.hostPort(t, "pg")
		r := e.psql(t, "pg", "test", "require", "-At", "-c", "select 1",
			"-d", fmt.Sprintf("host=%s port=%s password=not-the-token", host, port))
		assert.Equal(t, 2, r.code, "a refused connection is psql's exit status 2; stderr: %s", r.stderr)
		assert.Contains(t, r.stderr, "sluice: authentication failed: token not recognised")
		assert.NotContains(t, r.stderr, e.token)
	})

	// Every session that authenticated is recorded, ends with
	// session.end, and verifies; the failing statements are recorded with
	// their errors.
	recs := waitRecordings(t, e.recDir, sessions)
	var all []string
	for _, r := range recs {
		assert.Equal(t, "session.start", r.entries[0].Type)
		assert.Equal(t, subject, r.entries[0].Identity.Subject)
		assert.Equal(t, "session.end", r.last().Type)
		// The exact end reason: TestClientCloseRecordedAsClientClosed.
		all = append(all, r.commands()...)
	}
	assert.Contains(t, all, "select 40 + 2, current_database()")
	assert.Contains(t, all, "select 1/0;")
	assert.Contains(t, strings.Join(all, "\n"), "COPY  cp FROM STDIN csv")
	joined := ""
	for _, r := range recs {
		joined += string(r.raw)
	}
	assert.Contains(t, joined, "22012: division by zero")
	assert.NotContains(t, joined, e.token)
	assert.NotContains(t, e.logs.String(), e.token)
}

// TestPsqlPlaintextRefused: psql with sslmode=disable to a target that
// does not allow plaintext is refused with the gateway's message saying
// to use TLS, and no session is recorded.
func TestPsqlPlaintextRefused(t *testing.T) {
	pgtest.Require(t)
	requireTool(t, "psql")
	e := startGateway(t, 2*time.Second, pgTarget("pg"))

	r := e.psql(t, "pg", "test", "disable", "-At", "-c", "select 1")
	assert.Equal(t, 2, r.code, "stderr: %s", r.stderr)
	assert.Contains(t, r.stderr, "sluice: a token must be sent over TLS; connect with sslmode=require")
	assert.Empty(t, r.stdout)

	// The gateway refused before recording anything: no session file.
	assert.Eventually(t, func() bool { return len(e.g.Sessions()) == 0 }, 5*time.Second, 10*time.Millisecond)
	assert.Empty(t, recordingPaths(t, e.recDir), "a refused connection must not be recorded as a session")
	assert.Contains(t, e.logs.String(), `reason="sluice: a token must be sent over TLS`)
	assert.NotContains(t, e.logs.String(), e.token)
}

// TestPlaintextRefusedBeforeTokenIsSent: a client that declines TLS to a
// target that refuses plaintext must be refused before it is asked for
// its password, as PostgreSQL refuses a non-SSL connection to a
// hostssl-only server before authentication. Otherwise the client sends
// the token in clear over the network, and the refusal comes too late to
// protect it.
func TestPlaintextRefusedBeforeTokenIsSent(t *testing.T) {
	pgtest.Require(t)
	requireTool(t, "psql")
	e := startGateway(t, 2*time.Second, pgTarget("pg"))
	tp := startTap(t, e.g.Addr("pg").String())
	host, port := tp.addr()

	r := e.psql(t, "pg", "test", "disable", "-At", "-c", "select 1", "-d", fmt.Sprintf("host=%s port=%s", host, port))
	assert.Equal(t, 2, r.code, "stderr: %s", r.stderr)
	assert.Contains(t, r.stderr, "sluice: a token must be sent over TLS; connect with sslmode=require")
	up, _ := tp.bytes()
	require.NotEmpty(t, up)
	assert.False(t, strings.Contains(string(up), e.token),
		"the token crossed the network in clear: the gateway asked a plaintext client for its password before refusing plaintext")
}

// TestClientCloseRecordedAsClientClosed: a client that ends its session
// the normal way (Terminate, then close) must be recorded as "client
// closed". The relay forwards the Terminate to the backend, which then
// closes its side too; which of the two the relay notices first must not
// decide what the audit record says. The race is narrow, so many short
// sessions (plaintext from loopback, to be quick), four at a time.
func TestClientCloseRecordedAsClientClosed(t *testing.T) {
	pgtest.Require(t)
	tc := pgTarget("pg")
	tc.DisableTLS, tc.AllowPlaintextLoopback = true, true
	e := startGateway(t, 2*time.Second, tc)
	const workers, perWorker = 4, 75
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dsn := e.dsn(t, "pg", "test", "disable")
	var g errgroup.Group
	var dumpOnce sync.Once
	dump := func(err error) error {
		// A session that stalls is a bug: show where every goroutine is.
		dumpOnce.Do(func() {
			var buf bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
			t.Logf("a session stalled (%v); goroutines:\n%s", err, buf.String())
			// And what the server's backends were doing then.
			actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer acancel()
			rows, qerr := pgtest.AdminConn(t, "postgres").Query(actx,
				`select pid, state, coalesce(wait_event_type, ''), coalesce(wait_event, ''), left(query, 80) from pg_stat_activity where pid <> pg_backend_pid()`)
			if qerr == nil {
				for rows.Next() {
					var pid int
					var state, wtype, wevent, query *string
					if rows.Scan(&pid, &state, &wtype, &wevent, &query) == nil {
						t.Logf("backend %d: state=%v wait=%v/%v query=%v", pid, deref(state), deref(wtype), deref(wevent), deref(query))
					}
				}
				rows.Close()
			}
		})
		return err
	}
	for range workers {
		g.Go(func() error {
			for range perWorker {
				octx, cancel := context.WithTimeout(ctx, 15*time.Second)
				c, err := pgx.Connect(octx, dsn)
				if err != nil {
					cancel()
					return dump(err)
				}
				if _, err := c.Exec(octx, "select 1"); err != nil {
					cancel()
					return dump(err)
				}
				err = c.Close(octx)
				cancel()
				if err != nil {
					return dump(err)
				}
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	reasons := map[string]int{}
	for _, r := range waitRecordings(t, e.recDir, workers*perWorker) {
		reasons[r.last().Reason]++
	}
	assert.Equal(t, map[string]int{"client closed": workers * perWorker}, reasons,
		"end reasons of sessions whose clients all sent Terminate")
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
