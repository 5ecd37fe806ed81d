package policy

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// benchPolicy is 20 rules of the kind a real deployment has: SQL statement
// rules, HTTP, Kubernetes and SSH rules, identity and label conditions.
const benchPolicy = `
rules:
  - name: no-unparsed-sql
    match: command.sql.parse_error != ""
    action: deny
    message: the gateway could not parse this SQL
  - name: no-destructive-sql
    match: >
      command.sql.statements.exists(s, s.kind in ["DROP", "TRUNCATE"] ||
        (s.kind in ["DELETE", "UPDATE"] && !s.has_where))
    action: deny
    message: destructive statements are not allowed
  - name: no-grants
    match: command.sql.statements.exists(s, s.kind in ["GRANT", "REVOKE", "ALTER"])
    action: deny
  - name: no-dangerous-functions
    match: command.sql.statements.exists(s, s.functions.exists(f, f in ["pg_read_file", "pg_terminate_backend", "lo_import"]))
    action: deny
  - name: no-copy-program
    match: command.sql.statements.exists(s, s.kind == "COPY") && command.text.lowerAscii().contains("program")
    action: deny
  - name: prod-writes-need-a-dba
    match: target.labels.env == "prod" && command.sql.writes
    action: require_approval
    approvers: [group:dba]
    timeout: 10m
  - name: prod-ddl-needs-two
    match: target.labels.env == "prod" && command.sql.ddl
    action: require_approval
    approvers: [group:dba, group:sre]
    timeout: 30m
  - name: agents-read
    match: '"agents" in identity.groups && command.protocol == "postgres"'
    action: allow
    mask: [email, credit_card, column:users.phone]
  - name: dbas-everything
    match: '"dba" in identity.groups'
    action: allow
  - name: analysts-reporting
    match: '"analysts" in identity.groups && target.name.startsWith("reporting-")'
    action: allow
    mask: [email]
  - name: no-secrets-tables
    match: command.sql.statements.exists(s, s.tables.exists(t, glob("*secret*", t) || t == "pg_authid"))
    action: deny
  - name: expired-identity
    match: identity.expiry != timestamp(0) && identity.expiry < now
    action: deny
  - name: business-hours-prod
    match: target.labels.env == "prod" && now.getHours("UTC") < 6
    action: require_approval
    approvers: [group:oncall]
  - name: http-read
    match: command.protocol == "http" && command.http.method in ["GET", "HEAD"]
    action: allow
  - name: http-admin
    match: command.protocol == "http" && glob("/admin/**", command.http.path)
    action: deny
  - name: k8s-no-exec-prod
    match: command.k8s.subresource in ["exec", "attach"] && target.labels.env == "prod"
    action: require_approval
    approvers: [group:sre]
  - name: k8s-read
    match: command.k8s.verb in ["get", "list", "watch"] && command.k8s.subresource == ""
    action: allow
  - name: ssh-no-shell
    match: command.protocol == "ssh" && command.ssh.channel_type == "session" && command.kind == "shell"
    action: deny
  - name: ssh-sftp
    match: command.ssh.subsystem == "sftp" && "ops" in identity.groups
    action: allow
  - name: claims-department
    match: identity.claims.?department.orValue("") == "finance" && target.labels.?data.orValue("") == "pci"
    action: allow
    mask: [credit_card]
default: deny
`

func benchInput() *Input {
	id := &identity.Identity{
		Subject: "agent-7", Issuer: "https://idp.example", Email: "agent7@example.com",
		Groups: []string{"agents", "readers"}, Claims: map[string]any{"department": "finance"},
		Method: identity.MethodOIDC, Expiry: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	tgt := &protocol.Target{Name: "orders-db", Protocol: "postgres", Address: "db:5432",
		Labels: map[string]string{"env": "prod", "data": "pci"}}
	return &Input{
		Identity: id,
		Target:   tgt,
		Session:  protocol.SessionInfo{ID: "01J0000000000000000000000", Identity: id, Target: tgt, ClientAddr: "10.0.0.7:51234", Start: time.Now()},
		Command: &protocol.Command{
			Protocol: "postgres", Kind: protocol.KindQuery,
			Text: "SELECT id, email FROM users WHERE id = 1; UPDATE orders SET state = 'x' WHERE id = 2",
			SQL: &protocol.SQL{
				Statements: []protocol.Statement{
					{Kind: "SELECT", Tables: []string{"users"}, HasWhere: true},
					{Kind: "UPDATE", Tables: []string{"orders"}, HasWhere: true, Functions: []string{"now"}},
				},
				Writes: true,
			},
		},
		Now: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC),
	}
}

func BenchmarkDecide20Rules(b *testing.B) {
	e, err := Parse("bench.yaml", []byte(benchPolicy))
	require.NoError(b, err)
	require.Len(b, e.Rules(), 20)
	in := benchInput()
	ctx := context.Background()
	d, err := e.Decide(ctx, in)
	require.NoError(b, err)
	require.Equal(b, protocol.RequireApproval, d.Action, d.Message)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Decide(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecide20RulesUnguarded is BenchmarkDecide20Rules evaluating
// every rule, to show what the shape guards (guard.go) save.
func BenchmarkDecide20RulesUnguarded(b *testing.B) {
	e, err := Parse("bench.yaml", []byte(benchPolicy))
	require.NoError(b, err)
	in := benchInput()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.decide(ctx, in, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecide20RulesHTTP decides an HTTP request under the same
// policy: the SQL rules are skipped by the guards.
func BenchmarkDecide20RulesHTTP(b *testing.B) {
	e, err := Parse("bench.yaml", []byte(benchPolicy))
	require.NoError(b, err)
	in := benchInput()
	in.Command = &protocol.Command{Protocol: "http", Kind: protocol.KindRequest, Text: "GET /api/v1/orders",
		HTTP: &protocol.HTTP{Method: "GET", Host: "api.internal", Path: "/api/v1/orders"}}
	ctx := context.Background()
	d, err := e.Decide(ctx, in)
	require.NoError(b, err)
	require.Equal(b, protocol.Allow, d.Action, d.Message)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Decide(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecide20RulesMemo is BenchmarkDecide20Rules in a session whose
// memo (memo.go) has seen the statement's form: the rules on the form,
// identity and target are not evaluated again; business-hours-prod and
// expired-identity (on the time) and no-copy-program's text are.
func BenchmarkDecide20RulesMemo(b *testing.B) {
	e, err := Parse("bench.yaml", []byte(benchPolicy))
	require.NoError(b, err)
	in := benchInput()
	want, err := e.Decide(context.Background(), in)
	require.NoError(b, err)
	in.Memo = NewMemo()
	ctx := context.Background()
	for range 2 {
		d, err := e.Decide(ctx, in)
		require.NoError(b, err)
		require.Equal(b, want, d)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Decide(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}
