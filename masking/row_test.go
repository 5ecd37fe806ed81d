package masking

import (
	"encoding/binary"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const oidTimestamptz = 1184

// encode returns v in the wire format pgx would send for oid.
func encode(t *testing.T, oid uint32, binary bool, v any) []byte {
	t.Helper()
	format := int16(pgtype.TextFormatCode)
	if binary {
		format = pgtype.BinaryFormatCode
	}
	b, err := pgtype.NewMap().Encode(oid, format, v, nil)
	require.NoError(t, err)
	return b
}

// wire returns v as a value of col. A string is the value's text form
// (for text types, the value itself).
func wire(t *testing.T, col Column, v any) []byte {
	t.Helper()
	s, ok := v.(string)
	if !ok || classify(col.TypeOID) == tcText {
		return encode(t, col.TypeOID, col.Binary, v)
	}
	if !col.Binary {
		return []byte(s)
	}
	var dst any
	require.NoError(t, pgtype.NewMap().Scan(col.TypeOID, pgtype.TextFormatCode, []byte(s), &dst))
	return encode(t, col.TypeOID, true, dst)
}

// decodes checks that a real driver (pgx) decodes v as the column's type.
func decodes(t *testing.T, col Column, v []byte) any {
	t.Helper()
	format := int16(pgtype.TextFormatCode)
	if col.Binary {
		format = pgtype.BinaryFormatCode
	}
	var dst any
	require.NoError(t, pgtype.NewMap().Scan(col.TypeOID, format, v, &dst), "column %+v value %q", col, v)
	return dst
}

func mustCompile(t testing.TB, entries ...string) *Masker {
	t.Helper()
	m, err := Compile(entries, Options{PseudonymKey: testKey})
	require.NoError(t, err)
	return m
}

var pseudonymRE = regexp.MustCompile(`^p_[0-9a-f]{16}$`)

// TestRowTypes checks every column rule strategy against each type and
// format: the masked value must decode in pgx as the column's type.
func TestRowTypes(t *testing.T) {
	type tc struct {
		name  string
		col   Column
		in    any
		check func(t *testing.T, out []byte)
	}
	isNull := func(t *testing.T, out []byte) { assert.Nil(t, out) }
	tests := map[string][]tc{
		"redact": {
			{"text", Column{TypeOID: oidText}, "alice", func(t *testing.T, out []byte) { assert.Equal(t, "[REDACTED]", string(out)) }},
			{"varchar binary", Column{TypeOID: oidVarchar, Binary: true}, "alice", func(t *testing.T, out []byte) { assert.Equal(t, "[REDACTED]", string(out)) }},
			{"bpchar", Column{TypeOID: oidBpchar}, "ab   ", func(t *testing.T, out []byte) { assert.Equal(t, "[REDACTED]", string(out)) }},
			{"json", Column{TypeOID: oidJSON}, map[string]any{"a": 1}, func(t *testing.T, out []byte) { assert.Equal(t, `"[REDACTED]"`, string(out)) }},
			{"jsonb binary", Column{TypeOID: oidJSONB, Binary: true}, map[string]any{"a": 1}, func(t *testing.T, out []byte) { assert.Equal(t, "\x01\"[REDACTED]\"", string(out)) }},
			{"int4", Column{TypeOID: oidInt4}, int32(42), isNull},
			{"int8 binary", Column{TypeOID: oidInt8, Binary: true}, int64(42), isNull},
			{"uuid", Column{TypeOID: oidUUID}, "550e8400-e29b-41d4-a716-446655440000", isNull},
			{"timestamptz", Column{TypeOID: oidTimestamptz}, "2024-01-15 10:30:00+00", isNull},
			{"bytea binary", Column{TypeOID: oidBytea, Binary: true}, []byte("secret"), isNull},
		},
		"partial:4": {
			{"text", Column{TypeOID: oidText}, "4111111111111111", func(t *testing.T, out []byte) { assert.Equal(t, "************1111", string(out)) }},
			{"name binary", Column{TypeOID: oidName, Binary: true}, "héllo-wörld", func(t *testing.T, out []byte) { assert.Equal(t, "*******örld", string(out)) }},
			{"jsonb text", Column{TypeOID: oidJSONB}, `"abcdefghij"`, func(t *testing.T, out []byte) { assert.Equal(t, `"********hij\""`, string(out)) }},
			{"int2 binary", Column{TypeOID: oidInt2, Binary: true}, int16(7), isNull},
			{"numeric", Column{TypeOID: oidNumeric}, "123.45", isNull},
		},
		"hash": {
			{"text", Column{TypeOID: oidText}, "alice@example.com", func(t *testing.T, out []byte) { assert.Regexp(t, pseudonymRE, string(out)) }},
			{"json", Column{TypeOID: oidJSON}, []int{1, 2}, func(t *testing.T, out []byte) { assert.Regexp(t, `^"p_[0-9a-f]{16}"$`, string(out)) }},
			{"int2", Column{TypeOID: oidInt2}, int16(42), func(t *testing.T, out []byte) { assert.Regexp(t, `^\d+$`, string(out)) }},
			{"int4 binary", Column{TypeOID: oidInt4, Binary: true}, int32(42), func(t *testing.T, out []byte) { assert.Len(t, out, 4) }},
			{"int8 binary", Column{TypeOID: oidInt8, Binary: true}, int64(-42), func(t *testing.T, out []byte) {
				require.Len(t, out, 8)
				assert.GreaterOrEqual(t, int64(binary.BigEndian.Uint64(out)), int64(0))
			}},
			{"uuid", Column{TypeOID: oidUUID}, "550e8400-e29b-41d4-a716-446655440000", func(t *testing.T, out []byte) {
				assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, string(out))
			}},
			{"uuid binary", Column{TypeOID: oidUUID, Binary: true}, "550e8400-e29b-41d4-a716-446655440000", func(t *testing.T, out []byte) { assert.Len(t, out, 16) }},
			{"numeric", Column{TypeOID: oidNumeric}, "123.45", func(t *testing.T, out []byte) { assert.Regexp(t, `^\d+$`, string(out)) }},
			{"numeric binary", Column{TypeOID: oidNumeric, Binary: true}, "123.45", isNull},
			{"timestamptz binary", Column{TypeOID: oidTimestamptz, Binary: true}, "2024-01-15 10:30:00+00", isNull},
		},
		"null": {
			{"text", Column{TypeOID: oidText}, "alice", isNull},
			{"jsonb binary", Column{TypeOID: oidJSONB, Binary: true}, map[string]any{"a": 1}, isNull},
			{"int8", Column{TypeOID: oidInt8}, int64(1), isNull},
		},
	}
	for strat, cases := range tests {
		m := mustCompile(t, "column:secret_col="+strat)
		for _, tt := range cases {
			t.Run(strat+"/"+tt.name, func(t *testing.T) {
				col := tt.col
				col.Name = "secret_col"
				in := wire(t, col, tt.in)
				vals := [][]byte{in}
				n, err := m.MaskRow([]Column{col}, vals)
				require.NoError(t, err)
				assert.Equal(t, 1, n)
				tt.check(t, vals[0])
				if vals[0] != nil {
					decodes(t, col, vals[0])
				}
			})
		}
	}
}

