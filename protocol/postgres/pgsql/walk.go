package pgsql

import "strings"

// stmt is one statement being classified.
type stmt struct {
	kind      string
	writes    bool
	ddl       bool
	hasWhere  bool
	tables    []string
	functions []string
}

// walker reads a whole parse tree and collects its statements.
//
// Statements: every top-level statement is one; so is every statement
// nested in another where it will run (or, for definitions, run later):
// INSERT/UPDATE/DELETE/MERGE in WITH clauses and subqueries at any depth or
// in COPY (query), the body of PREPARE, the statement under EXPLAIN ANALYZE,
// a rule's actions, the elements of CREATE SCHEMA, the statements of a
// BEGIN ATOMIC function body, EXECUTE under CREATE TABLE AS. A SELECT nested
// in another statement is a subquery, part of it, unless it has INTO.
// Under EXPLAIN without ANALYZE nothing runs, so nested statements are part
// of the EXPLAIN (their tables and functions are reported on it).
type walker struct {
	t       *tape
	stmts   []stmt
	cur     int // index of the statement being read
	explain int // depth inside EXPLAIN without ANALYZE
	absorb  int // depth inside a statement whose nested statements are parts
	depth   int
	effects []effect
	bad     bool // the tree did not decode
}

// effect is a PREPARE/EXECUTE/DEALLOCATE seen while walking.
type effect struct {
	op         EffectOp
	name       string
	stmt       int
	bodyStart  int
	bodyEnd    int
	deallocAll bool
}

// maxDepth bounds recursion; PostgreSQL's parser stops far earlier
// ("stack depth limit exceeded").
const maxDepth = 10000

// root reads a ParseResult.
func (w *walker) root() {
	stmts, _ := w.t.field(0, fParseResultStmts)
	w.t.elems(stmts, func(raw int32) {
		if node, ok := w.t.field(raw, fRawStmtStmt); ok {
			w.body(node)
		}
	})
}

// body reads a node in statement position: it is a statement of its own.
func (w *walker) body(node int32) {
	t, o, ok := w.t.node(node)
	if !ok {
		w.bad = true
		return
	}
	w.statement(t, o, true)
}

// msg reads object o, a message of type t.
func (w *walker) msg(t *msgType, o int32) {
	switch {
	case t == nodeType:
		if w.t.toks[o].next == o+1 {
			return // {}: a NULL list element
		}
		child, body, ok := w.t.node(o)
		if !ok {
			w.bad = true
			return
		}
		w.msg(child, body)
		return
	case t == rangeVarType:
		w.addTable(o)
		return
	case t == funcCallType:
		w.addFunction(o)
	case t.stmt != nil:
		w.statement(t, o, false)
		return
	}
	w.fields(t, o, "")
}

// fields reads every field of object o (of type t) except key skip.
func (w *walker) fields(t *msgType, o int32, skip string) {
	tp := w.t
	if tp.toks[o].kind != '{' {
		w.bad = true
		return
	}
	w.depth++
	if w.depth > maxDepth {
		w.bad = true
	}
	for k := o + 1; k < tp.toks[o].next && !w.bad; k = tp.toks[k+1].next {
		v := k + 1
		kind := tp.toks[v].kind
		if kind != '{' && kind != '[' {
			continue // a scalar
		}
		key := tp.raw(k)
		f := t.byJSON[string(key)]
		if f == nil || (f.child == nil && kind == '{') {
			// A key the descriptors do not know, holding structure:
			// it could hide a statement, so fail closed.
			w.bad = true
			break
		}
		if skip != "" && string(key) == skip {
			continue
		}
		if kind == '{' {
			w.msg(f.child, v)
			continue
		}
		for e := v + 1; e < tp.toks[v].next && !w.bad; e = tp.toks[e].next {
			switch tp.toks[e].kind {
			case '{':
				if f.child == nil {
					w.bad = true // messages in a list of scalars
				} else {
					w.msg(f.child, e)
				}
			case '[':
				w.bad = true // lists hold messages or scalars
			}
		}
	}
	w.depth--
}

