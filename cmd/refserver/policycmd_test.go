package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const examplePolicies = "../../examples/policies"

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestPolicyTestCommand(t *testing.T) {
	t.Run("the examples pass", func(t *testing.T) {
		r := runCLI(t, "policy", "test", examplePolicies)
		require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		assert.Regexp(t, `(?m)^PASS  data-modifying CTE behind a SELECT  \(\.\./\.\./examples/policies/read-only-agent_test\.yaml:\d+\)$`, r.stdout)
		assert.Regexp(t, `(?m)^\d+ passed, 0 failed$`, r.stdout)
		assert.NotContains(t, r.stdout, "FAIL")
		assert.NotContains(t, r.stdout, "rules never matched")
	})

	dir := t.TempDir()
	pol := writeFile(t, dir, "policy.yaml", testPolicy)
	cases := writeFile(t, dir, "policy_test.yaml", `
defaults:
  identity: {subject: alice}
cases:
  - name: alice connects
    connect: true
    expect: {action: allow, rules: [alice-connects]}
  - name: drop is allowed
    sql: "/* sneaky */ DROP TABLE users"
    expect: {action: allow}
  - name: select is denied by default
    sql: SELECT 'DROP TABLE x'
    expect: {action: deny, rules: []}
`)
	t.Run("a failing case", func(t *testing.T) {
		r := runCLI(t, "policy", "test", pol, cases)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stdout, "PASS  alice connects  ("+cases+":5)\n")
		assert.Contains(t, r.stdout, "FAIL  drop is allowed  ("+cases+":8)\n"+
			"      action: want allow, got deny\n"+
			`      got: deny, rules [no-drop], message "denied by policy rule \"no-drop\""`+"\n"+
			`      command: postgres query "/* sneaky */ DROP TABLE users"`+"\n"+
			"      sql: DROP [users]; writes=true ddl=true\n")
		assert.Contains(t, r.stdout, "PASS  select is denied by default")
		assert.Contains(t, r.stdout, "\n2 passed, 1 failed\n")
		assert.Empty(t, r.stderr)
	})
	t.Run("a directory", func(t *testing.T) {
		r := runCLI(t, "policy", "test", dir)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stdout, "\n2 passed, 1 failed\n")
	})
	t.Run("rules never matched", func(t *testing.T) {
		only := writeFile(t, t.TempDir(), "only_test.yaml", "cases: [{name: c, connect: true, identity: {subject: alice}, expect: {action: allow}}]\n")
		r := runCLI(t, "policy", "test", pol, only)
		assert.Equal(t, 0, r.code, r.stderr)
		assert.True(t, strings.HasSuffix(r.stdout, "\n1 passed, 0 failed\nrules never matched: no-drop\n"), r.stdout)
	})
	t.Run("a policy that does not compile", func(t *testing.T) {
		bad := writeFile(t, t.TempDir(), "bad.yaml", "rules:\n  - name: typo\n    match: command.sql.wrtes\n    action: deny\n")
		r := runCLI(t, "policy", "test", bad, cases)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, bad+`:3: rule #1 "typo": match 1:12: undefined field 'wrtes'`)
		assert.Contains(t, r.stderr, " | command.sql.wrtes\n |            ^")
		assert.Empty(t, r.stdout)
	})
	t.Run("a broken test file", func(t *testing.T) {
		bad := writeFile(t, t.TempDir(), "bad_test.yaml", "cases:\n  - name: x\n    sql: SELECT 1\n    expect: {acton: deny}\n")
		r := runCLI(t, "policy", "test", pol, bad)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, bad+`:4: case "x": expect: unknown key "acton"`)
	})
	t.Run("no test files", func(t *testing.T) {
		r := runCLI(t, "policy", "test", pol)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "no test files (*_test.yaml)")
	})
	t.Run("usage", func(t *testing.T) {
		r := runCLI(t, "policy", "test")
		assert.Equal(t, 2, r.code)
		assert.Contains(t, r.stderr, "policy test needs at least one PATH")
		r = runCLI(t, "policy")
		assert.Equal(t, 2, r.code)
		assert.Contains(t, r.stderr, "policy needs a subcommand: test, eval or check")
		r = runCLI(t, "policy", "tset")
		assert.Equal(t, 2, r.code)
		assert.Contains(t, r.stderr, `unknown policy subcommand "tset"`)
	})
}

