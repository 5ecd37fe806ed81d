package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"

	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/protocol"
)

// ErrNoCommand is returned by Decide when the Input has no Command.
var ErrNoCommand = errors.New("policy: no command to decide")

// DefaultDenyMessage is Decision.Message when no rule matched and the
// policy's default is deny.
const DefaultDenyMessage = "no rule allows this command (default deny)"

// Engine is a compiled policy: the rules of one or more files, evaluated with
// the semantics described in the package doc. It implements Decider, is
// immutable and safe for concurrent use. Build one with Load, Parse or
// Compile; swap engines at run time with Live.
type Engine struct {
	files []string
	// detectors are the policy files' own content detectors; gen
	// identifies this compiled policy (see Detectors).
	detectors []masking.Detector
	gen       uint64
	rules     []*rule
	def       protocol.Action
	sum       [sha256.Size]byte // of the sources, for Live.WatchFiles

	guardMu sync.Mutex                       // serialises guard computation
	guards  atomic.Pointer[map[shape][]bool] // see guard.go
}

// Rule describes one compiled rule, for listings and tools.
type Rule struct {
	Name      string
	File      string
	Line      int // the YAML line of the rule
	Match     string
	Action    protocol.Action
	Message   string
	Approvers []string
	Quorum    int
	Timeout   time.Duration
	// GrantWindow is how long an approval also covers repeats of the
	// command; zero means the approved command only.
	GrantWindow time.Duration
	Mask        []string
}

type rule struct {
	*ruleSpec
	prg     cel.Program
	partial cel.Program // for guards (guard.go)
	msg     string      // Decision.Message when this rule decides
}

// Load reads and compiles policy files. Each path is a file (any name) or a
// directory, of which the *.yaml and *.yml files directly inside are read in
// name order (names starting with "." are skipped). Rules of all files
// concatenate in the order given. Load reports every problem it finds (see
// RuleError) and returns no engine if there is any.
func Load(paths ...string) (*Engine, error) {
	srcs, err := readSources(paths)
	if err != nil {
		return nil, err
	}
	return Compile(srcs...)
}

// Parse compiles one policy file's content; name is used in errors.
func Parse(name string, data []byte) (*Engine, error) {
	return Compile(Source{Name: name, Data: data})
}