// statement reads a statement node; body is true in statement position.
func (w *walker) statement(t *msgType, o int32, body bool) {
	tp := w.t
	spec := t.stmt
	if spec == nil {
		// Not a statement node type where a statement must be: unknown
		// to this package, so fail closed.
		spec = t.fallback
	}
	into, hasInto := int32(-1), false
	if t == selectStmtType {
		into, hasInto = tp.field(o, fSelectInto)
	}
	if w.explain > 0 || (!body && ((t == selectStmtType && !hasInto) || spec.part || w.absorb > 0)) {
		w.fields(t, o, "")
		return
	}

	idx := len(w.stmts)
	w.stmts = append(w.stmts, stmt{kind: spec.kind, writes: spec.writes, ddl: spec.ddl})
	prev := w.cur
	w.cur = idx
	defer func() { w.cur = prev }()
	if spec.detail != nil {
		spec.detail(tp, o, &w.stmts[idx])
	}

	if spec.absorb {
		w.absorb++
		defer func() { w.absorb-- }()
	}
	switch t {
	case selectStmtType:
		if hasInto {
			// SELECT ... INTO creates a table, like CREATE TABLE AS; the
			// kind says which syntax was used. The new table comes first.
			s := &w.stmts[idx]
			s.kind, s.writes, s.ddl = "SELECT INTO", true, true
			w.msg(t.byJSON[fSelectInto].child, into)
		}
		w.stmts[idx].hasWhere = selectHasWhere(tp, o)
		w.fields(t, o, fSelectInto)
	case updateStmtType:
		w.stmts[idx].hasWhere = tp.has(o, fUpdateWhere)
		w.fields(t, o, "")
	case deleteStmtType:
		w.stmts[idx].hasWhere = tp.has(o, fDeleteWhere)
		w.fields(t, o, "")
	case mergeStmtType:
		// MERGE always has its ON join condition.
		w.stmts[idx].hasWhere = true
		w.fields(t, o, "")
	case ctasType:
		// The new table first.
		if v, ok := tp.field(o, fCTASInto); ok {
			w.msg(t.byJSON[fCTASInto].child, v)
		}
		w.fields(t, o, fCTASInto)
	case explainType:
		q, ok := tp.field(o, fExplainQuery)
		switch {
		case !ok:
			w.bad = true
		case explainAnalyze(tp, o):
			w.body(q)
		default:
			w.explain++
			w.msg(nodeType, q)
			w.explain--
		}
	case prepareType:
		start := len(w.stmts)
		if q, ok := tp.field(o, fPrepareQuery); ok {
			w.body(q)
		}
		w.effects = append(w.effects, effect{op: EffectPrepare, name: tp.fieldStr(o, fPrepareName),
			stmt: idx, bodyStart: start, bodyEnd: len(w.stmts)})
	case executeType:
		w.effects = append(w.effects, effect{op: EffectExecute, name: tp.fieldStr(o, fExecuteName), stmt: idx})
		w.fields(t, o, "")
	case deallocateType:
		name := tp.fieldStr(o, fDeallocateName)
		all := tp.fieldTrue(o, fDeallocateIsAll) || name == ""
		w.effects = append(w.effects, effect{op: EffectDeallocate, name: name, stmt: idx, deallocAll: all})
	case discardType:
		if tp.fieldStr(o, fDiscardTarget) == "DISCARD_ALL" {
			w.effects = append(w.effects, effect{op: EffectDeallocate, stmt: idx, deallocAll: true})
		}
	case ruleType:
		w.fields(t, o, fRuleActions)
		if v, ok := tp.field(o, fRuleActions); ok {
			tp.elems(v, w.body)
		}
	case createSchemaType:
		w.fields(t, o, fSchemaElts)
		if v, ok := tp.field(o, fSchemaElts); ok {
			tp.elems(v, w.body)
		}
	case dropType:
		if relationObjects[tp.fieldStr(o, fDropRemoveType)] {
			if v, ok := tp.field(o, fDropObjects); ok {
				tp.elems(v, w.addNameList)
			}
		}
		w.fields(t, o, "")
	case commentType:
		if relationObjects[tp.fieldStr(o, fCommentObjtype)] {
			if v, ok := tp.field(o, fCommentObject); ok {
				w.addNameList(v)
			}
		}
		w.fields(t, o, "")
	default:
		w.fields(t, o, "")
	}
}

// selectHasWhere: a SELECT has a WHERE clause; a set operation (UNION,
// INTERSECT, EXCEPT) has one when every branch has.
func selectHasWhere(tp *tape, o int32) bool {
	l, lok := tp.field(o, fSelectLarg)
	r, rok := tp.field(o, fSelectRarg)
	if lok || rok {
		return lok && rok && selectHasWhere(tp, l) && selectHasWhere(tp, r)
	}
	return tp.has(o, fSelectWhere)
}

