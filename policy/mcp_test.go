package policy_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/policy"
	_ "github.com/sluicegw/sluice/policy/pgclassify"
	"github.com/sluicegw/sluice/protocol"
)

func mcpCall(tool string, args map[string]any) *policy.Input {
	return &policy.Input{Command: &protocol.Command{Protocol: "http", Kind: protocol.KindRequest,
		MCP: &protocol.MCP{Method: "tools/call", Tool: tool, Arguments: args}}}
}

const mcpPolicy = `
rules:
  - name: read-only-queries
    match: >
      command.mcp.tool == "run_query" && has(command.mcp.arguments.query) &&
      !sql(command.mcp.arguments.query).writes
    action: allow
  - name: deletes-need-approval
    match: glob("delete_*", command.mcp.tool)
    action: require_approval
    approvers: [group:admins]
  - name: no-prod-deletes
    match: command.mcp.tool == "delete_user" && has(command.mcp.arguments.env) && command.mcp.arguments.env == "prod"
    action: deny
  - name: no-wipe
    match: command.mcp.tool == "wipe"
    action: deny
  - name: wipe-for-admins
    match: command.mcp.tool == "wipe"
    action: allow
  - name: reports
    match: command.mcp.tool == "report" && command.mcp.arguments.limit <= 100
    action: allow
default: deny
`

func TestSQLFunction(t *testing.T) {
	e, err := policy.Parse("mcp.yaml", []byte(mcpPolicy))
	require.NoError(t, err)
	for _, tc := range []struct {
		query any
		want  protocol.Action
	}{
		{"SELECT name FROM users WHERE id = 1", protocol.Allow},
		{"select 1; select 2", protocol.Allow},
		{"DELETE FROM users", protocol.Deny},
		{"WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d", protocol.Deny},
		{"SELECT nextval('s')", protocol.Deny},
		{"SELEC 1", protocol.Deny},                           // does not parse: writes is true
		{"", protocol.Allow},                                 // nothing to run: no statements, no writes
		{`SELECT 'x\'' ; DROP TABLE t; -- '`, protocol.Deny}, // a DROP with standard_conforming_strings off
		{`SELECT 'a\'`, protocol.Deny},                       // does not parse with it off
		{`SELECT E'a\'b'`, protocol.Allow},                   // the same either way
		{42, protocol.Deny},                                  // not a string: the rule fails, and denies
	} {
		d, err := e.Decide(context.Background(), mcpCall("run_query", map[string]any{"query": tc.query}))
		require.NoError(t, err)
		assert.Equal(t, tc.want, d.Action, "%v: %s", tc.query, d.Message)
	}

	// The function's value, as a rule reads it.
	for _, tc := range []struct {
		expr string
		want bool
	}{
		{`sql("SELECT a FROM t WHERE b").statements.exists(s, s.kind == "SELECT" && s.tables == ["t"] && s.has_where)`, true},
		{`sql("DROP TABLE t").ddl && sql("DROP TABLE t").writes`, true},
		{`sql("SELEC").parse_error != "" && sql("SELEC").writes && sql("SELEC").ddl && size(sql("SELEC").statements) == 0`, true},
		{`sql("").parse_error == "" && size(sql("").statements) == 0 && !sql("").writes`, true},
		{`sql("SELECT 1", "postgres").statements[0].kind == "SELECT"`, true},
		{`sql("SELECT 1", "mysql").parse_error.contains("no SQL classifier is registered for dialect \"mysql\"") && sql("SELECT 1", "mysql").writes`, true},
		{`sql(command.text).statements.size() == 0`, true},
	} {
		e, err := policy.Parse("f.yaml", []byte("rules:\n  - name: r\n    action: allow\n    match: '"+escapeQuotes(tc.expr)+"'\n"))
		require.NoError(t, err, tc.expr)
		d, err := e.Decide(context.Background(), mcpCall("x", nil))
		require.NoError(t, err)
		assert.Equal(t, tc.want, d.Action == protocol.Allow, "%s: %s", tc.expr, d.Message)
	}

	// Types are checked at load.
	_, err = policy.Parse("f.yaml", []byte("rules:\n  - {name: r, action: allow, match: 'sql(1).writes'}\n"))
	require.ErrorContains(t, err, "found no matching overload for 'sql' applied to '(int)'")
	_, err = policy.Parse("f.yaml", []byte("rules:\n  - {name: r, action: allow, match: 'sql(\"x\").wrtes'}\n"))
	require.ErrorContains(t, err, "undefined field 'wrtes'")
}

