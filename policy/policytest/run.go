package policytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/protocol/http/mcp"
)

// Result is the outcome of one case.
type Result struct {
	Case     *Case
	Decision protocol.Decision
	// Err is set when the engine could not decide.
	Err error
	// Diff has one line per unmet expectation, "field: want X, got Y";
	// empty when the case passed.
	Diff []string
}

// Passed reports whether the decision met every expectation.
func (r *Result) Passed() bool { return r.Err == nil && len(r.Diff) == 0 }

// Report is the outcome of a run.
type Report struct {
	Results        []*Result
	Passed, Failed int
	// Unmatched lists the rules no case matched, in file order: rules
	// without a test.
	Unmatched []policy.Rule
}

// OK reports whether every case passed.
func (r *Report) OK() bool { return r.Failed == 0 }

// Summary is "N passed, M failed".
func (r *Report) Summary() string { return fmt.Sprintf("%d passed, %d failed", r.Passed, r.Failed) }

// Run decides every case with e and checks the decisions; it uses e for
// every case, whatever policies the cases' files name (RunFiles honours
// those).
func Run(e *policy.Engine, cases []*Case) *Report {
	r := &Report{}
	matched := map[string]bool{}
	for _, c := range cases {
		res := Check(e, c)
		for _, name := range res.Decision.Rules {
			matched[name] = true
		}
		r.add(res)
	}
	for _, rule := range e.Rules() {
		if !matched[rule.Name] {
			r.Unmatched = append(r.Unmatched, rule)
		}
	}
	return r
}

func (r *Report) add(res *Result) {
	r.Results = append(r.Results, res)
	if res.Passed() {
		r.Passed++
	} else {
		r.Failed++
	}
}

// Check decides one case with e and compares the decision with the
// expectation.
func Check(e *policy.Engine, c *Case) *Result {
	res := &Result{Case: c}
	in := c.Input
	res.Decision, res.Err = e.Decide(context.Background(), &in)
	if res.Err != nil {
		return res
	}
	d, x := res.Decision, c.Expect
	known := map[string]bool{}
	for _, rule := range e.Rules() {
		known[rule.Name] = true
	}
	unknown := func(names []string) string {
		var bad []string
		for _, n := range names {
			if !known[n] {
				bad = append(bad, n)
			}
		}
		if len(bad) == 0 {
			return ""
		}
		return fmt.Sprintf(" (no rule named %s in the policy)", strings.Join(bad, ", "))
	}
	if x.Action != "" && x.Action != d.Action {
		res.Diff = append(res.Diff, fmt.Sprintf("action: want %s, got %s", x.Action, d.Action))
	}
	if x.Rule != "" && !slices.Contains(d.Rules, x.Rule) {
		res.Diff = append(res.Diff, fmt.Sprintf("rule: want %s among the matching rules, got %s%s", x.Rule, list(d.Rules), unknown([]string{x.Rule})))
	}
	if x.Rules != nil {
		if missing, extra := setDiff(x.Rules, d.Rules); len(missing)+len(extra) > 0 {
			res.Diff = append(res.Diff, fmt.Sprintf("rules: want %s, got %s%s%s", list(x.Rules), list(d.Rules), missingExtra(missing, extra), unknown(x.Rules)))
		}
	}
	if x.Mask != nil {
		if missing, extra := setDiff(x.Mask, d.Mask); len(missing)+len(extra) > 0 {
			res.Diff = append(res.Diff, fmt.Sprintf("mask: want %s, got %s%s", list(x.Mask), list(d.Mask), missingExtra(missing, extra)))
		}
	}
	if x.Approvers != nil {
		if missing, extra := setDiff(x.Approvers, d.Approvers); len(missing)+len(extra) > 0 {
			res.Diff = append(res.Diff, fmt.Sprintf("approvers: want %s, got %s%s", list(x.Approvers), list(d.Approvers), missingExtra(missing, extra)))
		}
	}
	if x.Timeout != nil && *x.Timeout != d.Timeout {
		res.Diff = append(res.Diff, fmt.Sprintf("timeout: want %v, got %v", *x.Timeout, d.Timeout))
	}
	if x.MessageContains != "" && !strings.Contains(d.Message, x.MessageContains) {
		res.Diff = append(res.Diff, fmt.Sprintf("message: want it to contain %q, got %q", x.MessageContains, d.Message))
	}
	if x.Listed != nil {
		listed, err := Listed(e, &in)
		switch {
		case err != nil:
			res.Err = err
		case listed != *x.Listed:
			res.Diff = append(res.Diff, fmt.Sprintf("listed: want %t, got %t (may some arguments make a call of %s allowed?)", *x.Listed, listed, in.Command.MCP.Tool))
		}
	}
	return res
}

