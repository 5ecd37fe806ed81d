package e2e

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/internal/pgtest"
)

// TestPgbench runs pgbench through the gateway over TLS: initialisation
// (COPY of 100,000 rows, VACUUM, primary keys) into a scratch database,
// then TPC-B writes with four clients and select-only with prepared
// statements.
func TestPgbench(t *testing.T) {
	pgtest.Require(t)
	requireTool(t, "pgbench")
	admin := pgtest.AdminConn(t, "postgres")
	db := "sluice_e2e_bench_" + pgtest.RandomSecret(4)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := admin.Exec(ctx, "create database "+db)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		_, _ = admin.Exec(ctx, "drop database if exists "+db+" with (force)")
	})

	e := startGateway(t, 2*time.Second, pgTarget("pg"))
	host, port := e.hostPort(t, "pg")
	pgbench := func(t *testing.T, args ...string) cmdResult {
		t.Helper()
		cmd := exec.Command("pgbench", args...)
		cmd.Env = psqlEnv(t, host, port, db, e.token, "require")
		return run(t, cmd, 60*time.Second)
	}
	processed := regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	failed := regexp.MustCompile(`(?m)^number of failed transactions: (\d+) \(`)

	r := pgbench(t, "-i", "-s", "1", "-q")
	require.Equal(t, 0, r.code, "pgbench -i:\n%s\n%s", r.stdout, r.stderr)
	assert.Contains(t, r.stderr, "done in")
	var accounts int
	dbConn := pgtest.AdminConn(t, db)
	require.NoError(t, dbConn.QueryRow(ctx, "select count(*) from pgbench_accounts").Scan(&accounts))
	assert.Equal(t, 100000, accounts)

	for _, tc := range []struct {
		name string
		args []string
		mode string
	}{
		{"tpcb writes", []string{"-n", "-T", "3", "-c", "4"}, "query mode: simple"},
		{"select only prepared", []string{"-n", "-S", "-M", "prepared", "-T", "3", "-c", "4"}, "query mode: prepared"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := pgbench(t, tc.args...)
			require.Equal(t, 0, r.code, "pgbench:\n%s\n%s", r.stdout, r.stderr)
			assert.Contains(t, r.stdout, tc.mode)
			m := processed.FindStringSubmatch(r.stdout)
			require.NotNil(t, m, "no processed-transactions line:\n%s", r.stdout)
			n, _ := strconv.Atoi(m[1])
			assert.Positive(t, n)
			m = failed.FindStringSubmatch(r.stdout)
			require.NotNil(t, m, "no failed-transactions line:\n%s", r.stdout)
			assert.Equal(t, "0", m[1], "failed transactions:\n%s", r.stdout)
			t.Logf("pgbench %v: %d transactions", tc.args, n)
		})
	}

	// The TPC-B run wrote through the gateway: pgbench_history has a row
	// per transaction of it.
	var history int
	require.NoError(t, dbConn.QueryRow(ctx, "select count(*) from pgbench_history").Scan(&history))
	assert.Positive(t, history)
}
