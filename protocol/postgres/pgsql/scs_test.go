package pgsql

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// smuggleCases are texts that PostgreSQL splits differently depending on
// standard_conforming_strings. off and on are the statement kinds a server
// runs under each setting ("|"-joined), or "ERR" when it rejects the text.
// TestSmugglingAgainstServer checks every expectation on a real server.
var smuggleCases = []struct {
	sql     string
	off, on string
}{
	{`SELECT 'x\'' ; DROP TABLE t; -- '`, "SELECT|DROP", "SELECT"},
	{`SELECT 'a\'; DROP TABLE t; --'`, "SELECT", "SELECT|DROP"},
	{`SELECT '\'; DROP TABLE t; --'`, "SELECT", "SELECT|DROP"},
	{`SELECT 'a\\'; DROP TABLE t; --'`, "SELECT|DROP", "SELECT|DROP"},
	{`SELECT 'x\\\'; DROP TABLE t; --'`, "SELECT", "SELECT|DROP"},
	{`SELECT 'it''s\'; DROP TABLE t; --'`, "SELECT", "SELECT|DROP"},
	{`SELECT 'x\'; DELETE FROM t; SELECT '`, "SELECT", "ERR"},
	{`SELECT 'x\''; DELETE FROM t; SELECT 1`, "SELECT|DELETE|SELECT", "ERR"},
	{`SELECT 'x\'' /* ' */; DROP TABLE t; -- '`, "SELECT|DROP", "ERR"},
	{`SELECT N'x\''; DROP TABLE t; --'`, "SELECT|DROP", "SELECT"},
	{`SELECT E'\''; DROP TABLE t; --'`, "SELECT|DROP", "SELECT|DROP"},
	{`SELECT E'\\'; DROP TABLE t; --'`, "SELECT|DROP", "SELECT|DROP"},
	{`SELECT $$\$$; DROP TABLE t; -- $$`, "SELECT|DROP", "SELECT|DROP"},
	{`SELECT $x$\'$x$; DROP TABLE t; --'`, "SELECT|DROP", "SELECT|DROP"},
	{`SELECT $$'$$ || 'x\''; DROP TABLE t; -- '`, "SELECT|DROP", "SELECT"},
	{`SELECT 'x\'' || $$'; DELETE FROM t; --$$`, "SELECT", "SELECT|DELETE"},
	{"SELECT 'a'\n'\\'; DROP TABLE t; --'", "SELECT", "SELECT|DROP"},
	// PostgreSQL 15 continues a literal across a -- comment; the
	// PostgreSQL 17 parser here rejects that: fail closed.
	{"SELECT 'a' -- c\n'b\\'; DROP TABLE t; --'", "ERR", "ERR"},
	{"SELECT E'a'\n'\\'; DROP TABLE t; --'", "SELECT", "SELECT"},
	{`SELECT U&'\0041'; DROP TABLE t`, "ERR", "SELECT|DROP"},
	{`SELECT 1 AS "x\"; DROP TABLE t; -- "`, "SELECT|DROP", "SELECT|DROP"},
	{`SELECT "a\""; DROP TABLE t; -- "`, "SELECT", "SELECT"},
	{`SELECT 1 AS "x\"; DROP TABLE t; -- '`, "SELECT|DROP", "SELECT|DROP"},
	{`SELECT X'1\'; DROP TABLE t; --'`, "SELECT|DROP", "SELECT|DROP"},
	{`SELECT 'x\''::text; UPDATE t SET a = 1; SELECT '\''`, "SELECT|UPDATE|SELECT", "ERR"},
	{`SELECT 'x\\''; UPDATE t SET a = 1; --'`, "SELECT", "SELECT"},
	{`SELECT 'a\'b\'c'; DELETE FROM t`, "SELECT|DELETE", "ERR"},
	{`SELECT '\x27'; DELETE FROM t; -- '`, "SELECT|DELETE", "SELECT|DELETE"},
	{`SELECT '\047; DELETE FROM t; --'`, "SELECT", "SELECT"},
	{`SELECT '\u0027; DELETE FROM t; --'`, "SELECT", "SELECT"},
	{`/* \' */ SELECT 'x\''; DROP TABLE t; --'`, "SELECT|DROP", "SELECT"},
	{`SELECT 'x\' -- '; DROP TABLE t; -- '`, "SELECT|DROP", "SELECT"},
	{`SELECT 'a\'-- '; DROP TABLE t; SELECT 1`, "SELECT|DROP|SELECT", "SELECT"},
}

func classifyKinds(sql string, scs bool) string {
	o := DefaultOptions()
	o.StandardConformingStrings = scs
	s := Classify(sql, o)
	if s.ParseError != "" {
		return "ERR"
	}
	return strings.Join(kinds(s), "|")
}

func TestStandardConformingStrings(t *testing.T) {
	for _, tc := range smuggleCases {
		assert.Equal(t, tc.off, classifyKinds(tc.sql, false), "scs=off: %s", tc.sql)
		assert.Equal(t, tc.on, classifyKinds(tc.sql, true), "scs=on: %s", tc.sql)
	}
}

func TestBackslashQuote(t *testing.T) {
	off := Options{StandardConformingStrings: false, BackslashQuote: "off"}
	s := Classify(`SELECT 'x\'' ; DROP TABLE t; -- '`, off)
	assert.Contains(t, s.ParseError, `unsafe use of \'`, "the server rejects it too")
	assert.Empty(t, s.Statements)
	s = Classify(`SELECT 'x''' ; DROP TABLE t`, off)
	assert.Equal(t, []string{"SELECT", "DROP"}, kinds(s), "'' is fine")

	on := Options{StandardConformingStrings: true, BackslashQuote: "off"}
	assert.NotEmpty(t, Classify(`SELECT E'x\''`, on).ParseError, `\' in E'' with backslash_quote=off`)
	assert.Empty(t, Classify(`SELECT 'x\'`, on).ParseError, "plain literal: backslash is a character")
	for _, bq := range []string{"", "on", "safe_encoding", "true"} {
		o := Options{StandardConformingStrings: false, BackslashQuote: bq}
		assert.Equal(t, []string{"SELECT", "DROP"}, kinds(Classify(`SELECT 'x\'' ; DROP TABLE t; -- '`, o)), bq)
	}
}

// TestZeroOptions documents that the zero Options lexes like
// standard_conforming_strings=off.
func TestZeroOptions(t *testing.T) {
	assert.Equal(t, []string{"SELECT", "DROP"}, kinds(Classify(`SELECT 'x\'' ; DROP TABLE t; -- '`, Options{})))
	assert.Equal(t, []string{"SELECT"}, kinds(Classify(`SELECT 'x\'' ; DROP TABLE t; -- '`, DefaultOptions())))
}