func TestRowHashStable(t *testing.T) {
	m := mustCompile(t, "column:id=hash", "column:email=hash")
	other, err := Compile([]string{"column:id=hash", "column:email=hash"}, Options{PseudonymKey: []byte("another key, 16+ bytes long")})
	require.NoError(t, err)
	cols := []Column{{Name: "id", TypeOID: oidInt8}, {Name: "email", TypeOID: oidText}}
	bin := []Column{{Name: "id", TypeOID: oidInt8, Binary: true}, {Name: "email", TypeOID: oidText, Binary: true}}
	row := func(m *Masker, cols []Column, id int64, email string) (string, string) {
		idv := []byte(strconv.FormatInt(id, 10))
		if cols[0].Binary {
			idv = binary.BigEndian.AppendUint64(nil, uint64(id))
		}
		vals := [][]byte{idv, []byte(email)}
		_, err := m.MaskRow(cols, vals)
		require.NoError(t, err)
		if cols[0].Binary {
			return strconv.FormatInt(int64(binary.BigEndian.Uint64(vals[0])), 10), string(vals[1])
		}
		return string(vals[0]), string(vals[1])
	}
	id1, e1 := row(m, cols, 42, "alice@example.com")
	id2, e2 := row(m, cols, 42, "alice@example.com")
	assert.Equal(t, id1, id2, "equal inputs, equal pseudonyms")
	assert.Equal(t, e1, e2)
	id3, e3 := row(m, bin, 42, "alice@example.com")
	assert.Equal(t, id1, id3, "text and binary formats agree, so joins work across them")
	assert.Equal(t, e1, e3)
	id4, e4 := row(m, cols, 43, "bob@example.com")
	assert.NotEqual(t, id1, id4)
	assert.NotEqual(t, e1, e4)
	id5, e5 := row(other, cols, 42, "alice@example.com")
	assert.NotEqual(t, id1, id5, "different keys, different pseudonyms")
	assert.NotEqual(t, e1, e5)

	// A second Masker compiled with the same key (another session) agrees.
	again := mustCompile(t, "column:email=hash")
	_, e6 := row(again, []Column{{Name: "x", TypeOID: oidInt8}, {Name: "email", TypeOID: oidText}}, 1, "alice@example.com")
	assert.Equal(t, e1, e6)
}

