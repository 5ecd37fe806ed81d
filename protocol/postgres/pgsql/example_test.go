package pgsql_test

import (
	"fmt"

	"github.com/sluicegw/sluice/protocol/postgres/pgsql"
)

func ExampleClassify() {
	s := pgsql.Classify("WITH d AS (DELETE FROM users RETURNING *) SELECT count(*) FROM d", pgsql.DefaultOptions())
	for _, st := range s.Statements {
		fmt.Println(st.Kind, st.Tables, st.HasWhere)
	}
	fmt.Println("writes:", s.Writes)
	// Output:
	// SELECT [d] false
	// DELETE [users] false
	// writes: true
}

func ExampleClassify_standardConformingStrings() {
	sql := `SELECT 'x\'' ; DROP TABLE t; -- '`
	on := pgsql.DefaultOptions()
	off := on
	off.StandardConformingStrings = false // as the session reported in ParameterStatus
	fmt.Println(len(pgsql.Classify(sql, on).Statements), len(pgsql.Classify(sql, off).Statements))
	// Output: 1 2
}

func ExamplePreparedSet() {
	c := pgsql.NewClassifier(1024)
	session := pgsql.NewPreparedSet()
	for _, sql := range []string{"PREPARE wipe AS DELETE FROM users", "EXECUTE wipe", "DEALLOCATE wipe", "EXECUTE wipe"} {
		r := c.Analyze(sql, pgsql.DefaultOptions())
		s := session.Resolve(r) // what policy sees
		session.Observe(r)      // when the text goes to the server
		fmt.Printf("%-34s %v %q\n", sql, s.Statements, s.ParseError)
	}
	// Output:
	// PREPARE wipe AS DELETE FROM users  [{PREPARE [] false []} {DELETE [users] false []}] ""
	// EXECUTE wipe                       [{DELETE [users] false []}] ""
	// DEALLOCATE wipe                    [{DEALLOCATE [] false []}] ""
	// EXECUTE wipe                       [{EXECUTE [] false []}] "unknown prepared statement \"wipe\""
}