func TestPolicyEvalCommand(t *testing.T) {
	pol := filepath.Join(examplePolicies, "prod-writes-approval.yaml")
	tests := []struct {
		name string
		args []string
		want []string // lines or fragments of stdout, in order
	}{
		{"approval on prod", []string{"--sql", "UPDATE orders SET total = 0 WHERE id = 1", "--subject", "carol", "--groups", "engineers,oncall", "--target", "orders", "--target-label", "env=prod"}, []string{
			`command: postgres query "UPDATE orders SET total = 0 WHERE id = 1"`,
			"sql: UPDATE [orders] has_where; writes=true ddl=false",
			`identity: subject "carol" groups [engineers oncall]`,
			`target: name "orders" protocol "postgres" labels map[env:prod]`,
			"rules:",
			"  no   engineers-connect       allow             " + pol + ":",
			"  yes  engineers-sql           allow             " + pol + ":",
			"  yes  prod-writes-need-a-dba  require_approval  " + pol + ":",
			"  no   unparseable-sql         deny              " + pol + ":",
			"decision:",
			"  action:    require_approval",
			"  rules:     engineers-sql, prod-writes-need-a-dba",
			"  message:   writes on production need a DBA's approval",
			"  mask:      -",
			"  approvers: group:dba",
			"  timeout:   10m0s",
		}},
		{"staging", []string{"--sql", "DELETE FROM orders WHERE id = 1", "--groups", "engineers", "--target-label", "env=staging"}, []string{
			"  action:    allow", "  rules:     engineers-sql", "  timeout:   -",
		}},
		{"standard_conforming_strings off", []string{"--sql", `SELECT 'x\'' ; DROP TABLE t; -- '`, "--standard-conforming-strings=false", "--groups", "engineers", "--target-label", "env=prod"}, []string{
			"sql: SELECT; DROP [t]; writes=true ddl=true", "  action:    require_approval",
		}},
		{"nothing matches", []string{"--connect", "--subject", "mallory"}, []string{
			`command: connect "connect mallory"`, `identity: subject "mallory" groups []`,
			"  action:    deny", "  rules:     -", "  message:   no rule allows this command (default deny)",
			"  (no rule matched: the policy's default, deny, applies)",
		}},
		{"http", []string{"--http", "DELETE /api/v1/users/7?force=1", "--host", "api.internal"}, []string{
			`command: http request "DELETE /api/v1/users/7?force=1"`, "  action:    deny",
		}},
		{"k8s", []string{"--k8s", "verb=delete,resource=pods,namespace=prod,name=web-1"}, []string{
			`command: kubernetes request "delete pods prod/web-1"`, `target: name "" protocol "kubernetes"`,
		}},
		{"ssh", []string{"--ssh", "rm -rf /", "--claim", "dept=ops"}, []string{
			`command: ssh exec "rm -rf /"`, `identity: subject "" groups []`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, append([]string{"policy", "eval", "--policy", pol}, tt.args...)...)
			require.Equal(t, 0, r.code, r.stderr)
			out := r.stdout
			for _, w := range tt.want {
				i := strings.Index(out, w)
				require.GreaterOrEqual(t, i, 0, "want %q in order in:\n%s", w, r.stdout)
				out = out[i+len(w):]
			}
		})
	}

	errs := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no policy", []string{"--sql", "SELECT 1"}, 2, "policy eval needs --policy PATH"},
		{"no command", []string{"--policy", pol}, 2, "policy eval needs a command"},
		{"two commands", []string{"--policy", pol, "--sql", "SELECT 1", "--connect"}, 2, "policy eval takes one command, got --sql and --connect"},
		{"bad http", []string{"--policy", pol, "--http", "GET"}, 2, `--http "GET": want 'METHOD PATH'`},
		{"bad k8s key", []string{"--policy", pol, "--k8s", "verb=get,kind=pods"}, 2, `--k8s: unknown key "kind"`},
		{"bad label", []string{"--policy", pol, "--connect", "--target-label", "prod"}, 2, `--target-label "prod": want KEY=VALUE`},
		{"host without http", []string{"--policy", pol, "--connect", "--host", "x"}, 2, "--host only applies with --http"},
		{"sql on mysql", []string{"--policy", pol, "--sql", "SELECT 1", "--protocol", "mysql"}, 2, `--sql is classified as PostgreSQL, but --protocol is "mysql"`},
		{"positional", []string{"--policy", pol, "SELECT 1"}, 2, "policy eval takes no arguments"},
		{"missing policy file", []string{"--policy", "nope.yaml", "--connect"}, 1, "nope.yaml"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, append([]string{"policy", "eval"}, tt.args...)...)
			assert.Equal(t, tt.code, r.code)
			assert.Contains(t, r.stderr, tt.want)
		})
	}
}