// Listed reports whether the tool of an MCP tools/call input would be
// listed in the caller's tools/list: what the gateway asks policy
// (policy.Engine.MayAllow) about a call of the tool with unknown
// arguments.
func Listed(e *policy.Engine, in *policy.Input) (bool, error) {
	if in.Command == nil || in.Command.MCP == nil || in.Command.MCP.Tool == "" {
		return false, errors.New("policytest: listed: not an MCP tools/call command")
	}
	probe := *in
	cmd := mcp.ToolCommand(in.Command.MCP.Tool)
	cmd.Protocol = in.Command.Protocol
	probe.Command = cmd
	return e.MayAllow(context.Background(), &probe)
}

// setDiff returns what want has that got lacks, and what got has beyond
// want.
func setDiff(want, got []string) (missing, extra []string) {
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	return missing, extra
}

func missingExtra(missing, extra []string) string {
	var parts []string
	if len(missing) > 0 {
		parts = append(parts, "missing "+strings.Join(missing, ", "))
	}
	if len(extra) > 0 {
		parts = append(parts, "unexpected "+strings.Join(extra, ", "))
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

func list(s []string) string { return "[" + strings.Join(s, ", ") + "]" }

// Print writes the report: PASS or FAIL per case (a failure with its diff,
// the whole decision and the command as classified), then the summary
// line and the rules no case matched.
func (r *Report) Print(w io.Writer) {
	for _, res := range r.Results {
		c := res.Case
		if res.Passed() {
			fmt.Fprintf(w, "PASS  %s  (%s)\n", c.Name, c.Where())
			continue
		}
		fmt.Fprintf(w, "FAIL  %s  (%s)\n", c.Name, c.Where())
		if res.Err != nil {
			fmt.Fprintf(w, "      error: %v\n", res.Err)
		}
		for _, line := range res.Diff {
			fmt.Fprintf(w, "      %s\n", line)
		}
		fmt.Fprintf(w, "      got: %s\n", DescribeDecision(res.Decision))
		for _, line := range DescribeCommand(c.Input.Command) {
			fmt.Fprintf(w, "      %s\n", line)
		}
	}
	fmt.Fprintln(w, r.Summary())
	if len(r.Unmatched) > 0 {
		names := make([]string, len(r.Unmatched))
		for i, rule := range r.Unmatched {
			names[i] = rule.Name
		}
		fmt.Fprintf(w, "rules never matched: %s\n", strings.Join(names, ", "))
	}
}

// DescribeDecision renders a decision on one line.
func DescribeDecision(d protocol.Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, rules %s", d.Action, list(d.Rules))
	if d.Message != "" {
		fmt.Fprintf(&b, ", message %q", d.Message)
	}
	if len(d.Mask) > 0 {
		fmt.Fprintf(&b, ", mask %s", list(d.Mask))
	}
	if len(d.Approvers) > 0 {
		fmt.Fprintf(&b, ", approvers %s", list(d.Approvers))
	}
	if d.Timeout > 0 {
		fmt.Fprintf(&b, ", timeout %v", d.Timeout)
	}
	return b.String()
}

// DescribeCommand renders a command and, for SQL, its classification: what
// a rule sees.
func DescribeCommand(c *protocol.Command) []string {
	if c == nil {
		return nil
	}
	head := "command:"
	for _, f := range []string{c.Protocol, string(c.Kind)} {
		if f != "" {
			head += " " + f
		}
	}
	lines := []string{fmt.Sprintf("%s %q", head, c.Text)}
	if s := c.SQL; s != nil {
		if s.ParseError != "" {
			lines = append(lines, "sql: parse_error "+fmt.Sprintf("%q", s.ParseError))
		} else {
			stmts := make([]string, len(s.Statements))
			for i, st := range s.Statements {
				d := st.Kind
				if len(st.Tables) > 0 {
					d += " " + list(st.Tables)
				}
				if st.HasWhere {
					d += " has_where"
				}
				if len(st.Functions) > 0 {
					d += " functions " + list(st.Functions)
				}
				stmts[i] = d
			}
			lines = append(lines, fmt.Sprintf("sql: %s; writes=%t ddl=%t", strings.Join(stmts, "; "), s.Writes, s.DDL))
		}
	}
	if h := c.HTTP; h != nil && (h.Body != nil || h.ContentType != "") {
		body, _ := json.Marshal(h.Body)
		lines = append(lines, fmt.Sprintf("http: content_type %q body %s", h.ContentType, body))
	}
	if m := c.MCP; m != nil {
		d := "mcp: method " + m.Method
		for _, f := range []struct{ k, v string }{{"tool", m.Tool}, {"prompt", m.Prompt}, {"uri", m.URI}} {
			if f.v != "" {
				d += fmt.Sprintf(" %s %q", f.k, f.v)
			}
		}
		if m.Arguments != nil {
			args, _ := json.Marshal(m.Arguments)
			d += " arguments " + string(args)
		}
		lines = append(lines, d)
	}
	return lines
}

// group is the cases that run against one set of policy files.
type group struct {
	policies []string
	cases    []*Case
}

// groupCases groups cases by the policies their files name; cases whose
// files name none run against def.
func groupCases(cases []*Case, def []string) ([]*group, error) {
	var (
		groups []*group
		byKey  = map[string]*group{}
	)
	for _, c := range cases {
		pols := c.Policies
		if len(pols) == 0 {
			if len(def) == 0 {
				return nil, fmt.Errorf("%s: the test file names no policies (policies: [FILE...]) and no policy files were given", c.File)
			}
			pols = def
		}
		key := policyKey(pols)
		g := byKey[key]
		if g == nil {
			g = &group{policies: pols}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.cases = append(g.cases, c)
	}
	return groups, nil
}

func policyKey(files []string) string {
	keys := make([]string, len(files))
	for i, f := range files {
		if abs, err := filepath.Abs(f); err == nil {
			f = abs
		}
		keys[i] = f
	}
	return strings.Join(keys, "\x00")
}

// loadPolicies compiles policy paths; directories contribute their policy
// files, never their test files.
func loadPolicies(paths []string) (*policy.Engine, error) {
	files, _, err := Discover(paths...)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("policytest: no policy files in %s", strings.Join(paths, ", "))
	}
	return policy.Load(files...)
}

// RunFiles runs the test files among paths (see Discover). A test file that
// names its policies (policies:) runs against those; the others run
// against all the policy files among paths, compiled together. A policy
// file among paths that no test file uses is compiled on its own, so that
// its errors are reported, and its rules count as never matched. A load or
// compile error stops the run and is returned.
func RunFiles(paths ...string) (*Report, error) {
	policies, tests, err := Discover(paths...)
	if err != nil {
		return nil, err
	}
	if len(tests) == 0 {
		return nil, fmt.Errorf("policytest: no test files (*%s) in %s", TestFileSuffix, strings.Join(paths, " "))
	}
	cases, err := LoadCases(tests...)
	if err != nil {
		return nil, err
	}
	groups, err := groupCases(cases, policies)
	if err != nil {
		return nil, err
	}
	report := &Report{}
	used := map[string]bool{}
	var errs []error
	for _, g := range groups {
		if files, _, err := Discover(g.policies...); err == nil {
			for _, f := range files {
				used[policyKey([]string{f})] = true // compiled here, whether or not it compiles
			}
		}
		e, err := loadPolicies(g.policies)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r := Run(e, g.cases)
		for _, res := range r.Results {
			report.add(res)
		}
		report.Unmatched = appendRules(report.Unmatched, r.Unmatched)
	}
	for _, f := range policies {
		if used[policyKey([]string{f})] {
			continue
		}
		e, err := policy.Load(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		report.Unmatched = appendRules(report.Unmatched, e.Rules())
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return report, nil
}

// appendRules appends the rules of add not already in dst (by file and
// name).
func appendRules(dst, add []policy.Rule) []policy.Rule {
	for _, r := range add {
		if !slices.ContainsFunc(dst, func(d policy.Rule) bool { return d.Name == r.Name && d.File == r.File }) {
			dst = append(dst, r)
		}
	}
	return dst
}

// RunT runs test files as subtests of t, one per file and case, so that
// `go test` checks policies:
//
//	func TestPolicy(t *testing.T) {
//		policytest.RunT(t, []string{"policy.yaml"}, "policy_test.yaml")
//	}
//
// casePaths are test files or directories (their *_test.yaml files).
// Cases whose files name their policies (policies:) run against those,
// the others against policyPaths (files or directories), which may then be
// nil. A failing case reports its diff; a load error fails t. Rules no
// case matched are logged.
func RunT(t *testing.T, policyPaths []string, casePaths ...string) {
	t.Helper()
	cases, err := LoadCases(casePaths...)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := groupCases(cases, policyPaths)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		e, err := loadPolicies(g.policies)
		if err != nil {
			t.Fatal(err)
		}
		matched := map[string]bool{}
		byFile := map[string][]*Case{}
		var files []string
		for _, c := range g.cases {
			if byFile[c.File] == nil {
				files = append(files, c.File)
			}
			byFile[c.File] = append(byFile[c.File], c)
		}
		for _, f := range files {
			t.Run(filepath.Base(f), func(t *testing.T) {
				for _, c := range byFile[f] {
					res := Check(e, c)
					for _, name := range res.Decision.Rules {
						matched[name] = true
					}
					t.Run(c.Name, func(t *testing.T) {
						if res.Passed() {
							return
						}
						var b strings.Builder
						fmt.Fprintf(&b, "%s: case %q failed:\n", c.Where(), c.Name)
						if res.Err != nil {
							fmt.Fprintf(&b, "  error: %v\n", res.Err)
						}
						for _, line := range res.Diff {
							fmt.Fprintf(&b, "  %s\n", line)
						}
						fmt.Fprintf(&b, "  got: %s\n", DescribeDecision(res.Decision))
						for _, line := range DescribeCommand(c.Input.Command) {
							fmt.Fprintf(&b, "  %s\n", line)
						}
						t.Error(b.String())
					})
				}
			})
		}
		var never []string
		for _, rule := range e.Rules() {
			if !matched[rule.Name] {
				never = append(never, rule.Name)
			}
		}
		if len(never) > 0 {
			t.Logf("%s: rules never matched: %s", strings.Join(e.Files(), ", "), strings.Join(never, ", "))
		}
	}
}
