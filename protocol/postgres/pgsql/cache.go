package pgsql

import (
	"container/list"
	"strings"
	"sync"

	"github.com/sluicegw/sluice/protocol"
)

// Classifier is Analyze behind a bounded LRU cache keyed by the text and
// the lexing settings, for the per-command hot path where the same texts
// repeat. It is safe for concurrent use. Every call returns a fresh copy, so
// callers may keep or change what they get without touching the cache.
type Classifier struct {
	size int
	// MaxTextLen is the longest text that is cached (longer texts are
	// classified every time); set it before first use. Default 64 KiB.
	MaxTextLen int

	mu      sync.Mutex
	entries map[string]*list.Element // by key (see appendKey)
	order   *list.List               // front: most recently used
}

type cacheEntry struct {
	key string
	res *Result
}

// NewClassifier returns a Classifier caching up to size results (at least 1).
func NewClassifier(size int) *Classifier {
	size = max(size, 1)
	return &Classifier{size: size, MaxTextLen: 64 << 10, entries: make(map[string]*list.Element, size), order: list.New()}
}

// Classify is the cached form of the package's Classify.
func (c *Classifier) Classify(sql string, opts Options) *protocol.SQL {
	return c.Analyze(sql, opts).SQL
}

// Analyze is the cached form of the package's Analyze.
func (c *Classifier) Analyze(sql string, opts Options) *Result {
	if len(sql) > c.MaxTextLen || encodingIsUnsafe(opts.ClientEncoding) {
		return Analyze(sql, opts)
	}
	// The key is built in a buffer on the stack and looked up without
	// allocating; it is copied only when stored.
	var stack [256]byte
	kb, shared := appendKey(stack[:0], sql, opts)
	c.mu.Lock()
	if e, ok := c.entries[string(kb)]; ok {
		c.order.MoveToFront(e)
		res := e.Value.(*cacheEntry).res
		c.mu.Unlock()
		return res.clone()
	}
	c.mu.Unlock()

	res := Analyze(sql, opts)
	if shared && res.SQL != nil && res.SQL.ParseError != "" {
		// A parse error's message may quote a literal: keep it to this
		// text.
		return res
	}
	c.mu.Lock()
	if _, ok := c.entries[string(kb)]; !ok {
		key := string(kb)
		c.entries[key] = c.order.PushFront(&cacheEntry{key: key, res: res.clone()})
		for c.order.Len() > c.size {
			last := c.order.Back()
			c.order.Remove(last)
			delete(c.entries, last.Value.(*cacheEntry).key)
		}
	}
	c.mu.Unlock()
	return res
}

// Len returns the number of cached results.
func (c *Classifier) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// clone returns a deep copy of r.
func (r *Result) clone() *Result {
	out := &Result{SQL: cloneSQL(r.SQL)}
	if r.Effects != nil {
		out.Effects = make([]Effect, len(r.Effects))
		for i, e := range r.Effects {
			out.Effects[i] = e
			if e.Body != nil {
				out.Effects[i].Body = cloneSQL(e.Body)
			}
		}
	}
	return out
}

// cloneSQL returns a deep copy of s, with all name lists in one allocation.
func cloneSQL(s *protocol.SQL) *protocol.SQL {
	if s == nil {
		return nil
	}
	out := *s
	out.Statements = make([]protocol.Statement, len(s.Statements))
	n := 0
	for _, st := range s.Statements {
		n += len(st.Tables) + len(st.Functions)
	}
	names := make([]string, 0, n)
	for i, st := range s.Statements {
		out.Statements[i] = st
		if st.Tables != nil {
			names = append(names, st.Tables...)
			out.Statements[i].Tables = names[len(names)-len(st.Tables) : len(names) : len(names)]
		}
		if st.Functions != nil {
			names = append(names, st.Functions...)
			out.Statements[i].Functions = names[len(names)-len(st.Functions) : len(names) : len(names)]
		}
	}
	return &out
}

// appendKey appends the cache key of sql under opts to dst: a byte of the
// settings a classification depends on (those the parser distinguishes),
// then the text, or a NUL and the text with its plain integer literals
// replaced by 0, and reports whether any was.
//
// Texts that differ only in the values of plain integer literals classify
// alike, as long as each literal stays zero or non-zero: a value decides
// no statement's kind, tables, functions or effects, except as a boolean
// option (EXPLAIN (ANALYZE 1) runs its statement, PostgreSQL reads 0 as
// false and any other integer as true). So such texts share one entry: the
// simple protocol sends every execution with its own literals. No query
// text holds a NUL byte, so the two forms never meet.
func appendKey(dst []byte, sql string, opts Options) ([]byte, bool) {
	var flags byte
	if opts.StandardConformingStrings {
		flags |= 1
	}
	if parserOptions(opts)&bqOffBit != 0 {
		flags |= 2
	}
	dst = append(dst, flags)
	if !numbersShareable(sql) {
		return append(dst, sql...), false
	}
	return appendNormalized(append(dst, 0), sql)
}

// numbersShareable and appendNormalized replace every plain integer
// literal of a text with 0 when it is zero and 1 otherwise, for the cache
// key. They are deliberately
// narrow: a text with anything whose lexing depends on settings or context
// (quotes of any kind, dollar signs, backslashes, comments, non-ASCII
// bytes) is left alone, and a run of digits is a literal only when neither
// neighbour could make it part of a larger token (a letter, digit, '_',
// '.' or '$': identifiers like t1, decimals, exponents, hex-like 0x1F).
// The normalized text is only a key; the text itself is what is parsed.
//
// numbersShareable reports whether sql holds digits and nothing that
// keeps it from being normalized.
func numbersShareable(sql string) bool {
	digits := false
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		switch {
		case c == '\'', c == '"', c == '$', c == '\\', c >= 0x80:
			return false
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-', c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			return false
		case isASCIIDigit(c):
			digits = true
		}
	}
	return digits
}

// appendNormalized appends sql with its plain integer literals replaced by
// 0 or 1 and reports whether any was.
func appendNormalized(out []byte, sql string) ([]byte, bool) {
	changed := false
	for i := 0; i < len(sql); {
		c := sql[i]
		if !isASCIIDigit(c) {
			out = append(out, c)
			i++
			continue
		}
		j := i
		for j < len(sql) && isASCIIDigit(sql[j]) {
			j++
		}
		if (i > 0 && tokenByte(sql[i-1])) || (j < len(sql) && tokenByte(sql[j])) {
			out = append(out, sql[i:j]...)
		} else {
			// Zero and non-zero stay apart: an integer can be a
			// boolean (EXPLAIN (ANALYZE 1) runs its statement,
			// EXPLAIN (ANALYZE 0) does not).
			z := byte('0')
			if strings.Trim(sql[i:j], "0") != "" {
				z = '1'
			}
			out = append(out, z)
			changed = true
		}
		i = j
	}
	return out, changed
}

func isASCIIDigit(c byte) bool { return c >= '0' && c <= '9' }

// tokenByte reports whether c next to digits could make them part of an
// identifier, a decimal or exponent, or a parameter.
func tokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isASCIIDigit(c) || c == '_' || c == '.' || c == '$'
}
