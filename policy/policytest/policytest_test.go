package policytest_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/policy/policytest"
	"github.com/sluicegw/sluice/protocol"
)

const testPolicy = `
rules:
  - name: agents-connect
    match: command.kind == "connect" && "agents" in identity.groups
    action: allow
  - name: agents-read
    match: '"agents" in identity.groups && size(command.sql.statements) > 0 && !command.sql.writes'
    action: allow
    mask: [email]
  - name: no-destructive-sql
    match: command.sql.statements.exists(s, s.kind in ["DROP", "TRUNCATE"])
    action: deny
    message: destructive statements are not allowed
  - name: prod-writes
    match: target.labels.?env.orValue("") == "prod" && command.sql.writes
    action: require_approval
    approvers: [group:dba]
    timeout: 10m
  - name: never-used
    match: command.protocol == "gopher"
    action: deny
default: deny
`

func engine(t *testing.T) *policy.Engine {
	t.Helper()
	e, err := policy.Parse("policy.yaml", []byte(testPolicy))
	require.NoError(t, err)
	return e
}

func parseOne(t *testing.T, yml string) *policytest.Case {
	t.Helper()
	cases, err := policytest.ParseCases("dir/cases_test.yaml", []byte(yml))
	require.NoError(t, err)
	require.Len(t, cases, 1)
	return cases[0]
}