// explainAnalyze reports whether an EXPLAIN executes its statement: an
// ANALYZE option whose value is not plainly false. PostgreSQL takes the last
// of repeated options; any true one counts here (fail closed).
func explainAnalyze(tp *tape, o int32) bool {
	analyze := false
	opts, _ := tp.field(o, fExplainOptions)
	tp.elems(opts, func(v int32) {
		t, d, ok := tp.node(v)
		if !ok || t != defElemType {
			return
		}
		name := tp.fieldStr(d, fDefElemName)
		if name != "analyze" && name != "analyse" {
			return
		}
		if !defIsFalse(tp, d) {
			analyze = true
		}
	})
	return analyze
}

// defIsFalse reports whether a DefElem's value is false as PostgreSQL's
// defGetBoolean reads it (parse_bool: prefixes of "false"/"no", "off", "0").
func defIsFalse(tp *tape, d int32) bool {
	arg, ok := tp.field(d, fDefElemArg)
	if !ok {
		return false // a bare option means true
	}
	t, v, ok := tp.node(arg)
	if !ok {
		return false
	}
	switch t {
	case booleanType:
		return !tp.fieldTrue(v, fBooleanVal)
	case integerType:
		return tp.fieldInt(v, fIntegerVal) == 0
	case stringType:
		s := strings.ToLower(tp.fieldStr(v, fStringSval))
		switch {
		case s == "":
			return false
		case strings.HasPrefix("false", s), strings.HasPrefix("no", s):
			return true
		case s == "off" || s == "of" || s == "0":
			return true
		}
	}
	return false
}

// addTable records a RangeVar on the current statement.
func (w *walker) addTable(o int32) {
	var parts [3]string
	n := 0
	for _, f := range [...]string{fRangeVarCatalog, fRangeVarSchema, fRangeVarRel} {
		if s := w.t.fieldStr(o, f); s != "" {
			parts[n] = s
			n++
		}
	}
	w.addName(&w.stmts[w.cur].tables, parts[:n])
}

// addNameList records a List of String nodes (DROP TABLE a.b) as a table.
func (w *walker) addNameList(node int32) {
	t, o, ok := w.t.node(node)
	if !ok || t != listType {
		return
	}
	var buf [4]string
	w.addName(&w.stmts[w.cur].tables, w.stringItems(o, fListItems, buf[:0]))
}

// addFunction records a FuncCall on the current statement.
func (w *walker) addFunction(o int32) {
	var buf [4]string
	parts := w.stringItems(o, fFuncCallName, buf[:0])
	if len(parts) == 0 {
		return
	}
	s := &w.stmts[w.cur]
	if sideEffectFunctions[strings.ToLower(parts[len(parts)-1])] {
		s.writes = true
	}
	w.addName(&s.functions, parts)
}

// stringItems appends the sval of every String node in the list held in
// key of object o (a qualified name such as FuncCall.funcname).
func (w *walker) stringItems(o int32, key string, dst []string) []string {
	v, _ := w.t.field(o, key)
	w.t.elems(v, func(e int32) {
		if t, s, ok := w.t.node(e); ok && t == stringType {
			dst = append(dst, w.t.fieldStr(s, fStringSval))
		}
	})
	return dst
}

// addName adds a possibly qualified name to list, deduplicated, as written
// (the parser has already folded unquoted identifiers to lower case). A
// qualified name is added both whole and unqualified, so that a rule naming
// "users" or "pg_read_file" also matches public.users or
// pg_catalog.pg_read_file. A name part containing '.' or '"' is quoted, so
// that "a.b" (one identifier) cannot pass for a.b (schema a, table b).
func (w *walker) addName(list *[]string, parts []string) {
	if len(parts) == 0 {
		return
	}
	for i, p := range parts {
		if strings.ContainsAny(p, `."`) {
			parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
		}
	}
	appendUnique(list, strings.Join(parts, "."))
	if len(parts) > 1 {
		appendUnique(list, parts[len(parts)-1])
	}
}

func appendUnique(list *[]string, s string) {
	for _, x := range *list {
		if x == s {
			return
		}
	}
	*list = append(*list, s)
}
