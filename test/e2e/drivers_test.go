package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"math/big"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	_ "github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/internal/pgtest"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/recording"
)

// scratchTable creates a table in the test database directly (not through
// the gateway), dropped when the test ends, so that what a client commits
// through the gateway can be checked from outside it.
func scratchTable(t *testing.T, admin *pgx.Conn, prefix string) string {
	t.Helper()
	name := prefix + "_" + pgtest.RandomSecret(4)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := admin.Exec(ctx, "create table "+name+" (id int primary key, note text)")
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		_, _ = admin.Exec(ctx, "drop table if exists "+name)
	})
	return name
}

func ids(t *testing.T, admin *pgx.Conn, table string) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	rows, err := admin.Query(ctx, "select id from "+table+" order by id")
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[int])
	require.NoError(t, err)
	return out
}

// TestLibPQ drives lib/pq (database/sql) through the gateway over TLS.
func TestLibPQ(t *testing.T) {
	pgtest.Require(t)
	admin := pgtest.AdminConn(t, "test")
	table := scratchTable(t, admin, "e2e_pq")
	e := startGateway(t, 2*time.Second, pgTarget("pg"))

	db, err := sql.Open("postgres", e.dsn(t, "pg", "test", "require"))
	require.NoError(t, err)
	// One connection: the prepared statement below is reused on it.
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()

	t.Run("query with parameters", func(t *testing.T) {
		var sum int
		var upper string
		var isNull bool
		require.NoError(t, db.QueryRowContext(ctx, "select $1::int + $2::int, upper($3::text), $4::text is null",
			40, 2, "o'hara; drop table x --", nil).Scan(&sum, &upper, &isNull))
		assert.Equal(t, 42, sum)
		assert.Equal(t, "O'HARA; DROP TABLE X --", upper)
		assert.True(t, isNull)
	})

	t.Run("transaction commit", func(t *testing.T) {
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		_, err = tx.ExecContext(ctx, "insert into "+table+" values ($1, $2)", 1, "committed")
		require.NoError(t, err)
		assert.Empty(t, ids(t, admin, table), "uncommitted rows are invisible outside the transaction")
		require.NoError(t, tx.Commit())
		assert.Equal(t, []int{1}, ids(t, admin, table))
	})

	t.Run("transaction rollback", func(t *testing.T) {
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		_, err = tx.ExecContext(ctx, "insert into "+table+" values ($1, $2)", 2, "rolled back")
		require.NoError(t, err)
		var n int
		require.NoError(t, tx.QueryRowContext(ctx, "select count(*) from "+table).Scan(&n))
		assert.Equal(t, 2, n, "the transaction sees its own insert")
		require.NoError(t, tx.Rollback())
		assert.Equal(t, []int{1}, ids(t, admin, table))
	})

	const prepared = "select $1::int * 2, $2::text || '!'"
	t.Run("prepared statement reuse", func(t *testing.T) {
		stmt, err := db.PrepareContext(ctx, prepared)
		require.NoError(t, err)
		defer stmt.Close()
		for i := range 20 {
			var doubled int
			var s string
			require.NoError(t, stmt.QueryRowContext(ctx, i, "run").Scan(&doubled, &s))
			assert.Equal(t, 2*i, doubled)
			assert.Equal(t, "run!", s)
		}
	})
	require.NoError(t, db.Close())

	// The recording shows the prepared statement parsed (and checked)
	// once and executed 20 times, with its parameters.
	recs := waitRecordings(t, e.recDir, 1)
	r := recs[0]
	var seq uint64
	parses := 0
	for _, en := range r.entries {
		if en.Type == recording.TypeCommand && en.Command.Text == prepared {
			parses++
			seq = en.Seq
			assert.Equal(t, "parse", en.Command.Attrs["extended"])
		}
	}
	require.Equal(t, 1, parses, "lib/pq prepares the statement once")
	var executions int
	for _, en := range r.entries {
		if en.Type == string(protocol.EventResult) && en.CommandSeq == seq {
			executions++
			require.NotNil(t, en.Result)
			assert.Equal(t, int64(1), en.Result.Rows)
			require.Len(t, en.Result.Params, 2)
		}
	}
	assert.Equal(t, 20, executions)
	assert.Contains(t, r.commands(), "BEGIN READ WRITE")
	assert.Contains(t, r.commands(), "COMMIT")
	assert.Contains(t, r.commands(), "ROLLBACK")
}

