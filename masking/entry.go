package masking

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// StrategyKind is how a rule replaces what it matches.
type StrategyKind uint8

// Strategy kinds, from the one that shows most to the one that shows least.
const (
	// Partial keeps the last Keep characters and stars the rest.
	Partial StrategyKind = iota + 1
	// Hash replaces a value by a keyed HMAC pseudonym: equal inputs give
	// equal outputs under one key, so joins and group-bys still work.
	Hash
	// Redact replaces a value by a fixed token ("[REDACTED]").
	Redact
	// Null replaces a value by SQL NULL (JSON null; dropped from text).
	Null
)

// DefaultKeep is how many characters partial keeps when the entry does
// not say.
const DefaultKeep = 4

// Strategy is a StrategyKind with its parameter.
type Strategy struct {
	Kind StrategyKind
	// Keep is, for Partial, how many trailing characters stay visible;
	// never more than half of a value's characters are shown.
	Keep int
}

// String returns the strategy as an entry writes it.
func (s Strategy) String() string {
	switch s.Kind {
	case Partial:
		return "partial:" + strconv.Itoa(s.Keep)
	case Hash:
		return "hash"
	case Redact:
		return "redact"
	case Null:
		return "null"
	}
	return "invalid"
}

// stronger reports whether s hides more than t: null > redact > hash >
// partial (fewer kept characters hide more). When several entries mask the
// same thing, the strongest wins.
func (s Strategy) stronger(t Strategy) bool {
	if s.Kind != t.Kind {
		return s.Kind > t.Kind
	}
	return s.Kind == Partial && s.Keep < t.Keep
}

// ParseStrategy parses redact, partial, partial:N, hash (or pseudonym) and
// null.
func ParseStrategy(s string) (Strategy, error) {
	switch s {
	case "redact":
		return Strategy{Kind: Redact}, nil
	case "partial":
		return Strategy{Kind: Partial, Keep: DefaultKeep}, nil
	case "hash", "pseudonym":
		return Strategy{Kind: Hash}, nil
	case "null":
		return Strategy{Kind: Null}, nil
	}
	if n, ok := strings.CutPrefix(s, "partial:"); ok {
		k, err := strconv.Atoi(n)
		if err != nil || k < 0 || k > 64 {
			return Strategy{}, fmt.Errorf("partial:%s: want partial:N with N from 0 to 64", n)
		}
		return Strategy{Kind: Partial, Keep: k}, nil
	}
	return Strategy{}, fmt.Errorf("unknown strategy %q (want redact, partial, partial:N, hash or null)", s)
}

// EntryKind is what a mask entry matches.
type EntryKind uint8

// Entry kinds.
const (
	// DetectorEntry masks what a content detector finds, anywhere.
	DetectorEntry EntryKind = iota + 1
	// ColumnEntry masks whole result columns by name.
	ColumnEntry
	// JSONEntry masks JSON values by key or path, in json columns and
	// JSON bodies.
	JSONEntry
)

// Entry is one parsed mask entry.
//
// Grammar (an entry has no spaces):
//
//	entry    = target [ "=" strategy ]      canonical
//	         | target [ ":" strategy ]      also accepted (docs/policy.md)
//	target   = DETECTOR                     email, credit_card, ssn, phone, iban, ip,
//	                                        aws_key, jwt, private_key, secret, or a custom name
//	         | "column:" [ [ SCHEMA "." ] TABLE "." ] COLUMN    globs: * and ?
//	         | "json:" PATH
//	PATH     = "$" seg* | KEY seg*          a path not starting with $ matches at any depth
//	seg      = "." KEY | ".." KEY | "[" N "]" | "[*]" | "['" KEY "']"
//	strategy = redact | partial | partial:N | hash | pseudonym | null
//
// Names, tables and keys match case-insensitively. The default strategy
// is redact.
type Entry struct {
	// Raw is the entry as written; counts are reported under it.
	Raw  string
	Kind EntryKind
	// Target is the detector name, the column pattern or the JSON path.
	Target   string
	Strategy Strategy
}

// ErrEntry is wrapped by every error about a malformed mask entry.
var ErrEntry = errors.New("invalid mask entry")

