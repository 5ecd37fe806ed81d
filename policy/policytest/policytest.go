// Package policytest unit-tests policies, as `opa test` does for Rego: YAML
// files of cases, each an input (who, which target, what command) and the
// decision the policy is expected to make. Its central type is Case.
// LoadCases reads test files, Run decides their cases with a compiled
// policy.Engine and returns a Report, RunFiles does both from paths (what
// `refserver policy test` runs), and RunT runs cases as Go subtests so that
// policies are tested by `go test`.
//
// SQL in a case is classified by the PostgreSQL classifier the gateway uses
// (protocol/postgres/pgsql), so a test sees exactly the statements, tables
// and flags a rule would see in production; MCP messages are read by the
// gateway's MCP parser (protocol/http/mcp), and the policy function sql()
// is PostgreSQL's (policy/pgclassify).
//
// # Test files
//
// By convention a test file sits next to its policy and its name ends in
// _test.yaml (Discover relies on this):
//
//	policies: [read-only-agent.yaml]     # optional; relative to this file
//	defaults:                            # optional; for every case below
//	  identity: {subject: bot-1, groups: [agents]}
//	  target: {name: pg-prod, protocol: postgres, labels: {env: prod}}
//	cases:
//	  - name: agent can read             # unique in the file
//	    sql: SELECT * FROM users WHERE id = 1
//	    expect: {action: allow, rules: [agents-read]}
//	  - name: backslash escapes with standard_conforming_strings off
//	    sql: SELECT 'x\'' ; DROP TABLE t; -- '
//	    standard_conforming_strings: false
//	    expect: {action: deny, rule: agents-no-writes}
//	  - name: http request
//	    http: {method: DELETE, path: /api/v1/users/7, host: api.internal}
//	    expect: {action: deny, message_contains: read-only}
//
// A case gives exactly one command:
//
//	sql: TEXT                    a PostgreSQL query (kind query), classified as a
//	                             session with standard_conforming_strings: BOOL
//	                             (default true) would run it
//	http: {method, host, path, query, headers, body, content_type}   kind
//	                             request; a ?query in path fills query; body
//	                             is JSON (content_type application/json unless
//	                             given)
//	mcp: {method, tool, arguments, uri, prompt}   an MCP message (kind
//	                             request, protocol http) as the gateway reads
//	                             it: method defaults to tools/call with a
//	                             tool, prompts/get with a prompt,
//	                             resources/read with a uri
//	k8s: {verb, api_group, resource, subresource, namespace, name}   kind request
//	ssh: {channel_type, command, subsystem}   kind exec with a command, other
//	                             with a subsystem, shell otherwise
//	connect: true                kind connect, a session opening
//	command: {protocol, kind, text, attrs, sql, http, mcp, k8s, ssh}   any command,
//	                             as it is recorded (JSON field names)
//
// and optionally attrs (a map added to the command's), identity (subject,
// issuer, name, email, method, groups, claims, expiry), target (name,
// protocol, address, labels, options), session (id, client_addr, start)
// and now (a timestamp; default: the time of the run). Field names are
// those of the policy variables. A case's identity, target, session or now
// replaces the default one as a whole. The command's protocol is the
// target's, else postgres, http (for http and mcp), kubernetes or ssh by
// the form (command:
// gives its own); a target without a protocol gets the command's.
//
// expect holds at least one check:
//
//	action: allow | deny | require_approval
//	rule: NAME                   NAME is among the matching rules
//	rules: [NAMES]               exactly these rules match ([] for none); any order
//	mask: [ENTRIES]              exactly these masks; any order
//	approvers: [ENTRIES]         exactly these approvers; any order
//	timeout: DURATION            the approval timeout (0s for none)
//	message_contains: TEXT       the decision's message contains TEXT
//	listed: BOOL                 (mcp tools/call) the tool is listed in the
//	                             caller's tools/list: some arguments could
//	                             make the call allowed or approvable
//
// Unknown keys are errors, as in policy files.
package policytest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/policy"
	_ "github.com/sluicegw/sluice/policy/pgclassify" // sql() in rules
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/protocol/http/mcp"
	"github.com/sluicegw/sluice/protocol/postgres/pgsql"
)

