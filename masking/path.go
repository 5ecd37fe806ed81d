package masking

import (
	"fmt"
	"strconv"
	"strings"
)

// A jsonPath is a compiled json: target: segments matched against the keys
// and indexes leading from the document root to a value.
type jsonPath []pathSeg

type segKind uint8

const (
	segKey   segKind = iota // a member whose key matches a glob
	segIndex                // an array element at an index
	segAny                  // any member or element
)

type pathSeg struct {
	// desc: the segment may match at any depth below the previous one
	// (JSONPath's ..).
	desc bool
	kind segKind
	key  string // lower-case glob, for segKey
	lit  bool   // key has no wildcards
	idx  int    // for segIndex
}

// step is one level of the path to the current JSON value.
type step struct {
	isKey bool
	key   []byte // decoded member name, for objects
	idx   int    // element index, for arrays
}

// parsePath compiles "$.a.b[0]", "$..key", "a.b", "key" and "*token*". A
// path that does not start with "$" matches at any depth.
func parsePath(s string) (jsonPath, error) {
	if s == "" {
		return nil, fmt.Errorf("empty JSON path")
	}
	var p jsonPath
	i := 0
	switch s[0] {
	case '$':
		i = 1
	case '[':
		seg, n, err := pathBracket(s, 0)
		if err != nil {
			return nil, err
		}
		seg.desc = true
		p, i = append(p, seg), n
	default:
		name, n := pathName(s)
		if name == "" {
			return nil, fmt.Errorf("JSON path %q: want $, a key, or [", s)
		}
		p, i = append(p, keySeg(name, true)), n
	}
	for i < len(s) {
		desc := false
		switch s[i] {
		case '.':
			i++
			if i < len(s) && s[i] == '.' {
				desc = true
				i++
			}
			if i < len(s) && s[i] == '[' {
				seg, n, err := pathBracket(s, i)
				if err != nil {
					return nil, err
				}
				seg.desc = desc
				p = append(p, seg)
				i = n
				continue
			}
			name, n := pathName(s[i:])
			if name == "" {
				return nil, fmt.Errorf("JSON path %q: empty key at offset %d", s, i)
			}
			p = append(p, keySeg(name, desc))
			i += n
		case '[':
			seg, n, err := pathBracket(s, i)
			if err != nil {
				return nil, err
			}
			p = append(p, seg)
			i = n
		default:
			return nil, fmt.Errorf("JSON path %q: unexpected %q at offset %d", s, s[i], i)
		}
	}
	return p, nil
}

func keySeg(name string, desc bool) pathSeg {
	if name == "*" {
		return pathSeg{desc: desc, kind: segAny}
	}
	return globSeg(strings.ToLower(name), desc)
}

// globSeg returns the segment matching keys against a lower-case glob.
func globSeg(key string, desc bool) pathSeg {
	return pathSeg{desc: desc, kind: segKey, key: key, lit: !strings.ContainsAny(key, "*?")}
}

// pathName returns the key at the start of s, up to '.' or '['.
func pathName(s string) (string, int) {
	n := strings.IndexAny(s, ".[")
	if n < 0 {
		n = len(s)
	}
	return s[:n], n
}

// pathBracket parses "[N]", "[*]", "['key']" or `["key"]` at s[i].
func pathBracket(s string, i int) (pathSeg, int, error) {
	end := strings.IndexByte(s[i:], ']')
	if end < 0 {
		return pathSeg{}, 0, fmt.Errorf("JSON path %q: unclosed [ at offset %d", s, i)
	}
	in := s[i+1 : i+end]
	next := i + end + 1
	switch {
	case in == "*":
		return pathSeg{kind: segAny}, next, nil
	case len(in) >= 2 && (in[0] == '\'' || in[0] == '"') && in[len(in)-1] == in[0]:
		return globSeg(strings.ToLower(in[1:len(in)-1]), false), next, nil
	}
	n, err := strconv.Atoi(in)
	if err != nil || n < 0 {
		return pathSeg{}, 0, fmt.Errorf("JSON path %q: want [N], [*] or ['key'] at offset %d", s, i)
	}
	return pathSeg{kind: segIndex, idx: n}, next, nil
}

func (g *pathSeg) matches(st *step) bool {
	switch g.kind {
	case segAny:
		return true
	case segKey:
		if g.lit {
			return st.isKey && equalLower(g.key, st.key)
		}
		return st.isKey && globFold(g.key, st.key)
	default:
		return !st.isKey && st.idx == g.idx
	}
}

// equalLower reports whether s, with ASCII letters in lower case, is key:
// what globFold reports for a key without wildcards.
func equalLower(key string, s []byte) bool {
	if len(s) != len(key) {
		return false
	}
	for i, c := range s {
		if lower(c) != key[i] {
			return false
		}
	}
	return true
}

// fixed reports whether no segment of p matches at any depth.
func (p jsonPath) fixed() bool {
	for i := range p {
		if p[i].desc {
			return false
		}
	}
	return true
}

// match reports whether the path leads exactly to the value at steps.
func (p jsonPath) match(steps []step) bool {
	switch len(p) {
	case 0:
		return len(steps) == 0
	case 1: // the common "key" and "$.key": one step to look at
		if p[0].desc {
			return len(steps) > 0 && p[0].matches(&steps[len(steps)-1])
		}
		return len(steps) == 1 && p[0].matches(&steps[0])
	}
	g := &p[0]
	if g.desc {
		if p[1:].fixed() {
			// Only one depth can leave exactly the rest for the tail.
			k := len(steps) - len(p)
			return k >= 0 && g.matches(&steps[k]) && p[1:].match(steps[k+1:])
		}
		for k := range steps {
			if g.matches(&steps[k]) && p[1:].match(steps[k+1:]) {
				return true
			}
		}
		return false
	}
	return len(steps) > 0 && g.matches(&steps[0]) && p[1:].match(steps[1:])
}

// endSet is a set of the steps a json: rule may end at, by a rule's last
// segment: bit n (n < 63) for a key of n bytes without wildcards, bit 63
// for any other segment (or a longer key).
type endSet uint64

// endsOf returns the steps the paths may end at.
func endsOf(paths []pathRule) endSet {
	var s endSet
	for _, r := range paths {
		if p := r.path; len(p) > 0 && p[len(p)-1].kind == segKey && p[len(p)-1].lit && len(p[len(p)-1].key) < 63 {
			s |= 1 << len(p[len(p)-1].key)
		} else {
			s |= 1 << 63
		}
	}
	return s
}

// mayEnd reports whether a path in s may end at st.
func (s endSet) mayEnd(st *step) bool {
	bit := 63
	if st.isKey && len(st.key) < 63 {
		bit = len(st.key)
	}
	return s&(1<<bit|1<<63) != 0
}
