package pgsql

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClassifierCaches(t *testing.T) {
	c := NewClassifier(2)
	o := DefaultOptions()
	a := c.Classify("DELETE FROM t WHERE a = 1", o)
	require.Equal(t, 1, c.Len())
	assert.Equal(t, Classify("DELETE FROM t WHERE a = 1", o), a)

	// Callers cannot corrupt the cache.
	a.Statements[0].Kind = "SELECT"
	a.Statements[0].Tables[0] = "x"
	a.Writes = false
	b := c.Classify("DELETE FROM t WHERE a = 1", o)
	assert.Equal(t, "DELETE", b.Statements[0].Kind)
	assert.Equal(t, []string{"t"}, b.Statements[0].Tables)
	assert.True(t, b.Writes)
	r := c.Analyze("PREPARE p AS DELETE FROM t", o)
	r.Effects[0].Body.Statements[0].Kind = "SELECT"
	assert.Equal(t, "DELETE", c.Analyze("PREPARE p AS DELETE FROM t", o).Effects[0].Body.Statements[0].Kind)

	// Bounded, least recently used out.
	c.Classify("SELECT 1", o)
	c.Classify("SELECT 2", o)
	assert.Equal(t, 2, c.Len())
}

func TestClassifierKeysBySettings(t *testing.T) {
	c := NewClassifier(10)
	sql := `SELECT 'x\'' ; DROP TABLE t; -- '`
	on := c.Classify(sql, DefaultOptions())
	off := c.Classify(sql, Options{StandardConformingStrings: false})
	bqOff := c.Classify(sql, Options{StandardConformingStrings: false, BackslashQuote: "off"})
	assert.Equal(t, []string{"SELECT"}, kinds(on))
	assert.Equal(t, []string{"SELECT", "DROP"}, kinds(off))
	assert.NotEmpty(t, bqOff.ParseError)
	assert.Equal(t, []string{"SELECT"}, kinds(c.Classify(sql, DefaultOptions())))
	assert.Equal(t, []string{"SELECT", "DROP"}, kinds(c.Classify(sql, Options{})))
	assert.NotEmpty(t, c.Classify(sql, Options{StandardConformingStrings: true, ClientEncoding: "SJIS"}).ParseError)
	// "on" and "safe_encoding" lex alike and share an entry.
	n := c.Len()
	c.Classify(sql, Options{StandardConformingStrings: true, BackslashQuote: "on"})
	assert.Equal(t, n, c.Len())
}

func TestClassifierLongTextsBypassCache(t *testing.T) {
	c := NewClassifier(10)
	c.MaxTextLen = 10
	s := c.Classify("SELECT 1 FROM long_table_name", DefaultOptions())
	assert.Equal(t, []string{"SELECT"}, kinds(s))
	assert.Equal(t, 0, c.Len())
}

func TestClassifierConcurrent(t *testing.T) {
	c := NewClassifier(16)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				sql := fmt.Sprintf("UPDATE t%d SET a = 1 WHERE b = %d", i%32, i)
				s := c.Classify(sql, DefaultOptions())
				if !assert.Equal(t, []string{"UPDATE"}, kinds(s)) {
					return
				}
				s.Statements[0].Tables[0] = "mine"
			}
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, c.Len(), 16)
}

func TestNormalizeNumbers(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 48213;", "SELECT abalance FROM pgbench_accounts WHERE aid = 1;", true},
		{"UPDATE t1 SET v = v + 15 WHERE id IN (1, 22, 333, 0, 000)", "UPDATE t1 SET v = v + 1 WHERE id IN (1, 1, 1, 0, 0)", true},
		{"select 1.5, 1e5, 0x1F, .5, a1, 1abc, x[3]", "select 1.5, 1e5, 0x1F, .5, a1, 1abc, x[1]", true},
		{"select a from t", "", false},
		{"select 1 where x = 'a'", "", false},
		{"select $1 + 2", "", false},
		{"select \"t1\".a, 2", "", false},
		{"select 2 -- 3", "", false},
		{"select /* 3 */ 2", "", false},
		{"select e'\\x41', 2", "", false},
		{"select 'é', 2", "", false},
	} {
		got, ok := normalizeNumbers(tt.in)
		assert.Equal(t, tt.ok, ok, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
}

// TestClassifierSharesNumberLiterals: texts differing only in integer
// literals share one cache entry and classify exactly as parsed afresh;
// texts that differ in anything else do not share.
func TestClassifierSharesNumberLiterals(t *testing.T) {
	c := NewClassifier(16)
	opts := DefaultOptions()
	for i := range 50 {
		sql := fmt.Sprintf("SELECT abalance FROM pgbench_accounts WHERE aid = %d", (i+1)*7919)
		assert.Equal(t, Analyze(sql, opts), c.Analyze(sql, opts), sql)
	}
	assert.Equal(t, 1, c.Len())
	for _, sql := range []string{
		"DELETE FROM t WHERE id = 5", "DELETE FROM t WHERE id = 6", "DELETE FROM t", "SELECT pg_sleep(10)",
		"SELECT 1 2", "SELECT 3 4",
	} {
		assert.Equal(t, Analyze(sql, opts), c.Analyze(sql, opts), sql)
	}
	assert.Equal(t, 4, c.Len(), "the two DELETEs with a WHERE share; parse errors are not shared")

	// A number can be a boolean: EXPLAIN (ANALYZE 1) runs its statement,
	// EXPLAIN (ANALYZE 0) does not. Whichever is cached first, the other
	// must not take its classification (found by FuzzClassify).
	for _, order := range [][]string{
		{"EXPLAIN (ANALYZE 0) DELETE FROM t", "EXPLAIN (ANALYZE 1) DELETE FROM t", "EXPLAIN (ANALYZE 00) DELETE FROM t", "EXPLAIN (ANALYZE 2) DELETE FROM t"},
		{"EXPLAIN (ANALYZE 1) DELETE FROM t", "EXPLAIN (ANALYZE 0) DELETE FROM t", "EXPLAIN (ANALYZE 7) DELETE FROM t", "EXPLAIN (ANALYZE 000) DELETE FROM t"},
	} {
		c := NewClassifier(16)
		for _, sql := range order {
			assert.Equal(t, Analyze(sql, opts), c.Analyze(sql, opts), sql)
		}
	}
	assert.Equal(t, []string{"EXPLAIN", "DELETE"}, kinds(c.Classify("EXPLAIN (ANALYZE 1) DELETE FROM t", opts)))
}

// normalizeNumbers is the cache key's text part: sql with its plain
// integer literals replaced by 0 or 1, and whether any was.
func normalizeNumbers(sql string) (string, bool) {
	if !numbersShareable(sql) {
		return "", false
	}
	out, changed := appendNormalized(nil, sql)
	if !changed {
		return "", false
	}
	return string(out), true
}
