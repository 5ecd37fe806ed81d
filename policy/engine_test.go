package policy

import (
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

func mustParse(t testing.TB, src string) *Engine {
	t.Helper()
	e, err := Parse("test.yaml", []byte(src))
	require.NoError(t, err)
	return e
}

func stmt(kind string, hasWhere bool, tables ...string) protocol.Statement {
	return protocol.Statement{Kind: kind, HasWhere: hasWhere, Tables: tables}
}

func sqlCmd(writes bool, stmts ...protocol.Statement) *protocol.Command {
	return &protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: "...",
		SQL: &protocol.SQL{Statements: stmts, Writes: writes}}
}

func httpCmd(method, path string) *protocol.Command {
	return &protocol.Command{Protocol: "http", Kind: protocol.KindRequest, Text: method + " " + path,
		HTTP: &protocol.HTTP{Method: method, Host: "api.internal", Path: path}}
}

func in(groups []string, env string, cmd *protocol.Command) *Input {
	return &Input{
		Identity: &identity.Identity{Subject: "u1", Groups: groups, Method: identity.MethodOIDC},
		Target:   &protocol.Target{Name: "db", Protocol: "postgres", Labels: map[string]string{"env": env}},
		Command:  cmd,
		Now:      time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC),
	}
}

const semanticsPolicy = `
rules:
  - name: no-drop
    match: command.sql.statements.exists(s, s.kind == "DROP")
    action: deny
    message: no drops
  - name: prod-writes
    match: target.labels.env == "prod" && command.sql.writes
    action: require_approval
    approvers: [group:dba]
    timeout: 10m
    mask: [email]
  - name: intern-writes
    match: command.sql.writes && "interns" in identity.groups
    action: require_approval
    approvers: [group:leads, group:dba]
    timeout: 5m
    message: interns need a lead
  - name: agents
    match: '"agents" in identity.groups'
    action: allow
    mask: [email, credit_card]
  - name: readers
    match: '"readers" in identity.groups'
    action: allow
    mask: [credit_card, column:users.phone]
  - name: no-secrets
    match: command.sql.statements.exists(s, "secrets" in s.tables)
    action: deny
`

func TestDecideSemantics(t *testing.T) {
	e := mustParse(t, semanticsPolicy)
	sel := stmt("SELECT", true, "users")
	upd := stmt("UPDATE", true, "orders")
	drop := stmt("DROP", false, "orders")
	tests := []struct {
		name string
		in   *Input
		want protocol.Decision
	}{
		{"allow with its mask", in([]string{"agents"}, "dev", sqlCmd(false, sel)),
			protocol.Decision{Action: protocol.Allow, Rules: []string{"agents"}, Mask: []string{"email", "credit_card"}}},
		{"masks accumulate, deduplicated in order", in([]string{"agents", "readers"}, "dev", sqlCmd(false, sel)),
			protocol.Decision{Action: protocol.Allow, Rules: []string{"agents", "readers"},
				Mask: []string{"email", "credit_card", "column:users.phone"}}},
		{"deny beats allow", in([]string{"agents"}, "dev", sqlCmd(true, drop)),
			protocol.Decision{Action: protocol.Deny, Rules: []string{"no-drop", "agents"}, Message: "no drops"}},
		{"approval beats allow; masks of both", in([]string{"agents"}, "prod", sqlCmd(true, upd)),
			protocol.Decision{Action: protocol.RequireApproval, Rules: []string{"prod-writes", "agents"},
				Message:   `approval required by policy rule "prod-writes"`,
				Approvers: []string{"group:dba"}, Timeout: 10 * time.Minute, Mask: []string{"email", "credit_card"}}},
		{"approvers union, minimum timeout, first approval message", in([]string{"interns", "agents"}, "prod", sqlCmd(true, upd)),
			protocol.Decision{Action: protocol.RequireApproval, Rules: []string{"prod-writes", "intern-writes", "agents"},
				Message:   `approval required by policy rule "prod-writes"`,
				Approvers: []string{"group:dba", "group:leads"}, Timeout: 5 * time.Minute, Mask: []string{"email", "credit_card"}}},
		{"approval without allow still asks", in([]string{"interns"}, "dev", sqlCmd(true, upd)),
			protocol.Decision{Action: protocol.RequireApproval, Rules: []string{"intern-writes"},
				Message: "interns need a lead", Approvers: []string{"group:leads", "group:dba"}, Timeout: 5 * time.Minute}},
		{"deny beats approval", in([]string{"agents"}, "prod", sqlCmd(true, upd, drop)),
			protocol.Decision{Action: protocol.Deny, Rules: []string{"no-drop", "prod-writes", "agents"}, Message: "no drops"}},
		{"first deny's message; every match listed", in([]string{"agents"}, "dev", sqlCmd(true, drop, stmt("SELECT", false, "secrets"))),
			protocol.Decision{Action: protocol.Deny, Rules: []string{"no-drop", "agents", "no-secrets"}, Message: "no drops"}},
		{"generated deny message", in([]string{"agents"}, "dev", sqlCmd(false, stmt("SELECT", false, "secrets"))),
			protocol.Decision{Action: protocol.Deny, Rules: []string{"agents", "no-secrets"}, Message: `denied by policy rule "no-secrets"`}},
		{"nothing matches: default deny", in([]string{"visitors"}, "dev", sqlCmd(false, sel)),
			protocol.Decision{Action: protocol.Deny, Message: DefaultDenyMessage}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Decide(context.Background(), tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, d)
		})
	}
}