// Case is one policy test: an input and the expected decision.
type Case struct {
	Name string
	File string // the test file, as named to LoadCases
	Line int    // the YAML line of the case

	// Policies are the policy files the test file names (policies:),
	// relative to the working directory; empty when it names none, and
	// then the caller says which policy the case runs against.
	Policies []string

	Input  policy.Input
	Expect Expect
}

// Expect is what a case checks about the decision. Zero fields are not
// checked; a non-nil empty slice is checked (no rule, mask or approver).
type Expect struct {
	Action          protocol.Action
	Rule            string // among the matching rules
	Rules           []string
	Mask            []string
	Approvers       []string
	Timeout         *time.Duration
	MessageContains string
	// Listed, for an MCP tools/call case, is whether the tool would be
	// listed in the caller's tools/list: whether policy may allow a call
	// of it with some arguments (policy.Engine.MayAllow).
	Listed *bool
}

// Where says where the case is defined: "file:line".
func (c *Case) Where() string { return fmt.Sprintf("%s:%d", c.File, c.Line) }

// TestFileSuffix ends the names of test files; Discover uses it to tell
// test files from policy files.
const TestFileSuffix = "_test.yaml"

// IsTestFile reports whether name is a test file by its name: it ends in
// _test.yaml or _test.yml.
func IsTestFile(name string) bool {
	return strings.HasSuffix(name, TestFileSuffix) || strings.HasSuffix(name, "_test.yml")
}

// Discover sorts paths into policy files and test files. A directory
// contributes the *.yaml and *.yml files directly inside it, in name order
// (names starting with "." are skipped); a file named *_test.yaml (or
// *_test.yml) is a test file, any other a policy file. Each file is listed
// once.
func Discover(paths ...string) (policies, tests []string, err error) {
	seen := map[string]bool{}
	add := func(f string) {
		key := f
		if abs, err := filepath.Abs(f); err == nil {
			key = abs
		}
		if seen[key] {
			return
		}
		seen[key] = true
		if IsTestFile(f) {
			tests = append(tests, f)
		} else {
			policies = append(policies, f)
		}
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, nil, fmt.Errorf("policytest: %w", err)
		}
		if !fi.IsDir() {
			add(p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, nil, fmt.Errorf("policytest: %w", err)
		}
		n := 0
		for _, ent := range ents { // ReadDir sorts by name
			name := ent.Name()
			ext := filepath.Ext(name)
			if ent.IsDir() || strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
				continue
			}
			add(filepath.Join(p, name))
			n++
		}
		if n == 0 {
			return nil, nil, fmt.Errorf("policytest: no *.yaml or *.yml files in directory %s", p)
		}
	}
	return policies, tests, nil
}

// LoadCases reads test files. A path is a file (any name) or a directory,
// of which the *_test.yaml files directly inside are read in name order.
// Every problem found is reported, each with its file and line.
func LoadCases(paths ...string) ([]*Case, error) {
	if len(paths) == 0 {
		return nil, errors.New("policytest: no test files given")
	}
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("policytest: %w", err)
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		_, tests, err := Discover(p)
		if err != nil {
			return nil, err
		}
		if len(tests) == 0 {
			return nil, fmt.Errorf("policytest: no *%s files in directory %s", TestFileSuffix, p)
		}
		files = append(files, tests...)
	}
	var (
		cases []*Case
		errs  []error
	)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("policytest: %w", err))
			continue
		}
		cs, err := ParseCases(f, data)
		if err != nil {
			errs = append(errs, err)
		}
		cases = append(cases, cs...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cases, nil
}

