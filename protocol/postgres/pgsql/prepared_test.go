package pgsql

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/protocol"
)

func TestPreparedSetResolve(t *testing.T) {
	o := DefaultOptions()
	ps := NewPreparedSet()

	// PREPARE in one command, EXECUTE in a later one.
	r := Analyze("PREPARE wipe AS DELETE FROM users", o)
	require.Equal(t, []string{"PREPARE", "DELETE"}, kinds(r.SQL))
	require.Len(t, r.Effects, 1)
	assert.Equal(t, EffectPrepare, r.Effects[0].Op)
	assert.Equal(t, "wipe", r.Effects[0].Name)
	assert.Equal(t, []string{"DELETE"}, kinds(r.Effects[0].Body))
	ps.Observe(r)

	ex := Analyze("EXECUTE wipe", o)
	require.Equal(t, []string{"EXECUTE"}, kinds(ex.SQL))
	assert.False(t, ex.SQL.Writes, "EXECUTE alone says nothing")
	s := ps.Resolve(ex)
	assert.Equal(t, []string{"DELETE"}, kinds(s))
	assert.Equal(t, []string{"users"}, s.Statements[0].Tables)
	assert.True(t, s.Writes)
	assert.Empty(t, s.ParseError)

	// Nested EXECUTEs run too.
	s = ps.Resolve(Analyze("EXPLAIN ANALYZE EXECUTE wipe", o))
	assert.Equal(t, []string{"EXPLAIN", "DELETE"}, kinds(s))
	s = ps.Resolve(Analyze("CREATE TABLE x AS EXECUTE wipe", o))
	assert.Equal(t, []string{"CREATE TABLE AS", "DELETE"}, kinds(s))
	// EXPLAIN without ANALYZE runs nothing.
	s = ps.Resolve(Analyze("EXPLAIN EXECUTE wipe", o))
	assert.Equal(t, []string{"EXPLAIN"}, kinds(s))
	assert.False(t, s.Writes)

	// Parameter functions stay visible.
	s = ps.Resolve(Analyze("EXECUTE wipe(pg_sleep(1))", o))
	assert.Equal(t, []string{"pg_sleep"}, s.Statements[0].Functions)

	// Unknown names fail closed.
	s = ps.Resolve(Analyze("EXECUTE nosuch", o))
	assert.Contains(t, s.ParseError, `unknown prepared statement "nosuch"`)

	// Same text: PREPARE then EXECUTE; DEALLOCATE then EXECUTE.
	s = ps.Resolve(Analyze("PREPARE q AS MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE; EXECUTE q", o))
	assert.Equal(t, []string{"PREPARE", "MERGE", "MERGE"}, kinds(s))
	s = ps.Resolve(Analyze("DEALLOCATE wipe; EXECUTE wipe", o))
	assert.Contains(t, s.ParseError, "unknown prepared statement")
	_, ok := ps.Lookup("q")
	assert.False(t, ok, "Resolve does not change the set")

	// DEALLOCATE forgets; DEALLOCATE ALL and DISCARD ALL forget all.
	ps.Observe(Analyze("DEALLOCATE wipe", o))
	assert.NotEmpty(t, ps.Resolve(Analyze("EXECUTE wipe", o)).ParseError)
	ps.Observe(Analyze("PREPARE a AS SELECT 1; PREPARE b AS SELECT 2", o))
	_, ok = ps.Lookup("b")
	require.True(t, ok)
	ps.Observe(Analyze("DISCARD ALL", o))
	_, ok = ps.Lookup("a")
	assert.False(t, ok)
	ps.Observe(Analyze("PREPARE a AS SELECT 1", o))
	ps.Observe(Analyze("DEALLOCATE ALL", o))
	_, ok = ps.Lookup("a")
	assert.False(t, ok)
}

func TestPreparedSetOverApproximates(t *testing.T) {
	o := DefaultOptions()
	ps := NewPreparedSet()
	// The server keeps the first and refuses the second PREPARE of a name
	// (or the first failed and the second won); both count.
	ps.Observe(Analyze("PREPARE p AS SELECT 1", o))
	ps.Observe(Analyze("PREPARE p AS DROP TABLE t", o)) // not preparable: a parse error on the server
	ps.Observe(Analyze("PREPARE p AS DELETE FROM t", o))
	s := ps.Resolve(Analyze("EXECUTE p", o))
	assert.Equal(t, []string{"SELECT", "DELETE"}, kinds(s))
	assert.True(t, s.Writes)

	// Extended-protocol Parse and Close share the namespace.
	ps.Add("stmt1", Classify("UPDATE t SET a = 1", o))
	assert.Equal(t, []string{"UPDATE"}, kinds(ps.Resolve(Analyze("EXECUTE stmt1", o))))
	ps.Remove("stmt1")
	assert.NotEmpty(t, ps.Resolve(Analyze("EXECUTE stmt1", o)).ParseError)
	// The unnamed statement is replaced, not merged.
	ps.Add("", Classify("DELETE FROM t", o))
	ps.Add("", Classify("SELECT 1", o))
	u, _ := ps.Lookup("")
	assert.Equal(t, []string{"SELECT"}, kinds(u))

	// A body that failed to parse stays a failure.
	ps.Add("bad", &protocol.SQL{ParseError: "boom"})
	assert.Equal(t, "boom", ps.Resolve(Analyze("EXECUTE bad", o)).ParseError)

	ps.Clear()
	_, ok := ps.Lookup("p")
	assert.False(t, ok)
}

func TestPreparedSetCopies(t *testing.T) {
	o := DefaultOptions()
	ps := NewPreparedSet()
	body := Classify("DELETE FROM t", o)
	ps.Add("p", body)
	body.Statements[0].Kind = "SELECT"
	s := ps.Resolve(Analyze("EXECUTE p", o))
	assert.Equal(t, "DELETE", s.Statements[0].Kind)
	s.Statements[0].Tables[0] = "other"
	again, _ := ps.Lookup("p")
	assert.Equal(t, []string{"t"}, again.Statements[0].Tables)
}
