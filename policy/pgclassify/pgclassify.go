// Package pgclassify gives policies' sql() function PostgreSQL's own
// parser: importing it registers protocol/postgres/pgsql as the classifier
// of the "postgres" dialect (policy.RegisterSQLClassifier), as importing a
// database/sql driver registers it.
//
//	import _ "github.com/sluicegw/sluice/policy/pgclassify"
//
// Without it, sql() classifies nothing: every text gets a parse_error, with
// writes and ddl set (fail closed).
//
// The SQL that sql() sees is not a PostgreSQL session's: it is an argument
// of an MCP tool or a field of an HTTP body, which some server will run on
// a connection whose settings the gateway cannot see. The one setting that
// changes how PostgreSQL splits text into statements is
// standard_conforming_strings (with it off, a backslash escapes a quote, so
// SELECT 'x\” ; DROP TABLE t; -- ' is a SELECT and a DROP). Text with a
// backslash is therefore classified both ways: if either way fails to
// parse, the result is a parse error; otherwise it holds the statements of
// both readings and the flags of either. Text without a backslash lexes
// the same under both.
package pgclassify

import (
	"reflect"
	"strings"

	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/protocol/postgres/pgsql"
)

// cacheSize bounds the classifications kept: rules evaluated for one
// command often classify the same argument several times.
const cacheSize = 1024

var classifier = pgsql.NewClassifier(cacheSize)

func init() {
	policy.RegisterSQLClassifier("postgres", Classify)
}

// Classify is the registered classifier: text classified under both
// settings of standard_conforming_strings (see the package doc).
func Classify(text string) *protocol.SQL {
	on := pgsql.DefaultOptions()
	s := classifier.Classify(text, on)
	if !strings.Contains(text, `\`) || s.ParseError != "" {
		return s
	}
	off := on
	off.StandardConformingStrings = false
	t := classifier.Classify(text, off)
	if t.ParseError != "" {
		return &protocol.SQL{Statements: []protocol.Statement{},
			ParseError: "with standard_conforming_strings off (a server setting the gateway cannot see): " + t.ParseError}
	}
	for _, st := range t.Statements {
		if !containsStatement(s.Statements, st) {
			s.Statements = append(s.Statements, st)
		}
	}
	s.Writes = s.Writes || t.Writes
	s.DDL = s.DDL || t.DDL
	return s
}

func containsStatement(list []protocol.Statement, st protocol.Statement) bool {
	for _, x := range list {
		if reflect.DeepEqual(x, st) {
			return true
		}
	}
	return false
}