// ParseCases parses one test file's content; name is used in errors and to
// resolve the file's policies.
func ParseCases(name string, data []byte) ([]*Case, error) {
	p := &parser{file: name}
	cases := p.parse(data)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return cases, nil
}

// parser collects the problems of one test file.
type parser struct {
	file string
	errs []error
}

func (p *parser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s:%d: %s", p.file, line, fmt.Sprintf(format, args...)))
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// defaults are the inputs a case inherits.
type defaults struct {
	identity *identity.Identity
	target   *protocol.Target
	session  *sessionSpec
	now      time.Time
}

// sessionSpec is the session part of an input.
type sessionSpec struct {
	ID         string    `json:"id"`
	ClientAddr string    `json:"client_addr"`
	Start      time.Time `json:"start"`
}

func (p *parser) parse(data []byte) []*Case {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(1, "empty test file: want a mapping with cases")
			return nil
		}
		line, msg := 0, strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		p.errorf(line, "%s", msg)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		p.errorf(extra.Line, "a test file holds one YAML document")
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		p.errorf(root.Line, "want a mapping with keys policies, defaults, cases")
		return nil
	}
	var (
		def       defaults
		policies  []string
		casesNode *yaml.Node
	)
	p.fields(root, "", []string{"policies", "defaults", "cases"}, func(key string, v *yaml.Node) {
		switch key {
		case "policies":
			var list []string
			if err := v.Decode(&list); err != nil || len(list) == 0 {
				p.errorf(v.Line, "policies: want a non-empty list of policy files (relative to this file)")
				return
			}
			for _, f := range list {
				if !filepath.IsAbs(f) {
					f = filepath.Join(filepath.Dir(p.file), f)
				}
				policies = append(policies, f)
			}
		case "defaults":
			p.fields(v, "defaults", []string{"identity", "target", "session", "now"}, func(key string, v *yaml.Node) {
				p.input(&def, "defaults."+key, key, v)
			})
		case "cases":
			casesNode = v
		}
	})
	if casesNode == nil {
		p.errorf(root.Line, "cases: required (a list of test cases)")
		return nil
	}
	if casesNode.Kind != yaml.SequenceNode || len(casesNode.Content) == 0 {
		p.errorf(casesNode.Line, "cases: want a non-empty list of test cases")
		return nil
	}
	var cases []*Case
	names := map[string]int{}
	for i, n := range casesNode.Content {
		c := p.testCase(i+1, n, def)
		if c == nil {
			continue
		}
		if first, dup := names[c.Name]; dup {
			p.errorf(n.Line, "case %q: the name is already used at line %d", c.Name, first)
		}
		names[c.Name] = n.Line
		c.Policies = slices.Clone(policies)
		cases = append(cases, c)
	}
	return cases
}

// fields walks mapping n, checking its keys against allowed; where names
// the mapping in errors ("" for the top level).
func (p *parser) fields(n *yaml.Node, where string, allowed []string, fn func(key string, v *yaml.Node)) {
	at := ""
	if where != "" {
		at = where + ": "
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "%swant a mapping with keys %s", at, strings.Join(allowed, ", "))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		for v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		switch {
		case seen[k.Value]:
			p.errorf(k.Line, "%s%s: given twice", at, k.Value)
		case !slices.Contains(allowed, k.Value):
			p.errorf(k.Line, "%sunknown key %q (want %s)", at, k.Value, strings.Join(allowed, ", "))
		default:
			fn(k.Value, v)
		}
		seen[k.Value] = true
	}
}

// input decodes one input part (identity, target, session, now) into d.
func (p *parser) input(d *defaults, field, key string, v *yaml.Node) {
	switch key {
	case "identity":
		var id identity.Identity
		if p.decodeJSON(field, v, &id) {
			d.identity = &id
		}
	case "target":
		var t protocol.Target
		if p.decodeJSON(field, v, &t) {
			d.target = &t
		}
	case "session":
		var s sessionSpec
		if p.decodeJSON(field, v, &s) {
			d.session = &s
		}
	case "now":
		var s struct {
			Now time.Time `json:"now"`
		}
		w := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: "now"}, v}}
		if p.decodeJSON(field, w, &s) {
			d.now = s.Now
		}
	}
}

