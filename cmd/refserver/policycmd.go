package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/policy"
	// The policy function sql() classifies with PostgreSQL's parser, in
	// policy test and eval as in serve.
	_ "github.com/sluicegw/sluice/policy/pgclassify"
	"github.com/sluicegw/sluice/policy/policytest"
	"github.com/sluicegw/sluice/protocol"
)

func (c *cli) policy(args []string) error {
	if len(args) == 0 {
		return usageErr("policy needs a subcommand: test, eval or check")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "test":
		return c.policyTest(rest)
	case "eval":
		return c.policyEval(rest)
	case "check":
		return c.policyCheck(rest)
	default:
		return usageErr("unknown policy subcommand %q (want test, eval or check)", sub)
	}
}

// policyTest runs policy tests (policytest.RunFiles) and prints the report.
func (c *cli) policyTest(args []string) error {
	fs := c.newFlags("policy test", "policy test PATH...\n\n"+
		"PATHs are policy files, test files (*_test.yaml) and directories of both.\n"+
		"A test file that names its policies (policies: [...]) runs against them;\n"+
		"the others run against all the policy files given. See docs/policy.md.")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageErr("policy test needs at least one PATH (policy files, *_test.yaml files, directories)")
	}
	report, err := policytest.RunFiles(pos...)
	if err != nil {
		return err
	}
	report.Print(c.stdout)
	if !report.OK() {
		return exitError{code: 1}
	}
	return nil
}

// policyCheck compiles policy files.
func (c *cli) policyCheck(args []string) error {
	fs := c.newFlags("policy check", "policy check PATH...\n\n"+
		"Compile policy files; a directory contributes its *.yaml and *.yml files\n"+
		"(policy tests, *_test.yaml, are skipped).")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageErr("policy check needs at least one PATH (policy files or directories)")
	}
	e, err := loadPolicyPaths(pos)
	if err != nil {
		return err
	}
	perFile := map[string]int{}
	for _, r := range e.Rules() {
		perFile[r.File]++
	}
	for _, f := range e.Files() {
		fmt.Fprintf(c.stdout, "%s: %d rules\n", f, perFile[f])
	}
	fmt.Fprintf(c.stdout, "ok: %d rules in %d files, default %s\n", len(e.Rules()), len(e.Files()), e.Default())
	return nil
}

// loadPolicyPaths compiles the policy files among paths (test files are
// skipped).
func loadPolicyPaths(paths []string) (*policy.Engine, error) {
	files, _, err := policytest.Discover(paths...)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no policy files in %s (only *%s tests)", strings.Join(paths, " "), policytest.TestFileSuffix)
	}
	e, err := policy.Load(files...)
	if err != nil {
		return nil, err
	}
	if err := knownDetectors(e); err != nil {
		return nil, err
	}
	return e, nil
}

// listFlag is a flag that may be repeated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// keyValues parses k=v entries (each entry may hold several, comma
// separated) into a map; flag names the flag in errors.
func keyValues(flagName string, entries []string) (map[string]string, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, e := range entries {
		for kv := range strings.SplitSeq(e, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || strings.TrimSpace(k) == "" {
				return nil, usageErr("--%s %q: want KEY=VALUE", flagName, kv)
			}
			m[strings.TrimSpace(k)] = v
		}
	}
	return m, nil
}