func TestDefault(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		groups []string
		want   protocol.Action
		msg    string
	}{
		{"absent default denies", "rules:\n  - {name: a, match: '\"a\" in identity.groups', action: allow}\n", nil, protocol.Deny, DefaultDenyMessage},
		{"default deny", "default: deny\n", nil, protocol.Deny, DefaultDenyMessage},
		{"default allow", "default: allow\n", nil, protocol.Allow, ""},
		{"default allow, deny rule matches", "default: allow\nrules:\n  - {name: d, match: '\"x\" in identity.groups', action: deny, message: no x}\n",
			[]string{"x"}, protocol.Deny, "no x"},
		{"empty file is default deny", "", nil, protocol.Deny, DefaultDenyMessage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := mustParse(t, tc.policy)
			d, err := e.Decide(context.Background(), in(tc.groups, "dev", sqlCmd(false)))
			require.NoError(t, err)
			assert.Equal(t, tc.want, d.Action)
			assert.Equal(t, tc.msg, d.Message)
			assert.Equal(t, tc.want == protocol.Allow, d.Allowed())
		})
	}
}

func TestAbsentPartsAreZero(t *testing.T) {
	e := mustParse(t, `
rules:
  - name: zero
    match: >
      !command.sql.writes && !command.sql.ddl && command.sql.parse_error == "" &&
      command.sql.statements.size() == 0 &&
      command.k8s.verb == "" && command.ssh.subsystem == "" && command.attrs.size() == 0 &&
      command.mcp.method == "" && command.mcp.tool == "" && command.mcp.arguments.size() == 0 &&
      !has(command.mcp.arguments.query) && command.http.body == null && command.http.content_type == "" &&
      identity.subject == "" && identity.groups.size() == 0 && identity.claims.size() == 0 &&
      identity.expiry == timestamp(0) &&
      target.name == "" && target.labels.size() == 0 &&
      session.id == "" && session.start == timestamp(0) &&
      command.http.method == "GET" && now > timestamp("2020-01-01T00:00:00Z")
    action: allow
  - name: sql-only
    match: command.sql.statements.exists(s, !s.has_where) || command.sql.writes
    action: deny
`)
	d, err := e.Decide(context.Background(), &Input{Command: httpCmd("GET", "/x")})
	require.NoError(t, err)
	assert.Equal(t, protocol.Decision{Action: protocol.Allow, Rules: []string{"zero"}}, d)

	// The target falls back to the session's.
	e = mustParse(t, "rules:\n  - {name: t, match: 'target.name == \"s\"', action: allow}\n")
	d, err = e.Decide(context.Background(), &Input{Command: httpCmd("GET", "/"), Session: protocol.SessionInfo{Target: &protocol.Target{Name: "s"}}})
	require.NoError(t, err)
	assert.Equal(t, protocol.Allow, d.Action)

	_, err = e.Decide(context.Background(), &Input{})
	require.ErrorIs(t, err, ErrNoCommand)
	_, err = e.Decide(context.Background(), nil)
	require.ErrorIs(t, err, ErrNoCommand)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, err = e.Decide(ctx, &Input{Command: httpCmd("GET", "/")})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, protocol.Deny, d.Action)
}