// decodeJSON decodes YAML node v into dst by the json names of dst's
// fields (the names policies use), refusing unknown fields.
func (p *parser) decodeJSON(field string, v *yaml.Node, dst any) bool {
	var raw any
	if err := v.Decode(&raw); err != nil {
		p.errorf(v.Line, "%s: %s", field, strings.TrimPrefix(err.Error(), "yaml: "))
		return false
	}
	b, err := json.Marshal(raw)
	if err != nil {
		p.errorf(v.Line, "%s: %v", field, err)
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		msg := strings.TrimPrefix(err.Error(), "json: ")
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			msg = fmt.Sprintf("%s: want %s, got %s", te.Field, te.Type, te.Value)
		}
		p.errorf(v.Line, "%s: %s", field, msg)
		return false
	}
	return true
}

var caseKeys = []string{
	"name", "identity", "target", "session", "now",
	"sql", "standard_conforming_strings", "http", "mcp", "k8s", "ssh", "connect", "command", "attrs",
	"expect",
}

var commandForms = []string{"sql", "http", "mcp", "k8s", "ssh", "connect", "command"}

// testCase parses case number i.
func (p *parser) testCase(i int, n *yaml.Node, def defaults) *Case {
	c := &Case{Name: fmt.Sprintf("case #%d", i), File: p.file, Line: n.Line}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "case #%d: want a mapping with keys %s", i, strings.Join(caseKeys, ", "))
		return nil
	}
	for j := 0; j+1 < len(n.Content); j += 2 {
		if n.Content[j].Value == "name" && n.Content[j+1].Kind == yaml.ScalarNode && n.Content[j+1].Value != "" {
			c.Name = n.Content[j+1].Value
		}
	}
	before := len(p.errs)
	prefix := fmt.Sprintf("case %q: ", c.Name)
	var (
		form, sqlText string
		scs           = true
		scsLine       int
		formNode      *yaml.Node
		attrs         map[string]string
		expectNode    *yaml.Node
	)
	in := def
	p.fields(n, fmt.Sprintf("case %q", c.Name), caseKeys, func(key string, v *yaml.Node) {
		switch key {
		case "name":
		case "identity", "target", "session", "now":
			p.input(&in, prefix+key, key, v)
		case "standard_conforming_strings":
			scsLine = v.Line
			if err := v.Decode(&scs); err != nil {
				p.errorf(v.Line, "%sstandard_conforming_strings: want true or false", prefix)
			}
		case "attrs":
			if err := v.Decode(&attrs); err != nil {
				p.errorf(v.Line, "%sattrs: want a map of strings", prefix)
			}
		case "expect":
			expectNode = v
		default: // a command form
			if form != "" {
				p.errorf(v.Line, "%sgive one command (%s), not both %s and %s", prefix, strings.Join(commandForms, ", "), form, key)
				return
			}
			form, formNode = key, v
			if key == "sql" {
				if v.Kind != yaml.ScalarNode {
					p.errorf(v.Line, "%ssql: want the SQL text", prefix)
				}
				sqlText = v.Value
			}
		}
	})
	if form == "" {
		p.errorf(n.Line, "%sa command is required: one of %s", prefix, strings.Join(commandForms, ", "))
	}
	if scsLine > 0 && form != "sql" {
		p.errorf(scsLine, "%sstandard_conforming_strings: only applies to sql", prefix)
	}
	if expectNode == nil {
		p.errorf(n.Line, "%sexpect: required (a case that checks nothing tests nothing)", prefix)
	} else {
		p.expect(prefix, expectNode, &c.Expect)
	}
	if len(p.errs) > before || form == "" {
		return nil
	}

	cmd := p.command(prefix, form, formNode, sqlText, scs)
	if cmd == nil {
		return nil
	}
	if c.Expect.Listed != nil && (cmd.MCP == nil || cmd.MCP.Method != "tools/call") {
		p.errorf(expectNode.Line, "%sexpect.listed: only applies to an mcp tools/call case", prefix)
		return nil
	}
	if len(attrs) > 0 {
		if cmd.Attrs == nil {
			cmd.Attrs = map[string]string{}
		}
		maps.Copy(cmd.Attrs, attrs)
	}
	var target *protocol.Target
	if in.target != nil {
		t := *in.target
		t.Labels, t.Options = maps.Clone(t.Labels), maps.Clone(t.Options)
		target = &t
	} else {
		target = &protocol.Target{}
	}
	switch {
	case form == "command":
		if cmd.Protocol == "" {
			cmd.Protocol = target.Protocol
		}
	case target.Protocol != "":
		if form == "sql" && target.Protocol != "postgres" {
			p.errorf(formNode.Line, "%ssql: cases are classified as PostgreSQL, but target.protocol is %q; use command: for other protocols", prefix, target.Protocol)
			return nil
		}
		cmd.Protocol = target.Protocol
	}
	if target.Protocol == "" {
		target.Protocol = cmd.Protocol
	}
	var id *identity.Identity
	if in.identity != nil {
		cp := *in.identity
		cp.Groups, cp.Claims = slices.Clone(cp.Groups), maps.Clone(cp.Claims)
		id = &cp
	}
	if form == "connect" {
		subject := ""
		if id != nil {
			subject = id.Subject
		}
		cmd.Text = ConnectCommand(subject, target.Name).Text
	}
	c.Input = policy.Input{Identity: id, Target: target, Command: cmd, Now: in.now}
	c.Input.Session = protocol.SessionInfo{Identity: id, Target: target}
	if in.session != nil {
		c.Input.Session.ID, c.Input.Session.ClientAddr, c.Input.Session.Start = in.session.ID, in.session.ClientAddr, in.session.Start
	}
	return c
}