func TestParseCasesBuildsInputs(t *testing.T) {
	cases, err := policytest.ParseCases("dir/cases_test.yaml", []byte(`
policies: [p.yaml, /abs/q.yaml]
defaults:
  identity: {subject: bot-1, groups: [agents], claims: {dept: eng, level: 3}, expiry: 2030-01-02T03:04:05Z}
  target: {name: pg-prod, protocol: postgres, labels: {env: prod}}
  session: {id: s-1, client_addr: "10.0.0.1:5555", start: 2025-01-01T00:00:00Z}
  now: 2025-06-01T12:00:00Z
cases:
  - name: sql
    sql: SELECT * FROM users WHERE id = 1
    expect: {action: allow}
  - name: sql with scs off
    sql: SELECT 'x\'' ; DROP TABLE t; -- '
    standard_conforming_strings: false
    attrs: {extended: parse}
    expect: {action: deny}
  - name: http
    http: {method: DELETE, path: "/api/v1/users/7?force=1", host: api.internal}
    target: {name: api}
    expect: {action: deny}
  - name: k8s
    k8s: {verb: delete, resource: pods, namespace: prod, name: web-1}
    identity: {subject: kate}
    expect: {action: deny}
  - name: ssh exec
    ssh: {command: "rm -rf /"}
    target: {name: host, protocol: ssh}
    expect: {action: deny}
  - name: ssh shell
    ssh: {}
    expect: {action: deny}
  - name: ssh sftp
    ssh: {subsystem: sftp}
    expect: {action: deny}
  - name: connect
    connect: true
    now: 2026-01-01T00:00:00Z
    expect: {action: allow}
  - name: raw command
    command: {kind: other, text: "LISTEN x", attrs: {a: b}, sql: {statements: [{kind: LISTEN}], writes: false}}
    expect: {rules: []}
`))
	require.NoError(t, err)
	require.Len(t, cases, 9)
	byName := map[string]*policytest.Case{}
	for _, c := range cases {
		byName[c.Name] = c
		assert.Equal(t, []string{filepath.Join("dir", "p.yaml"), "/abs/q.yaml"}, c.Policies)
		assert.Equal(t, "dir/cases_test.yaml", c.File)
	}

	c := byName["sql"]
	assert.Equal(t, 9, c.Line)
	assert.Equal(t, "dir/cases_test.yaml:9", c.Where())
	assert.Equal(t, "bot-1", c.Input.Identity.Subject)
	assert.Equal(t, []string{"agents"}, c.Input.Identity.Groups)
	assert.Equal(t, "eng", c.Input.Identity.Claims["dept"])
	assert.Equal(t, time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), c.Input.Identity.Expiry.UTC())
	assert.Equal(t, "pg-prod", c.Input.Target.Name)
	assert.Equal(t, "prod", c.Input.Target.Labels["env"])
	assert.Equal(t, "s-1", c.Input.Session.ID)
	assert.Equal(t, "10.0.0.1:5555", c.Input.Session.ClientAddr)
	assert.Equal(t, c.Input.Target, c.Input.Session.Target)
	assert.Equal(t, time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC), c.Input.Now.UTC())
	cmd := c.Input.Command
	assert.Equal(t, "postgres", cmd.Protocol)
	assert.Equal(t, protocol.KindQuery, cmd.Kind)
	assert.Equal(t, "SELECT * FROM users WHERE id = 1", cmd.Text)
	require.NotNil(t, cmd.SQL)
	require.Len(t, cmd.SQL.Statements, 1)
	assert.Equal(t, protocol.Statement{Kind: "SELECT", Tables: []string{"users"}, HasWhere: true}, cmd.SQL.Statements[0])
	assert.Equal(t, protocol.Action("allow"), c.Expect.Action)

	// standard_conforming_strings off: the backslash escapes the quote and
	// the DROP is a statement of its own.
	cmd = byName["sql with scs off"].Input.Command
	require.Len(t, cmd.SQL.Statements, 2)
	assert.Equal(t, "DROP", cmd.SQL.Statements[1].Kind)
	assert.Equal(t, map[string]string{"extended": "parse"}, cmd.Attrs)

	c = byName["http"]
	assert.Equal(t, "api", c.Input.Target.Name, "a case's target replaces the default")
	assert.Equal(t, "http", c.Input.Target.Protocol, "a target without a protocol gets the command's")
	assert.Equal(t, "http", c.Input.Command.Protocol)
	assert.Equal(t, protocol.KindRequest, c.Input.Command.Kind)
	assert.Equal(t, "/api/v1/users/7", c.Input.Command.HTTP.Path)
	assert.Equal(t, map[string]string{"force": "1"}, c.Input.Command.HTTP.Query)
	assert.Equal(t, "DELETE /api/v1/users/7?force=1", c.Input.Command.Text)

	c = byName["k8s"]
	assert.Equal(t, "kate", c.Input.Identity.Subject)
	assert.Nil(t, c.Input.Identity.Groups, "a case's identity replaces the default as a whole")
	assert.Equal(t, "postgres", c.Input.Command.Protocol, "the target's protocol")
	assert.Equal(t, "delete pods prod/web-1", c.Input.Command.Text)
	assert.Equal(t, "pods", c.Input.Command.K8s.Resource)

	c = byName["ssh exec"]
	assert.Equal(t, protocol.KindExec, c.Input.Command.Kind)
	assert.Equal(t, "ssh", c.Input.Command.Protocol)
	assert.Equal(t, "session", c.Input.Command.SSH.ChannelType)
	assert.Equal(t, "rm -rf /", c.Input.Command.Text)
	assert.Equal(t, protocol.KindShell, byName["ssh shell"].Input.Command.Kind)
	assert.Equal(t, protocol.KindOther, byName["ssh sftp"].Input.Command.Kind)

	c = byName["connect"]
	assert.Equal(t, protocol.KindConnect, c.Input.Command.Kind)
	assert.Equal(t, "connect bot-1 to pg-prod", c.Input.Command.Text)
	assert.Equal(t, 2026, c.Input.Now.Year())

	c = byName["raw command"]
	assert.Equal(t, protocol.KindOther, c.Input.Command.Kind)
	assert.Equal(t, "postgres", c.Input.Command.Protocol)
	assert.Equal(t, "LISTEN", c.Input.Command.SQL.Statements[0].Kind)
	assert.NotNil(t, c.Expect.Rules)
	assert.Empty(t, c.Expect.Rules)
}