func TestVariables(t *testing.T) {
	id := &identity.Identity{Subject: "s", Issuer: "i", Name: "n", Email: "e@x", Groups: []string{"g"},
		Claims: map[string]any{"dept": "fin", "level": 3, "admin": true}, Method: identity.MethodToken,
		Expiry: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	base := Input{
		Identity: id,
		Target:   &protocol.Target{Name: "t", Protocol: "postgres", Address: "a:1", Labels: map[string]string{"env": "prod"}, Options: map[string]string{"database": "app"}},
		Session:  protocol.SessionInfo{ID: "sid", ClientAddr: "1.2.3.4:5", Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		Now:      time.Date(2026, 1, 1, 9, 30, 0, 0, time.UTC),
	}
	tests := []struct {
		match string
		cmd   *protocol.Command
	}{
		{`identity.subject == "s" && identity.issuer == "i" && identity.name == "n" && identity.email == "e@x"`, nil},
		{`identity.method == "token" && identity.groups == ["g"] && identity.expiry > now`, nil},
		{`identity.claims.dept == "fin" && identity.claims.level == 3 && identity.claims.admin == true`, nil},
		{`identity.claims.?missing.orValue("none") == "none" && !("missing" in identity.claims)`, nil},
		{`target.name == "t" && target.protocol == "postgres" && target.address == "a:1" && target.options.database == "app"`, nil},
		{`session.id == "sid" && session.client_addr.startsWith("1.2.3.4") && now - session.start == duration("9h30m")`, nil},
		{`now.getHours("UTC") == 9`, nil},
		{`command.protocol == "postgres" && command.kind == "query" && command.text.lowerAscii().contains("select")`, nil},
		{`command.attrs.extended == "true"`, nil},
		{`command.sql.statements.exists(s, s.kind == "SELECT" && s.tables == ["users"] && s.has_where && "lower" in s.functions)`, nil},
		{`command.sql.statements.map(s, s.kind).distinct() == ["SELECT"]`, nil},
		{`command.sql.writes == false && command.sql.ddl == false && command.sql.parse_error == ""`, nil},
		{`command.http.method == "POST" && glob("/api/**", command.http.path) && command.http.query.dry == "1" && command.http.headers["content-type"] == "json"`,
			&protocol.Command{Protocol: "http", Kind: protocol.KindRequest, HTTP: &protocol.HTTP{Method: "POST", Host: "h", Path: "/api/v1/x",
				Query: map[string]string{"dry": "1"}, Headers: map[string]string{"content-type": "json"}}}},
		{`command.k8s.verb == "get" && command.k8s.api_group == "" && command.k8s.resource == "pods" && command.k8s.subresource == "exec" && command.k8s.namespace == "ns" && command.k8s.name == "p"`,
			&protocol.Command{Protocol: "kubernetes", Kind: protocol.KindExec, K8s: &protocol.K8s{Verb: "get", Resource: "pods", Subresource: "exec", Namespace: "ns", Name: "p"}}},
		{`command.ssh.channel_type == "session" && command.ssh.command.split(" ")[0] == "ls" && command.ssh.subsystem == ""`,
			&protocol.Command{Protocol: "ssh", Kind: protocol.KindExec, SSH: &protocol.SSH{ChannelType: "session", Command: "ls -l"}}},
		{`command.http.content_type == "application/json" && command.http.body.user.roles[0] == "admin" && command.http.body.limit == 10 && has(command.http.body.user) && !has(command.http.body.other)`,
			&protocol.Command{Protocol: "http", Kind: protocol.KindRequest, HTTP: &protocol.HTTP{Method: "POST", Path: "/x", ContentType: "application/json",
				Body: map[string]any{"user": map[string]any{"roles": []any{"admin"}}, "limit": 10.0}}}},
		{`command.http.body == null && !has(command.http.body.x)`,
			&protocol.Command{Protocol: "http", Kind: protocol.KindRequest, HTTP: &protocol.HTTP{Method: "GET", Path: "/x"}}},
		{`command.mcp.method == "tools/call" && command.mcp.tool == "run_query" && command.mcp.arguments.query.startsWith("SELECT") && command.mcp.arguments.limit <= 100 && command.mcp.arguments.limit + 1 == 11 && has(command.mcp.arguments.query) && !has(command.mcp.arguments.other) && command.mcp.uri == "" && command.mcp.prompt == ""`,
			&protocol.Command{Protocol: "http", Kind: protocol.KindRequest, MCP: &protocol.MCP{Method: "tools/call", Tool: "run_query",
				Arguments: map[string]any{"query": "SELECT 1", "limit": int64(10)}}}},
		{`command.mcp.method == "resources/read" && command.mcp.uri.startsWith("file:///") && command.mcp.arguments.size() == 0 && !has(command.mcp.arguments.x)`,
			&protocol.Command{Protocol: "http", Kind: protocol.KindRequest, MCP: &protocol.MCP{Method: "resources/read", URI: "file:///etc/motd"}}},
		{`command.mcp.prompt == "greet" && command.mcp.arguments.who == "bob"`,
			&protocol.Command{Protocol: "http", Kind: protocol.KindRequest, MCP: &protocol.MCP{Method: "prompts/get", Prompt: "greet", Arguments: map[string]any{"who": "bob"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.match, func(t *testing.T) {
			e, err := Compile(Source{Name: "v.yaml", Data: []byte("rules:\n  - name: r\n    action: allow\n    match: " + quoteYAML(tc.match) + "\n")})
			require.NoError(t, err)
			input := base
			input.Command = tc.cmd
			if input.Command == nil {
				input.Command = &protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: "SELECT lower(x) FROM users WHERE 1",
					Attrs: map[string]string{"extended": "true"},
					SQL:   &protocol.SQL{Statements: []protocol.Statement{{Kind: "SELECT", Tables: []string{"users"}, HasWhere: true, Functions: []string{"lower"}}}}}
			}
			d, err := e.Decide(context.Background(), &input)
			require.NoError(t, err)
			assert.Equal(t, protocol.Allow, d.Action, d.Message)
		})
	}
}

func quoteYAML(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func TestRuntimeErrorDenies(t *testing.T) {
	e := mustParse(t, `
rules:
  - name: everyone
    match: "true"
    action: allow
  - name: finance
    match: identity.claims.dept == "finance"
    action: allow
  - name: label-glob
    match: glob(target.labels.pattern, command.text)
    action: allow
default: allow
`)
	tests := []struct {
		name     string
		claims   map[string]any
		pattern  string
		contains []string
	}{
		{"missing map key", nil, "*", []string{`policy rule "finance" could not be evaluated`, "no such key: dept"}},
		{"bad dynamic glob", map[string]any{"dept": "finance"}, "[", []string{`policy rule "label-glob"`, "syntax error in pattern"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			input := in(nil, "dev", sqlCmd(false))
			input.Identity.Claims = tc.claims
			input.Target.Labels["pattern"] = tc.pattern
			d, err := e.Decide(context.Background(), input)
			require.NoError(t, err)
			assert.Equal(t, protocol.Deny, d.Action)
			for _, c := range tc.contains {
				assert.Contains(t, d.Message, c)
			}
			assert.Contains(t, d.Rules, "everyone")
			assert.Empty(t, d.Mask)
		})
	}
}

func TestCompileErrors(t *testing.T) {
	rule := func(match string) string {
		return "rules:\n  - name: r1\n    match: " + match + "\n    action: deny\n"
	}
	tests := []struct {
		name     string
		src      string
		want     RuleError // fields compared when set
		contains string
	}{
		{"unknown field", rule(`target.labels.env == "prod" && command.sql.wrtes`),
			RuleError{File: "p.yaml", Line: 3, Index: 1, Rule: "r1", Field: "match", ExprLine: 1, ExprColumn: 43}, "undefined field 'wrtes'"},
		{"unknown variable", rule(`user.name == "x"`),
			RuleError{Line: 3, Index: 1, Field: "match", ExprLine: 1, ExprColumn: 1}, "undeclared reference to 'user'"},
		{"syntax error", rule(`command.sql.writes &&`),
			RuleError{Line: 3, Index: 1, Field: "match", ExprLine: 1, ExprColumn: 22}, "Syntax error"},
		{"non-bool match", rule(`command.text`),
			RuleError{Line: 3, Index: 1, Field: "match", ExprLine: 1}, "must be a bool expression, got string"},
		{"dyn match is not bool", rule(`identity.claims.admin`),
			RuleError{Line: 3, Field: "match"}, "must be a bool expression, got dyn"},
		{"type error", rule(`command.sql.writes == "yes"`),
			RuleError{Line: 3, Field: "match", ExprLine: 1, ExprColumn: 20}, "no matching overload"},
		{"error on the second line of a block", "rules:\n  - name: r1\n    match: |\n      command.sql.writes &&\n        identity.nme == \"x\"\n    action: deny\n",
			RuleError{Line: 3, Index: 1, Field: "match", ExprLine: 2, ExprColumn: 11}, "undefined field 'nme'"},
		{"bad constant glob", rule(`glob("[a-", command.text)`),
			RuleError{Line: 3, Field: "match", ExprLine: 1, ExprColumn: 6}, "syntax error in pattern"},
		{"bad action", "rules:\n  - name: r1\n    match: 'true'\n    action: permit\n",
			RuleError{Line: 4, Index: 1, Rule: "r1", Field: "action"}, `"permit" is not one of allow, deny, require_approval`},
		{"missing action", "rules:\n  - name: r1\n    match: 'true'\n", RuleError{Line: 2, Field: "action"}, "required"},
		{"missing name", "rules:\n  - match: 'true'\n    action: allow\n", RuleError{Line: 2, Index: 1, Field: "name"}, "required"},
		{"missing match", "rules:\n  - name: r1\n    action: allow\n", RuleError{Line: 2, Field: "match"}, "required"},
		{"unknown rule key", "rules:\n  - name: r1\n    match: 'true'\n    action: allow\n    approver: [x]\n",
			RuleError{Line: 5, Index: 1, Rule: "r1"}, `unknown key "approver"`},
		{"unknown top-level key", "rule:\n  - name: r1\n", RuleError{Line: 1}, `unknown key "rule"`},
		{"approvers on allow", "rules:\n  - name: r1\n    match: 'true'\n    action: allow\n    approvers: [group:x]\n",
			RuleError{Line: 5, Field: "approvers"}, "only allowed with action: require_approval"},
		{"timeout on deny", "rules:\n  - name: r1\n    match: 'true'\n    action: deny\n    timeout: 5m\n",
			RuleError{Line: 5, Field: "timeout"}, "only allowed with action: require_approval"},
		{"bad timeout", "rules:\n  - name: r1\n    match: 'true'\n    action: require_approval\n    timeout: ten minutes\n",
			RuleError{Line: 5, Field: "timeout"}, "not a Go duration"},
		{"mask on deny", "rules:\n  - name: r1\n    match: 'true'\n    action: deny\n    mask: [email]\n",
			RuleError{Line: 5, Field: "mask"}, "not allowed with action: deny"},
		{"mask entry with a space", "rules:\n  - name: r1\n    match: 'true'\n    action: allow\n    mask: [email, 'credit card']\n",
			RuleError{Line: 5, Field: "mask"}, "no spaces"},
		{"approvers not a list", "rules:\n  - name: r1\n    match: 'true'\n    action: require_approval\n    approvers: group:dba\n",
			RuleError{Line: 5, Field: "approvers"}, "want a list of strings"},
		{"duplicate name in a file", "rules:\n  - {name: a, match: 'true', action: allow}\n  - {name: a, match: 'true', action: deny}\n",
			RuleError{Line: 3, Index: 2, Rule: "a", Field: "name"}, "duplicate rule name; first defined at p.yaml:2 (rule #1)"},
		{"key twice in a rule", "rules:\n  - name: r1\n    match: 'true'\n    action: allow\n    action: deny\n",
			RuleError{Line: 5, Index: 1, Rule: "r1"}, `key "action" given twice`},
		{"key twice at the top", "default: deny\ndefault: allow\n", RuleError{Line: 2}, `key "default" given twice`},
		{"bad default", "default: maybe\n", RuleError{Line: 1}, `"maybe" is not one of allow, deny`},
		{"rules not a list", "rules: {a: b}\n", RuleError{Line: 1}, "want a list of rules"},
		{"not a mapping", "- a\n", RuleError{Line: 1}, "want a mapping"},
		{"YAML syntax", "rules:\n - name: x\n   match: \"true\n", RuleError{Line: 3}, "unexpected end of stream"},
		{"two documents", "default: deny\n---\ndefault: allow\n", RuleError{}, "one YAML document"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Parse("p.yaml", []byte(tc.src))
			require.Error(t, err)
			assert.Nil(t, e)
			assert.Contains(t, err.Error(), tc.contains)
			var re *RuleError
			require.True(t, errors.As(err, &re), "%T", err)
			assert.Contains(t, re.Msg, tc.contains)
			assert.Equal(t, "p.yaml", re.File)
			w := tc.want
			if w.Line != 0 {
				assert.Equal(t, w.Line, re.Line, "line")
			}
			if w.Index != 0 {
				assert.Equal(t, w.Index, re.Index, "index")
			}
			if w.Rule != "" {
				assert.Equal(t, w.Rule, re.Rule, "rule")
			}
			if w.Field != "" {
				assert.Equal(t, w.Field, re.Field, "field")
			}
			if w.ExprLine != 0 {
				assert.Equal(t, w.ExprLine, re.ExprLine, "expression line")
				assert.NotEmpty(t, re.Snippet)
			}
			if w.ExprColumn != 0 {
				assert.Equal(t, w.ExprColumn, re.ExprColumn, "expression column")
			}
		})
	}
}

func TestCompileErrorMessage(t *testing.T) {
	_, err := Parse("p.yaml", []byte("rules:\n  - name: prod-writes\n    match: target.labels.env == \"prod\" && command.sql.wrtes\n    action: deny\n"))
	require.Error(t, err)
	assert.Equal(t, `p.yaml:3: rule #1 "prod-writes": match 1:43: undefined field 'wrtes'
 | target.labels.env == "prod" && command.sql.wrtes
 |                                           ^`, err.Error())
}

func TestCompileReportsEveryProblem(t *testing.T) {
	_, err := Parse("p.yaml", []byte(`
rules:
  - {name: a, match: 'command.sql.nope', action: allow}
  - {name: b, match: 'true', action: maybe}
  - {name: c, match: 'identity.nope == 1', action: deny}
`))
	require.Error(t, err)
	for _, want := range []string{`rule #1 "a"`, `rule #2 "b"`, `rule #3 "c"`} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestSeveralFiles(t *testing.T) {
	a := Source{Name: "a.yaml", Data: []byte("rules:\n  - {name: one, match: '\"x\" in identity.groups', action: allow, mask: [email]}\n")}
	b := Source{Name: "b.yaml", Data: []byte("default: allow\nrules:\n  - {name: two, match: '\"x\" in identity.groups', action: allow, mask: [email, phone]}\n")}
	e, err := Compile(a, b)
	require.NoError(t, err)
	assert.Equal(t, []string{"a.yaml", "b.yaml"}, e.Files())
	assert.Equal(t, protocol.Allow, e.Default())
	require.Len(t, e.Rules(), 2)
	assert.Equal(t, Rule{Name: "two", File: "b.yaml", Line: 3, Match: `"x" in identity.groups`, Action: protocol.Allow, Mask: []string{"email", "phone"}}, e.Rules()[1])
	d, err := e.Decide(context.Background(), in([]string{"x"}, "dev", sqlCmd(false)))
	require.NoError(t, err)
	assert.Equal(t, protocol.Decision{Action: protocol.Allow, Rules: []string{"one", "two"}, Mask: []string{"email", "phone"}}, d)

	t.Run("duplicate names name both files", func(t *testing.T) {
		c := Source{Name: "c.yaml", Data: []byte("rules:\n  - {name: x, match: 'true', action: deny}\n  - {name: one, match: 'true', action: deny}\n")}
		_, err := Compile(a, c)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `c.yaml:3: rule #2 "one": name: duplicate rule name; first defined at a.yaml:2 (rule #1)`)
	})
	t.Run("conflicting defaults", func(t *testing.T) {
		c := Source{Name: "c.yaml", Data: []byte("default: deny\n")}
		_, err := Compile(b, c)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "c.yaml: default: deny conflicts with default: allow in b.yaml")
	})
	t.Run("equal defaults", func(t *testing.T) {
		c := Source{Name: "c.yaml", Data: []byte("default: allow\n")}
		e, err := Compile(b, c)
		require.NoError(t, err)
		assert.Equal(t, protocol.Allow, e.Default())
	})
	t.Run("none", func(t *testing.T) {
		_, err := Compile()
		require.Error(t, err)
	})
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(data), 0o600))
		return p
	}
	write("20-b.yml", "rules:\n  - {name: b, match: 'true', action: allow}\n")
	write("10-a.yaml", "rules:\n  - {name: a, match: 'true', action: allow}\n")
	write("notes.txt", "not a policy")
	write(".#10-a.yaml", "garbage: [")
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o700))
	extra := filepath.Join(t.TempDir(), "extra.policy")
	require.NoError(t, os.WriteFile(extra, []byte("rules:\n  - {name: c, match: 'true', action: allow}\n"), 0o600))

	e, err := Load(dir, extra, filepath.Join(dir, "10-a.yaml")) // the repeated file counts once
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(dir, "10-a.yaml"), filepath.Join(dir, "20-b.yml"), extra}, e.Files())
	d, err := e.Decide(context.Background(), in(nil, "dev", sqlCmd(false)))
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "c"}, d.Rules)

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = Load(t.TempDir())
	require.ErrorContains(t, err, "no *.yaml or *.yml files")
	_, err = Load()
	require.Error(t, err)
}

