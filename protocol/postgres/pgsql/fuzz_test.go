package pgsql

import (
	"reflect"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/protocol"
)

// FuzzClassify: Classify never panics, its output is well-formed and
// deterministic, the cache returns what Classify does, and
// standard_conforming_strings changes nothing for a text without a
// backslash or a U& literal (the only places the setting matters).
func FuzzClassify(f *testing.F) {
	for _, tc := range hiddenCases {
		f.Add(tc.sql)
	}
	for _, sql := range harmlessCases {
		f.Add(sql)
	}
	for _, tc := range smuggleCases {
		f.Add(tc.sql)
	}
	f.Add("SELECT 'a'\n'b'")
	f.Add("SELECT $a$ $b$ $a$")
	c := NewClassifier(64)
	f.Fuzz(func(t *testing.T, sql string) {
		for _, scs := range []bool{false, true} {
			o := DefaultOptions()
			o.StandardConformingStrings = scs
			s := Classify(sql, o)
			if s.ParseError != "" && len(s.Statements) > 0 {
				t.Fatalf("statements with a parse error: %+v", s)
			}
			if s.DDL && !s.Writes {
				t.Fatalf("DDL without writes: %+v", s)
			}
			for _, st := range s.Statements {
				if st.Kind == "" || strings.ToUpper(st.Kind) != st.Kind {
					t.Fatalf("bad kind %q", st.Kind)
				}
			}
			if again := c.Classify(sql, o); !sameSQL(s, again) {
				t.Fatalf("cached result differs:\n%+v\n%+v", s, again)
			}
		}
		upper := strings.ToUpper(sql)
		if !strings.Contains(sql, `\`) && !strings.Contains(upper, "U&") {
			on := Classify(sql, DefaultOptions())
			off := Classify(sql, Options{BackslashQuote: "safe_encoding"})
			if !sameSQL(on, off) {
				t.Fatalf("standard_conforming_strings changed a text without backslashes:\non:  %+v\noff: %+v", on, off)
			}
		}
	})
}

func sameSQL(a, b *protocol.SQL) bool { return reflect.DeepEqual(a, b) }
