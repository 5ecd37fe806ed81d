package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/internal/pgtest"
)

// waitClosed reads from an idle connection until the gateway ends it, and
// returns the error the client saw and how long it took.
func waitClosed(t *testing.T, c *pgx.Conn, timeout time.Duration) (time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := c.PgConn().WaitForNotification(ctx)
	took := time.Since(start)
	require.Error(t, err)
	require.NotErrorIs(t, err, context.DeadlineExceeded, "the connection was not closed within %s", timeout)
	return took, err
}

// TestGracefulShutdown: Shutdown with a 2s grace closes an idle session at
// once with FATAL 57P01, lets a session inside a transaction commit within
// the grace and then closes it, and ends a transaction still open when the
// grace runs out (rolled back). Every recording ends with a session.end
// whose reason says the gateway shut down.
func TestGracefulShutdown(t *testing.T) {
	pgtest.Require(t)
	admin := pgtest.AdminConn(t, "test")
	table := scratchTable(t, admin, "e2e_shutdown")
	const grace = 2 * time.Second
	e := startGateway(t, grace, pgTarget("pg"))
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()

	idle := e.pgx(t, "pg", "test")
	var one int
	require.NoError(t, idle.QueryRow(ctx, "select 1").Scan(&one))

	inTx := e.pgx(t, "pg", "test")
	tx, err := inTx.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "insert into "+table+" values (1, 'committed within the grace')")
	require.NoError(t, err)

	stuck := e.pgx(t, "pg", "test")
	stuckTx, err := stuck.Begin(ctx)
	require.NoError(t, err)
	_, err = stuckTx.Exec(ctx, "insert into "+table+" values (2, 'never committed')")
	require.NoError(t, err)

	start := time.Now()
	shutdownErr := make(chan error, 1)
	go func() {
		sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer scancel()
		shutdownErr <- e.g.Shutdown(sctx)
	}()

	// The idle session is closed at once, told why.
	took, err := waitClosed(t, idle, time.Second)
	var pe *pgconn.PgError
	require.True(t, errors.As(err, &pe), "the idle client must read a FATAL error, got %v", err)
	assert.Equal(t, "FATAL", pe.Severity)
	assert.Equal(t, "57P01", pe.Code)
	assert.Contains(t, pe.Message, "shutdown")
	assert.Less(t, took, 500*time.Millisecond)
	assert.True(t, idle.IsClosed())

	// The transaction goes on within the grace and commits.
	time.Sleep(200 * time.Millisecond)
	_, err = tx.Exec(ctx, "insert into "+table+" values (3, 'also committed')")
	require.NoError(t, err, "a session in a transaction keeps working within the grace")
	require.NoError(t, tx.Commit(ctx), "COMMIT within the grace succeeds")
	took, err = waitClosed(t, inTx, time.Second)
	require.True(t, errors.As(err, &pe), "after its commit the client must read a FATAL error, got %v", err)
	assert.Equal(t, "57P01", pe.Code)
	assert.Less(t, took, 500*time.Millisecond, "closed as soon as its transaction ended")

	// The transaction left open is ended when the grace runs out.
	_, err = waitClosed(t, stuck, grace+3*time.Second)
	assert.GreaterOrEqual(t, time.Since(start), grace-100*time.Millisecond)
	if assert.True(t, errors.As(err, &pe), "the client cut off at the end of the grace must be told why, got %v", err) {
		assert.Equal(t, "57P01", pe.Code)
	}

	select {
	case err := <-shutdownErr:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	assert.Less(t, time.Since(start), grace+2*time.Second)
	assert.Equal(t, []int{1, 3}, ids(t, admin, table), "the committed rows stay, the open transaction is rolled back")

	recs := waitRecordings(t, e.recDir, 3)
	for _, r := range recs {
		assert.Equal(t, "session.end", r.last().Type, r.id)
		assert.Contains(t, r.last().Reason, "shutdown", r.id)
	}
	assert.Contains(t, recs[1].commands(), "commit")
}

// TestTerminateTellsClient: a session an operator ends (Gateway.Terminate,
// `refserver sessions kill`) is told why with FATAL 57P01, as PostgreSQL
// tells a backend's client on pg_terminate_backend, rather than finding
// its connection gone.
func TestTerminateTellsClient(t *testing.T) {
	pgtest.Require(t)
	e := startGateway(t, 2*time.Second, pgTarget("pg"))
	c := e.pgx(t, "pg", "test")
	var one int
	require.NoError(t, c.QueryRow(context.Background(), "select 1").Scan(&one))
	live := e.g.Sessions()
	require.Len(t, live, 1)
	require.NoError(t, e.g.Terminate(live[0].ID, "e2e test"))

	took, err := waitClosed(t, c, 2*time.Second)
	assert.Less(t, took, time.Second)
	var pe *pgconn.PgError
	if assert.True(t, errors.As(err, &pe), "the terminated client must be told why, got %v", err) {
		assert.Equal(t, "57P01", pe.Code)
	}
	r := waitRecordings(t, e.recDir, 1)[0]
	assert.Equal(t, "terminated by admin: e2e test", r.last().Reason)
}
