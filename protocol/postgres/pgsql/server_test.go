package pgsql

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

// The tests in this file check the classifier against a real PostgreSQL:
// for a text and a session setting, the statements the server actually
// runs (one result per statement, read with pgconn's MultiResultReader over
// the simple query protocol) must be the statements Classify reports. Each
// text runs in a transaction that is rolled back, against a scratch
// temporary table t.

const defaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&connect_timeout=5"

func serverConn(t *testing.T) *pgconn.PgConn {
	t.Helper()
	dsn := os.Getenv("SLUICE_PG_DSN")
	if dsn == "" {
		dsn = defaultDSN
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		msg := fmt.Sprintf("PostgreSQL is not reachable at %s (%v): start the machine's PostgreSQL (see DEVELOPERS.md) or set SLUICE_PG_DSN", dsn, err)
		if os.Getenv("SLUICE_REQUIRE_INTEGRATION") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// serverRun runs sql as one simple Query message with the given
// standard_conforming_strings and returns the first word of the command tag
// of every statement the server completed, and the error that stopped it.
func serverRun(t *testing.T, conn *pgconn.PgConn, sql string, scs bool, settings ...string) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	setting := "off"
	if scs {
		setting = "on"
	}
	// Set-up statements go one per message: the setting must be in force
	// when the test text's message arrives, since the server lexes a whole
	// message before running any of it.
	for _, q := range append([]string{
		"BEGIN",
		"SET LOCAL statement_timeout = '5s'",
		"CREATE TEMP TABLE t (a int) ON COMMIT DROP",
		"INSERT INTO t VALUES (1)",
		"SET LOCAL standard_conforming_strings = " + setting,
	}, settings...) {
		_, err := conn.Exec(ctx, q).ReadAll()
		require.NoError(t, err, q)
	}
	defer func() {
		_, err := conn.Exec(context.Background(), "ROLLBACK").ReadAll()
		require.NoError(t, err)
	}()

	var tags []string
	mrr := conn.Exec(ctx, sql)
	for mrr.NextResult() {
		rr := mrr.ResultReader()
		for rr.NextRow() {
		}
		tag, err := rr.Close()
		if err != nil {
			break
		}
		tags = append(tags, strings.Fields(tag.String() + " ?")[0])
	}
	return tags, mrr.Close()
}

// checkAgainstServer is the faithfulness rule: when Classify accepts a
// text, the server runs exactly the statements reported (kinds compared by
// first word, as command tags name them), or a prefix of them if one
// fails at run time. When Classify rejects a text (ParseError), anything
// the server would do is refused, which is safe.
func checkAgainstServer(t *testing.T, conn *pgconn.PgConn, sql string, scs bool) (accepted bool) {
	t.Helper()
	o := DefaultOptions()
	o.StandardConformingStrings = scs
	s := Classify(sql, o)
	tags, err := serverRun(t, conn, sql, scs)
	if s.ParseError != "" {
		if len(tags) > 0 {
			t.Logf("scs=%v fail closed: Classify rejects (%s), server ran %v: %q", scs, s.ParseError, tags, sql)
		}
		return false
	}
	var want []string
	for _, st := range s.Statements {
		want = append(want, strings.Fields(st.Kind)[0])
	}
	if err == nil {
		require.Equal(t, want, tags, "scs=%v: server ran other statements than classified: %q", scs, sql)
	} else {
		require.Less(t, len(tags), max(len(want), 1), "scs=%v: server ran more than classified (%v): %q", scs, err, sql)
		require.Equal(t, want[:len(tags)], append([]string{}, tags...), "scs=%v: server ran other statements than classified (%v): %q", scs, err, sql)
	}
	return true
}

func TestSmugglingAgainstServer(t *testing.T) {
	conn := serverConn(t)
	for _, tc := range smuggleCases {
		for _, scs := range []bool{false, true} {
			checkAgainstServer(t, conn, tc.sql, scs)
		}
	}
	// The headline case, spelled out.
	tags, err := serverRun(t, conn, `SELECT 'x\'' ; DROP TABLE t; -- '`, false)
	require.NoError(t, err)
	require.Equal(t, []string{"SELECT", "DROP"}, tags)
	tags, err = serverRun(t, conn, `SELECT 'x\'' ; DROP TABLE t; -- '`, true)
	require.NoError(t, err)
	require.Equal(t, []string{"SELECT"}, tags)
}

// TestBackslashQuoteAgainstServer: with backslash_quote = off the server
// refuses \' in a literal, and so does Classify.
func TestBackslashQuoteAgainstServer(t *testing.T) {
	conn := serverConn(t)
	for _, scs := range []bool{false, true} {
		sql := `SELECT E'x\''; DROP TABLE t; --'`
		if !scs {
			sql = `SELECT 'x\''; DROP TABLE t; --'`
		}
		tags, err := serverRun(t, conn, sql, scs, "SET LOCAL backslash_quote = off")
		require.Error(t, err)
		require.Empty(t, tags)
		s := Classify(sql, Options{StandardConformingStrings: scs, BackslashQuote: "off"})
		require.NotEmpty(t, s.ParseError)
	}
}

// TestGeneratedTextsAgainstServer compares Classify with the server on
// texts generated from the pieces that lexing ambiguity is made of.
func TestGeneratedTextsAgainstServer(t *testing.T) {
	conn := serverConn(t)
	n := 400
	if testing.Short() {
		n = 60
	}
	r := rand.New(rand.NewPCG(1, 2))
	accepted := map[bool]int{}
	for i := 0; i < n; i++ {
		sql := generateText(r)
		for _, scs := range []bool{false, true} {
			if checkAgainstServer(t, conn, sql, scs) {
				accepted[scs]++
			}
		}
	}
	t.Logf("of %d texts, Classify accepted %d with scs=off and %d with scs=on", n, accepted[false], accepted[true])
	require.Positive(t, accepted[false], "the generator must produce texts that parse")
}

var (
	genStatements = []string{"SELECT 1", "DELETE FROM t", "UPDATE t SET a = 2", "SELECT a FROM t", "INSERT INTO t VALUES (3)", "TRUNCATE t"}
	genPieces     = []string{`'`, `\`, `\'`, `''`, `\\`, `E'`, `N'`, `U&'`, `B'`, `X'`, `$$`, `$a$`, `"`, `--`, `/*`, `*/`, "\n", " ", ";", "x", "0", "\t", `\047`, `\x27`, `\u0027`}
)

// generateText builds statements separated by ';', many carrying
// literal-like junk, often balanced enough to parse one way or another.
func generateText(r *rand.Rand) string {
	var b strings.Builder
	for n := 1 + r.IntN(3); n > 0; n-- {
		switch r.IntN(3) {
		case 0:
			b.WriteString(genStatements[r.IntN(len(genStatements))])
		case 1:
			b.WriteString("SELECT " + literalish(r))
		default:
			b.WriteString("DELETE FROM t WHERE a::text = " + literalish(r))
		}
		b.WriteString(";")
		if r.IntN(4) == 0 {
			b.WriteString(" -- " + literalish(r) + "\n")
		}
	}
	return b.String()
}

// literalish returns a quoted-looking fragment with random insides.
func literalish(r *rand.Rand) string {
	open := []string{`'`, `E'`, `N'`, `$$`, `'`, `'`}[r.IntN(6)]
	closer := `'`
	if open == `$$` {
		closer = `$$`
	}
	var b strings.Builder
	b.WriteString(open)
	for n := r.IntN(6); n > 0; n-- {
		b.WriteString(genPieces[r.IntN(len(genPieces))])
	}
	b.WriteString(closer)
	return b.String()
}
