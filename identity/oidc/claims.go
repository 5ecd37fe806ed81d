package oidc

import (
	"fmt"
	"math"
	"time"
)

// lookupClaim resolves a dotted claim path. At each level a key equal to
// the whole remaining path wins (so URL-style names such as
// "https://example.com/roles" work), otherwise the path descends into
// nested objects at each dot: "realm_access.roles".
func lookupClaim(m map[string]any, path string) (any, bool) {
	if v, ok := m[path]; ok {
		return v, true
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		if sub, ok := m[path[:i]].(map[string]any); ok {
			if v, ok := lookupClaim(sub, path[i+1:]); ok {
				return v, true
			}
		}
	}
	return nil, false
}

// stringClaim returns an optional string claim; present with another type
// is an error.
func stringClaim(m map[string]any, path string) (string, error) {
	v, ok := lookupClaim(m, path)
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("claim %q is a %s, want a string", path, jsonType(v))
	}
	return s, nil
}

// groupsClaim returns the groups: a list of strings or a single string.
func groupsClaim(m map[string]any, path string) ([]string, error) {
	v, ok := lookupClaim(m, path)
	if !ok || v == nil {
		return nil, nil
	}
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil, nil
		}
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("groups claim %q: element %d is a %s, want a string", path, i, jsonType(e))
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("groups claim %q is a %s, want a string or a list of strings", path, jsonType(v))
	}
}

// numericDate reads an optional NumericDate claim (RFC 7519 §2: seconds
// since the epoch, possibly fractional).
func numericDate(m map[string]any, name string) (t time.Time, present bool, err error) {
	v, ok := m[name]
	if !ok || v == nil {
		return time.Time{}, false, nil
	}
	f, ok := v.(float64)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e13 {
		return time.Time{}, true, fmt.Errorf("claim %q is not a NumericDate", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// audiences reads "aud": one string or a list of strings (RFC 7519 §4.1.3).
func audiences(m map[string]any) ([]string, error) {
	switch v := m["aud"].(type) {
	case nil:
		return nil, nil
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("claim \"aud\" has a %s element, want strings", jsonType(e))
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("claim \"aud\" is a %s, want a string or a list of strings", jsonType(v))
	}
}

// checkRequired reports why the claims fail a required_claims entry, or
// "" when they satisfy it. want is a string, a bool, or a list of them
// (every element required).
func checkRequired(m map[string]any, path string, want any) string {
	got, ok := lookupClaim(m, path)
	if !ok || got == nil {
		return fmt.Sprintf("missing required claim %q", path)
	}
	var wants []any
	switch w := want.(type) {
	case []any:
		wants = w
	case []string:
		for _, s := range w {
			wants = append(wants, s)
		}
	default:
		wants = []any{w}
	}
	for _, w := range wants {
		if !holds(got, w) {
			return fmt.Sprintf("claim %q does not have the required value %s", path, quote(w))
		}
	}
	return ""
}

// holds reports whether got equals want or, as a list, contains it. want is
// a string or bool, so == never compares uncomparable values.
func holds(got, want any) bool {
	if list, ok := got.([]any); ok {
		for _, e := range list {
			if e == want {
				return true
			}
		}
		return false
	}
	return got == want
}

func quote(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
