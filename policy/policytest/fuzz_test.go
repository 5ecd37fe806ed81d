package policytest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/policy/policytest"
)

// FuzzParseCases: the policy-test loader never panics on any YAML; every
// problem it reports names the file; every case it returns has a command
// and runs against a policy without panicking.
func FuzzParseCases(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "examples", "policies", "*_test.yaml"))
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		"cases:\n  - name: c\n    sql: select 1\n    expect: {action: allow}\n",
		"defaults: {identity: {subject: a, groups: [dba]}}\ncases:\n  - name: c\n    sql: DROP TABLE t\n    standard_conforming_strings: false\n    expect: {action: deny, rule: no-drop}\n",
		"cases: [1]\n", "cases:\n  - name: c\n    sql: x\n    expect: {action: maybe}\n", "---\n---\n", "",
	} {
		f.Add([]byte(s))
	}
	e, err := policy.Parse("p.yaml", []byte("rules:\n  - name: deny-writes\n    match: command.kind == \"query\" && command.sql.writes\n    action: deny\ndefault: allow\n"))
	if err != nil {
		f.Fatal(err)
	}
	const name = "fuzz/p_test.yaml"
	f.Fuzz(func(t *testing.T, data []byte) {
		cases, err := policytest.ParseCases(name, data)
		if err != nil {
			if cases != nil {
				t.Fatalf("cases with an error: %v", err)
			}
			errs := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			}
			for _, one := range errs {
				if !strings.HasPrefix(one.Error(), name+":") {
					t.Fatalf("error does not start with the file: %v", one)
				}
			}
			return
		}
		for _, c := range cases {
			if c.File != name || c.Input.Command == nil {
				t.Fatalf("case %+v", c)
			}
			_ = policytest.Check(e, c)
		}
	})
}
