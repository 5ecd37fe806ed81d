package pgstore_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/approval/approvaltest"
	"github.com/sluicegw/sluice/approval/pgstore"
	"github.com/sluicegw/sluice/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scratch creates an empty database on the machine's PostgreSQL, dropped
// when the test ends, and returns its connection string.
func scratch(t *testing.T) string {
	t.Helper()
	pgtest.Require(t)
	admin := pgtest.AdminConn(t, "postgres")
	name := "sluice_approval_test_" + strings.ToLower(pgtest.RandomSecret(6))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		assert.NoError(t, err)
	})
	host, port, _ := net.SplitHostPort(pgtest.Addr())
	return fmt.Sprintf("host=%s port=%s user=postgres dbname=%s sslmode=disable", host, port, name)
}

func open(t *testing.T, conn string) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), pgstore.Config{ConnString: conn, Logger: approvaltest.Logger(t)})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	return s
}

func TestConformance(t *testing.T) {
	pgtest.Require(t)
	approvaltest.Run(t, func(t *testing.T) approvaltest.Open {
		conn := scratch(t)
		return func(t *testing.T) approval.Store { return open(t, conn) }
	})
}

func TestSchema(t *testing.T) {
	conn := scratch(t)
	open(t, conn)
	open(t, conn) // a second gateway finds the schema in place
	ctx := context.Background()
	c, err := pgx.Connect(ctx, conn)
	require.NoError(t, err)
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	assert.Equal(t, []string{"sluice_approval_requests", "sluice_approval_schema"}, names)
	var v int
	require.NoError(t, c.QueryRow(ctx, "SELECT version FROM sluice_approval_schema").Scan(&v))
	assert.Equal(t, 1, v)

	_, err = c.Exec(ctx, "UPDATE sluice_approval_schema SET version = 99")
	require.NoError(t, err)
	_, err = pgstore.Open(ctx, pgstore.Config{ConnString: conn})
	assert.ErrorContains(t, err, "newer than this sluice knows")
}

// TestListenReconnects kills the store's LISTEN connection; the store
// reconnects and tells its watchers to re-check everything, so a waiter
// still learns of a decision made meanwhile.
func TestListenReconnects(t *testing.T) {
	conn := scratch(t)
	a, b := open(t, conn), open(t, conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ba, err := approval.New(ctx, approval.Config{Store: a, GatewayID: "gw-a", Logger: approvaltest.Logger(t)})
	require.NoError(t, err)
	defer ba.Close()
	bb, err := approval.New(ctx, approval.Config{Store: b, GatewayID: "gw-b", Logger: approvaltest.Logger(t)})
	require.NoError(t, err)
	defer bb.Close()
	p, err := ba.Request(ctx, approvaltest.NewRequest())
	require.NoError(t, err)
	done := make(chan approval.Outcome, 1)
	go func() {
		out, _ := p.Wait(ctx)
		done <- out
	}()
	require.Eventually(t, func() bool { return ba.Waiting() == 1 }, 5*time.Second, time.Millisecond)

	admin := pgtest.AdminConn(t, "postgres")
	var dbname string
	for _, kv := range strings.Fields(conn) {
		if v, ok := strings.CutPrefix(kv, "dbname="); ok {
			dbname = v
		}
	}
	var killed int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND query ILIKE 'LISTEN%'`, dbname).Scan(&killed))
	require.Equal(t, 2, killed, "both stores' LISTEN connections")
	_, err = bb.Approve(ctx, p.ID(), approvaltest.Bob, "")
	require.NoError(t, err)
	select {
	case out := <-done:
		assert.True(t, out.Approved())
	case <-time.After(15 * time.Second):
		t.Fatal("the waiter was not woken after the LISTEN connection came back")
	}
}