func TestPartialKeepsLastN(t *testing.T) {
	tests := []struct {
		in   string
		keep int
		want string
	}{
		{"4111111111111111", 4, "************1111"},
		{"4111-1111-1111-1111", 4, "***************1111"},
		{"123-45-6789", 4, "*******6789"},
		{"abcdef", 4, "***def"}, // never more than half
		{"abc", 4, "**c"},
		{"a", 4, "*"},
		{"", 4, ""},
		{"ünïcödé", 2, "*****dé"},
		{"secret", 0, "******"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, string(appendPartial(nil, []byte(tt.in), tt.keep)), tt.in)
	}
}

func TestRowDetectors(t *testing.T) {
	m := mustCompile(t, "email", "credit_card=partial:4", "ssn=null", "json:password")
	cols := []Column{
		{Name: "note", TypeOID: oidText},
		{Name: "card", TypeOID: oidVarchar, Binary: true},
		{Name: "ssn_note", TypeOID: oidText},
		{Name: "doc", TypeOID: oidJSONB},
		{Name: "docb", TypeOID: oidJSONB, Binary: true},
		{Name: "big", TypeOID: oidInt8, Binary: true},
		{Name: "bigt", TypeOID: oidInt8},
		{Name: "when", TypeOID: oidTimestamptz},
		{Name: "blob", TypeOID: oidBytea},
		{Name: "n", TypeOID: oidInt4},
		{Name: "unknown", TypeOID: 0},
	}
	vals := [][]byte{
		[]byte("write to alice@example.com or bob@example.org"),
		[]byte("card 4111 1111 1111 1111"),
		[]byte("ssn 123-45-6789"),
		[]byte(`{"user": {"email": "carol@example.com", "password": "hunter2", "age": 42}}`),
		append([]byte{1}, `{"cards": ["4111111111111111", 5555555555554444]}`...),
		binary.BigEndian.AppendUint64(nil, 4111111111111111),
		[]byte("4111111111111111"),
		[]byte("2024-01-15 10:30:00+00"),
		[]byte(`\x616c696365406578616d706c652e636f6d`),
		[]byte("42"),
		[]byte("dave@example.com"),
	}
	counts := map[string]int{}
	n, err := m.MaskRowCounts(cols, vals, counts)
	require.NoError(t, err)
	assert.Equal(t, 8, n)
	assert.Equal(t, "write to [REDACTED] or [REDACTED]", string(vals[0]))
	assert.Equal(t, "card ***************1111", string(vals[1]))
	assert.Nil(t, vals[2], "ssn=null nulls the value")
	assert.JSONEq(t, `{"user": {"email": "[REDACTED]", "password": "[REDACTED]", "age": 42}}`, string(vals[3]))
	assert.Equal(t, byte(1), vals[4][0])
	assert.JSONEq(t, `{"cards": ["************1111", "************4444"]}`, string(vals[4][1:]))
	assert.Nil(t, vals[5], "a card in a bigint: NULL, not text")
	assert.Nil(t, vals[6])
	assert.Equal(t, "2024-01-15 10:30:00+00", string(vals[7]))
	assert.Equal(t, `\x616c696365406578616d706c652e636f6d`, string(vals[8]), "bytea is not scanned")
	assert.Equal(t, "42", string(vals[9]))
	assert.Nil(t, vals[10], "unknown type: NULL")
	assert.Equal(t, map[string]int{"email": 3, "credit_card=partial:4": 5, "ssn=null": 1, "json:password": 1}, counts)
	for i, v := range vals {
		if v != nil && cols[i].TypeOID != 0 {
			decodes(t, cols[i], v)
		}
	}
}

