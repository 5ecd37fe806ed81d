package policy

import (
	"strconv"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// Rule verdicts memoised per session: which rules a SQL command's parsed
// form already decides.
//
// A session sends the same statements over and over with other values
// (`SELECT ... WHERE id = 41`, `... = 42`): the parser gives them the same
// parsed form (statement kinds, tables, functions, WHERE or not), and the
// session's identity and target do not change. Most rules read only those
// — `"developers" in identity.groups && command.kind == "query"`,
// `command.sql.statements.exists(s, s.kind == "DROP")` — so their outcome
// is the same for every such statement, and evaluating them again is
// wasted work. A Memo keeps, per parsed form, each rule's verdict computed
// by partial evaluation (as the guards in guard.go do) with everything a
// statement's values can change unknown: the text, the attributes, the
// session's variables and the time. A rule that comes out true or false
// there is true or false for every command of that form; a rule that
// comes out unknown (it reads the text, the time...) is evaluated for each
// command as before. This is exact: CEL's three-valued logic proves the
// verdicts; a rule whose partial evaluation fails is simply evaluated.
//
// A form's verdicts are computed the second time it is seen, so that a
// session of one-off statements pays nothing for them.

// maxMemoForms bounds a session's memo; past it the memo starts over.
const maxMemoForms = 256

// Memo is one session's memo of rule verdicts (see Input.Memo). Its zero
// value is not usable; NewMemo makes one. It is safe for concurrent use.
type Memo struct {
	mu sync.Mutex
	// What the verdicts were computed for: another engine (a reload),
	// identity or target starts the memo over.
	engine   *Engine
	identity *identity.Identity
	target   *protocol.Target
	forms    map[string][]verdict
}

// NewMemo returns an empty memo, for one session (one identity).
func NewMemo() *Memo { return &Memo{} }

// verdict is a rule's outcome for every command of one form.
type verdict uint8

const (
	verdictSeen    verdict = iota // seen once: no verdicts computed yet
	verdictUnknown                // evaluate the rule for each command
	verdictFalse
	verdictTrue
)

// verdicts returns the verdicts for in's command, computing them on the
// second sight of its form; nil means evaluate every rule. Only SQL
// commands without other parts are memoised.
func (m *Memo) verdicts(e *Engine, in *Input) []verdict {
	c := in.Command
	if c.SQL == nil || c.HTTP != nil || c.MCP != nil || c.K8s != nil || c.SSH != nil {
		return nil
	}
	// Looked up without allocating (the compiler does not copy a
	// []byte converted for a map index); copied only when stored.
	var buf [256]byte
	key := appendFormKey(buf[:0], c)
	m.mu.Lock()
	if m.engine != e || m.identity != in.Identity || m.target != in.Target || len(m.forms) >= maxMemoForms {
		m.engine, m.identity, m.target, m.forms = e, in.Identity, in.Target, make(map[string][]verdict)
	}
	v, ok := m.forms[string(key)]
	if !ok {
		m.forms[string(key)] = []verdict{verdictSeen}
		m.mu.Unlock()
		return nil
	}
	m.mu.Unlock()
	if len(v) != 1 || v[0] != verdictSeen {
		return v
	}
	v = e.computeVerdicts(in)
	m.mu.Lock()
	if m.engine == e && m.identity == in.Identity && m.target == in.Target {
		m.forms[string(key)] = v
	}
	m.mu.Unlock()
	return v
}

// appendFormKey appends to b what a command's verdicts depend on besides
// the session: its protocol, kind and parsed SQL.
func appendFormKey(b []byte, c *protocol.Command) []byte {
	s := c.SQL
	b = append(b, c.Protocol...)
	b = append(b, 0)
	b = append(b, c.Kind...)
	b = append(b, 0)
	b = strconv.AppendBool(b, s.Writes)
	b = strconv.AppendBool(b, s.DDL)
	b = strconv.AppendBool(b, s.Statements == nil)
	b = strconv.AppendQuote(b, s.ParseError)
	for _, st := range s.Statements {
		b = append(b, 1)
		b = strconv.AppendQuote(b, st.Kind)
		b = strconv.AppendBool(b, st.HasWhere)
		for _, t := range st.Tables {
			b = append(b, 2)
			b = strconv.AppendQuote(b, t)
		}
		for _, f := range st.Functions {
			b = append(b, 3)
			b = strconv.AppendQuote(b, f)
		}
	}
	return b
}

// computeVerdicts evaluates every rule partially for in with the command's
// text and attributes, the session's variables and the time unknown.
func (e *Engine) computeVerdicts(in *Input) []verdict {
	a := newActivation(in)
	defer a.release()
	act, err := cel.PartialVars(a,
		cel.AttributePattern("session"),
		cel.AttributePattern("now"),
		cel.AttributePattern("command").QualString("text"),
		cel.AttributePattern("command").QualString("attrs"),
	)
	v := make([]verdict, len(e.rules))
	if err != nil {
		for i := range v {
			v[i] = verdictUnknown
		}
		return v
	}
	for i, r := range e.rules {
		out, _, err := r.partial.Eval(act)
		switch {
		case err != nil:
			v[i] = verdictUnknown
		case out == types.True:
			v[i] = verdictTrue
		case out == types.False:
			v[i] = verdictFalse
		default:
			v[i] = verdictUnknown
		}
	}
	return v
}
