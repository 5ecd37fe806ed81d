package policy

import (
	"maps"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"

	"github.com/sluicegw/sluice/protocol"
)

// Rule guards: which rules can match a command at all.
//
// Most rules are about one protocol: `command.protocol == "http" && ...`,
// `command.k8s.verb in [...]`, `command.sql.statements.exists(...)`. For a
// command of another shape such a rule is false whatever the identity,
// target or time, and evaluating it is wasted work. The engine finds these
// rules by partial evaluation (CEL's three-valued logic over unknowns): it
// evaluates each rule with only the command's shape known — its protocol,
// its kind and which protocol parts are absent (zero) — and every other
// variable unknown. A rule that comes out false there is false for every
// command of that shape, so it is skipped for them. This is exact, not a
// heuristic: a rule is skipped only when CEL proves it cannot match.
//
// Shapes are few (protocols x kinds x parts present), so the verdicts are
// computed on first sight of a shape and cached, copy-on-write, in the
// Engine.

// shape is what a guard verdict depends on.
type shape struct {
	protocol string
	kind     protocol.Kind
	parts    uint8 // partSQL | partHTTP | ... present
}

const (
	partSQL uint8 = 1 << iota
	partHTTP
	partK8s
	partSSH
	partMCP
)

// maxShapes bounds the cache; beyond it (a plugin inventing protocol names
// per command?) rules are simply all evaluated.
const maxShapes = 256

func shapeOf(c *protocol.Command) shape {
	s := shape{protocol: c.Protocol, kind: c.Kind}
	if c.SQL != nil {
		s.parts |= partSQL
	}
	if c.HTTP != nil {
		s.parts |= partHTTP
	}
	if c.K8s != nil {
		s.parts |= partK8s
	}
	if c.SSH != nil {
		s.parts |= partSSH
	}
	if c.MCP != nil {
		s.parts |= partMCP
	}
	return s
}

// skipFor returns, for each rule, whether it cannot match a command of
// shape s; nil means evaluate every rule.
func (e *Engine) skipFor(s shape) []bool {
	if m := e.guards.Load(); m != nil {
		if skip, ok := (*m)[s]; ok {
			return skip
		}
	}
	e.guardMu.Lock()
	defer e.guardMu.Unlock()
	old := e.guards.Load()
	if old != nil {
		if skip, ok := (*old)[s]; ok {
			return skip
		}
		if len(*old) >= maxShapes {
			return nil
		}
	}
	skip := e.computeSkip(s)
	m := make(map[shape][]bool, 1)
	if old != nil {
		m = maps.Clone(*old)
	}
	m[s] = skip
	e.guards.Store(&m)
	return skip
}

func (e *Engine) computeSkip(s shape) []bool {
	var vars activation
	vars.identity, vars.target, vars.now = &zeroIdentity, &zeroTarget, types.Timestamp{}
	vars.command.Protocol, vars.command.Kind = s.protocol, string(s.kind)
	unknown := []*cel.AttributePatternType{
		cel.AttributePattern("identity"),
		cel.AttributePattern("target"),
		cel.AttributePattern("session"),
		cel.AttributePattern("now"),
		cel.AttributePattern("command").QualString("text"),
		cel.AttributePattern("command").QualString("attrs"),
	}
	for _, p := range []struct {
		bit  uint8
		name string
	}{{partSQL, "sql"}, {partHTTP, "http"}, {partK8s, "k8s"}, {partSSH, "ssh"}, {partMCP, "mcp"}} {
		if s.parts&p.bit != 0 {
			unknown = append(unknown, cel.AttributePattern("command").QualString(p.name))
		}
	}
	act, err := cel.PartialVars(&vars, unknown...)
	if err != nil {
		return nil
	}
	skip := make([]bool, len(e.rules))
	for i, r := range e.rules {
		out, _, err := r.partial.Eval(act)
		skip[i] = err == nil && out == types.False
	}
	return skip
}
