package postgres

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func connect(t *testing.T, h *harness) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, h.dsn(""))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestSimpleAndExtendedQueries(t *testing.T) {
	h := newHarness(t, nil)
	c := connect(t, h)
	ctx := context.Background()

	var n int
	require.NoError(t, c.QueryRow(ctx, "select 41 + $1::int", 1).Scan(&n))
	assert.Equal(t, 42, n)

	rows, err := c.Query(ctx, "select g, 'v'||g from generate_series(1,10) g", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	count := 0
	for rows.Next() {
		count++
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, 10, count)

	res := h.resultEvents()
	require.NotEmpty(t, res)
	last := res[len(res)-1].Result
	assert.Equal(t, int64(10), last.Rows)
	assert.Equal(t, "SELECT 10", last.Tag)
	assert.Len(t, last.Data, 5, "record cap of 5 rows")
	assert.True(t, last.Truncated)
	assert.Equal(t, []string{"g", "?column?"}, last.Columns)
	assert.Equal(t, "v1", *last.Data[0][1])
}

func TestDenySimpleKeepsSessionAndAbortsTransaction(t *testing.T) {
	h := newHarness(t, nil)
	c := connect(t, h)
	ctx := context.Background()

	_, err := c.Exec(ctx, "drop table if exists nothing_here", pgx.QueryExecModeSimpleProtocol)
	require.Error(t, err)
	assert.Equal(t, "42501", pgCode(err))
	assert.Contains(t, err.Error(), "drop is not allowed")
	assert.Contains(t, err.Error(), "no-drop")

	var one int
	require.NoError(t, c.QueryRow(ctx, "select 1", pgx.QueryExecModeSimpleProtocol).Scan(&one))

	// Inside a transaction block the refusal aborts it, as PostgreSQL does.
	_, err = c.Exec(ctx, "begin", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	_, err = c.Exec(ctx, "drop table x", pgx.QueryExecModeSimpleProtocol)
	require.Error(t, err)
	_, err = c.Exec(ctx, "select 1", pgx.QueryExecModeSimpleProtocol)
	require.Error(t, err)
	assert.Equal(t, "25P02", pgCode(err))
	_, err = c.Exec(ctx, "rollback", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	require.NoError(t, c.QueryRow(ctx, "select 2", pgx.QueryExecModeSimpleProtocol).Scan(&one))
	assert.Equal(t, 2, one)
}

func TestDenyExtendedAndPipeline(t *testing.T) {
	h := newHarness(t, nil)
	c := connect(t, h)
	ctx := context.Background()

	_, err := c.Exec(ctx, "drop table if exists nothing_here")
	require.Error(t, err)
	assert.Equal(t, "42501", pgCode(err))

	var n int
	require.NoError(t, c.QueryRow(ctx, "select $1::int * 2", 21).Scan(&n))
	assert.Equal(t, 42, n)

	// A pipelined batch: statements before the refused one run, the
	// refusal arrives in its place, and the rest of the batch is skipped
	// exactly as PostgreSQL skips after an error.
	b := &pgx.Batch{}
	b.Queue("select 1")
	b.Queue("select 2")
	br := c.SendBatch(ctx, b)
	for i := 1; i <= 2; i++ {
		var v int
		require.NoError(t, br.QueryRow().Scan(&v))
		assert.Equal(t, i, v)
	}
	require.NoError(t, br.Close())

	pc := c.PgConn()
	pl := pc.StartPipeline(ctx)
	pl.SendQueryParams("select 10", nil, nil, nil, nil)
	pl.SendQueryParams("drop table if exists zzz", nil, nil, nil, nil)
	pl.SendQueryParams("select 30", nil, nil, nil, nil)
	require.NoError(t, pl.Sync())
	r1, err := pl.GetResults()
	require.NoError(t, err)
	rr := r1.(*pgconn.ResultReader).Read()
	require.NoError(t, rr.Err)
	assert.Equal(t, "10", string(rr.Rows[0][0]))
	// The refusal arrives where PostgreSQL would report a failed Parse.
	r2, err := pl.GetResults()
	if err == nil {
		err = r2.(*pgconn.ResultReader).Read().Err
	}
	require.Error(t, err)
	assert.Equal(t, "42501", pgCode(err))
	_ = pl.Close()

	require.NoError(t, c.QueryRow(ctx, "select 7").Scan(&n))
	assert.Equal(t, 7, n)
}

func TestCancelRequest(t *testing.T) {
	h := newHarness(t, nil)
	cfg, err := pgx.ParseConfig(h.dsn(""))
	require.NoError(t, err)
	// Make pgx cancel through a CancelRequest rather than by closing the
	// connection (its default).
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, CancelRequestDelay: 0, DeadlineDelay: 5 * time.Second}
	}
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	require.NoError(t, err)
	defer c.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Exec(ctx, "select pg_sleep(10)")
	require.Error(t, err)
	assert.Less(t, time.Since(start), 1500*time.Millisecond)

	// pgx sends a CancelRequest; the session goes on.
	var n int
	require.NoError(t, c.QueryRow(context.Background(), "select 5").Scan(&n))
	assert.Equal(t, 5, n)
}

func TestCancelRequestThroughPgconn(t *testing.T) {
	h := newHarness(t, nil)
	c := connect(t, h)
	pc := c.PgConn()
	done := make(chan error, 1)
	go func() {
		_, err := pc.Exec(context.Background(), "select pg_sleep(10)").ReadAll()
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	require.NoError(t, pc.CancelRequest(context.Background()))
	select {
	case err := <-done:
		require.Error(t, err)
		assert.Equal(t, "57014", pgCode(err), "query_canceled")
	case <-time.After(3 * time.Second):
		t.Fatal("cancel did not end the query within 3s")
	}
	assert.Less(t, time.Since(start), time.Second)
	var n int
	require.NoError(t, c.QueryRow(context.Background(), "select 6").Scan(&n))
	assert.Equal(t, 6, n)
}

func TestCopyInAndOut(t *testing.T) {
	h := newHarness(t, nil)
	c := connect(t, h)
	ctx := context.Background()
	_, err := c.Exec(ctx, "create temp table cp(a int, b text)")
	require.NoError(t, err)
	rows := make([][]any, 1000)
	for i := range rows {
		rows[i] = []any{i, "row"}
	}
	n, err := c.CopyFrom(ctx, pgx.Identifier{"cp"}, []string{"a", "b"}, pgx.CopyFromRows(rows))
	require.NoError(t, err)
	assert.Equal(t, int64(1000), n)

	var buf bytes.Buffer
	tag, err := c.PgConn().CopyTo(ctx, &buf, "copy cp to stdout")
	require.NoError(t, err)
	assert.Equal(t, int64(1000), tag.RowsAffected())
	assert.Equal(t, 1000, strings.Count(buf.String(), "\n"))

	_, err = c.PgConn().CopyFrom(ctx, strings.NewReader("1\tx\nnot-a-number\ty\n"), "copy cp from stdin")
	require.Error(t, err)
	assert.Equal(t, "22P02", pgCode(err))
	var cnt int
	require.NoError(t, c.QueryRow(ctx, "select count(*) from cp").Scan(&cnt))
	assert.Equal(t, 1000, cnt)
}

func TestBinaryFormatAndParamsRecorded(t *testing.T) {
	h := newHarness(t, nil)
	c := connect(t, h)
	ctx := context.Background()
	var a int64
	var b string
	var ts time.Time
	require.NoError(t, c.QueryRow(ctx, "select $1::int8, $2::text, now()", int64(1234567890123), "hello").Scan(&a, &b, &ts))
	assert.Equal(t, int64(1234567890123), a)
	assert.Equal(t, "hello", b)
	res := h.resultEvents()
	last := res[len(res)-1].Result
	require.Len(t, last.Params, 2)
	assert.NotNil(t, last.Params[0])
	assert.Equal(t, []string{"int8", "text", "now"}, last.Columns)
	require.Len(t, last.Data, 1)
	assert.True(t, strings.HasPrefix(*last.Data[0][0], `\x`), "binary values recorded as hex: %s", *last.Data[0][0])
}

// TestPreparedStatementRecheckedAfterPolicyChange: a statement allowed at
// Parse and cached by the driver is decided again at its next Execute
// once the policy version changes.
func TestPreparedStatementRecheckedAfterPolicyChange(t *testing.T) {
	h := newHarness(t, nil)
	c := connect(t, h)
	ctx := context.Background()
	var n int
	require.NoError(t, c.QueryRow(ctx, "select 40 + $1::int", 2).Scan(&n))
	assert.Equal(t, 42, n)

	h.mu.Lock()
	h.decide = denyContaining("select 40")
	h.version++
	h.mu.Unlock()

	err := c.QueryRow(ctx, "select 40 + $1::int", 2).Scan(&n)
	require.Error(t, err, "the cached statement runs under the new policy")
	assert.Equal(t, "42501", pgCode(err))

	require.NoError(t, c.QueryRow(ctx, "select 1 + $1::int", 2).Scan(&n), "the session goes on")
	assert.Equal(t, 3, n)

	h.mu.Lock()
	h.decide = denyContaining("drop")
	h.version++
	h.mu.Unlock()
	require.NoError(t, c.QueryRow(ctx, "select 40 + $1::int", 2).Scan(&n), "allowed again after the next change")
	assert.Equal(t, 42, n)
}

// TestUnixSocketBackend: a target whose host is a directory reaches the
// backend over its Unix socket, and cancel requests go there too.
func TestUnixSocketBackend(t *testing.T) {
	const dir = "/var/run/postgresql"
	if _, err := os.Stat(dir + "/.s.PGSQL.5432"); err != nil {
		t.Skipf("no PostgreSQL socket in %s: %v", dir, err)
	}
	h := newHarness(t, nil)
	h.plugin.host, h.plugin.port = dir, "5432"
	cfg, err := pgx.ParseConfig(h.dsn(""))
	require.NoError(t, err)
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 5 * time.Second}
	}
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	require.NoError(t, err)
	defer c.Close(context.Background())
	var addr *string
	require.NoError(t, c.QueryRow(context.Background(), "select inet_client_addr()::text").Scan(&addr))
	assert.Nil(t, addr, "a Unix-socket client has no client address")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = c.Exec(ctx, "select pg_sleep(10)")
	require.Error(t, err)
	var n int
	require.NoError(t, c.QueryRow(context.Background(), "select 9").Scan(&n), "cancelled through the socket, the session goes on")
	assert.Equal(t, 9, n)
}