func TestParseCasesErrors(t *testing.T) {
	tests := []struct {
		name, yml, want string
	}{
		{"empty", ``, "x_test.yaml:1: empty test file"},
		{"not a mapping", `[1]`, "x_test.yaml:1: want a mapping with keys policies, defaults, cases"},
		{"yaml syntax", "cases: [\n", "x_test.yaml:"},
		{"no cases", `defaults: {}`, "cases: required"},
		{"unknown top key", "case: []\ncases: [{name: a, sql: x, expect: {action: deny}}]", `x_test.yaml:1: unknown key "case" (want policies, defaults, cases)`},
		{"unknown case key", "cases:\n  - name: a\n    sqll: SELECT 1\n    expect: {action: deny}", `x_test.yaml:3: case "a": unknown key "sqll"`},
		{"no command", "cases:\n  - name: a\n    expect: {action: deny}", `x_test.yaml:2: case "a": a command is required: one of sql, http, mcp, k8s, ssh, connect, command`},
		{"two commands", "cases:\n  - name: a\n    sql: SELECT 1\n    connect: true\n    expect: {action: deny}", `case "a": give one command`},
		{"no expect", "cases:\n  - name: a\n    sql: SELECT 1", `case "a": expect: required`},
		{"empty expect", "cases:\n  - name: a\n    sql: SELECT 1\n    expect: {}", `case "a": expect: want at least one of`},
		{"unknown expect key", "cases:\n  - name: a\n    sql: SELECT 1\n    expect: {actoin: deny}", `x_test.yaml:4: case "a": expect: unknown key "actoin"`},
		{"bad action", "cases:\n  - name: a\n    sql: SELECT 1\n    expect: {action: permit}", `expect.action: "permit" is not one of allow, deny, require_approval`},
		{"bad timeout", "cases:\n  - name: a\n    sql: SELECT 1\n    expect: {timeout: soon}", `expect.timeout: "soon" is not a Go duration`},
		{"rules not a list", "cases:\n  - name: a\n    sql: SELECT 1\n    expect: {rules: a}", `expect.rules: want a list`},
		{"identity typo", "cases:\n  - name: a\n    identity: {grups: [x]}\n    sql: SELECT 1\n    expect: {action: deny}", `x_test.yaml:3: case "a": identity: unknown field "grups"`},
		{"identity wrong type", "cases:\n  - name: a\n    identity: {groups: x}\n    sql: SELECT 1\n    expect: {action: deny}", `case "a": identity: groups: want []string, got string`},
		{"defaults typo", "defaults: {target: {lables: {}}}\ncases: [{name: a, sql: x, expect: {action: deny}}]", `x_test.yaml:1: defaults.target: unknown field "lables"`},
		{"unknown defaults key", "defaults: {expect: {}}\ncases: [{name: a, sql: x, expect: {action: deny}}]", `defaults: unknown key "expect"`},
		{"scs without sql", "cases:\n  - name: a\n    connect: true\n    standard_conforming_strings: false\n    expect: {action: deny}", `standard_conforming_strings: only applies to sql`},
		{"sql on mysql", "cases:\n  - name: a\n    target: {protocol: mysql}\n    sql: SELECT 1\n    expect: {action: deny}", `sql: cases are classified as PostgreSQL, but target.protocol is "mysql"`},
		{"connect false", "cases:\n  - name: a\n    connect: false\n    expect: {action: deny}", `connect: want true`},
		{"command without kind", "cases:\n  - name: a\n    command: {text: x}\n    expect: {action: deny}", `command.kind: required`},
		{"duplicate names", "cases:\n  - {name: a, sql: x, expect: {action: deny}}\n  - {name: a, sql: y, expect: {action: deny}}", `x_test.yaml:3: case "a": the name is already used at line 2`},
		{"duplicate key", "cases:\n  - name: a\n    sql: x\n    sql: y\n    expect: {action: deny}", `case "a": sql: given twice`},
		{"bad now", "cases:\n  - name: a\n    now: yesterday\n    sql: x\n    expect: {action: deny}", `case "a": now:`},
		{"two documents", "cases: []\n---\ncases: []\n", "holds one YAML document"},
		{"mcp without a method", "cases:\n  - name: a\n    mcp: {arguments: {q: 1}}\n    expect: {action: deny}", `x_test.yaml:3: case "a": mcp: method: required`},
		{"mcp tool with another method", "cases:\n  - name: a\n    mcp: {method: tools/list, tool: x}\n    expect: {action: deny}", `case "a": mcp: tool: only applies to method tools/call, not tools/list`},
		{"mcp arguments of a resource", "cases:\n  - name: a\n    mcp: {uri: file:///x, arguments: {a: 1}}\n    expect: {action: deny}", `mcp: arguments: only apply to tools/call and prompts/get, not resources/read`},
		{"mcp typo", "cases:\n  - name: a\n    mcp: {tol: x}\n    expect: {action: deny}", `case "a": mcp: unknown field "tol"`},
		{"mcp arguments not a map", "cases:\n  - name: a\n    mcp: {tool: x, arguments: [1]}\n    expect: {action: deny}", `case "a": mcp: arguments: want map[string]interface {}`},
		{"listed without mcp", "cases:\n  - name: a\n    sql: SELECT 1\n    expect: {listed: true}", `x_test.yaml:4: case "a": expect.listed: only applies to an mcp tools/call case`},
		{"listed not a bool", "cases:\n  - name: a\n    mcp: {tool: x}\n    expect: {listed: maybe}", `expect.listed: want true or false`},
		{"http body typo", "cases:\n  - name: a\n    http: {method: POST, path: /, bodi: {}}\n    expect: {action: deny}", `http: unknown field "bodi"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policytest.ParseCases("x_test.yaml", []byte(tt.yml))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestMCPAndHTTPBodyCases(t *testing.T) {
	cases, err := policytest.ParseCases("x_test.yaml", []byte(`
defaults:
  identity: {subject: agent, groups: [agents]}
  target: {name: tools, protocol: http, options: {mcp: "true"}}
cases:
  - name: call
    mcp: {tool: run_query, arguments: {query: "SELECT 1", limit: 10, ratio: 0.5, tags: [a], deep: {x: 1}}}
    expect: {action: deny, listed: false}
  - name: list
    mcp: {method: tools/list}
    expect: {action: deny}
  - name: read
    mcp: {uri: "file:///etc/motd"}
    expect: {action: deny}
  - name: prompt
    mcp: {prompt: greet, arguments: {who: bob}}
    expect: {action: deny}
  - name: notification
    mcp: {method: notifications/initialized}
    expect: {action: deny}
  - name: body
    http: {method: POST, path: /api/query, body: {sql: "SELECT 1", limit: 5}}
    expect: {action: deny}
  - name: typed body
    http: {method: POST, path: /api, body: [1], content_type: application/merge-patch+json}
    expect: {action: deny}
`))
	require.NoError(t, err)
	require.Len(t, cases, 7)
	c := cases[0].Input.Command
	assert.Equal(t, "http", c.Protocol)
	assert.Equal(t, protocol.KindRequest, c.Kind)
	assert.Equal(t, &protocol.MCP{Method: "tools/call", Tool: "run_query", Arguments: map[string]any{
		"query": "SELECT 1", "limit": int64(10), "ratio": 0.5, "tags": []any{"a"}, "deep": map[string]any{"x": int64(1)}}}, c.MCP)
	assert.Equal(t, `tools/call run_query {"deep":{"x":1},"limit":10,"query":"SELECT 1","ratio":0.5,"tags":["a"]}`, c.Text)
	assert.Equal(t, map[string]string{"jsonrpc_id": "1"}, c.Attrs)
	require.NotNil(t, cases[0].Expect.Listed)
	assert.False(t, *cases[0].Expect.Listed)
	assert.Equal(t, &protocol.MCP{Method: "tools/list"}, cases[1].Input.Command.MCP)
	assert.Equal(t, &protocol.MCP{Method: "resources/read", URI: "file:///etc/motd"}, cases[2].Input.Command.MCP)
	assert.Equal(t, "resources/read file:///etc/motd", cases[2].Input.Command.Text)
	assert.Equal(t, &protocol.MCP{Method: "prompts/get", Prompt: "greet", Arguments: map[string]any{"who": "bob"}}, cases[3].Input.Command.MCP)
	assert.Nil(t, cases[4].Input.Command.Attrs, "a notification has no id")
	h := cases[5].Input.Command.HTTP
	assert.Equal(t, "application/json", h.ContentType)
	assert.Equal(t, map[string]any{"sql": "SELECT 1", "limit": int64(5)}, h.Body)
	h = cases[6].Input.Command.HTTP
	assert.Equal(t, "application/merge-patch+json", h.ContentType)
	assert.Equal(t, []any{int64(1)}, h.Body)

	assert.Equal(t, []string{
		`command: http request "tools/call run_query {\"deep\":{\"x\":1},\"limit\":10,\"query\":\"SELECT 1\",\"ratio\":0.5,\"tags\":[\"a\"]}"`,
		`mcp: method tools/call tool "run_query" arguments {"deep":{"x":1},"limit":10,"query":"SELECT 1","ratio":0.5,"tags":["a"]}`,
	}, policytest.DescribeCommand(c))
	assert.Equal(t, []string{
		`command: http request "POST /api/query"`,
		`http: content_type "application/json" body {"limit":5,"sql":"SELECT 1"}`,
	}, policytest.DescribeCommand(cases[5].Input.Command))
}

func TestCheckMCP(t *testing.T) {
	e, err := policy.Parse("mcp.yaml", []byte(`
rules:
  - name: ro
    match: command.mcp.tool == "run_query" && has(command.mcp.arguments.query) && !sql(command.mcp.arguments.query).writes
    action: allow
  - name: body
    match: command.http.content_type == "application/json" && command.http.body.limit > 100
    action: deny
  - name: http
    match: command.http.method == "POST"
    action: allow
`))
	require.NoError(t, err)
	for _, tc := range []struct {
		yml  string
		diff []string
	}{
		{"mcp: {tool: run_query, arguments: {query: SELECT 1}}\nexpect: {action: allow, rules: [ro], listed: true}", nil},
		{"mcp: {tool: run_query, arguments: {query: DELETE FROM t}}\nexpect: {action: deny, rules: [], listed: true}", nil},
		{"mcp: {tool: other}\nexpect: {action: deny, listed: true}", []string{"listed: want true, got false (may some arguments make a call of other allowed?)"}},
		{"http: {method: POST, path: /, body: {limit: 1000}}\nexpect: {action: deny, rules: [body, http]}", nil},
		{"http: {method: POST, path: /, body: {limit: 10}}\nexpect: {action: allow, rules: [http]}", nil},
	} {
		c := parseOne(t, "cases:\n  - name: c\n"+indent(tc.yml))
		res := policytest.Check(e, c)
		require.NoError(t, res.Err)
		assert.Equal(t, len(tc.diff), len(res.Diff), "%s: %v", tc.yml, res.Diff)
		for i, d := range tc.diff {
			if i < len(res.Diff) {
				assert.Contains(t, res.Diff[i], d)
			}
		}
	}
}

func TestParseCasesReportsEveryProblem(t *testing.T) {
	_, err := policytest.ParseCases("x_test.yaml", []byte(`
cases:
  - name: a
    sqll: SELECT 1
    expect: {action: deny}
  - name: b
    sql: SELECT 1
    expect: {action: nope}
`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `x_test.yaml:4: case "a": unknown key "sqll"`)
	assert.Contains(t, err.Error(), `x_test.yaml:8: case "b": expect.action: "nope"`)
}

func TestCheck(t *testing.T) {
	e := engine(t)
	tests := []struct {
		name     string
		yml      string
		wantDiff []string // substrings, one per diff line; nil: passes
	}{
		{"allow with mask", `sql: SELECT 1
identity: {groups: [agents]}
expect: {action: allow, rule: agents-read, rules: [agents-read], mask: [email]}`, nil},
		{"approval", `sql: UPDATE t SET a = 1 WHERE id = 2
target: {labels: {env: prod}}
expect: {action: require_approval, rules: [prod-writes], approvers: [group:dba], timeout: 10m, message_contains: approval required}`, nil},
		{"deny", `sql: DROP TABLE t
expect: {action: deny, rules: [no-destructive-sql], mask: [], approvers: [], timeout: 0s, message_contains: destructive}`, nil},
		{"wrong action", `sql: DROP TABLE t
identity: {groups: [agents]}
expect: {action: allow}`, []string{"action: want allow, got deny"}},
		{"rule not matched", `sql: SELECT 1
expect: {rule: agents-read}`, []string{"rule: want agents-read among the matching rules, got []"}},
		{"rule that does not exist", `sql: SELECT 1
expect: {rule: agent-read}`, []string{"(no rule named agent-read in the policy)"}},
		{"rules differ", `sql: DROP TABLE t
target: {labels: {env: prod}}
expect: {rules: [no-destructive-sql, agents-read]}`, []string{"rules: want [no-destructive-sql, agents-read], got [no-destructive-sql, prod-writes] (missing agents-read; unexpected prod-writes)"}},
		{"mask differs", `sql: SELECT 1
identity: {groups: [agents]}
expect: {mask: [email, phone]}`, []string{"mask: want [email, phone], got [email] (missing phone)"}},
		{"approvers and timeout", `sql: INSERT INTO t VALUES (1)
target: {labels: {env: prod}}
expect: {approvers: [group:sre], timeout: 5m}`, []string{"approvers: want [group:sre], got [group:dba]", "timeout: want 5m0s, got 10m0s"}},
		{"message", `sql: DROP TABLE t
expect: {message_contains: forbidden}`, []string{`message: want it to contain "forbidden", got "destructive statements are not allowed"`}},
		{"no rules expected", `connect: true
identity: {groups: [agents]}
expect: {rules: []}`, []string{"rules: want [], got [agents-connect] (unexpected agents-connect)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := parseOne(t, "cases:\n  - name: c\n"+indent(tt.yml))
			res := policytest.Check(e, c)
			require.NoError(t, res.Err)
			if tt.wantDiff == nil {
				assert.True(t, res.Passed(), "diff: %v", res.Diff)
				return
			}
			assert.False(t, res.Passed())
			require.Len(t, res.Diff, len(tt.wantDiff), "diff: %v", res.Diff)
			for i, w := range tt.wantDiff {
				assert.Contains(t, res.Diff[i], w)
			}
		})
	}
}

func indent(s string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = "    " + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestRunReportAndPrint(t *testing.T) {
	e := engine(t)
	cases, err := policytest.ParseCases("cases_test.yaml", []byte(`
defaults:
  identity: {subject: bot-1, groups: [agents]}
cases:
  - name: agent connects
    connect: true
    expect: {action: allow}
  - name: agent reads
    sql: SELECT * FROM users WHERE id = 1
    expect: {action: allow, rules: [agents-read], mask: [email]}
  - name: drop is allowed (wrong)
    sql: "-- hm\nDROP TABLE users"
    expect: {action: allow}
`))
	require.NoError(t, err)
	r := policytest.Run(e, cases)
	assert.Equal(t, 2, r.Passed)
	assert.Equal(t, 1, r.Failed)
	assert.False(t, r.OK())
	assert.Equal(t, "2 passed, 1 failed", r.Summary())
	var unmatched []string
	for _, rule := range r.Unmatched {
		unmatched = append(unmatched, rule.Name)
	}
	assert.Equal(t, []string{"prod-writes", "never-used"}, unmatched)

	var b bytes.Buffer
	r.Print(&b)
	out := b.String()
	assert.Contains(t, out, "PASS  agent connects  (cases_test.yaml:5)\n")
	assert.Contains(t, out, "PASS  agent reads  (cases_test.yaml:8)\n")
	assert.Contains(t, out, "FAIL  drop is allowed (wrong)  (cases_test.yaml:11)\n")
	assert.Contains(t, out, "      action: want allow, got deny\n")
	assert.Contains(t, out, `      got: deny, rules [no-destructive-sql], message "destructive statements are not allowed"`)
	assert.Contains(t, out, `      command: postgres query "-- hm\nDROP TABLE users"`)
	assert.Contains(t, out, "      sql: DROP [users]; writes=true ddl=true\n")
	assert.Contains(t, out, "\n2 passed, 1 failed\nrules never matched: prod-writes, never-used\n")
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestRunFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "policy.yaml", testPolicy)
	write(t, dir, "policy_test.yaml", `
cases:
  - name: drop
    sql: DROP TABLE t
    expect: {action: deny, rule: no-destructive-sql}
`)
	// A second, separate policy with its own test file naming it.
	sub := filepath.Join(dir, "other")
	require.NoError(t, os.Mkdir(sub, 0o700))
	write(t, sub, "allow.yaml", "rules: [{name: everything, match: 'true', action: allow}]\n")
	write(t, sub, "unused.yaml", "rules: [{name: orphan, match: 'false', action: deny}]\n")
	write(t, sub, "allow_test.yaml", `
policies: [allow.yaml]
cases:
  - {name: anything goes, sql: DROP TABLE t, expect: {action: allow, rules: [everything]}}
`)

	r, err := policytest.RunFiles(dir, sub)
	require.NoError(t, err)
	assert.Equal(t, 2, r.Passed)
	assert.Equal(t, 0, r.Failed)
	var unmatched []string
	for _, rule := range r.Unmatched {
		unmatched = append(unmatched, rule.Name)
	}
	// policy.yaml and unused.yaml serve the test file without policies:
	// (all policy files given); "orphan" is in it and never matches.
	assert.Equal(t, []string{"agents-connect", "agents-read", "prod-writes", "never-used", "orphan"}, unmatched)

	policies, tests, err := policytest.Discover(dir, sub)
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(dir, "policy.yaml"), filepath.Join(sub, "allow.yaml"), filepath.Join(sub, "unused.yaml")}, policies)
	assert.Equal(t, []string{filepath.Join(dir, "policy_test.yaml"), filepath.Join(sub, "allow_test.yaml")}, tests)

	t.Run("unused policy file is still compiled", func(t *testing.T) {
		write(t, sub, "broken.yaml", "rules: [{name: b, match: 'command.nope', action: deny}]\n")
		defer os.Remove(filepath.Join(sub, "broken.yaml"))
		_, err := policytest.RunFiles(sub)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `broken.yaml:1: rule #1 "b": match 1:8: undefined field 'nope'`)
	})
	t.Run("a test file without policies needs policy files", func(t *testing.T) {
		_, err := policytest.RunFiles(filepath.Join(dir, "policy_test.yaml"))
		assert.ErrorContains(t, err, "policy_test.yaml: the test file names no policies")
	})
	t.Run("no test files", func(t *testing.T) {
		_, err := policytest.RunFiles(filepath.Join(dir, "policy.yaml"))
		assert.ErrorContains(t, err, "no test files")
	})
	t.Run("missing path", func(t *testing.T) {
		_, err := policytest.RunFiles(filepath.Join(dir, "nope"))
		assert.ErrorContains(t, err, "nope")
	})
}

func TestLoadCasesFromDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "policy.yaml", testPolicy)
	write(t, dir, "b_test.yaml", "cases: [{name: b, connect: true, expect: {action: deny}}]\n")
	write(t, dir, "a_test.yml", "cases: [{name: a, connect: true, expect: {action: deny}}]\n")
	cases, err := policytest.LoadCases(dir)
	require.NoError(t, err)
	require.Len(t, cases, 2)
	assert.Equal(t, "a", cases[0].Name)
	assert.Equal(t, "b", cases[1].Name)

	_, err = policytest.LoadCases(t.TempDir())
	assert.ErrorContains(t, err, "no *.yaml or *.yml files")
}

// TestRunT runs RunT itself on passing cases: a policy under test, as a
// user's go test would.
func TestRunT(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "policy.yaml", testPolicy)
	c := write(t, dir, "policy_test.yaml", `
cases:
  - {name: drop, sql: DROP TABLE t, expect: {action: deny, rule: no-destructive-sql}}
  - {name: read, sql: SELECT 1, identity: {groups: [agents]}, expect: {action: allow, mask: [email]}}
`)
	policytest.RunT(t, []string{p}, c)
}

func TestCommandBuilders(t *testing.T) {
	c := policytest.SQLCommand("SELECT 'a' ; DELETE FROM t", true)
	assert.Equal(t, "postgres", c.Protocol)
	require.Len(t, c.SQL.Statements, 2)
	assert.True(t, c.SQL.Writes)

	h := policytest.HTTPCommand(protocol.HTTP{Method: "GET", Path: "/a?x=1&y=2", Query: map[string]string{"y": "3"}})
	assert.Equal(t, map[string]string{"x": "1", "y": "3"}, h.HTTP.Query)
	assert.Equal(t, "GET /a?x=1&y=3", h.Text)

	k := policytest.K8sCommand(protocol.K8s{Verb: "get", Resource: "pods", Subresource: "exec", Namespace: "prod", Name: "web"})
	assert.Equal(t, "get pods/exec prod/web", k.Text)
	k = policytest.K8sCommand(protocol.K8s{Verb: "list", Resource: "deployments", APIGroup: "apps"})
	assert.Equal(t, "list deployments.apps", k.Text)
}
