package e2e

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/internal/pgtest"
)

// TestCancelPsqlCtrlC: Ctrl-C in an interactive psql session cancels the
// running statement through the gateway (psql sends a CancelRequest with
// the key the gateway handed it; the gateway maps it to the backend's) and
// the session goes on.
func TestCancelPsqlCtrlC(t *testing.T) {
	pgtest.Require(t)
	requireTool(t, "psql")
	e := startGateway(t, 2*time.Second, pgTarget("pg"))
	host, port := e.hostPort(t, "pg")

	cmd := exec.Command("psql", "-X", "-P", "pager=off")
	cmd.Env = append(psqlEnv(t, host, port, "test", e.token, "require"), "TERM=dumb")
	p := startOnPTY(t, cmd)
	p.waitFor(t, "test=", 10*time.Second) // the prompt (=# : the backend role is a superuser)

	start := time.Now()
	p.write(t, "select pg_sleep(10);\n")
	time.Sleep(500 * time.Millisecond)
	p.write(t, "\x03") // Ctrl-C: the terminal sends psql SIGINT
	p.waitFor(t, "canceling statement due to user request", 3*time.Second)
	// The marker is built by the server so the terminal's echo of the
	// typed query cannot match it.
	p.write(t, "select 'after' || '-cancel' as marker;\n")
	done := p.waitFor(t, "\n after-cancel", 3*time.Second)
	assert.Less(t, done.Sub(start), 2500*time.Millisecond, "cancel and the next query took too long:\n%s", p.out.String())
	out := p.out.String()
	assert.Contains(t, out, "Cancel request sent")
	assert.Less(t, strings.Index(out, "canceling statement due to user request"), strings.Index(out, "\n after-cancel"))
	p.write(t, "\\q\n")
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("psql did not exit after \\q:\n%s", p.out.String())
	}

	// One session, recorded with both queries; the cancel itself was a
	// separate connection that authenticated nothing and recorded nothing.
	r := waitRecordings(t, e.recDir, 1)[0]
	assert.Contains(t, r.commands(), "select pg_sleep(10);")
	assert.Contains(t, r.commands(), "select 'after' || '-cancel' as marker;")
	assert.Contains(t, string(r.raw), "57014: canceling statement due to user request")
	assert.Contains(t, e.logs.String(), "cancel request forwarded to the backend")
}

// TestCancelPgxContextDeadline: pgx, told to cancel with a CancelRequest
// when a context ends (its default handler closes the connection
// instead), gets its statement cancelled through the gateway within a
// second and runs another query on the same connection.
func TestCancelPgxContextDeadline(t *testing.T) {
	pgtest.Require(t)
	e := startGateway(t, 2*time.Second, pgTarget("pg"))
	cfg, err := pgx.ParseConfig(e.dsn(t, "pg", "test", "require"))
	require.NoError(t, err)
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		// DeadlineDelay well past the assertion: a pass cannot come from
		// the connection's deadline, only from the cancel.
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, CancelRequestDelay: 0, DeadlineDelay: 5 * time.Second}
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer c.Close(context.Background())

	qctx, qcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer qcancel()
	start := time.Now()
	_, err = c.Exec(qctx, "select pg_sleep(10)")
	took := time.Since(start)
	require.Error(t, err)
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		assert.Equal(t, "57014", pe.Code, "query_canceled")
	} else {
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	}
	assert.Less(t, took, time.Second, "the cancel must end the statement within 1s")
	assert.False(t, c.IsClosed(), "the connection must survive the cancel")

	var n int
	require.NoError(t, c.QueryRow(ctx, "select 41 + 1").Scan(&n))
	assert.Equal(t, 42, n)
	require.NoError(t, c.Close(ctx))

	r := waitRecordings(t, e.recDir, 1)[0]
	assert.Contains(t, r.commands(), "select pg_sleep(10)")
	assert.Contains(t, r.commands(), "select 41 + 1")
}