// TestHeldCommandNoticeApproveAndWithdraw: while the gateway holds a
// command (an approval wait), the client gets a NoticeResponse at once; an
// approval lets the command through unchanged; a CancelRequest withdraws
// it and the session goes on.
func TestHeldCommandNoticeApproveAndWithdraw(t *testing.T) {
	h := newHarness(t, nil)
	cfg, err := pgx.ParseConfig(h.dsn(""))
	require.NoError(t, err)
	notices := make(chan string, 4)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices <- n.Message }
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 5 * time.Second}
	}
	ctx := context.Background()
	c, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer c.Close(ctx)

	done := make(chan error, 1)
	var got string
	go func() { done <- c.QueryRow(ctx, "select 'needs approval'::text").Scan(&got) }()
	select {
	case n := <-notices:
		assert.Contains(t, n, "approval request A1 is pending")
	case <-time.After(5 * time.Second):
		t.Fatal("no notice while the command was held")
	}
	h.approvals <- struct{}{}
	require.NoError(t, <-done)
	assert.Equal(t, "needs approval", got)

	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = c.QueryRow(wctx, "select 'needs approval again'::text").Scan(&got)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.Equal(t, "42501", pgCode(err), "withdrawn: %v", err)
	assert.Contains(t, err.Error(), "withdrawn")
	var n int
	require.NoError(t, c.QueryRow(ctx, "select 4").Scan(&n), "the session goes on")
	assert.Equal(t, 4, n)
}