func escapeQuotes(s string) string {
	out := ""
	for _, r := range s {
		if r == '\'' {
			out += "''"
		} else {
			out += string(r)
		}
	}
	return out
}

func TestClassifySQL(t *testing.T) {
	s := policy.ClassifySQL("postgres", "SELEC")
	assert.NotEmpty(t, s.ParseError)
	assert.True(t, s.Writes)
	assert.True(t, s.DDL)
	assert.NotNil(t, s.Statements)
	s = policy.ClassifySQL("no-such", "SELECT 1")
	assert.Contains(t, s.ParseError, `no SQL classifier is registered for dialect "no-such"`)
	assert.True(t, s.Writes)
	s = policy.ClassifySQL("postgres", "SELECT 1")
	assert.Empty(t, s.ParseError)
	assert.False(t, s.Writes)
	assert.Contains(t, policy.SQLDialects(), "postgres")

	assert.PanicsWithValue(t, "policy: RegisterSQLClassifier called twice for dialect postgres", func() {
		policy.RegisterSQLClassifier("postgres", func(string) *protocol.SQL { return nil })
	})
	assert.Panics(t, func() { policy.RegisterSQLClassifier("x", nil) })
	policy.RegisterSQLClassifier("test-nil", func(string) *protocol.SQL { return nil })
	assert.Contains(t, policy.ClassifySQL("test-nil", "x").ParseError, "returned nothing")
}

func TestMayAllow(t *testing.T) {
	e, err := policy.Parse("mcp.yaml", []byte(mcpPolicy))
	require.NoError(t, err)
	live := policy.Prober(e)
	for _, tc := range []struct {
		tool string
		want bool
	}{
		{"run_query", true},   // allowed for some queries
		{"delete_user", true}, // approvable; denied only for some arguments
		{"delete_file", true}, // approvable
		{"wipe", false},       // denied whatever the arguments
		{"report", true},      // allowed for some arguments
		{"other", false},      // nothing allows it
	} {
		got, err := live.MayAllow(context.Background(), mcpCall(tc.tool, nil))
		require.NoError(t, err)
		assert.Equal(t, tc.want, got, tc.tool)
		// Arguments, if any, are ignored: they are unknown.
		got, err = live.MayAllow(context.Background(), mcpCall(tc.tool, map[string]any{"query": "DROP TABLE t", "env": "prod"}))
		require.NoError(t, err)
		assert.Equal(t, tc.want, got, tc.tool)
	}

	// A rule that fails whatever the arguments denies, as in Decide.
	e2, err := policy.Parse("f.yaml", []byte(`
rules:
  - {name: broken, action: deny, match: 'identity.claims.dept == "x"'}
  - {name: all, action: allow, match: 'true'}
`))
	require.NoError(t, err)
	got, err := e2.MayAllow(context.Background(), mcpCall("x", nil))
	require.NoError(t, err)
	assert.False(t, got)
	// The default counts.
	e3, err := policy.Parse("f.yaml", []byte("rules:\n  - {name: n, action: deny, match: 'command.mcp.tool == \"x\"'}\ndefault: allow\n"))
	require.NoError(t, err)
	got, err = e3.MayAllow(context.Background(), mcpCall("y", nil))
	require.NoError(t, err)
	assert.True(t, got)
	got, err = e3.MayAllow(context.Background(), mcpCall("x", nil))
	require.NoError(t, err)
	assert.False(t, got)

	_, err = e3.MayAllow(context.Background(), &policy.Input{})
	require.ErrorIs(t, err, policy.ErrNoCommand)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = e3.MayAllow(ctx, mcpCall("y", nil))
	require.ErrorIs(t, err, context.Canceled)
}
