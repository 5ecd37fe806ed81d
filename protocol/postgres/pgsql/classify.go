package pgsql

import (
	"strings"
	"sync"

	"github.com/sluicegw/sluice/protocol"
)

// Options are the session settings that change how PostgreSQL lexes SQL.
//
// The zero value is NOT the server default: it means
// standard_conforming_strings = off. Start from DefaultOptions.
type Options struct {
	// StandardConformingStrings is the session's
	// standard_conforming_strings (true, "on", is PostgreSQL's default
	// since 9.1). When false, a backslash escapes the next character in
	// '...' literals too, so `SELECT 'x\'' ; DROP TABLE t; -- '` is two
	// statements.
	StandardConformingStrings bool
	// BackslashQuote is the session's backslash_quote: "on",
	// "safe_encoding" (the default, also when empty) or "off". With "off"
	// the server rejects \' in a literal, and so does Classify. "on" and
	// "safe_encoding" are the same here (see ClientEncoding).
	BackslashQuote string
	// ClientEncoding is the session's client_encoding; empty means UTF8.
	// PostgreSQL converts a query to the server encoding before lexing it,
	// so in an encoding whose multibyte characters may contain the bytes of
	// '\' or quote (SJIS, BIG5, GBK, UHC, GB18030, JOHAB, SHIFT_JIS_2004)
	// the server and a byte-level parser would split the text differently.
	// Texts in such an encoding get a ParseError (fail closed).
	ClientEncoding string
}

// DefaultOptions are a default PostgreSQL session's settings.
func DefaultOptions() Options {
	return Options{StandardConformingStrings: true, BackslashQuote: "safe_encoding"}
}

// unsafeEncodings are PostgreSQL's client-only encodings
// (PG_ENCODING_IS_CLIENT_ONLY), compared without case, '_' or '-'.
var unsafeEncodings = map[string]bool{
	"SJIS": true, "SHIFTJIS": true, "MSKANJI": true, "WIN932": true, "WINDOWS932": true,
	"BIG5": true, "WIN950": true, "WINDOWS950": true,
	"GBK": true, "WIN936": true, "WINDOWS936": true, "CP936": true,
	"UHC": true, "WIN949": true, "WINDOWS949": true,
	"GB18030": true, "JOHAB": true, "SHIFTJIS2004": true,
}

var encodingNameCleaner = strings.NewReplacer("_", "", "-", "")

func encodingIsUnsafe(enc string) bool {
	if enc == "" {
		return false
	}
	return unsafeEncodings[strings.ToUpper(encodingNameCleaner.Replace(enc))]
}

// EffectOp is what a statement does to the session's prepared statements.
type EffectOp int

// Effects on prepared statements.
const (
	EffectPrepare    EffectOp = iota + 1 // PREPARE name AS body
	EffectExecute                        // EXECUTE name
	EffectDeallocate                     // DEALLOCATE name, DEALLOCATE ALL, DISCARD ALL
)

// Effect is one PREPARE, EXECUTE or DEALLOCATE (or DISCARD ALL) in a text,
// in the order the server runs them.
type Effect struct {
	Op EffectOp
	// Name is the prepared statement's name (empty for DEALLOCATE ALL).
	Name string
	// All is set for DEALLOCATE ALL and DISCARD ALL.
	All bool
	// Stmt is the index in SQL.Statements of the PREPARE, EXECUTE,
	// DEALLOCATE or DISCARD statement.
	Stmt int
	// Body is, for PREPARE, the classification of the prepared statement
	// (also present in SQL.Statements, right after the PREPARE).
	Body *protocol.SQL
}

// Result is the classification of a text plus its effects on the session's
// prepared statements. Results returned by this package are the caller's
// to keep; a cached one is a copy.
type Result struct {
	SQL     *protocol.SQL
	Effects []Effect
}

// Classify classifies sql as a session with the given settings would run
// it. It never panics; unparseable text gives a SQL with ParseError set and
// no statements.
func Classify(sql string, opts Options) *protocol.SQL {
	return Analyze(sql, opts).SQL
}

// Analyze is Classify plus the text's effects on prepared statements, for
// PreparedSet.
func Analyze(sql string, opts Options) *Result {
	if strings.IndexByte(sql, 0) >= 0 {
		return failed("query text contains a NUL byte")
	}
	if encodingIsUnsafe(opts.ClientEncoding) {
		return failed("client_encoding " + opts.ClientEncoding +
			" is not supported: its multibyte characters can contain the bytes of a quote or backslash; use UTF8")
	}
	tp := tapes.Get().(*tape)
	defer func() {
		if cap(tp.toks) <= 1<<16 { // do not keep the tape of a huge text
			tapes.Put(tp)
		}
	}()
	w := walker{t: tp}
	err := parse(sql, opts, func(tree []byte) {
		defer func() { tp.src = nil }() // C memory, freed after this call
		if !tp.build(tree) {
			w.bad = true
			return
		}
		w.root()
	})
	if err != nil {
		return failed(err.Error())
	}
	if w.bad {
		return failed("internal error: unexpected parse tree")
	}
	return w.result()
}

// tapes recycles tapes between parses.
var tapes = sync.Pool{New: func() any { return new(tape) }}

func failed(msg string) *Result {
	return &Result{SQL: &protocol.SQL{Statements: []protocol.Statement{}, ParseError: msg}}
}

// result turns the walked statements into a Result.
func (w *walker) result() *Result {
	r := &Result{SQL: rollup(w.stmts)}
	if len(w.effects) > 0 {
		r.Effects = make([]Effect, len(w.effects))
		for i, e := range w.effects {
			r.Effects[i] = Effect{Op: e.op, Name: e.name, All: e.deallocAll, Stmt: e.stmt}
			if e.op == EffectPrepare {
				r.Effects[i].Body = rollup(w.stmts[e.bodyStart:e.bodyEnd])
			}
		}
	}
	return r
}

// rollup builds a protocol.SQL from statements.
func rollup(stmts []stmt) *protocol.SQL {
	out := &protocol.SQL{Statements: make([]protocol.Statement, len(stmts))}
	for i, s := range stmts {
		out.Statements[i] = protocol.Statement{Kind: s.kind, Tables: s.tables, HasWhere: s.hasWhere, Functions: s.functions}
		out.Writes = out.Writes || s.writes || s.ddl
		out.DDL = out.DDL || s.ddl
	}
	return out
}