func TestRowErrors(t *testing.T) {
	m := mustCompile(t, "email", "column:id=hash")
	tests := []struct {
		name string
		col  Column
		val  string
	}{
		{"corrupt json", Column{Name: "doc", TypeOID: oidJSON}, `{"a": `},
		{"two json values", Column{Name: "doc", TypeOID: oidJSONB}, `1 2`},
		{"jsonb without version", Column{Name: "doc", TypeOID: oidJSONB, Binary: true}, `{"a":1}`},
		{"short int8", Column{Name: "id", TypeOID: oidInt8, Binary: true}, "\x00\x01"},
		{"short bigint scan", Column{Name: "big", TypeOID: oidInt8, Binary: true}, "\x00\x01"},
		{"short uuid", Column{Name: "id", TypeOID: oidUUID, Binary: true}, "\x00\x01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.MaskRow([]Column{tt.col}, [][]byte{[]byte(tt.val)})
			require.Error(t, err)
			assert.NotContains(t, err.Error(), tt.val, "errors never carry values")
		})
	}
	_, err := m.MaskRow([]Column{{Name: "a"}}, [][]byte{nil, nil})
	assert.ErrorContains(t, err, "2 values for 1 columns")
}

func TestRowNoMatchNoChange(t *testing.T) {
	m := mustCompile(t, "column:users.ssn", "email")
	cols := []Column{{Name: "id", TypeOID: oidInt4}, {Name: "ssn", Table: "public.orders", TypeOID: oidText}, {Name: "note", TypeOID: oidText}}
	vals := [][]byte{[]byte("1"), []byte("123-45-6789"), nil}
	n, err := m.MaskRow(cols, vals)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, "123-45-6789", string(vals[1]), "another table's ssn column")

	vals = [][]byte{[]byte("1"), []byte("x"), []byte("no personal data in this text, order ORD-2024-000123")}
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = m.MaskRow(cols, vals)
	})
	assert.Zero(t, allocs, "the no-match path does not allocate")
}

func TestRowPlanCache(t *testing.T) {
	m := mustCompile(t, "column:a")
	c1 := []Column{{Name: "a", TypeOID: oidText}, {Name: "b", TypeOID: oidText}}
	c2 := []Column{{Name: "b", TypeOID: oidText}, {Name: "a", TypeOID: oidText}}
	for range 3 {
		v := [][]byte{[]byte("x"), []byte("y")}
		_, err := m.MaskRow(c1, v)
		require.NoError(t, err)
		assert.Equal(t, []string{"[REDACTED]", "y"}, []string{string(v[0]), string(v[1])})
		v = [][]byte{[]byte("x"), []byte("y")}
		_, err = m.MaskRow(c2, v)
		require.NoError(t, err)
		assert.Equal(t, []string{"x", "[REDACTED]"}, []string{string(v[0]), string(v[1])})
	}
	// The caller changing its column slice in place is seen.
	c1[0].Name = "z"
	v := [][]byte{[]byte("x"), []byte("y")}
	_, err := m.MaskRow(c1, v)
	require.NoError(t, err)
	assert.Equal(t, "x", string(v[0]))
}

func TestRowConcurrent(t *testing.T) {
	m := mustCompile(t, "email", "column:id=hash")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cols := []Column{{Name: "id", TypeOID: oidInt4}, {Name: "e" + strconv.Itoa(g%2), TypeOID: oidText}}
			for range 500 {
				v := [][]byte{[]byte("7"), []byte("x a@example.com")}
				_, err := m.MaskRow(cols, v)
				assert.NoError(t, err)
				assert.Equal(t, "x [REDACTED]", string(v[1]))
			}
		}()
	}
	wg.Wait()
}

func TestRedactTokenOption(t *testing.T) {
	m, err := Compile([]string{"email", "json:k"}, Options{RedactToken: `<"gone">`})
	require.NoError(t, err)
	vals := [][]byte{[]byte("a@example.com"), []byte(`{"k": 1}`)}
	_, err = m.MaskRow([]Column{{Name: "t", TypeOID: oidText}, {Name: "j", TypeOID: oidJSON}}, vals)
	require.NoError(t, err)
	assert.Equal(t, `<"gone">`, string(vals[0]))
	assert.JSONEq(t, `{"k": "<\"gone\">"}`, string(vals[1]))
}

type panicky struct{}

func (panicky) Name() string { return "panicky" }
func (panicky) Find(b []byte, start int) (int, int, bool) {
	panic("detector bug near " + string(b))
}

