package postgres

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// BenchmarkRoundTrip measures one prepared single-row SELECT per
// iteration, directly against PostgreSQL and through the relay (with the
// in-test session: no policy engine, in-memory events), in the same run.
// The ratio of the two ns/op is the relay's cost on this machine.
func BenchmarkRoundTrip(b *testing.B) {
	h := newHarness(b, nil)
	host, port, _ := net.SplitHostPort(backendAddr())
	targets := map[string]string{
		"direct": fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres sslmode=disable", host, port),
		"relay":  h.dsn(""),
	}
	for _, name := range []string{"direct", "relay"} {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
			b.Run(name+"/"+mode.String(), func(b *testing.B) {
				ctx := context.Background()
				c, err := pgx.Connect(ctx, targets[name])
				require.NoError(b, err)
				defer c.Close(ctx)
				var n int
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := c.QueryRow(ctx, "select $1::int", mode, i).Scan(&n); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				h.mu.Lock()
				h.events = h.events[:0] // keep memory flat across runs
				h.mu.Unlock()
			})
		}
	}
}
