package masking

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestParseEntry(t *testing.T) {
	redact := Strategy{Kind: Redact}
	tests := []struct {
		in     string
		kind   EntryKind
		target string
		strat  Strategy
	}{
		{"email", DetectorEntry, "email", redact},
		{"email=partial:4", DetectorEntry, "email", Strategy{Partial, 4}},
		{"email:partial", DetectorEntry, "email", Strategy{Partial, DefaultKeep}},
		{"credit_card=hash", DetectorEntry, "credit_card", Strategy{Kind: Hash}},
		{"ssn=pseudonym", DetectorEntry, "ssn", Strategy{Kind: Hash}},
		{"column:users.phone", ColumnEntry, "users.phone", redact},
		{"column:customers.card:partial", ColumnEntry, "customers.card", Strategy{Partial, DefaultKeep}},
		{"column:users.ssn=hash", ColumnEntry, "users.ssn", Strategy{Kind: Hash}},
		{"column:*token*=null", ColumnEntry, "*token*", Strategy{Kind: Null}},
		{"column:public.users.email=partial:2", ColumnEntry, "public.users.email", Strategy{Partial, 2}},
		{"json:$.user.email", JSONEntry, "$.user.email", redact},
		{"json:password=null", JSONEntry, "password", Strategy{Kind: Null}},
		{"json:$.items[*].card:partial:4", JSONEntry, "$.items[*].card", Strategy{Partial, 4}},
		{"json:a=b", JSONEntry, "a=b", redact}, // not a strategy: part of the key
		{"json:$['x:y']", JSONEntry, "$['x:y']", redact},
		{"employee_id", DetectorEntry, "employee_id", redact},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			e, err := ParseEntry(tt.in)
			require.NoError(t, err)
			assert.Equal(t, Entry{Raw: tt.in, Kind: tt.kind, Target: tt.target, Strategy: tt.strat}, e)
		})
	}
	for _, bad := range []string{
		"", "email =hash", "email=", "email=rot13", "email=partial:x", "email=partial:99",
		"column:", "column:a.b.c.d", "column:a..b", "column:x=unknown",
		"json:", "json:$.a[", "json:$.a[x]", "json:$.", "json:.a", "em ail", "e/mail",
	} {
		_, err := ParseEntry(bad)
		assert.ErrorIs(t, err, ErrEntry, "%q", bad)
	}
}

func TestCompile(t *testing.T) {
	custom, err := RegexpDetector("employee_id", `EMP-\d{6}`, nil)
	require.NoError(t, err)
	m, err := Compile([]string{"email", "email=partial", "credit_card=hash", "employee_id", "column:*password*", "json:token"},
		Options{PseudonymKey: testKey, Custom: []Detector{custom}})
	require.NoError(t, err)
	assert.Equal(t, []string{"email", "credit_card", "employee_id"}, m.Detectors())
	// The same detector twice: the stronger strategy (redact) wins.
	assert.Equal(t, Strategy{Kind: Redact}, m.dets[0].strat)
	assert.Equal(t, "email", m.dets[0].entry)

	tests := []struct {
		name    string
		entries []string
		opts    Options
		want    string
		is      error
	}{
		{"unknown detector", []string{"emial"}, Options{}, `unknown detector "emial"`, ErrEntry},
		{"bad strategy", []string{"email=scramble"}, Options{}, `unknown strategy "scramble"`, ErrEntry},
		{"missing key", []string{"column:users.ssn=hash"}, Options{}, "PseudonymKey", ErrNoKey},
		{"short key", []string{"email=hash"}, Options{PseudonymKey: []byte("short")}, "PseudonymKey", ErrNoKey},
		{"custom name taken", nil, Options{Custom: []Detector{cardDetector{}}}, "taken by a built-in", nil},
		{"all problems", []string{"emial", "x=y"}, Options{}, `"x=y"`, ErrEntry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Compile(tt.entries, tt.opts)
			require.Error(t, err)
			assert.Nil(t, m)
			assert.ErrorContains(t, err, tt.want)
			if tt.is != nil {
				assert.True(t, errors.Is(err, tt.is), "%v", err)
			}
		})
	}
}

func TestStrategyOrder(t *testing.T) {
	order := []Strategy{{Partial, 8}, {Partial, 2}, {Kind: Hash}, {Kind: Redact}, {Kind: Null}}
	for i := range order {
		for j := range order {
			assert.Equal(t, i > j, order[i].stronger(order[j]), "%v > %v", order[i], order[j])
		}
	}
	assert.Equal(t, "partial:2", Strategy{Partial, 2}.String())
}

func TestColumnPattern(t *testing.T) {
	tests := []struct {
		pattern string
		col     Column
		want    bool
	}{
		{"email", Column{Name: "email"}, true},
		{"email", Column{Name: "EMAIL", Table: "public.users"}, true},
		{"email", Column{Name: "emails"}, false},
		{"users.email", Column{Name: "email", Table: "public.users"}, true},
		{"users.email", Column{Name: "email", Table: "users"}, true},
		{"users.email", Column{Name: "email", Table: "public.orders"}, false},
		{"users.email", Column{Name: "email"}, true}, // unknown table: masks
		{"public.users.email", Column{Name: "email", Table: "public.users"}, true},
		{"public.users.email", Column{Name: "email", Table: "audit.users"}, false},
		{"public.users.email", Column{Name: "email", Table: "users"}, true},
		{"*password*", Column{Name: "user_password_hash"}, true},
		{"*password*", Column{Name: "Password"}, true},
		{"*_token", Column{Name: "api_token"}, true},
		{"*_token", Column{Name: "token_id"}, false},
		{"*.ssn", Column{Name: "ssn", Table: "x.people"}, true},
		{"user?", Column{Name: "users"}, true},
		{"user?", Column{Name: "user"}, false},
	}
	for _, tt := range tests {
		p, err := parseColumnPattern(tt.pattern)
		require.NoError(t, err)
		assert.Equal(t, tt.want, p.matches(&tt.col), "%s ~ %+v", tt.pattern, tt.col)
	}
}

func TestPathMatch(t *testing.T) {
	k := func(s string) step { return step{isKey: true, key: []byte(s)} }
	i := func(n int) step { return step{idx: n} }
	tests := []struct {
		path  string
		steps []step
		want  bool
	}{
		{"$", nil, true},
		{"$.user.email", []step{k("user"), k("email")}, true},
		{"$.user.email", []step{k("email")}, false},
		{"$.user.email", []step{k("a"), k("user"), k("email")}, false},
		{"email", []step{k("a"), i(3), k("Email")}, true},
		{"user.email", []step{k("data"), k("user"), k("email")}, true},
		{"$..email", []step{k("email")}, true},
		{"$.items[*].card", []step{k("items"), i(7), k("card")}, true},
		{"$.items[1].card", []step{k("items"), i(7), k("card")}, false},
		{"$.items[7].card", []step{k("items"), i(7), k("card")}, true},
		{"$.*.card", []step{k("x"), k("card")}, true},
		{"*token*", []step{k("refresh_token_v2")}, true},
		{"$['a.b']", []step{k("a.b")}, true},
		{"[0]", []step{k("x"), i(0)}, true},
	}
	for _, tt := range tests {
		p, err := parsePath(tt.path)
		require.NoError(t, err, tt.path)
		assert.Equal(t, tt.want, p.match(tt.steps), tt.path)
	}
}