// policyEval decides one ad-hoc command and explains the decision.
func (c *cli) policyEval(args []string) error {
	fs := c.newFlags("policy eval", "policy eval --policy PATH... (--sql TEXT | --http 'METHOD PATH' | --mcp-tool NAME | --mcp-method M | --k8s verb=V,resource=R,... | --ssh COMMAND | --connect) [flags]")
	var policies, labels, claims listFlag
	fs.Var(&policies, "policy", "policy `PATH` (file or directory; repeatable)")
	sqlText := fs.String("sql", "", "a PostgreSQL query, classified as the gateway does")
	scs := fs.Bool("standard-conforming-strings", true, "classify --sql as a session with this standard_conforming_strings")
	httpReq := fs.String("http", "", "an HTTP request: 'METHOD PATH[?QUERY]'")
	host := fs.String("host", "", "the HTTP request's host")
	httpBody := fs.String("http-body", "", "the HTTP request's JSON body")
	httpType := fs.String("http-content-type", "", "the HTTP request's content type (default application/json with --http-body)")
	mcpMethod := fs.String("mcp-method", "", "an MCP message's method (default tools/call with --mcp-tool, prompts/get with --mcp-prompt, resources/read with --mcp-uri)")
	mcpTool := fs.String("mcp-tool", "", "the tool an MCP tools/call names")
	mcpArgs := fs.String("mcp-args", "", "an MCP tools/call's or prompts/get's arguments, a JSON object")
	mcpURI := fs.String("mcp-uri", "", "the resource an MCP resources/read names")
	mcpPrompt := fs.String("mcp-prompt", "", "the prompt an MCP prompts/get names")
	k8s := fs.String("k8s", "", "a Kubernetes request: verb=V,resource=R[,subresource=S,namespace=N,name=X,api_group=G]")
	ssh := fs.String("ssh", "", "an SSH exec command")
	connect := fs.Bool("connect", false, "a session opening (kind connect)")
	subject := fs.String("subject", "", "the caller's subject")
	email := fs.String("email", "", "the caller's email")
	groups := fs.String("groups", "", "the caller's groups, comma separated")
	fs.Var(&claims, "claim", "a caller claim `KEY=VALUE` (string; repeatable)")
	target := fs.String("target", "", "the target's name")
	proto := fs.String("protocol", "", "the target's protocol (default: the command's)")
	fs.Var(&labels, "target-label", "a target label `KEY=VALUE` (repeatable)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("policy eval takes no arguments (got %q); give the command with --sql, --http, --mcp-tool (or --mcp-method), --k8s, --ssh or --connect", pos[0])
	}
	if len(policies) == 0 {
		return usageErr("policy eval needs --policy PATH")
	}

	var (
		cmd   *protocol.Command
		forms []string
	)
	if *sqlText != "" {
		forms = append(forms, "--sql")
		cmd = policytest.SQLCommand(*sqlText, *scs)
	}
	if *httpReq != "" {
		forms = append(forms, "--http")
		method, path, ok := strings.Cut(strings.TrimSpace(*httpReq), " ")
		if !ok || strings.TrimSpace(path) == "" {
			return usageErr("--http %q: want 'METHOD PATH', e.g. 'GET /api/v1/users'", *httpReq)
		}
		h := protocol.HTTP{Method: method, Path: strings.TrimSpace(path), Host: *host, ContentType: *httpType}
		if *httpBody != "" {
			if err := json.Unmarshal([]byte(*httpBody), &h.Body); err != nil {
				return usageErr("--http-body: not JSON: %v", err)
			}
		}
		cmd = policytest.HTTPCommand(h)
	}
	if *mcpMethod != "" || *mcpTool != "" || *mcpArgs != "" || *mcpURI != "" || *mcpPrompt != "" {
		forms = append(forms, "--mcp-*")
		m := protocol.MCP{Method: *mcpMethod, Tool: *mcpTool, URI: *mcpURI, Prompt: *mcpPrompt}
		if *mcpArgs != "" {
			if err := json.Unmarshal([]byte(*mcpArgs), &m.Arguments); err != nil || m.Arguments == nil {
				return usageErr("--mcp-args: want a JSON object, e.g. '{\"query\": \"SELECT 1\"}'")
			}
		}
		var err error
		if cmd, err = policytest.MCPCommand(m); err != nil {
			return usageErr("--mcp-*: %v", err)
		}
	}
	if *k8s != "" {
		forms = append(forms, "--k8s")
		kv, err := keyValues("k8s", []string{*k8s})
		if err != nil {
			return err
		}
		var req protocol.K8s
		fields := map[string]*string{"verb": &req.Verb, "api_group": &req.APIGroup, "resource": &req.Resource,
			"subresource": &req.Subresource, "namespace": &req.Namespace, "name": &req.Name}
		for k, v := range kv {
			dst, ok := fields[k]
			if !ok {
				return usageErr("--k8s: unknown key %q (want verb, api_group, resource, subresource, namespace, name)", k)
			}
			*dst = v
		}
		cmd = policytest.K8sCommand(req)
	}
	if *ssh != "" {
		forms = append(forms, "--ssh")
		cmd = policytest.SSHCommand(protocol.SSH{Command: *ssh})
	}
	if *connect {
		forms = append(forms, "--connect")
		cmd = &protocol.Command{Kind: protocol.KindConnect}
	}
	switch len(forms) {
	case 0:
		return usageErr("policy eval needs a command: --sql, --http, --mcp-tool (or --mcp-method), --k8s, --ssh or --connect")
	case 1:
	default:
		return usageErr("policy eval takes one command, got %s", strings.Join(forms, " and "))
	}
	if *host != "" && *httpReq == "" {
		return usageErr("--host only applies with --http")
	}
	if (*httpBody != "" || *httpType != "") && *httpReq == "" {
		return usageErr("--http-body and --http-content-type only apply with --http")
	}

	in := &policy.Input{Command: cmd}
	claimMap, err := keyValues("claim", claims)
	if err != nil {
		return err
	}
	if *subject != "" || *email != "" || *groups != "" || claimMap != nil {
		id := &identity.Identity{Subject: *subject, Email: *email}
		for g := range strings.SplitSeq(*groups, ",") {
			if g = strings.TrimSpace(g); g != "" {
				id.Groups = append(id.Groups, g)
			}
		}
		if claimMap != nil {
			id.Claims = map[string]any{}
			for k, v := range claimMap {
				id.Claims[k] = v
			}
		}
		in.Identity = id
	}
	labelMap, err := keyValues("target-label", labels)
	if err != nil {
		return err
	}
	t := &protocol.Target{Name: *target, Protocol: *proto, Labels: labelMap}
	switch {
	case t.Protocol == "":
		t.Protocol = cmd.Protocol
	case cmd.SQL != nil && t.Protocol != "postgres":
		return usageErr("--sql is classified as PostgreSQL, but --protocol is %q", t.Protocol)
	default:
		cmd.Protocol = t.Protocol
	}
	if *connect {
		cmd.Text = policytest.ConnectCommand(*subject, t.Name).Text
	}
	in.Target = t
	in.Session = protocol.SessionInfo{Identity: in.Identity, Target: t}

	e, err := loadPolicyPaths(policies)
	if err != nil {
		return err
	}
	d, err := e.Decide(context.Background(), in)
	if err != nil {
		return err
	}
	c.explain(e, in, d)
	if m := cmd.MCP; m != nil && m.Method == "tools/call" {
		listed, err := policytest.Listed(e, in)
		if err != nil {
			return err
		}
		yes := "no: no arguments could make a call of it allowed"
		if listed {
			yes = "yes"
		}
		fmt.Fprintf(c.stdout, "  listed:    %s (whether tools/list shows %s to this caller)\n", yes, m.Tool)
	}
	return nil
}

