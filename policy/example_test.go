package policy_test

import (
	"context"
	"fmt"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
)

func Example() {
	e, err := policy.Parse("policy.yaml", []byte(`
rules:
  - name: no-destructive-sql
    match: >
      command.sql.statements.exists(s, s.kind in ["DROP", "TRUNCATE"] ||
        (s.kind in ["DELETE", "UPDATE"] && !s.has_where))
    action: deny
    message: destructive statements are not allowed
  - name: prod-writes-need-a-dba
    match: target.labels.env == "prod" && command.sql.writes
    action: require_approval
    approvers: [group:dba]
    timeout: 10m
  - name: agents-read
    match: '"agents" in identity.groups'
    action: allow
    mask: [email, credit_card, column:users.phone]
default: deny
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	agent := &identity.Identity{Subject: "agent-7", Groups: []string{"agents"}}
	prod := &protocol.Target{Name: "orders", Protocol: "postgres", Labels: map[string]string{"env": "prod"}}
	for _, sql := range []*protocol.SQL{
		{Statements: []protocol.Statement{{Kind: "SELECT", Tables: []string{"users"}}}},
		{Statements: []protocol.Statement{{Kind: "UPDATE", Tables: []string{"orders"}, HasWhere: true}}, Writes: true},
		{Statements: []protocol.Statement{{Kind: "DELETE", Tables: []string{"orders"}}}, Writes: true},
	} {
		d, err := e.Decide(context.Background(), &policy.Input{
			Identity: agent,
			Target:   prod,
			Command:  &protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, SQL: sql},
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s %v %q approvers=%v timeout=%v mask=%v\n", d.Action, d.Rules, d.Message, d.Approvers, d.Timeout, d.Mask)
	}
	// Output:
	// allow [agents-read] "" approvers=[] timeout=0s mask=[email credit_card column:users.phone]
	// require_approval [prod-writes-need-a-dba agents-read] "approval required by policy rule \"prod-writes-need-a-dba\"" approvers=[group:dba] timeout=10m0s mask=[email credit_card column:users.phone]
	// deny [no-destructive-sql prod-writes-need-a-dba agents-read] "destructive statements are not allowed" approvers=[] timeout=0s mask=[]
}
