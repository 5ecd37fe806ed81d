package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/protocol"
)

// Source is one policy file's content, for Compile. Name is used in error
// messages and in Engine.Files.
type Source struct {
	Name string
	Data []byte
}

// RuleError is one problem found while loading a policy: a YAML error, an
// invalid field or a CEL compile error. Load and Compile report every problem
// they find, joined with errors.Join; errors.As finds the first RuleError.
type RuleError struct {
	File  string // the file, as named to Load or in Source.Name
	Line  int    // the YAML line of the offending key or rule; 0 when unknown
	Index int    // 1-based position of the rule in its file; 0 for file-level problems
	Rule  string // the rule's name, when it has one
	Field string // the offending key: "match", "action", ...; empty for the whole rule

	// ExprLine and ExprColumn locate a CEL error within the match
	// expression (1-based); 0 when the problem is not in the expression.
	ExprLine, ExprColumn int
	// Snippet is the expression line with a caret under ExprColumn.
	Snippet string

	Msg string
}

func (e *RuleError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Index > 0 {
		fmt.Fprintf(&b, "rule #%d", e.Index)
		if e.Rule != "" {
			fmt.Fprintf(&b, " %q", e.Rule)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		if e.ExprLine > 0 {
			fmt.Fprintf(&b, " %d:%d", e.ExprLine, e.ExprColumn)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Snippet != "" {
		b.WriteString("\n")
		b.WriteString(e.Snippet)
	}
	return b.String()
}

// fileSpec is one parsed (not yet compiled) policy file.
type fileSpec struct {
	name      string
	rules     []*ruleSpec
	detectors []detectorSpec
	def       protocol.Action // "" when the file does not say
}

// ruleSpec is one parsed rule with the YAML lines errors point to.
type ruleSpec struct {
	file      string
	index     int // 1-based
	line      int
	name      string
	match     string
	matchLine int
	action    protocol.Action
	message   string
	approvers []string
	quorum    int
	timeout   time.Duration
	grant     time.Duration
	mask      []string
}

func (r *ruleSpec) errAt(line int, field, format string, args ...any) *RuleError {
	return &RuleError{File: r.file, Line: line, Index: r.index, Rule: r.name, Field: field, Msg: fmt.Sprintf(format, args...)}
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

var ruleKeys = []string{"name", "match", "action", "message", "approvers", "quorum", "timeout", "grant_window", "mask"}

// maxGrantWindow bounds how long one approval may cover repeats of its
// command.
const maxGrantWindow = 24 * time.Hour

// parseFile parses one policy file, strictly: unknown keys, wrong shapes and
// invalid values are errors. It returns every problem it finds.
func parseFile(src Source) (*fileSpec, []error) {
	f := &fileSpec{name: src.Name}
	fileErr := func(line int, format string, args ...any) error {
		return &RuleError{File: src.Name, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(src.Data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return f, nil // an empty file is an empty policy
		}
		line, msg := 0, strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		return nil, []error{fileErr(line, "%s", msg)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, []error{fileErr(extra.Line, "a policy file holds one YAML document")}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return f, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, []error{fileErr(root.Line, "want a mapping with keys rules and default, got %s", kindName(root))}
	}
	errs := duplicateKeys(root, func(key *yaml.Node) error {
		return fileErr(key.Line, "key %q given twice", key.Value)
	})
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i], deref(root.Content[i+1])
		switch key.Value {
		case "rules":
			if val.Kind == yaml.ScalarNode && val.Tag == "!!null" {
				continue
			}
			if val.Kind != yaml.SequenceNode {
				errs = append(errs, fileErr(val.Line, "rules: want a list of rules, got %s", kindName(val)))
				continue
			}
			for j, item := range val.Content {
				r, rerrs := parseRule(src.Name, j+1, deref(item))
				errs = append(errs, rerrs...)
				if r != nil {
					f.rules = append(f.rules, r)
				}
			}
		case "detectors":
			ds, derrs := parseDetectors(src.Name, val)
			f.detectors = append(f.detectors, ds...)
			errs = append(errs, derrs...)
		case "default":
			var s string
			if err := val.Decode(&s); err != nil || (s != string(protocol.Allow) && s != string(protocol.Deny)) {
				errs = append(errs, fileErr(val.Line, "default: %q is not one of allow, deny", val.Value))
				continue
			}
			f.def = protocol.Action(s)
		default:
			errs = append(errs, fileErr(key.Line, "unknown key %q (want rules, detectors, default)", key.Value))
		}
	}
	return f, errs
}

func parseRule(file string, index int, n *yaml.Node) (*ruleSpec, []error) {
	r := &ruleSpec{file: file, index: index, line: n.Line}
	if n.Kind != yaml.MappingNode {
		return nil, []error{r.errAt(n.Line, "", "want a mapping with keys %s, got %s", strings.Join(ruleKeys, ", "), kindName(n))}
	}
	// The name first, so that every other error can carry it.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if v := deref(n.Content[i+1]); n.Content[i].Value == "name" && v.Kind == yaml.ScalarNode {
			r.name = strings.TrimSpace(v.Value)
		}
	}
	errs := duplicateKeys(n, func(key *yaml.Node) error {
		return r.errAt(key.Line, "", "key %q given twice", key.Value)
	})
	var timeoutLine, approversLine, maskLine, quorumLine, grantLine int
	var action string
	actionLine := n.Line
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], deref(n.Content[i+1])
		str := func(dst *string) bool {
			if val.Kind != yaml.ScalarNode {
				errs = append(errs, r.errAt(val.Line, key.Value, "want a string, got %s", kindName(val)))
				return false
			}
			*dst = val.Value
			return true
		}
		list := func(dst *[]string) {
			if val.Kind != yaml.SequenceNode {
				errs = append(errs, r.errAt(val.Line, key.Value, "want a list of strings, got %s", kindName(val)))
				return
			}
			for _, it := range val.Content {
				it = deref(it)
				s := it.Value
				switch {
				case it.Kind != yaml.ScalarNode:
					errs = append(errs, r.errAt(it.Line, key.Value, "want a string, got %s", kindName(it)))
				case s == "" || strings.ContainsFunc(s, unicode.IsSpace):
					errs = append(errs, r.errAt(it.Line, key.Value, "%q: entries must be non-empty and contain no spaces", s))
				default:
					*dst = append(*dst, s)
				}
			}
		}
		switch key.Value {
		case "name":
			var s string
			str(&s)
		case "match":
			if str(&r.match) {
				r.matchLine = val.Line
			}
		case "action":
			if str(&action) {
				actionLine = val.Line
			}
		case "message":
			str(&r.message)
		case "approvers":
			approversLine = key.Line
			list(&r.approvers)
		case "quorum":
			quorumLine = key.Line
			q, err := strconv.Atoi(val.Value)
			if val.Kind != yaml.ScalarNode || err != nil || q < 1 || q > 100 {
				errs = append(errs, r.errAt(val.Line, "quorum", "%q: want a number of distinct approvers from 1 to 100", val.Value))
			} else {
				r.quorum = q
			}
		case "mask":
			maskLine = key.Line
			list(&r.mask)
			for _, it := range val.Content {
				if _, err := masking.ParseEntry(deref(it).Value); err != nil && deref(it).Kind == yaml.ScalarNode && deref(it).Value != "" {
					errs = append(errs, r.errAt(deref(it).Line, "mask", "%v", err))
				}
			}
		case "timeout":
			timeoutLine = key.Line
			var s string
			if str(&s) {
				d, err := time.ParseDuration(s)
				switch {
				case err != nil:
					errs = append(errs, r.errAt(val.Line, "timeout", "%q is not a Go duration (e.g. 90s, 10m, 1h)", s))
				case d <= 0:
					errs = append(errs, r.errAt(val.Line, "timeout", "%q must be positive", s))
				default:
					r.timeout = d
				}
			}
		case "grant_window":
			grantLine = key.Line
			var s string
			if str(&s) {
				d, err := time.ParseDuration(s)
				switch {
				case err != nil:
					errs = append(errs, r.errAt(val.Line, "grant_window", "%q is not a Go duration (e.g. 15m, 1h)", s))
				case d <= 0 || d > maxGrantWindow:
					errs = append(errs, r.errAt(val.Line, "grant_window", "%q must be positive and at most %s", s, maxGrantWindow))
				default:
					r.grant = d
				}
			}
		default:
			errs = append(errs, r.errAt(key.Line, "", "unknown key %q (want %s)", key.Value, strings.Join(ruleKeys, ", ")))
		}
	}
	if r.name == "" {
		errs = append(errs, r.errAt(n.Line, "name", "required"))
	}
	if strings.TrimSpace(r.match) == "" {
		errs = append(errs, r.errAt(n.Line, "match", "required (a CEL expression; write \"true\" to match everything)"))
	}
	switch a := protocol.Action(action); a {
	case protocol.Allow, protocol.Deny, protocol.RequireApproval:
		r.action = a
	case "":
		errs = append(errs, r.errAt(n.Line, "action", "required (allow, deny or require_approval)"))
	default:
		errs = append(errs, r.errAt(actionLine, "action", "%q is not one of allow, deny, require_approval", action))
	}
	if r.action != "" && r.action != protocol.RequireApproval {
		if approversLine > 0 {
			errs = append(errs, r.errAt(approversLine, "approvers", "only allowed with action: require_approval"))
		}
		if timeoutLine > 0 {
			errs = append(errs, r.errAt(timeoutLine, "timeout", "only allowed with action: require_approval"))
		}
		if quorumLine > 0 {
			errs = append(errs, r.errAt(quorumLine, "quorum", "only allowed with action: require_approval"))
		}
		if grantLine > 0 {
			errs = append(errs, r.errAt(grantLine, "grant_window", "only allowed with action: require_approval"))
		}
	}
	if r.action == protocol.Deny && maskLine > 0 {
		errs = append(errs, r.errAt(maskLine, "mask", "not allowed with action: deny (nothing is returned to mask)"))
	}
	return r, errs
}

// duplicateKeys reports keys given twice in mapping n (yaml.v3 reports them
// when decoding into Go values, not when building nodes).
func duplicateKeys(n *yaml.Node, report func(key *yaml.Node) error) []error {
	var errs []error
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		if seen[k] {
			errs = append(errs, report(n.Content[i]))
		}
		seen[k] = true
	}
	return errs
}

// deref follows a YAML alias (*name) to its anchored node, so that anchors
// can share approver lists or mask sets between rules.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "a document"
}