// explain prints the command as the policy saw it, each rule with whether
// it matched, and the decision.
func (c *cli) explain(e *policy.Engine, in *policy.Input, d protocol.Decision) {
	w := c.stdout
	for _, line := range policytest.DescribeCommand(in.Command) {
		fmt.Fprintln(w, line)
	}
	who := "(no identity)"
	if id := in.Identity; id != nil {
		who = fmt.Sprintf("subject %q groups %v", id.Subject, id.Groups)
	}
	fmt.Fprintf(w, "identity: %s\ntarget: name %q protocol %q labels %v\n\nrules:\n", who, in.Target.Name, in.Target.Protocol, in.Target.Labels)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range e.Rules() {
		matched := "no"
		if slices.Contains(d.Rules, r.Name) {
			matched = "yes"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s:%d\n", matched, r.Name, r.Action, r.File, r.Line)
	}
	tw.Flush()
	orNone := func(s []string) string {
		if len(s) == 0 {
			return "-"
		}
		return strings.Join(s, ", ")
	}
	msg, timeout := d.Message, "-"
	if msg == "" {
		msg = "-"
	}
	if d.Timeout > 0 {
		timeout = d.Timeout.String()
	}
	fmt.Fprintf(w, "\ndecision:\n  action:    %s\n  rules:     %s\n  message:   %s\n  mask:      %s\n  approvers: %s\n  timeout:   %s\n",
		d.Action, orNone(d.Rules), msg, orNone(d.Mask), orNone(d.Approvers), timeout)
	if len(d.Rules) == 0 {
		fmt.Fprintf(w, "  (no rule matched: the policy's default, %s, applies)\n", e.Default())
	}
}

var _ flag.Value = (*listFlag)(nil)
