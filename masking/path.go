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
	return pathSeg{desc: desc, kind: segKey, key: strings.ToLower(name)}
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
		return pathSeg{kind: segKey, key: strings.ToLower(in[1 : len(in)-1])}, next, nil
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
		return st.isKey && globFold(g.key, st.key)
	default:
		return !st.isKey && st.idx == g.idx
	}
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
	if len(p) == 0 {
		return len(steps) == 0
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