func TestPolicyCheckCommand(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.yaml", testPolicy)
	writeFile(t, dir, "a_test.yaml", "this is not read: [")
	b := writeFile(t, dir, "b.yaml", "rules: [{name: b, match: 'true', action: allow}]\n")

	r := runCLI(t, "policy", "check", dir)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, a+": 2 rules\n"+b+": 1 rules\nok: 3 rules in 2 files, default deny\n", r.stdout)

	r = runCLI(t, "policy", "check", filepath.Join(examplePolicies, "demo.yaml"))
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, regexp.MustCompile(`(?m)^ok: 5 rules in 1 files, default deny$`), r.stdout)

	bad := writeFile(t, t.TempDir(), "bad.yaml", "rules:\n  - name: x\n    match: '1 + 1'\n    action: allow\n")
	r = runCLI(t, "policy", "check", bad)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, bad+`:3: rule #1 "x": match 1:3: must be a bool expression, got int`)

	r = runCLI(t, "policy", "check", filepath.Join(dir, "a_test.yaml"))
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "no policy files in")

	r = runCLI(t, "policy", "check")
	assert.Equal(t, 2, r.code)
}

func TestPolicyEvalMCPAndHTTPBody(t *testing.T) {
	pol := filepath.Join(examplePolicies, "mcp.yaml")
	tests := []struct {
		name string
		args []string
		want []string // fragments of stdout, in order
	}{
		{"a read-only query", []string{"--mcp-tool", "run_query", "--mcp-args", `{"query": "SELECT email FROM users WHERE id = 7"}`, "--groups", "agents"}, []string{
			`command: http request "tools/call run_query {\"query\":\"SELECT email FROM users WHERE id = 7\"}"`,
			`mcp: method tools/call tool "run_query" arguments {"query":"SELECT email FROM users WHERE id = 7"}`,
			"  yes  agents-read-only-queries",
			"  action:    allow",
			"  mask:      email, credit_card",
			"  listed:    yes (whether tools/list shows run_query to this caller)",
		}},
		{"a write", []string{"--mcp-tool", "run_query", "--mcp-args", `{"query": "UPDATE users SET admin = true"}`, "--groups", "agents"}, []string{
			"  action:    deny", "  message:   no rule allows this command (default deny)", "  listed:    yes",
		}},
		{"a delete", []string{"--mcp-tool", "delete_user", "--mcp-args", `{"id": 7}`}, []string{
			"  action:    require_approval", "  approvers: group:admins", "  timeout:   15m0s", "  listed:    yes",
		}},
		{"a tool nobody may call", []string{"--mcp-tool", "admin_reset", "--groups", "agents"}, []string{
			"  action:    deny", "  listed:    no: no arguments could make a call of it allowed",
		}},
		{"housekeeping", []string{"--mcp-method", "initialize"}, []string{
			`command: http request "initialize"`, "mcp: method initialize", "  action:    allow", "  rules:     mcp-housekeeping",
		}},
		{"a resource", []string{"--mcp-uri", "file:///reports/q1.csv", "--groups", "agents"}, []string{
			`mcp: method resources/read uri "file:///reports/q1.csv"`, "  action:    allow", "  rules:     agents-reports",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, append([]string{"policy", "eval", "--policy", pol}, tt.args...)...)
			require.Equal(t, 0, r.code, r.stderr)
			out := r.stdout
			for _, w := range tt.want {
				i := strings.Index(out, w)
				require.GreaterOrEqual(t, i, 0, "want %q in order in:\n%s", w, r.stdout)
				out = out[i+len(w):]
			}
			if !strings.Contains(strings.Join(tt.args, " "), "tools/call") && !slices.Contains(tt.args, "--mcp-tool") {
				assert.NotContains(t, r.stdout, "listed:")
			}
		})
	}

	t.Run("an HTTP body", func(t *testing.T) {
		bodyPol := writeFile(t, t.TempDir(), "body.yaml", `
rules:
  - name: small-pages
    match: command.http.content_type == "application/json" && has(command.http.body.limit) && command.http.body.limit <= 100
    action: allow
  - name: no-payroll
    match: has(command.http.body.sql) && sql(command.http.body.sql).statements.exists(s, "payroll" in s.tables)
    action: deny
`)
		r := runCLI(t, "policy", "eval", "--policy", bodyPol, "--http", "POST /api/query", "--http-body", `{"limit": 50, "sql": "SELECT * FROM payroll"}`)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, `http: content_type "application/json" body {"limit":50,"sql":"SELECT * FROM payroll"}`)
		assert.Contains(t, r.stdout, "  action:    deny\n  rules:     small-pages, no-payroll\n")
		r = runCLI(t, "policy", "eval", "--policy", bodyPol, "--http", "POST /api/query", "--http-body", `{"limit": 50}`, "--http-content-type", "application/json")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, "  action:    allow\n")
	})

	errs := []struct {
		name string
		args []string
		want string
	}{
		{"bad args", []string{"--mcp-tool", "x", "--mcp-args", "[1]"}, "--mcp-args: want a JSON object"},
		{"no method", []string{"--mcp-args", `{"a": 1}`}, "--mcp-*: method: required"},
		{"uri with a tool", []string{"--mcp-tool", "x", "--mcp-uri", "file:///x"}, "uri: only applies to method resources/read, not tools/call"},
		{"mcp and sql", []string{"--mcp-tool", "x", "--sql", "SELECT 1"}, "policy eval takes one command, got --sql and --mcp-*"},
		{"body without http", []string{"--connect", "--http-body", "{}"}, "--http-body and --http-content-type only apply with --http"},
		{"bad body", []string{"--http", "POST /", "--http-body", "{"}, "--http-body: not JSON"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, append([]string{"policy", "eval", "--policy", pol}, tt.args...)...)
			assert.Equal(t, 2, r.code, r.stdout)
			assert.Contains(t, r.stderr, tt.want)
		})
	}
}