// Compile compiles policy files given as content. Rule names must be unique
// across all files, and at most one distinct default may be given.
func Compile(srcs ...Source) (*Engine, error) {
	if len(srcs) == 0 {
		return nil, errors.New("policy: no policy files")
	}
	env, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("policy: CEL environment: %w", err)
	}
	e := &Engine{def: protocol.Deny}
	var (
		errs   []error
		byName = map[string]*ruleSpec{}
		defSrc string
		dets   = map[string]detectorSpec{}
	)
	for _, src := range srcs {
		e.files = append(e.files, src.Name)
		f, ferrs := parseFile(src)
		errs = append(errs, ferrs...)
		if f == nil {
			continue
		}
		if f.def != "" {
			if defSrc != "" && f.def != e.def {
				errs = append(errs, &RuleError{File: src.Name, Msg: fmt.Sprintf(
					"default: %s conflicts with default: %s in %s; give the default in one file", f.def, e.def, defSrc)})
			} else if defSrc == "" {
				e.def, defSrc = f.def, src.Name
			}
		}
		for _, d := range f.detectors {
			if first, dup := dets[d.name]; dup {
				errs = append(errs, &RuleError{File: d.file, Line: d.line, Field: "detectors", Msg: fmt.Sprintf("%s: defined twice; first at %s:%d", d.name, first.file, first.line)})
				continue
			}
			dets[d.name] = d
			det, err := compileDetector(d)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			e.detectors = append(e.detectors, det)
		}
		for _, rs := range f.rules {
			if rs.name != "" {
				if first, dup := byName[rs.name]; dup {
					errs = append(errs, rs.errAt(rs.line, "name", "duplicate rule name; first defined at %s:%d (rule #%d)", first.file, first.line, first.index))
				} else {
					byName[rs.name] = rs
				}
			}
			if strings.TrimSpace(rs.match) == "" {
				continue // already reported
			}
			r, cerrs := compileRule(env, rs)
			errs = append(errs, cerrs...)
			if r != nil {
				e.rules = append(e.rules, r)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	e.sum = fingerprint(srcs)
	e.gen = engineGen.Add(1)
	return e, nil
}

func compileRule(env *cel.Env, rs *ruleSpec) (*rule, []error) {
	exprErr := func(loc common.Location, msg string) *RuleError {
		re := rs.errAt(rs.matchLine, "match", "%s", msg)
		if loc != nil && loc.Line() > 0 {
			re.ExprLine, re.ExprColumn = loc.Line(), loc.Column()+1
			re.Snippet = snippet(rs.match, re.ExprLine, re.ExprColumn)
		}
		return re
	}
	ast, iss := env.CompileSource(common.NewStringSource(rs.match, rs.file))
	if iss.Err() != nil {
		var errs []error
		for _, ce := range iss.Errors() {
			errs = append(errs, exprErr(ce.Location, ce.Message))
		}
		return nil, errs
	}
	native := ast.NativeRep()
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) {
		return nil, []error{exprErr(native.SourceInfo().GetStartLocation(native.Expr().ID()),
			fmt.Sprintf("must be a bool expression, got %s (compare it, e.g. == true)", t))}
	}
	// Constant glob patterns are checked now rather than failing (closed) at
	// every evaluation.
	var errs []error
	for _, call := range celast.MatchDescendants(celast.NavigateAST(native), celast.FunctionMatcher("glob")) {
		args := call.AsCall().Args()
		if len(args) != 2 || args[0].Kind() != celast.LiteralKind {
			continue
		}
		if p, ok := args[0].AsLiteral().(types.String); ok {
			if _, err := Glob(string(p), ""); err != nil {
				errs = append(errs, exprErr(native.SourceInfo().GetStartLocation(args[0].ID()),
					fmt.Sprintf("glob pattern %q: %v", string(p), err)))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, []error{exprErr(nil, err.Error())}
	}
	partial, err := env.Program(ast, cel.EvalOptions(cel.OptPartialEval))
	if err != nil {
		return nil, []error{exprErr(nil, err.Error())}
	}
	r := &rule{ruleSpec: rs, prg: prg, partial: partial, msg: rs.message}
	if r.msg == "" {
		switch rs.action {
		case protocol.Deny:
			r.msg = fmt.Sprintf("denied by policy rule %q", rs.name)
		case protocol.RequireApproval:
			r.msg = fmt.Sprintf("approval required by policy rule %q", rs.name)
		}
	}
	return r, nil
}

// snippet renders line l of expr with a caret under column c (1-based).
func snippet(expr string, l, c int) string {
	lines := strings.Split(expr, "\n")
	if l < 1 || l > len(lines) {
		return ""
	}
	line := strings.TrimRight(lines[l-1], "\r")
	var pad strings.Builder
	for i, r := range []rune(line) {
		if i >= c-1 {
			break
		}
		if r == '\t' {
			pad.WriteRune('\t')
		} else {
			pad.WriteRune(' ')
		}
	}
	return " | " + line + "\n | " + pad.String() + "^"
}

// readSources expands paths (files and directories) and reads the files.
func readSources(paths []string) ([]Source, error) {
	files, err := expandPaths(paths)
	if err != nil {
		return nil, err
	}
	srcs := make([]Source, 0, len(files))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		srcs = append(srcs, Source{Name: f, Data: data})
	}
	return srcs, nil
}

func expandPaths(paths []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, errors.New("policy: no policy files given")
	}
	var files []string
	seen := map[string]bool{}
	add := func(f string) {
		key := filepath.Clean(f)
		if abs, err := filepath.Abs(f); err == nil {
			key = abs
		}
		if !seen[key] {
			seen[key] = true
			files = append(files, f)
		}
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		if !fi.IsDir() {
			add(p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		n := 0
		for _, ent := range ents { // ReadDir sorts by name
			name := ent.Name()
			ext := filepath.Ext(name)
			// Policy unit tests (policytest's *_test.yaml) live beside
			// the policies they test; they are not policy.
			base := strings.TrimSuffix(name, ext)
			if strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") || ent.IsDir() || strings.HasSuffix(base, "_test") {
				continue
			}
			add(filepath.Join(p, name))
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("policy: no *.yaml or *.yml files in directory %s", p)
		}
	}
	return files, nil
}

// Files lists the policy files the engine was built from, in order.
func (e *Engine) Files() []string { return slices.Clone(e.files) }

// Default is the action when no allow or approval rule matches: allow or
// deny.
func (e *Engine) Default() protocol.Action { return e.def }

// Rules lists the rules in evaluation (file) order.
func (e *Engine) Rules() []Rule {
	out := make([]Rule, len(e.rules))
	for i, r := range e.rules {
		out[i] = Rule{
			Name: r.name, File: r.file, Line: r.line, Match: r.match, Action: r.action,
			Message: r.message, Approvers: slices.Clone(r.approvers), Quorum: r.quorum, Timeout: r.timeout, GrantWindow: r.grant, Mask: slices.Clone(r.mask),
		}
	}
	return out
}

// Decide implements Decider. Every rule is evaluated; a rule whose match
// fails at run time counts as a matching deny (fail closed) and its error is
// in Decision.Message. Decide returns an error only for a nil Input or
// Command, or a done ctx.
func (e *Engine) Decide(ctx context.Context, in *Input) (protocol.Decision, error) {
	return e.decide(ctx, in, true)
}

// decide is Decide; guarded=false evaluates every rule (tests compare).
func (e *Engine) decide(ctx context.Context, in *Input, guarded bool) (protocol.Decision, error) {
	if in == nil || in.Command == nil {
		return protocol.Decision{Action: protocol.Deny, Message: ErrNoCommand.Error()}, ErrNoCommand
	}
	if err := ctx.Err(); err != nil {
		return protocol.Decision{Action: protocol.Deny, Message: "policy: " + err.Error()}, fmt.Errorf("policy: %w", err)
	}
	var skip []bool
	var memo []verdict
	if guarded {
		skip = e.skipFor(shapeOf(in.Command))
		if in.Memo != nil {
			memo = in.Memo.verdicts(e, in)
		}
	}
	// One execution frame for all rules, made when the first rule needs
	// evaluating: cel's Program.Eval accepts a frame and then neither
	// allocates nor pools one per call (about half the fixed cost of an
	// evaluation).
	var frame *interpreter.ExecutionFrame
	var a *activation
	defer func() {
		if frame != nil {
			frame.Close()
		}
		if a != nil {
			a.release()
		}
	}()
	eval := func(r *rule) (ref.Val, error) {
		if frame == nil {
			a = newActivation(in)
			f, err := interpreter.NewExecutionFrame(a)
			if err != nil {
				return nil, err
			}
			frame = f
		}
		out, _, err := r.prg.Eval(frame)
		return out, err
	}

	var (
		d                        = protocol.Decision{Rules: make([]string, 0, len(e.rules))}
		denyMsg, approvalMsg     string
		denied, approval, allows bool
		allowMsg                 string
		grantless                bool // a matching approval rule allows no grant window
	)
	for i, r := range e.rules {
		if skip != nil && skip[i] {
			continue
		}
		var out ref.Val
		var err error
		switch {
		case memo != nil && memo[i] == verdictFalse:
			continue
		case memo != nil && memo[i] == verdictTrue:
			out = types.True
		default:
			out, err = eval(r)
		}
		if err == nil && out != types.True {
			if _, ok := out.(types.Bool); ok {
				continue
			}
			err = fmt.Errorf("result is %s, not a bool", out.Type().TypeName())
		}
		d.Rules = append(d.Rules, r.name)
		if err != nil {
			if !denied {
				denied = true
				denyMsg = fmt.Sprintf("policy rule %q could not be evaluated, so it denies: %v", r.name, err)
			}
			continue
		}
		switch r.action {
		case protocol.Deny:
			if !denied {
				denied, denyMsg = true, r.msg
			}
		case protocol.RequireApproval:
			if !approval {
				approval, approvalMsg = true, r.msg
			}
			d.Approvers = appendUnique(d.Approvers, r.approvers)
			d.Quorum = max(d.Quorum, r.quorum)
			if r.timeout > 0 && (d.Timeout == 0 || r.timeout < d.Timeout) {
				d.Timeout = r.timeout
			}
			// Every matching approval rule must allow a grant window;
			// the shortest applies.
			if r.grant == 0 {
				grantless = true
			} else if d.GrantWindow == 0 || r.grant < d.GrantWindow {
				d.GrantWindow = r.grant
			}
			d.Mask = appendUnique(d.Mask, r.mask)
		case protocol.Allow:
			if !allows {
				allows, allowMsg = true, r.msg
			}
			d.Mask = appendUnique(d.Mask, r.mask)
		}
	}
	if len(d.Rules) == 0 {
		d.Rules = nil
	}
	switch {
	case denied:
		d.Action, d.Message = protocol.Deny, denyMsg
		d.Approvers, d.Quorum, d.Timeout, d.Mask = nil, 0, 0, nil
	case approval:
		d.Action, d.Message = protocol.RequireApproval, approvalMsg
		if grantless {
			d.GrantWindow = 0
		}
	case allows:
		d.Action, d.Message = protocol.Allow, allowMsg
	case e.def == protocol.Allow:
		d.Action = protocol.Allow
	default:
		d.Action, d.Message = protocol.Deny, DefaultDenyMessage
	}
	return d, nil
}

// appendUnique appends the elements of add not already in dst, keeping order.
func appendUnique(dst, add []string) []string {
	for _, s := range add {
		if !slices.Contains(dst, s) {
			dst = append(dst, s)
		}
	}
	return dst
}