// TestGuardsAreExact checks that skipping rules by command shape (guard.go)
// never changes a decision.
func TestGuardsAreExact(t *testing.T) {
	e := mustParse(t, strings.Replace(benchPolicy, "default: deny", `
  - name: kind-connect
    match: command.kind == "connect" && target.labels.env == "prod"
    action: require_approval
  - name: not-sql
    match: '!command.sql.writes || command.protocol != "postgres"'
    action: allow
  - name: any-part
    match: command.http.method == "" || command.ssh.channel_type == "session"
    action: allow
  - name: mcp-tools
    match: command.mcp.tool == "run_query" && has(command.mcp.arguments.query) && !sql(command.mcp.arguments.query).writes
    action: allow
  - name: mcp-deletes
    match: glob("delete_*", command.mcp.tool)
    action: deny
  - name: mcp-list
    match: command.mcp.method == "tools/list"
    action: allow
  - name: http-body
    match: has(command.http.body.q) && command.http.body.q == "x"
    action: deny
default: deny`, 1))
	cmds := []*protocol.Command{
		benchInput().Command,
		sqlCmd(true, stmt("DROP", false, "t")),
		sqlCmd(false),
		{Protocol: "postgres", Kind: protocol.KindConnect},
		{Protocol: "mysql", Kind: protocol.KindQuery, SQL: &protocol.SQL{ParseError: "bad"}},
		httpCmd("GET", "/admin/users"),
		httpCmd("DELETE", "/api"),
		{Protocol: "kubernetes", Kind: protocol.KindExec, K8s: &protocol.K8s{Verb: "get", Resource: "pods", Subresource: "exec"}},
		{Protocol: "kubernetes", Kind: protocol.KindRequest, K8s: &protocol.K8s{Verb: "list", Resource: "pods"}},
		{Protocol: "ssh", Kind: protocol.KindShell, SSH: &protocol.SSH{ChannelType: "session"}},
		{Protocol: "ssh", Kind: protocol.KindExec, SSH: &protocol.SSH{ChannelType: "session", Subsystem: "sftp"}},
		{Protocol: "custom", Kind: protocol.KindOther, Text: "copy program"},
		{Protocol: "http", Kind: protocol.KindRequest, Text: "tools/call run_query", MCP: &protocol.MCP{Method: "tools/call", Tool: "run_query", Arguments: map[string]any{"query": "SELECT 1"}}},
		{Protocol: "http", Kind: protocol.KindRequest, Text: "tools/call delete_user", MCP: &protocol.MCP{Method: "tools/call", Tool: "delete_user"}},
		{Protocol: "http", Kind: protocol.KindRequest, Text: "tools/list", MCP: &protocol.MCP{Method: "tools/list"}},
		{Protocol: "http", Kind: protocol.KindRequest, Text: "POST /api", HTTP: &protocol.HTTP{Method: "POST", Path: "/api", Body: map[string]any{"q": "x"}}},
	}
	for _, groups := range [][]string{nil, {"agents"}, {"dba", "ops"}} {
		for _, env := range []string{"prod", "dev"} {
			for _, c := range cmds {
				input := in(groups, env, c)
				input.Identity.Claims = map[string]any{"department": "finance"}
				want, err := e.decide(context.Background(), input, false)
				require.NoError(t, err)
				got, err := e.Decide(context.Background(), input)
				require.NoError(t, err)
				assert.Equal(t, want, got, "%v %s %+v", groups, env, c)
			}
		}
	}
	// Some rules were skipped for some shapes, or the test proves nothing.
	skipped := 0
	for _, s := range *e.guards.Load() {
		for _, b := range s {
			if b {
				skipped++
			}
		}
	}
	assert.Greater(t, skipped, 10)
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "users", true},
		{"*", "a/b", false},
		{"user?", "users", true},
		{"[a-c]*", "bob", true},
		{"*secret*", "app_secrets", true},
		{"/api/*", "/api/v1", true},
		{"/api/*", "/api/v1/pods", false},
		{"/api/**", "/api/v1/pods", true},
		{"/api/**", "/api", true},
		{"/api/**", "/apis/x", false},
		{"/api/**/pods", "/api/v1/namespaces/x/pods", true},
		{"/api/**/pods", "/api/pods", true},
		{"/api/**/pods", "/api/v1/pods/x", false},
		{"**", "anything/at/all", true},
		{"**/*.sql", "a/b/c.sql", true},
		{"a/**/**/b", "a/b", true},
		{"a/**/**/b", "a/x/y/b", true},
		{"a/**/b/**", "a/b", true},
		{"a/**/b/**/c", "a/b", false},
		{"a/**", "b", false},
		{"/**", "/", true},
		{"**", "", true},
		{"a/*/**", "a", false},
		{"a/**/", "a/b/", true},
		{"a/**/", "a/b", false},
	}
	for _, tc := range tests {
		got, err := Glob(tc.pattern, tc.name)
		require.NoError(t, err)
		assert.Equal(t, tc.want, got, "glob(%q, %q)", tc.pattern, tc.name)
	}
	_, err := Glob("[", "x")
	require.Error(t, err)
	_, err = Glob("**/[", "x")
	require.Error(t, err)

	// And from CEL.
	e := mustParse(t, "rules:\n  - {name: g, match: 'glob(\"/api/**\", command.http.path)', action: allow}\n")
	d, err := e.Decide(context.Background(), &Input{Command: httpCmd("GET", "/api/v1/pods")})
	require.NoError(t, err)
	assert.Equal(t, protocol.Allow, d.Action)
}