func TestPolicyTestMCPCases(t *testing.T) {
	r := runCLI(t, "policy", "test", filepath.Join(examplePolicies, "mcp_test.yaml"))
	require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	assert.Contains(t, r.stdout, "PASS  a read-only query  (")
	assert.Regexp(t, `(?m)^\d+ passed, 0 failed$`, r.stdout)
	assert.NotContains(t, r.stdout, "rules never matched")

	dir := t.TempDir()
	writeFile(t, dir, "p.yaml", "rules:\n  - {name: ro, action: allow, match: 'command.mcp.tool == \"q\" && !sql(command.mcp.arguments.query).writes'}\n")
	cases := writeFile(t, dir, "p_test.yaml", `
cases:
  - name: a write passes (wrong on purpose)
    mcp: {tool: q, arguments: {query: "DELETE FROM t"}}
    expect: {action: allow, listed: false}
`)
	r = runCLI(t, "policy", "test", dir)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "FAIL  a write passes (wrong on purpose)  ("+cases+":3)\n"+
		"      action: want allow, got deny\n"+
		"      listed: want false, got true (may some arguments make a call of q allowed?)\n"+
		`      got: deny, rules [], message "no rule allows this command (default deny)"`+"\n"+
		`      command: http request "tools/call q {\"query\":\"DELETE FROM t\"}"`+"\n"+
		`      mcp: method tools/call tool "q" arguments {"query":"DELETE FROM t"}`+"\n")
}