// command builds the case's command from its form.
func (p *parser) command(prefix, form string, v *yaml.Node, sqlText string, scs bool) *protocol.Command {
	switch form {
	case "sql":
		return SQLCommand(sqlText, scs)
	case "http":
		var h protocol.HTTP
		if !p.decodeJSON(prefix+"http", v, &h) {
			return nil
		}
		return HTTPCommand(h)
	case "mcp":
		var m protocol.MCP
		if !p.decodeJSON(prefix+"mcp", v, &m) {
			return nil
		}
		c, err := MCPCommand(m)
		if err != nil {
			p.errorf(v.Line, "%smcp: %v", prefix, err)
			return nil
		}
		return c
	case "k8s":
		var k protocol.K8s
		if !p.decodeJSON(prefix+"k8s", v, &k) {
			return nil
		}
		return K8sCommand(k)
	case "ssh":
		var s protocol.SSH
		if !p.decodeJSON(prefix+"ssh", v, &s) {
			return nil
		}
		return SSHCommand(s)
	case "connect":
		var yes bool
		if err := v.Decode(&yes); err != nil || !yes {
			p.errorf(v.Line, "%sconnect: want true", prefix)
			return nil
		}
		return ConnectCommand("", "")
	case "command":
		var c protocol.Command
		if !p.decodeJSON(prefix+"command", v, &c) {
			return nil
		}
		if c.Kind == "" {
			p.errorf(v.Line, "%scommand.kind: required (connect, query, exec, shell, request, other)", prefix)
			return nil
		}
		return &c
	}
	return nil
}

var expectKeys = []string{"action", "rule", "rules", "mask", "approvers", "timeout", "message_contains", "listed"}

