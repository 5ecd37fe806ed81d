package pgclassify_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/policy/pgclassify"
)

func TestClassify(t *testing.T) {
	assert.Contains(t, policy.SQLDialects(), "postgres", "importing the package registers it")

	s := pgclassify.Classify("SELECT a FROM t WHERE b = 1")
	assert.Empty(t, s.ParseError)
	assert.False(t, s.Writes)
	assert.Len(t, s.Statements, 1)

	// Read both ways: with standard_conforming_strings off the backslash
	// escapes the quote and a DROP follows.
	s = pgclassify.Classify(`SELECT 'x\'' ; DROP TABLE t; -- '`)
	assert.Empty(t, s.ParseError)
	assert.True(t, s.Writes)
	assert.True(t, s.DDL)
	var kinds []string
	for _, st := range s.Statements {
		kinds = append(kinds, st.Kind)
	}
	assert.Equal(t, []string{"SELECT", "DROP"}, kinds, "the SELECT of both readings once, and the DROP")

	// Parses only with it on: a parse error, which sql() turns into writes.
	s = pgclassify.Classify(`SELECT 'a\'`)
	assert.Contains(t, s.ParseError, "with standard_conforming_strings off")
	assert.True(t, policy.ClassifySQL("postgres", `SELECT 'a\'`).Writes)

	// E'' strings lex the same either way.
	s = pgclassify.Classify(`SELECT E'a\'b'`)
	assert.Empty(t, s.ParseError)
	assert.False(t, s.Writes)
	assert.Len(t, s.Statements, 1)

	s = pgclassify.Classify("SELEC 1")
	assert.NotEmpty(t, s.ParseError)
	assert.Empty(t, s.Statements)
}
