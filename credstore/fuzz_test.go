package credstore

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzParseVaultRef: ParseVaultRef never panics; what it accepts has a
// mount and a path without empty, . or .. segments, and its canonical
// form (String) parses back to the same reference.
func FuzzParseVaultRef(f *testing.F) {
	for _, s := range []string{
		"secret/data/pg#password", "secret/pg", "team/kv/data/pg?version=3#user", "kv/app/db?version=1",
		"secret/data/a/data/b#f#g", "data/x", "a/data", "secret/pg?version=0", "/secret/pg", "secret//pg",
		"secret/../pg", "secret/pg#", "secret/pg?x=1", "secret/pg?version=1&version=2", "secret/pg?%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseVaultRef(s)
		if err != nil {
			if r != (VaultRef{}) {
				t.Fatalf("%q: %+v with an error: %v", s, r, err)
			}
			return
		}
		if r.Field == "" || r.Version < 0 {
			t.Fatalf("%q: %+v", s, r)
		}
		for _, part := range []string{r.Mount, r.Path} {
			for seg := range strings.SplitSeq(part, "/") {
				if seg == "" || seg == "." || seg == ".." {
					t.Fatalf("%q: mount %q path %q has an empty, . or .. segment", s, r.Mount, r.Path)
				}
			}
		}
		again, err := ParseVaultRef(r.String())
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("%q parses to %+v, whose form %q parses to %+v (%v)", s, r, r.String(), again, err)
		}
	})
}

// FuzzSplitCommand: SplitCommand never panics, and the words it returns,
// each single-quoted, split back to the same words.
func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{
		"/usr/local/bin/get-secret --name pg", `vault kv get -field=password "secret/my app"`, `sh -c 'echo "$X"'`,
		`a\ b c`, `"a\"b\\c"`, `''`, `x ''`, `"unterminated`, `'unterminated`, `trailing\`, "two\nlines", "\t x \t",
		`it'\''s`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := SplitCommand(s)
		if err != nil {
			if args != nil {
				t.Fatalf("%q: %q with an error: %v", s, args, err)
			}
			return
		}
		if len(args) == 0 || args[0] == "" {
			t.Fatalf("%q: no program in %q", s, args)
		}
		quoted := make([]string, len(args))
		for i, a := range args {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		line := strings.Join(quoted, " ")
		again, err := SplitCommand(line)
		if err != nil || !reflect.DeepEqual(again, args) {
			t.Fatalf("%q splits to %q; quoted as %q it splits to %q (%v)", s, args, line, again, err)
		}
	})
}
