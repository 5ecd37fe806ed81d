package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// FuzzParse: the policy-file loader never panics on any YAML; every
// problem it reports is a RuleError naming the file (and a line, where it
// has one, that is in the file); and a policy it accepts decides commands
// without panicking, each decision one of the three actions or an error.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "examples", "policies", "*.yaml"))
	for _, p := range files {
		if strings.HasSuffix(p, "_test.yaml") {
			continue // policy tests, for policytest's loader
		}
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		"rules:\n  - name: r\n    match: 'true'\n    action: allow\n",
		"rules:\n  - &a {name: a, match: 'true', action: deny}\n  - *a\n",
		"rules:\n  - name: x\n    match: command.sql.statements.exists(s, glob('a/**', s.kind))\n    action: require_approval\n    approvers: [group:dba]\n    quorum: 2\n    timeout: 5m\n    grant_window: 1h\n",
		"rules:\n  - name: m\n    match: 'true'\n    action: allow\n    mask: [email, 'column:users.ssn=partial:4', 'json:$.card=hash']\n",
		"detectors:\n  - name: order_id\n    pattern: 'ORD-[0-9]{4}'\n    validate: luhn\ndefault: deny\n",
		"default: allow\n---\ndefault: deny\n", "rules: {}\n", "[1, 2]\n", "a: &x [*x]\n", "rules:\n  - name: r\n    match: '1 +'\n    action: allow\n",
		"\t", "rules:\n  - name: r\n    name: r\n    match: 'x\n",
	} {
		f.Add([]byte(s))
	}
	inputs := []*Input{
		{Identity: &identity.Identity{Subject: "alice", Groups: []string{"dba", "demo"}}, Target: &protocol.Target{Name: "pg-prod", Protocol: "postgres"},
			Command: &protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: "DELETE FROM t",
				SQL: &protocol.SQL{Statements: []protocol.Statement{{Kind: "DELETE", Tables: []string{"t"}}}, Writes: true}},
			Now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)},
		{Command: &protocol.Command{Protocol: "postgres", Kind: protocol.KindConnect}},
		{Identity: &identity.Identity{Subject: "bot"}, Command: &protocol.Command{Protocol: "http", Kind: protocol.KindRequest, Text: "GET /api",
			HTTP: &protocol.HTTP{Method: "GET", Path: "/api/v1/pods"}}},
	}
	const name = "fuzz/policy.yaml"
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Parse(name, data)
		if err != nil {
			if e != nil {
				t.Fatalf("an engine with an error: %v", err)
			}
			errs := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			}
			// Lines as YAML counts them: "\r\n", "\r" and "\n" each end one.
			lines := 1
			for i, c := range data {
				if c == '\n' || c == '\r' && (i+1 == len(data) || data[i+1] != '\n') {
					lines++
				}
			}
			for _, one := range errs {
				var re *RuleError
				if !errors.As(one, &re) {
					t.Fatalf("%T is not a RuleError: %v", one, one)
				}
				if re.File != name || re.Line < 0 || re.Line > lines+1 {
					t.Fatalf("%q: file %q line %d of %d: %v", data, re.File, re.Line, lines, re)
				}
			}
			return
		}
		if got := e.Files(); len(got) != 1 || got[0] != name {
			t.Fatalf("files %q", got)
		}
		for _, in := range inputs {
			d, err := e.Decide(context.Background(), in)
			if err != nil {
				continue // fails closed: the caller denies
			}
			switch d.Action {
			case protocol.Allow, protocol.Deny, protocol.RequireApproval:
			default:
				t.Fatalf("decision %+v", d)
			}
		}
	})
}
