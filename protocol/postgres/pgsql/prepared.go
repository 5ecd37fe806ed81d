package pgsql

import (
	"fmt"
	"slices"
	"sync"

	"github.com/sluicegw/sluice/protocol"
)

// PreparedSet is what one session has prepared, by statement name, so that
// EXECUTE name is judged by the statement it runs rather than by the word
// EXECUTE. SQL-level PREPARE and the extended protocol's named Parse share
// one namespace in PostgreSQL, and EXECUTE runs either; so the plugin feeds
// both in: Observe for texts, Add and Remove for Parse and Close messages.
//
// It needs no word from the server on which statements succeeded, because
// it only ever over-approximates: a name prepared twice (the server keeps
// the first and refuses the second, or the first failed) holds the union of
// both bodies; a DEALLOCATE that might not run forgets the name, after
// which EXECUTE of it fails closed. Safe for concurrent use.
type PreparedSet struct {
	mu sync.Mutex
	m  map[string]*protocol.SQL
}

// NewPreparedSet returns an empty set.
func NewPreparedSet() *PreparedSet {
	return &PreparedSet{m: map[string]*protocol.SQL{}}
}

// Add records that name was prepared with the given classification (a named
// extended-protocol Parse). If name is already present the two
// classifications are merged. The empty name, the unnamed statement, is
// replaced instead: each Parse of it replaces it on the server too.
func (p *PreparedSet) Add(name string, body *protocol.SQL) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.add(p.m, name, body)
}

func (p *PreparedSet) add(m map[string]*protocol.SQL, name string, body *protocol.SQL) {
	if old, ok := m[name]; ok && name != "" {
		m[name] = mergeSQL(old, body)
		return
	}
	m[name] = cloneSQL(body)
}

// Remove forgets name (DEALLOCATE, or a Close message).
func (p *PreparedSet) Remove(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, name)
}

// Clear forgets every name (DEALLOCATE ALL, DISCARD ALL, a new session).
func (p *PreparedSet) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.m)
}

// Lookup returns a copy of what name was prepared as.
func (p *PreparedSet) Lookup(name string) (*protocol.SQL, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.m[name]
	return cloneSQL(s), ok
}

// Observe applies a text's PREPAREs and DEALLOCATEs, in order. Call it when
// the text is forwarded to the server.
func (p *PreparedSet) Observe(r *Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range sortedEffects(r) {
		p.apply(p.m, e)
	}
}

func (p *PreparedSet) apply(m map[string]*protocol.SQL, e Effect) {
	switch e.Op {
	case EffectPrepare:
		p.add(m, e.Name, e.Body)
	case EffectDeallocate:
		if e.All {
			clear(m)
		} else {
			delete(m, e.Name)
		}
	}
}

// Resolve returns r's classification with every EXECUTE statement replaced
// by the statements it runs: what the name was prepared as in this session,
// or earlier in the same text. The EXECUTE's own parameter expressions'
// functions are kept on the first replacing statement. An EXECUTE of a name
// not known gets ParseError `unknown prepared statement "name"`, so that
// policies treat the command as unknown (fail closed). It does not change
// the set; Observe does.
func (p *PreparedSet) Resolve(r *Result) *protocol.SQL {
	effects := sortedEffects(r)
	if !slices.ContainsFunc(effects, func(e Effect) bool { return e.Op == EffectExecute }) {
		return cloneSQL(r.SQL)
	}
	p.mu.Lock()
	view := make(map[string]*protocol.SQL, len(p.m))
	for k, v := range p.m {
		view[k] = v // shared, never changed: add replaces entries
	}
	p.mu.Unlock()

	in := r.SQL
	out := &protocol.SQL{Statements: make([]protocol.Statement, 0, len(in.Statements)),
		Writes: in.Writes, DDL: in.DDL, ParseError: in.ParseError}
	ei := 0
	for i, st := range in.Statements {
		replaced := false
		for ; ei < len(effects) && effects[ei].Stmt == i; ei++ {
			e := effects[ei]
			if e.Op != EffectExecute {
				p.apply(view, e)
				continue
			}
			body, ok := view[e.Name]
			if !ok {
				if out.ParseError == "" {
					out.ParseError = fmt.Sprintf("unknown prepared statement %q", e.Name)
				}
				continue
			}
			replaced = true
			b := cloneSQL(body)
			if len(b.Statements) > 0 && len(st.Functions) > 0 {
				f := slices.Clone(b.Statements[0].Functions)
				for _, fn := range st.Functions {
					appendUnique(&f, fn)
				}
				b.Statements[0].Functions = f
			}
			out.Statements = append(out.Statements, b.Statements...)
			out.Writes = out.Writes || b.Writes
			out.DDL = out.DDL || b.DDL
			if out.ParseError == "" && b.ParseError != "" {
				out.ParseError = b.ParseError
			}
		}
		if !replaced {
			c := cloneSQL(&protocol.SQL{Statements: []protocol.Statement{st}})
			out.Statements = append(out.Statements, c.Statements[0])
		}
	}
	return out
}

// sortedEffects returns r's effects in statement order (a PREPARE's effect
// is recorded after its body's).
func sortedEffects(r *Result) []Effect {
	e := slices.Clone(r.Effects)
	slices.SortStableFunc(e, func(a, b Effect) int { return a.Stmt - b.Stmt })
	return e
}

// mergeSQL is the union of two classifications.
func mergeSQL(a, b *protocol.SQL) *protocol.SQL {
	out := &protocol.SQL{
		Statements: append(slices.Clone(a.Statements), b.Statements...),
		Writes:     a.Writes || b.Writes,
		DDL:        a.DDL || b.DDL,
		ParseError: a.ParseError,
	}
	if out.ParseError == "" {
		out.ParseError = b.ParseError
	}
	return cloneSQL(out)
}