func TestDetectorPanicFailsClosed(t *testing.T) {
	m, err := Compile([]string{"panicky"}, Options{Custom: []Detector{panicky{}}})
	require.NoError(t, err)
	_, err = m.MaskRow([]Column{{Name: "t", TypeOID: oidText}}, [][]byte{[]byte("s3cret")})
	assert.ErrorIs(t, err, ErrDetectorPanic)
	assert.NotContains(t, err.Error(), "s3cret")
	_, err = m.MaskJSON([]byte(`"s3cret"`), nil)
	assert.ErrorIs(t, err, ErrDetectorPanic)
	var out strings.Builder
	s := m.NewTextStream(&out)
	_, err = s.Write([]byte("s3cret"))
	if err == nil {
		err = s.Close()
	}
	assert.ErrorIs(t, err, ErrDetectorPanic)
	assert.Empty(t, out.String())
	js := m.NewJSONStream(&out)
	_, err = js.Write([]byte(`"s3cret"`))
	assert.ErrorIs(t, err, ErrDetectorPanic)
}

// TestSameColumns checks the plan cache's column comparison, which skips
// comparing the bytes of strings that share them.
func TestSameColumns(t *testing.T) {
	name := strings.Repeat("email", 2)
	base := []Column{{Name: name, Table: "public.t", TypeOID: oidText}}
	for _, tc := range []struct {
		cols []Column
		same bool
	}{
		{[]Column{{Name: name, Table: "public.t", TypeOID: oidText}}, true},
		{[]Column{{Name: strings.Repeat("email", 2), Table: "public.t", TypeOID: oidText}}, true}, // equal, other bytes
		{[]Column{{Name: "emailemaiL", Table: "public.t", TypeOID: oidText}}, false},
		{[]Column{{Name: name, Table: "public.u", TypeOID: oidText}}, false},
		{[]Column{{Name: name, Table: "public.t", TypeOID: oidVarchar}}, false},
		{[]Column{{Name: name, Table: "public.t", TypeOID: oidText, Binary: true}}, false},
		{[]Column{{Name: name, Table: "public.t", TypeOID: oidText}, {Name: "b"}}, false},
		{nil, false},
	} {
		assert.Equal(t, tc.same, sameColumns(base, tc.cols), "%+v", tc.cols)
		assert.Equal(t, slices.Equal(base, tc.cols), sameColumns(base, tc.cols), "%+v", tc.cols)
	}
}

// TestRowValuesShareNoRoom checks that the masked values of a row, cut
// from one buffer, stay apart: appending to one changes no other, with a
// long token and several matches in a value.
func TestRowValuesShareNoRoom(t *testing.T) {
	for _, tok := range []string{"", "[" + strings.Repeat("x", 40) + "]"} {
		entries := []string{"email=hash", "ssn=partial:2"}
		for _, n := range BuiltinNames() {
			if n != DetectEmail && n != DetectSSN {
				entries = append(entries, n)
			}
		}
		m, err := Compile(entries, Options{PseudonymKey: testKey, RedactToken: tok})
		require.NoError(t, err)
		cols := []Column{{Name: "a", TypeOID: oidText}, {Name: "b", TypeOID: oidText}, {Name: "c", TypeOID: oidText}, {Name: "d", TypeOID: oidText}}
		vals := [][]byte{
			[]byte("a@x.io, 4111 1111 1111 1111 and 123-45-6789"),
			[]byte("nothing here"),
			[]byte("::1 ::2 fe80::1 10.0.0.1 b@y.io"),
			[]byte("123-45-6789"),
		}
		n, err := m.MaskRow(cols, vals)
		require.NoError(t, err)
		require.Equal(t, 3, n)
		want := make([]string, len(vals))
		for i, v := range vals {
			want[i] = string(v)
			assert.Equal(t, len(v), cap(v), "value %d has room to grow into", i)
		}
		for i := range vals {
			vals[i] = append(vals[i], "!!!!!!!!"...)
			for k := range vals {
				if k != i {
					got := string(vals[k])
					if k < i {
						got = strings.TrimSuffix(got, "!!!!!!!!")
					}
					assert.Equal(t, want[k], got, "appending to value %d changed value %d", i, k)
				}
			}
		}
		assert.NotContains(t, want[0], "4111")
		assert.NotContains(t, want[2], "fe80")
		assert.Equal(t, "*********89", want[3])
	}
}