// ParseEntry parses one mask entry and checks its syntax. It does not
// check that a detector name exists: Compile does, knowing the custom
// detectors (use IsBuiltin to check a name early).
func ParseEntry(s string) (Entry, error) {
	e := Entry{Raw: s, Strategy: Strategy{Kind: Redact}}
	bad := func(format string, args ...any) (Entry, error) {
		return Entry{}, fmt.Errorf("%w %q: %s", ErrEntry, s, fmt.Sprintf(format, args...))
	}
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return bad("must be non-empty, without spaces or control characters")
	}
	rest := s
	switch {
	case strings.HasPrefix(s, "column:"):
		e.Kind, rest = ColumnEntry, s[len("column:"):]
	case strings.HasPrefix(s, "json:"):
		e.Kind, rest = JSONEntry, s[len("json:"):]
	default:
		e.Kind = DetectorEntry
	}
	target, strat, hasStrat := splitStrategy(e.Kind, rest)
	if hasStrat {
		st, err := ParseStrategy(strat)
		if err != nil {
			return bad("%v", err)
		}
		e.Strategy = st
	}
	e.Target = target
	switch e.Kind {
	case DetectorEntry:
		if !validName(target) {
			return bad("not a detector name (letters, digits, _ and -), column:NAME or json:PATH")
		}
	case ColumnEntry:
		if _, err := parseColumnPattern(target); err != nil {
			return bad("%v", err)
		}
	case JSONEntry:
		if _, err := parsePath(target); err != nil {
			return bad("%v", err)
		}
	}
	return e, nil
}

// splitStrategy splits "target=strategy" or "target:strategy". Detector
// names and column patterns hold no ':' or '=', so the first one splits;
// a JSON key may hold either, so a JSON entry splits only before a suffix
// that is a strategy.
func splitStrategy(kind EntryKind, rest string) (target, strat string, ok bool) {
	if kind != JSONEntry {
		if i := strings.IndexAny(rest, "=:"); i >= 0 {
			return rest[:i], rest[i+1:], true
		}
		return rest, "", false
	}
	for _, sep := range []byte{'=', ':'} {
		for i := len(rest) - 1; i > 0; i-- {
			if rest[i] != sep {
				continue
			}
			if _, err := ParseStrategy(rest[i+1:]); err == nil {
				return rest[:i], rest[i+1:], true
			}
		}
	}
	return rest, "", false
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// columnPattern is a compiled column:... target: up to three dotted parts,
// each a lower-cased glob.
type columnPattern struct {
	schema, table, column string
}

func parseColumnPattern(s string) (columnPattern, error) {
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return columnPattern{}, fmt.Errorf("want column:NAME, column:TABLE.NAME or column:SCHEMA.TABLE.NAME")
	}
	for _, p := range parts {
		if p == "" {
			return columnPattern{}, fmt.Errorf("empty name part")
		}
		if strings.ContainsAny(p, "=:[]") {
			return columnPattern{}, fmt.Errorf("name part %q holds one of = : [ ]", p)
		}
	}
	for i := range parts {
		parts[i] = strings.ToLower(parts[i])
	}
	var c columnPattern
	switch len(parts) {
	case 1:
		c.column = parts[0]
	case 2:
		c.table, c.column = parts[0], parts[1]
	case 3:
		c.schema, c.table, c.column = parts[0], parts[1], parts[2]
	}
	return c, nil
}

// matches reports whether the pattern covers col. An unknown table
// (col.Table == "") matches any table: masking more is the safe side.
func (c columnPattern) matches(col *Column) bool {
	if !globFold(c.column, col.Name) {
		return false
	}
	if c.table == "" || col.Table == "" {
		return true
	}
	schema, table := "", col.Table
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		schema, table = table[:i], table[i+1:]
	}
	if !globFold(c.table, table) {
		return false
	}
	return c.schema == "" || schema == "" || globFold(c.schema, schema)
}

// globFold matches s against pattern (lower case; '*' any run, '?' any
// one byte), ASCII case-insensitively, without allocating.
func globFold[T string | []byte](pattern string, s T) bool {
	px, sx := 0, 0
	nextPx, nextSx := -1, -1
	for px < len(pattern) || sx < len(s) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				nextPx, nextSx = px, sx+1
				px++
				continue
			case '?':
				if sx < len(s) {
					px++
					sx++
					continue
				}
			default:
				if sx < len(s) && lower(s[sx]) == c {
					px++
					sx++
					continue
				}
			}
		}
		if nextSx > 0 && nextSx <= len(s) {
			px, sx = nextPx, nextSx
			continue
		}
		return false
	}
	return true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