// TestPgx drives pgx through the gateway over TLS: the simple and extended
// protocols, a pipelined batch, binary-format values and a 10 MB bytea.
func TestPgx(t *testing.T) {
	pgtest.Require(t)
	e := startGateway(t, 2*time.Second, pgTarget("pg"))
	c := e.pgx(t, "pg", "test")
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()

	t.Run("simple protocol", func(t *testing.T) {
		_, err := c.Exec(ctx, "create temp table kv(k text primary key, v int); insert into kv values ('a', 1), ('b', 2)",
			pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, err)
		var n, sum int
		var quoted string
		require.NoError(t, c.QueryRow(ctx, "select count(*), sum(v), $1::text from kv", pgx.QueryExecModeSimpleProtocol,
			"it's").Scan(&n, &sum, &quoted))
		assert.Equal(t, 2, n)
		assert.Equal(t, 3, sum)
		assert.Equal(t, "it's", quoted)
	})

	t.Run("extended protocol", func(t *testing.T) {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe,
			pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec} {
			for i := range 3 {
				var v int
				var k string
				require.NoError(t, c.QueryRow(ctx, "select k, v * $1::int from kv where k = $2", mode, 10+i, "b").Scan(&k, &v), "mode %v", mode)
				assert.Equal(t, "b", k)
				assert.Equal(t, 2*(10+i), v)
			}
		}
		// An error inside the extended protocol, then the session goes on.
		_, err := c.Exec(ctx, "select 1/$1::int", 0)
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe), "want a PostgreSQL error, got %v", err)
		assert.Equal(t, "22012", pe.Code)
		var one int
		require.NoError(t, c.QueryRow(ctx, "select $1::int", 1).Scan(&one))
		assert.Equal(t, 1, one)
	})

	t.Run("pipelined batch", func(t *testing.T) {
		b := &pgx.Batch{}
		b.Queue("insert into kv values ($1, $2)", "c", 3)
		b.Queue("update kv set v = v + 100 where k = $1", "a")
		b.Queue("select k, v from kv order by k")
		b.Queue("select count(*) from kv")
		br := c.SendBatch(ctx, b)
		ct, err := br.Exec()
		require.NoError(t, err)
		assert.Equal(t, "INSERT 0 1", ct.String())
		ct, err = br.Exec()
		require.NoError(t, err)
		assert.Equal(t, "UPDATE 1", ct.String())
		rows, err := br.Query()
		require.NoError(t, err)
		type kv struct {
			K string
			V int
		}
		got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[kv])
		require.NoError(t, err)
		assert.Equal(t, []kv{{"a", 101}, {"b", 2}, {"c", 3}}, got)
		var n int
		require.NoError(t, br.QueryRow().Scan(&n))
		assert.Equal(t, 3, n)
		require.NoError(t, br.Close())

		// A batch whose second statement fails: PostgreSQL skips the rest
		// up to the Sync, and the connection is usable afterwards.
		b = &pgx.Batch{}
		b.Queue("select 1")
		b.Queue("select 1/0")
		b.Queue("select 3")
		br = c.SendBatch(ctx, b)
		_, err = br.Exec()
		require.NoError(t, err)
		_, err = br.Exec()
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe), "want division by zero, got %v", err)
		assert.Equal(t, "22012", pe.Code)
		_ = br.Close()
		require.NoError(t, c.QueryRow(ctx, "select count(*) from kv").Scan(&n))
		assert.Equal(t, 3, n)
	})

	t.Run("binary format", func(t *testing.T) {
		ts := time.Date(2024, 2, 29, 23, 59, 58, 123456000, time.UTC)
		num := pgtype.Numeric{Int: big.NewInt(-12345678901234567), Exp: -9, Valid: true}
		blob := []byte{0, 1, 2, 0xfe, 0xff, '\\', 'x'}
		rows, err := c.Query(ctx, "select $1::int8, $2::numeric, $3::timestamptz, $4::bytea, $5::int8[], $6::text[], $7::numeric[]",
			int64(-9007199254740993), num, ts, blob, []int64{1, -2, 1 << 62}, []string{"a", "", "c,d", `"q"`}, []float64{1.5, -0.25})
		require.NoError(t, err)
		for i, fd := range rows.FieldDescriptions() {
			assert.Equal(t, int16(1), fd.Format, "column %d (%s) must come back in binary", i, fd.Name)
		}
		require.True(t, rows.Next(), "one row: %v", rows.Err())
		var (
			i8     int64
			gotNum pgtype.Numeric
			gotTS  time.Time
			gotB   []byte
			arr    []int64
			strs   []string
			nums   []float64
		)
		require.NoError(t, rows.Scan(&i8, &gotNum, &gotTS, &gotB, &arr, &strs, &nums))
		assert.False(t, rows.Next())
		require.NoError(t, rows.Err())
		assert.Equal(t, int64(-9007199254740993), i8)
		want, _ := num.Value()
		got, _ := gotNum.Value()
		assert.Equal(t, want, got)
		assert.True(t, ts.Equal(gotTS), "timestamptz %v != %v", gotTS, ts)
		assert.Equal(t, blob, gotB)
		assert.Equal(t, []int64{1, -2, 1 << 62}, arr)
		assert.Equal(t, []string{"a", "", "c,d", `"q"`}, strs)
		assert.Equal(t, []float64{1.5, -0.25}, nums)
	})

	t.Run("10 MB bytea round trip", func(t *testing.T) {
		big := make([]byte, 10<<20)
		_, _ = rand.Read(big)
		sum := sha256.Sum256(big)
		var back []byte
		var n int
		var serverSum string
		require.NoError(t, c.QueryRow(ctx, "select $1::bytea, length($1::bytea), encode(sha256($1::bytea), 'hex')", big).
			Scan(&back, &n, &serverSum))
		assert.Equal(t, len(big), n)
		assert.Equal(t, hex.EncodeToString(sum[:]), serverSum, "the server received the value intact")
		assert.True(t, bytes.Equal(big, back), "the client received the value intact")
	})

	require.NoError(t, c.Close(ctx))
	r := waitRecordings(t, e.recDir, 1)[0]
	fi, err := os.Stat(r.path)
	require.NoError(t, err)
	assert.Less(t, fi.Size(), int64(2<<20), "the recording keeps at most its caps of a 10 MB value (sent twice and returned)")
	assert.Contains(t, r.commands(), "select 1/0")
}