func (p *parser) expect(prefix string, n *yaml.Node, e *Expect) {
	where := prefix + "expect"
	prefix += "expect."
	checks := 0
	p.fields(n, where, expectKeys, func(key string, v *yaml.Node) {
		checks++
		list := func(dst *[]string) {
			*dst = []string{}
			if v.Kind != yaml.SequenceNode {
				p.errorf(v.Line, "%s%s: want a list (use [] for none)", prefix, key)
				return
			}
			if err := v.Decode(dst); err != nil {
				p.errorf(v.Line, "%s%s: want a list of strings", prefix, key)
			}
		}
		str := func(dst *string) {
			if v.Kind != yaml.ScalarNode || v.Value == "" {
				p.errorf(v.Line, "%s%s: want a non-empty string", prefix, key)
				return
			}
			*dst = v.Value
		}
		switch key {
		case "action":
			var s string
			str(&s)
			switch a := protocol.Action(s); a {
			case protocol.Allow, protocol.Deny, protocol.RequireApproval:
				e.Action = a
			case "":
			default:
				p.errorf(v.Line, "%saction: %q is not one of allow, deny, require_approval", prefix, s)
			}
		case "rule":
			str(&e.Rule)
		case "rules":
			list(&e.Rules)
		case "mask":
			list(&e.Mask)
		case "approvers":
			list(&e.Approvers)
		case "timeout":
			d, err := time.ParseDuration(v.Value)
			if err != nil || d < 0 {
				p.errorf(v.Line, "%stimeout: %q is not a Go duration (e.g. 10m; 0s for none)", prefix, v.Value)
				return
			}
			e.Timeout = &d
		case "message_contains":
			str(&e.MessageContains)
		case "listed":
			var b bool
			if err := v.Decode(&b); err != nil {
				p.errorf(v.Line, "%slisted: want true or false", prefix)
				return
			}
			e.Listed = &b
		}
	})
	if checks == 0 && n.Kind == yaml.MappingNode {
		p.errorf(n.Line, "%s: want at least one of %s", where, strings.Join(expectKeys, ", "))
	}
}

// SQLCommand is the command for a PostgreSQL query, as the gateway builds
// it: kind query, the text, and its classification by pgsql as a session
// with the given standard_conforming_strings would run it.
func SQLCommand(text string, standardConformingStrings bool) *protocol.Command {
	opts := pgsql.DefaultOptions()
	opts.StandardConformingStrings = standardConformingStrings
	return &protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: text, SQL: pgsql.Classify(text, opts)}
}

// ConnectCommand is the command for a session opening (kind connect, no
// protocol: the caller sets the target's). Its text names the subject and
// the target when given: "connect alice to orders".
func ConnectCommand(subject, target string) *protocol.Command {
	text := "connect"
	if subject != "" {
		text += " " + subject
	}
	if target != "" {
		text += " to " + target
	}
	return &protocol.Command{Kind: protocol.KindConnect, Text: text}
}

// HTTPCommand is the command for an HTTP request (kind request, protocol
// http). A query string in h.Path moves to h.Query (first value of each
// name); entries already in h.Query win. A body is read as the gateway
// reads a JSON body (mcp.DecodeValue: integers as int, other numbers as
// double), and its content type defaults to application/json.
func HTTPCommand(h protocol.HTTP) *protocol.Command {
	if h.Body != nil {
		if b, err := json.Marshal(h.Body); err == nil {
			if v, err := mcp.DecodeValue(b); err == nil {
				h.Body = v
			}
		}
		if h.ContentType == "" {
			h.ContentType = "application/json"
		}
	}
	if path, rawQuery, ok := strings.Cut(h.Path, "?"); ok {
		h.Path = path
		if q, err := url.ParseQuery(rawQuery); err == nil && len(q) > 0 {
			merged := make(map[string]string, len(q)+len(h.Query))
			for k, vs := range q {
				merged[k] = vs[0]
			}
			maps.Copy(merged, h.Query)
			h.Query = merged
		}
	}
	text := h.Method + " " + h.Path
	if len(h.Query) > 0 {
		v := url.Values{}
		for k, s := range h.Query {
			v.Set(k, s)
		}
		text += "?" + v.Encode()
	}
	return &protocol.Command{Protocol: "http", Kind: protocol.KindRequest, Text: text, HTTP: &h}
}

