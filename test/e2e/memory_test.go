package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/internal/pgtest"
	"github.com/sluicegw/sluice/protocol"
)

// TestLargeResultStreams: a 1,000,000-row SELECT (about 60 MB on the wire)
// streams through the refserver process, recording on with its default
// caps, while the process's resident memory grows by less than 64 MiB.
// The gateway runs as its own process so that /proc/<pid>/status measures
// it alone: VmRSS before the query, VmHWM (the peak) after it.
func TestLargeResultStreams(t *testing.T) {
	pgtest.Require(t)
	bin := buildRefserver(t)
	dir := t.TempDir()
	token := "tok-" + pgtest.RandomSecret(16)
	config, listen, recDir := refserverConfig(t, dir, token, "interval")
	s := startRefserver(t, bin, config, listen)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.dsn(token))
	require.NoError(t, err)
	defer c.Close(context.Background())
	var warm int
	require.NoError(t, c.QueryRow(ctx, "select count(*) from generate_series(1, 1000) g").Scan(&warm))
	require.Equal(t, 1000, warm)

	const query = "select g, repeat('x', 50) from generate_series(1,1000000) g"
	rssBefore := procStatusKB(t, s.pid(), "VmRSS")
	start := time.Now()
	rows, err := c.Query(ctx, query)
	require.NoError(t, err)
	var n int64
	for rows.Next() {
		// Read the row and keep nothing: the client streams too.
		vals := rows.RawValues()
		require.Len(t, vals, 2)
		n++
		if len(vals[1]) != 50 {
			t.Fatalf("row %d: second column has %d bytes", n, len(vals[1]))
		}
	}
	require.NoError(t, rows.Err())
	took := time.Since(start)
	hwmAfter := procStatusKB(t, s.pid(), "VmHWM")
	rssAfter := procStatusKB(t, s.pid(), "VmRSS")
	assert.Equal(t, int64(1_000_000), n)
	assert.Equal(t, "SELECT 1000000", rows.CommandTag().String())

	growthMiB := float64(hwmAfter-rssBefore) / 1024
	t.Logf("1,000,000 rows in %s; gateway VmRSS before %.1f MiB, VmHWM after %.1f MiB (peak growth %.1f MiB), VmRSS after %.1f MiB",
		took.Round(time.Millisecond), float64(rssBefore)/1024, float64(hwmAfter)/1024, growthMiB, float64(rssAfter)/1024)
	assert.Less(t, growthMiB, 64.0, "the gateway must stream a large result, not buffer it")

	require.NoError(t, c.Close(ctx))
	s.stop(t)

	// The recording holds the result's summary with the real row count,
	// and only the capped sample of its data (100 rows by default).
	recs := waitRecordings(t, recDir, 1)
	var found bool
	for _, e := range recs[0].entries {
		if e.Type == string(protocol.EventResult) && e.Result != nil && e.Result.Tag == "SELECT 1000000" {
			found = true
			assert.Equal(t, int64(1_000_000), e.Result.Rows)
			assert.True(t, e.Result.Truncated)
			assert.Len(t, e.Result.Data, 100)
		}
	}
	assert.True(t, found, "no result entry for the large query")
	assert.Contains(t, recs[0].commands(), query)
}
