package pgsql

import (
	"bytes"
	"strconv"
)

// The parse tree arrives as libpg_query's JSON. A tape — one flat, pooled
// token array built in one linear pass, where every value knows the index
// just past itself — lets the walker skip values and look fields up by name
// without decoding the JSON into Go values.

// token is one JSON value (or object key) on the tape.
type token struct {
	kind  byte  // '{', '[', '"' (string or key), '0' (number), 't', 'f', 'n'
	esc   bool  // a string containing escapes
	start int32 // string: first content byte; others: first byte
	end   int32 // string: past the last content byte; number/literal: past the value
	next  int32 // index of the token after this value and its contents
}

// tape is a parsed JSON document.
type tape struct {
	src  []byte
	toks []token
}

// build tokenizes src. It reports false on malformed JSON.
func (t *tape) build(src []byte) bool {
	t.src = src
	// At most one token per two bytes ("1," or "{}"), so one allocation
	// (pooled with the tape) holds them all and appends never grow.
	if need := len(src)/2 + 2; cap(t.toks) < need {
		t.toks = make([]token, 0, need)
	}
	toks := t.toks[:0]
	defer func() { t.toks = toks }()
	var stack [64]int32
	open := stack[:0]
	i := 0
	for {
		for i < len(src) && (src[i] == ' ' || src[i] == '\n' || src[i] == '\t' || src[i] == '\r' || src[i] == ',' || src[i] == ':') {
			// Separators are not checked: libpg_query writes them, and
			// a misplaced one cannot change which values exist.
			i++
		}
		if i >= len(src) {
			break
		}
		c := src[i]
		switch c {
		case '{', '[':
			open = append(open, int32(len(toks)))
			toks = append(toks, token{kind: c, start: int32(i)})
			i++
		case '}', ']':
			if len(open) == 0 {
				return false
			}
			o := open[len(open)-1]
			open = open[:len(open)-1]
			if (c == '}') != (toks[o].kind == '{') {
				return false
			}
			toks[o].end = int32(i + 1)
			toks[o].next = int32(len(toks))
			i++
		case '"':
			j := i + 1
			esc := false
			if q := bytes.IndexByte(src[j:], '"'); q >= 0 && bytes.IndexByte(src[j:j+q], '\\') < 0 {
				j += q // the common case: no escapes
			} else {
				for j < len(src) && src[j] != '"' {
					if src[j] == '\\' {
						esc = true
						j++
					}
					j++
				}
				if j >= len(src) {
					return false
				}
			}
			n := int32(len(toks))
			toks = append(toks, token{kind: '"', esc: esc, start: int32(i + 1), end: int32(j), next: n + 1})
			i = j + 1
		default:
			j := i
			for j < len(src) && src[j] != ',' && src[j] != '}' && src[j] != ']' && src[j] != ' ' && src[j] != '\n' {
				j++
			}
			kind := byte('0')
			switch c {
			case 't', 'f', 'n':
				kind = c
			case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			default:
				return false
			}
			n := int32(len(toks))
			toks = append(toks, token{kind: kind, start: int32(i), end: int32(j), next: n + 1})
			i = j
		}
	}
	return len(open) == 0 && len(toks) > 0 && toks[0].kind == '{'
}

// raw returns the bytes of token i (a string's content without quotes, still
// escaped).
func (t *tape) raw(i int32) []byte { return t.src[t.toks[i].start:t.toks[i].end] }

// str returns the value of string token i.
func (t *tape) str(i int32) string {
	tk := &t.toks[i]
	if tk.kind != '"' {
		return ""
	}
	if !tk.esc {
		return string(t.src[tk.start:tk.end])
	}
	s, err := strconv.Unquote(string(t.src[tk.start-1 : tk.end+1]))
	if err != nil {
		return string(t.src[tk.start:tk.end])
	}
	return s
}

// field returns the value token of key name in object obj.
func (t *tape) field(obj int32, name string) (int32, bool) {
	if obj < 0 || t.toks[obj].kind != '{' {
		return -1, false
	}
	for k := obj + 1; k < t.toks[obj].next; k = t.toks[k+1].next {
		if string(t.raw(k)) == name {
			return k + 1, true
		}
	}
	return -1, false
}

// has reports whether object obj has key name.
func (t *tape) has(obj int32, name string) bool {
	_, ok := t.field(obj, name)
	return ok
}

// fieldStr returns the string (or enum name) value of key name in obj.
func (t *tape) fieldStr(obj int32, name string) string {
	v, ok := t.field(obj, name)
	if !ok {
		return ""
	}
	return t.str(v)
}

// fieldTrue reports whether key name of obj is the boolean true.
func (t *tape) fieldTrue(obj int32, name string) bool {
	v, ok := t.field(obj, name)
	return ok && t.toks[v].kind == 't'
}

// fieldInt returns the integer value of key name in obj, 0 when absent.
func (t *tape) fieldInt(obj int32, name string) int64 {
	v, ok := t.field(obj, name)
	if !ok || t.toks[v].kind != '0' {
		return 0
	}
	n, _ := strconv.ParseInt(string(t.raw(v)), 10, 64)
	return n
}

// elems calls fn for every element of array arr.
func (t *tape) elems(arr int32, fn func(int32)) {
	if arr < 0 || t.toks[arr].kind != '[' {
		return
	}
	for e := arr + 1; e < t.toks[arr].next; e = t.toks[e].next {
		fn(e)
	}
}

// node unwraps a Node object ({"RangeVar": {...}}) into its type and body.
func (t *tape) node(obj int32) (*msgType, int32, bool) {
	if obj < 0 || t.toks[obj].kind != '{' || t.toks[obj].next == obj+1 {
		return nil, -1, false
	}
	ty := nodeType.byJSON[string(t.raw(obj+1))]
	if ty == nil || ty.child == nil || t.toks[obj+2].kind != '{' {
		return nil, -1, false
	}
	return ty.child, obj + 2, true
}
