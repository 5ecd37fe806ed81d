package pgsql

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/sluicegw/sluice/protocol"
)

// FuzzClassify: Classify never panics, its output is well-formed and
// deterministic, the cache returns what Classify does, and
// standard_conforming_strings changes nothing for a text without a
// backslash or a U& literal (the only places the setting matters).
func FuzzClassify(f *testing.F) {
	for _, tc := range hiddenCases {
		f.Add(tc.sql)
	}
	for _, sql := range harmlessCases {
		f.Add(sql)
	}
	for _, tc := range smuggleCases {
		f.Add(tc.sql)
	}
	f.Add("SELECT 'a'\n'b'")
	f.Add("SELECT $a$ $b$ $a$")
	c := NewClassifier(64)
	f.Fuzz(func(t *testing.T, sql string) {
		for _, scs := range []bool{false, true} {
			o := DefaultOptions()
			o.StandardConformingStrings = scs
			s := Classify(sql, o)
			if s.ParseError != "" && len(s.Statements) > 0 {
				t.Fatalf("statements with a parse error: %+v", s)
			}
			if s.DDL && !s.Writes {
				t.Fatalf("DDL without writes: %+v", s)
			}
			for _, st := range s.Statements {
				if st.Kind == "" || strings.ToUpper(st.Kind) != st.Kind {
					t.Fatalf("bad kind %q", st.Kind)
				}
			}
			if again := c.Classify(sql, o); !sameSQL(s, again) {
				t.Fatalf("cached result differs:\n%+v\n%+v", s, again)
			}
		}
		upper := strings.ToUpper(sql)
		if !strings.Contains(sql, `\`) && !strings.Contains(upper, "U&") {
			on := Classify(sql, DefaultOptions())
			off := Classify(sql, Options{BackslashQuote: "safe_encoding"})
			if !sameSQL(on, off) {
				t.Fatalf("standard_conforming_strings changed a text without backslashes:\non:  %+v\noff: %+v", on, off)
			}
		}
	})
}

func sameSQL(a, b *protocol.SQL) bool { return reflect.DeepEqual(a, b) }

// FuzzAnalyze: with the server's default lexing, Analyze accepts exactly
// the texts pg_query parses and never reports fewer statements than
// pg_query finds (a PREPARE adds its body, so it may report more): a
// statement the classifier missed would be a statement policy never saw.
// Its prepared-statement effects point at statements that exist. Under
// standard_conforming_strings off it must not panic either.
func FuzzAnalyze(f *testing.F) {
	for _, tc := range hiddenCases {
		f.Add(tc.sql)
	}
	for _, sql := range []string{
		"PREPARE p AS DELETE FROM t; EXECUTE p; DEALLOCATE p",
		"PREPARE q(int) AS SELECT $1; DISCARD ALL",
		"EXPLAIN ANALYZE DELETE FROM t",
		"CREATE RULE r AS ON SELECT TO t DO INSTEAD DELETE FROM u",
		"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
		"SELECT 'a\\'; DROP TABLE t; --'",
		"COPY t TO STDOUT (FORMAT csv)",
		strings.Repeat("(", 200) + "1" + strings.Repeat(")", 200),
	} {
		f.Add(sql)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		off := Analyze(sql, Options{BackslashQuote: "safe_encoding"})
		if off.SQL.ParseError != "" && len(off.SQL.Statements) > 0 {
			t.Fatalf("standard_conforming_strings off: statements with a parse error: %+v", off.SQL)
		}
		if strings.IndexByte(sql, 0) >= 0 || !utf8.ValidString(sql) {
			// A NUL is refused before parsing (pg_query would read up to
			// it); pg_query_go cannot return invalid UTF-8 in its
			// protobuf tree, and PostgreSQL refuses such a text anyway.
			return
		}
		an := Analyze(sql, DefaultOptions())
		tree, perr := pg_query.Parse(sql)
		switch {
		case perr != nil && an.SQL.ParseError == "":
			t.Fatalf("pg_query refuses %q (%v) but it was classified: %+v", sql, perr, an.SQL)
		case perr == nil && an.SQL.ParseError != "":
			t.Fatalf("pg_query parses %q into %d statements but classifying it failed: %s", sql, len(tree.Stmts), an.SQL.ParseError)
		case perr == nil && len(an.SQL.Statements) < len(tree.Stmts):
			t.Fatalf("%q: pg_query finds %d statements, the classifier %d: %+v", sql, len(tree.Stmts), len(an.SQL.Statements), an.SQL)
		}
		for _, e := range an.Effects {
			if e.Stmt < 0 || e.Stmt >= len(an.SQL.Statements) {
				t.Fatalf("%q: effect %+v points at statement %d of %d", sql, e, e.Stmt, len(an.SQL.Statements))
			}
			if (e.Op == EffectPrepare) != (e.Body != nil) {
				t.Fatalf("%q: effect %+v: a body exactly for PREPARE", sql, e)
			}
		}
	})
}

// FuzzParseCopyOut: ParseCopyOut never panics; what it accepts is a COPY
// of a table or of a query, with a format's delimiters set, whose
// DescribeSQL is one statement (for a table, built by this package: one
// SELECT).
func FuzzParseCopyOut(f *testing.F) {
	for _, sql := range []string{
		"COPY users TO STDOUT",
		`copy app."We""ird" (id, "E mail") to stdout with csv header`,
		"copy t to stdout (format csv, delimiter ';', null 'NULL', quote '''', escape '\\')",
		"copy t to stdout (format binary)",
		"copy t to stdout binary",
		"select 1; copy (select a from t where b > 1) to stdout (header false)",
		"copy (delete from t returning *) to stdout",
		"copy db.s.t to stdout with (format text, null '')",
		"copy t from stdin",
	} {
		f.Add(sql, uint8(0))
	}
	f.Fuzz(func(t *testing.T, sql string, nth uint8) {
		c, err := ParseCopyOut(sql, int(nth%4))
		if err != nil {
			if c != nil {
				t.Fatalf("%q: a result with an error: %v", sql, err)
			}
			return
		}
		if (c.Relation == "") == (c.Query == "") {
			t.Fatalf("%q: want a table or a query, got %+v", sql, c)
		}
		if c.Format != CopyBinary && c.Delimiter == 0 {
			t.Fatalf("%q: no delimiter: %+v", sql, c)
		}
		if c.Format == CopyCSV && (c.Quote == 0 || c.Escape == 0) {
			t.Fatalf("%q: CSV without quote or escape: %+v", sql, c)
		}
		d := c.DescribeSQL()
		tree, err := pg_query.Parse(d)
		if c.Relation != "" {
			if err != nil || len(tree.Stmts) != 1 || tree.Stmts[0].GetStmt().GetSelectStmt() == nil {
				t.Fatalf("%q: DescribeSQL %q is not one SELECT: %v", sql, d, err)
			}
		} else if err == nil && len(tree.Stmts) != 1 {
			t.Fatalf("%q: DescribeSQL %q holds %d statements", sql, d, len(tree.Stmts))
		}
	})
}