// MCPCommand is the command for an MCP message as the gateway builds it:
// m is sent as a JSON-RPC request (id 1; a notifications/... method as a
// notification, rpc.response as a response) and read back by the gateway's
// parser (protocol/http/mcp), so arguments have the types a rule sees in
// production. The method defaults to tools/call with a tool, prompts/get
// with a prompt and resources/read with a uri. Tool, prompt and uri only
// apply to their methods.
func MCPCommand(m protocol.MCP) (*protocol.Command, error) {
	if m.Method == "" {
		switch {
		case m.Tool != "":
			m.Method = "tools/call"
		case m.Prompt != "":
			m.Method = "prompts/get"
		case m.URI != "":
			m.Method = "resources/read"
		default:
			return nil, errors.New("method: required (tools/call, tools/list, resources/read, prompts/get, initialize, ...), or give a tool, prompt or uri")
		}
	}
	params := map[string]any{}
	for _, f := range []struct {
		name, value, method string
	}{{"tool", m.Tool, "tools/call"}, {"prompt", m.Prompt, "prompts/get"}, {"uri", m.URI, "resources/read"}} {
		if f.value != "" && m.Method != f.method {
			return nil, fmt.Errorf("%s: only applies to method %s, not %s", f.name, f.method, m.Method)
		}
	}
	switch m.Method {
	case "tools/call":
		params["name"] = m.Tool
	case "prompts/get":
		params["name"] = m.Prompt
	case "resources/read":
		params["uri"] = m.URI
	}
	if m.Arguments != nil {
		if m.Method != "tools/call" && m.Method != "prompts/get" {
			return nil, fmt.Errorf("arguments: only apply to tools/call and prompts/get, not %s", m.Method)
		}
		params["arguments"] = m.Arguments
	}
	msg := map[string]any{"jsonrpc": "2.0", "id": 1, "method": m.Method, "params": params}
	switch {
	case strings.HasPrefix(m.Method, "notifications/"):
		delete(msg, "id") // a notification
	case m.Method == mcp.ResponseMethod:
		msg = map[string]any{"jsonrpc": "2.0", "id": 1, "result": map[string]any{}} // the client's answer to the server
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	req, err := mcp.ParseRequest(body)
	if err != nil {
		return nil, err
	}
	return req.Messages[0].Command(), nil
}

// K8sCommand is the command for a Kubernetes API request (kind request,
// protocol kubernetes).
func K8sCommand(k protocol.K8s) *protocol.Command {
	res := k.Resource
	if k.Subresource != "" {
		res += "/" + k.Subresource
	}
	if k.APIGroup != "" {
		res += "." + k.APIGroup
	}
	text := strings.TrimSpace(k.Verb + " " + res)
	if obj := strings.Trim(k.Namespace+"/"+k.Name, "/"); obj != "" {
		text += " " + obj
	}
	return &protocol.Command{Protocol: "kubernetes", Kind: protocol.KindRequest, Text: text, K8s: &k}
}

// SSHCommand is the command for an SSH channel request (protocol ssh): kind
// exec with a command, other with a subsystem (sftp), shell otherwise. The
// channel type defaults to session.
func SSHCommand(s protocol.SSH) *protocol.Command {
	if s.ChannelType == "" {
		s.ChannelType = "session"
	}
	c := &protocol.Command{Protocol: "ssh", SSH: &s}
	switch {
	case s.Command != "":
		c.Kind, c.Text = protocol.KindExec, s.Command
	case s.Subsystem != "":
		c.Kind, c.Text = protocol.KindOther, "subsystem "+s.Subsystem
	default:
		c.Kind, c.Text = protocol.KindShell, "shell"
	}
	return c
}
