package pgsql

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCopyOut(t *testing.T) {
	tests := []struct {
		sql  string
		nth  int
		want CopyOut
	}{
		{sql: "COPY users TO STDOUT", want: CopyOut{Relation: `"users"`, Delimiter: '\t', Null: `\N`, Quote: '"'}},
		{sql: "copy app.Users (id, \"E mail\") to stdout with csv header", want: CopyOut{Relation: `"app"."users"`, Qualified: true,
			Columns: []string{"id", "E mail"}, Format: CopyCSV, Delimiter: ',', Null: "", Header: true, Quote: '"', Escape: '"'}},
		{sql: "copy t to stdout (format csv, delimiter ';', null 'NULL', quote '''', escape '\\')", want: CopyOut{Relation: `"t"`,
			Format: CopyCSV, Delimiter: ';', Null: "NULL", Quote: '\'', Escape: '\\'}},
		{sql: "copy t to stdout (format binary)", want: CopyOut{Relation: `"t"`, Format: CopyBinary, Delimiter: '\t', Null: `\N`, Quote: '"'}},
		{sql: "copy t to stdout binary", want: CopyOut{Relation: `"t"`, Format: CopyBinary, Delimiter: '\t', Null: `\N`, Quote: '"'}},
		{sql: "select 1; copy (select a from t where b > 1) to stdout (header false)", nth: 1,
			want: CopyOut{Query: "SELECT a FROM t WHERE b > 1", Delimiter: '\t', Null: `\N`, Quote: '"'}},
	}
	for _, tt := range tests {
		got, err := ParseCopyOut(tt.sql, tt.nth)
		require.NoError(t, err, tt.sql)
		assert.Equal(t, tt.want, *got, tt.sql)
	}
	assert.Equal(t, `SELECT "id", "E mail" FROM ONLY "app"."users"`, (&CopyOut{Relation: `"app"."users"`, Columns: []string{"id", "E mail"}}).DescribeSQL())

	for _, bad := range []struct {
		sql string
		nth int
	}{
		{"copy t from stdin", 0},
		{"copy t to '/tmp/x'", 0},
		{"copy t to program 'cat'", 0},
		{"select 1", 0},
		{"copy t to stdout", 1},
		{"copy t to stdout (format xml)", 0},
		{"copy t to stdout (delimiter '::')", 0},
		{"copy t to", 0},
	} {
		_, err := ParseCopyOut(bad.sql, bad.nth)
		assert.Error(t, err, bad.sql)
	}
}
