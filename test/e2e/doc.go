// Package e2e holds sluice's end-to-end tests: real clients (psql,
// pgbench, lib/pq, pgx) driven through the real gateway (in process, or the
// refserver binary where a separate process is needed) to the machine's
// PostgreSQL and to throwaway SCRAM-only clusters. The package has no
// non-test code; run it with
//
//	go test -race ./test/e2e/
//
// A test whose PostgreSQL is unreachable skips with a message saying how to
// start it, or fails when SLUICE_REQUIRE_INTEGRATION=1 (as CI sets).
package e2e