func TestExtensions(t *testing.T) {
	e := mustParse(t, `
rules:
  - name: strings
    match: command.text.lowerAscii().split(" ")[0] == "select" && command.text.indexOf("FROM") > 0
    action: allow
  - name: lists
    match: command.sql.statements.map(s, s.tables).flatten().distinct().sort() == ["a", "b"]
    action: allow
`)
	c := sqlCmd(false, stmt("SELECT", true, "b", "a"), stmt("SELECT", true, "a"))
	c.Text = "SELECT x FROM a"
	d, err := e.Decide(context.Background(), &Input{Command: c})
	require.NoError(t, err)
	assert.Equal(t, []string{"strings", "lists"}, d.Rules)
}

func TestYAMLAnchors(t *testing.T) {
	e := mustParse(t, `
rules:
  - name: a
    match: command.sql.writes
    action: require_approval
    approvers: &dbas [group:dba, user:alice]
  - name: b
    match: command.sql.ddl
    action: require_approval
    approvers: *dbas
`)
	assert.Equal(t, []string{"group:dba", "user:alice"}, e.Rules()[1].Approvers)
}

// globRef is the obvious (allocating) implementation Glob must agree with.
func globRef(pattern, name string) bool {
	var match func(p, n []string) bool
	match = func(p, n []string) bool {
		for len(p) > 0 {
			if p[0] == "**" {
				for len(p) > 0 && p[0] == "**" {
					p = p[1:]
				}
				if len(p) == 0 {
					return true
				}
				for i := range len(n) + 1 {
					if match(p, n[i:]) {
						return true
					}
				}
				return false
			}
			if len(n) == 0 {
				return false
			}
			if ok, _ := path.Match(p[0], n[0]); !ok {
				return false
			}
			p, n = p[1:], n[1:]
		}
		return len(n) == 0
	}
	return match(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"/api/**", "/api"}, {"a/**/b/**/c", "a/x/b/c"}, {"**/*.sql", "a/b.sql"}, {"a/**/", "a/b/"}, {"**", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if !strings.Contains(pattern, "**") || strings.Contains(pattern, `\`) || len(pattern) > 64 || len(name) > 64 {
			return
		}
		got, err := Glob(pattern, name)
		if err != nil {
			return
		}
		if want := globRef(pattern, name); got != want {
			t.Fatalf("Glob(%q, %q) = %v, want %v", pattern, name, got, want)
		}
	})
}

func TestLoadDirectorySkipsPolicyTests(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("rules:\n  - name: r\n    match: 'true'\n    action: allow\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p_test.yaml"), []byte("cases:\n  - name: c\n    sql: select 1\n    expect: {action: allow}\n"), 0o600))
	e, err := Load(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(dir, "p.yaml")}, e.Files())
}

func TestMaskEntriesCheckedAtLoad(t *testing.T) {
	_, err := Parse("m.yaml", []byte("rules:\n  - name: r\n    match: 'true'\n    action: allow\n    mask: [email, 'column:users.ssn=bogus']\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "m.yaml:5")
	assert.Contains(t, err.Error(), "bogus")

	_, err = Parse("m.yaml", []byte("rules:\n  - name: r\n    match: 'true'\n    action: allow\n    mask: [email, 'column:users.phone=partial:4', 'json:$.card=hash']\n"))
	require.NoError(t, err)
}

func TestQuorum(t *testing.T) {
	e, err := Parse("q.yaml", []byte(`
rules:
  - name: two-dbas
    match: command.sql.writes
    action: require_approval
    approvers: [group:dba]
    quorum: 2
  - name: one-lead
    match: command.sql.ddl
    action: require_approval
    approvers: [group:leads]
  - name: no-drop
    match: command.sql.statements.exists(s, s.kind == "DROP")
    action: deny
default: allow
`))
	require.NoError(t, err)
	decide := func(sql *protocol.SQL) protocol.Decision {
		d, err := e.Decide(context.Background(), &Input{Command: &protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, SQL: sql}})
		require.NoError(t, err)
		return d
	}
	d := decide(&protocol.SQL{Statements: []protocol.Statement{{Kind: "CREATE TABLE"}}, Writes: true, DDL: true})
	assert.Equal(t, protocol.RequireApproval, d.Action)
	assert.Equal(t, 2, d.Quorum, "the largest quorum of the matching approval rules")
	assert.Equal(t, []string{"group:dba", "group:leads"}, d.Approvers)
	d = decide(&protocol.SQL{Statements: []protocol.Statement{{Kind: "DROP"}}, Writes: true, DDL: true})
	assert.Equal(t, protocol.Deny, d.Action)
	assert.Zero(t, d.Quorum)

	for _, bad := range []string{"0", "x", "101"} {
		_, err := Parse("q.yaml", []byte("rules:\n  - name: r\n    match: 'true'\n    action: require_approval\n    quorum: "+bad+"\n"))
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "quorum")
	}
	_, err = Parse("q.yaml", []byte("rules:\n  - name: r\n    match: 'true'\n    action: allow\n    quorum: 2\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "only allowed with action: require_approval")
}

func TestGrantWindow(t *testing.T) {
	e, err := Parse("g.yaml", []byte(`
rules:
  - name: writes-grant-15m
    match: command.sql.writes
    action: require_approval
    approvers: [group:dba]
    grant_window: 15m
  - name: deletes-grant-5m
    match: command.sql.statements.exists(s, s.kind == "DELETE")
    action: require_approval
    approvers: [group:dba]
    grant_window: 5m
  - name: ddl-every-time
    match: command.sql.ddl
    action: require_approval
    approvers: [group:dba]
default: allow
`))
	require.NoError(t, err)
	decide := func(sql *protocol.SQL) protocol.Decision {
		d, err := e.Decide(context.Background(), &Input{Command: &protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, SQL: sql}})
		require.NoError(t, err)
		return d
	}
	d := decide(&protocol.SQL{Statements: []protocol.Statement{{Kind: "UPDATE"}}, Writes: true})
	assert.Equal(t, 15*time.Minute, d.GrantWindow)
	d = decide(&protocol.SQL{Statements: []protocol.Statement{{Kind: "DELETE"}}, Writes: true})
	assert.Equal(t, 5*time.Minute, d.GrantWindow, "the shortest window of the matching rules")
	d = decide(&protocol.SQL{Statements: []protocol.Statement{{Kind: "DROP"}}, Writes: true, DDL: true})
	assert.Equal(t, protocol.RequireApproval, d.Action)
	assert.Zero(t, d.GrantWindow, "a matching rule without a window allows none")
	assert.Equal(t, 15*time.Minute, e.Rules()[0].GrantWindow)

	for _, bad := range []string{"0s", "-1m", "soon", "25h"} {
		_, err := Parse("g.yaml", []byte("rules:\n  - name: r\n    match: 'true'\n    action: require_approval\n    grant_window: "+bad+"\n"))
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "grant_window")
	}
	_, err = Parse("g.yaml", []byte("rules:\n  - name: r\n    match: 'true'\n    action: allow\n    grant_window: 5m\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "grant_window: only allowed with action: require_approval")
}
