package masking

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"unsafe"
)

// PostgreSQL type OIDs the row masker knows (pg_type.dat).
const (
	oidBytea   = 17
	oidChar    = 18
	oidName    = 19
	oidInt8    = 20
	oidInt2    = 21
	oidInt4    = 23
	oidText    = 25
	oidJSON    = 114
	oidUnknown = 705
	oidBpchar  = 1042
	oidVarchar = 1043
	oidNumeric = 1700
	oidUUID    = 2950
	oidJSONB   = 3802
)

// typeClass is what the masker may write into a column of a type.
type typeClass uint8

const (
	tcOther   typeClass = iota // anything else: masked means NULL
	tcText                     // text-like: takes any UTF-8 text, in either format
	tcJSON                     // json: text in either format
	tcJSONB                    // jsonb: text, or version byte 1 + text in binary
	tcInt2                     // integers: hash keeps the type
	tcInt4                     //
	tcInt8                     //
	tcUUID                     // uuid: hash keeps the type
	tcNumeric                  // numeric: hash keeps the type in text format
	tcBytea                    // bytea: not scanned
)

func classify(oid uint32) typeClass {
	switch oid {
	case oidText, oidVarchar, oidBpchar, oidName, oidUnknown:
		return tcText
	case oidJSON:
		return tcJSON
	case oidJSONB:
		return tcJSONB
	case oidInt2:
		return tcInt2
	case oidInt4:
		return tcInt4
	case oidInt8:
		return tcInt8
	case oidUUID:
		return tcUUID
	case oidNumeric:
		return tcNumeric
	case oidBytea:
		return tcBytea
	}
	return tcOther
}

// colPlan is what to do with one column's values.
type colPlan struct {
	class  typeClass
	binary bool
	rule   int  // index of the winning column rule, or -1
	json   bool // mask the value as JSON (paths and detectors)
	detect bool // run the detectors over the value's text
}

// rowPlan is the colPlans for one column set. The plugin passes the same
// column slice for every row of a result, so the last few plans are kept
// and reused while the columns compare equal.
type rowPlan struct {
	cols   []Column
	plans  []colPlan
	active bool
}

func (m *Masker) planFor(cols []Column) *rowPlan {
	for k := range m.plans {
		if p := m.plans[k].Load(); p != nil && sameColumns(p.cols, cols) {
			return p
		}
	}
	p := &rowPlan{cols: slices.Clone(cols), plans: make([]colPlan, len(cols))}
	for i := range cols {
		c := &cols[i]
		cp := colPlan{class: classify(c.TypeOID), binary: c.Binary, rule: -1}
		for k := range m.cols {
			if m.cols[k].pat.matches(c) && (cp.rule < 0 || m.cols[k].strat.stronger(m.cols[cp.rule].strat)) {
				cp.rule = k
			}
		}
		if cp.rule < 0 {
			switch cp.class {
			case tcJSON, tcJSONB:
				cp.json = len(m.dets) > 0 || len(m.paths) > 0
			case tcText:
				cp.detect = len(m.dets) > 0
			case tcInt8:
				cp.detect = len(m.dets) > 0 // a card number fits in a bigint
			case tcBytea:
			default:
				cp.detect = len(m.dets) > 0 && !c.Binary
			}
		}
		p.plans[i] = cp
		p.active = p.active || cp.rule >= 0 || cp.json || cp.detect
	}
	m.plans[m.nextPlan.Add(1)%uint32(len(m.plans))].Store(p)
	return p
}

// sameColumns is slices.Equal for columns, without a call per column:
// planFor runs per row. The plugin passes the same columns for every row,
// so the strings usually share their bytes (sameString).
func sameColumns(a, b []Column) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.TypeOID != y.TypeOID || x.Binary != y.Binary || !sameString(x.Name, y.Name) || !sameString(x.Table, y.Table) {
			return false
		}
	}
	return true
}

// sameString is s == t, decided without comparing bytes when both are
// the same bytes.
func sameString(s, t string) bool {
	return len(s) == len(t) && (unsafe.StringData(s) == unsafe.StringData(t) || s == t)
}

// MaskRow implements RowMasker.
func (m *Masker) MaskRow(cols []Column, values [][]byte) (int, error) {
	return m.MaskRowCounts(cols, values, nil)
}

// MaskRowCounts implements RowCounter. Values the masker writes may share
// memory with it: treat them as read-only.
//
// Per column: a column rule replaces the whole value by its strategy in a
// form the column's type and format accept (text: the token, stars or a
// pseudonym; json/jsonb: a JSON string; int2/4/8, uuid and text-format
// numeric under hash: a pseudonym of the same type; anything else: NULL).
// Otherwise json and jsonb values are masked as JSON by the json: rules
// and the detectors and stay valid JSON; text-like values have what the
// detectors find replaced; any other value whose text a detector matches
// becomes NULL.
func (m *Masker) MaskRowCounts(cols []Column, values [][]byte, counts map[string]int) (_ int, err error) {
	defer guard(&err)
	if len(cols) != len(values) {
		return 0, fmt.Errorf("masking: row has %d values for %d columns", len(values), len(cols))
	}
	p := m.planFor(cols)
	if !p.active {
		return 0, nil
	}
	changed := 0
	var spans [8]span // the detectors' matches in one value
	var text rowText  // the masked text of the row's values
	for i, v := range values {
		cp := &p.plans[i]
		if v == nil {
			continue
		}
		var nv []byte
		var hit bool
		var err error
		switch {
		case cp.rule >= 0:
			r := &m.cols[cp.rule]
			nv, err = m.maskWhole(cp, v, r.strat)
			hit = true
			if counts != nil && err == nil {
				counts[r.entry]++
			}
		case cp.json:
			nv, hit, err = m.maskJSONColumn(cp, v, counts)
		case cp.detect:
			nv, hit, err = m.maskDetect(cp, v, counts, spans[:0], &text, values[i+1:])
		default:
			continue
		}
		if err != nil {
			return changed, fmt.Errorf("masking: column %d (%q): %w", i, cols[i].Name, err)
		}
		if hit {
			values[i] = nv
			changed++
		}
	}
	return changed, nil
}

// shared returns b for a value that others must not append into.
func shared(b []byte) []byte { return b[:len(b):len(b)] }

// maskWhole applies a column rule's strategy to a whole value.
func (m *Masker) maskWhole(cp *colPlan, v []byte, st Strategy) ([]byte, error) {
	if st.Kind == Null {
		return nil, nil
	}
	switch cp.class {
	case tcText:
		if st.Kind == Redact {
			return shared(m.token), nil
		}
		return m.appendReplacement(nil, v, st), nil
	case tcJSON, tcJSONB:
		text, err := jsonbText(cp, v)
		if err != nil {
			return nil, err
		}
		var out []byte
		if cp.class == tcJSONB && cp.binary {
			out = append(out, 1)
		}
		switch st.Kind {
		case Redact:
			if !cp.binary || cp.class == tcJSON {
				return shared(m.jsonToken), nil
			}
			out = append(out, m.jsonToken...)
		default:
			out = appendJSONString(out, m.appendReplacement(nil, text, st))
		}
		return out, nil
	}
	if st.Kind != Hash {
		return nil, nil
	}
	switch cp.class {
	case tcInt2, tcInt4, tcInt8:
		return m.hashInt(cp, v)
	case tcUUID:
		return m.hashUUID(cp, v)
	case tcNumeric:
		if !cp.binary {
			sum := m.mac(v)
			return strconv.AppendUint(nil, binary.BigEndian.Uint64(sum[:])>>1, 10), nil
		}
	}
	return nil, nil
}

// jsonbText returns the JSON text of a json or jsonb value.
func jsonbText(cp *colPlan, v []byte) ([]byte, error) {
	if cp.class != tcJSONB || !cp.binary {
		return v, nil
	}
	if len(v) == 0 || v[0] != 1 {
		return nil, fmt.Errorf("binary jsonb value without version byte 1")
	}
	return v[1:], nil
}

// hashInt maps an integer to a pseudonym integer of the same width: the
// HMAC of its decimal text, so text and binary formats and all integer
// widths agree on the input, masked to a non-negative value of the type.
func (m *Masker) hashInt(cp *colPlan, v []byte) ([]byte, error) {
	width := 8
	switch cp.class {
	case tcInt2:
		width = 2
	case tcInt4:
		width = 4
	}
	var text []byte
	if cp.binary {
		var n int64
		switch {
		case len(v) != width:
			return nil, fmt.Errorf("binary int%d value of %d bytes", width, len(v))
		case width == 2:
			n = int64(int16(binary.BigEndian.Uint16(v)))
		case width == 4:
			n = int64(int32(binary.BigEndian.Uint32(v)))
		default:
			n = int64(binary.BigEndian.Uint64(v))
		}
		var buf [20]byte
		text = strconv.AppendInt(buf[:0], n, 10)
	} else {
		text = v
	}
	sum := m.mac(text)
	u := binary.BigEndian.Uint64(sum[:]) >> (64 - 8*width + 1)
	if !cp.binary {
		return strconv.AppendUint(nil, u, 10), nil
	}
	out := make([]byte, width)
	switch width {
	case 2:
		binary.BigEndian.PutUint16(out, uint16(u))
	case 4:
		binary.BigEndian.PutUint32(out, uint32(u))
	default:
		binary.BigEndian.PutUint64(out, u)
	}
	return out, nil
}

// hashUUID maps a uuid to an RFC 9562 version 8 uuid from the HMAC of its
// canonical text.
func (m *Masker) hashUUID(cp *colPlan, v []byte) ([]byte, error) {
	var text [36]byte
	in := v
	if cp.binary {
		if len(v) != 16 {
			return nil, fmt.Errorf("binary uuid value of %d bytes", len(v))
		}
		formatUUID(text[:], v)
		in = text[:]
	}
	sum := m.mac(in)
	u := sum[:16]
	u[6] = u[6]&0x0f | 0x80 // version 8
	u[8] = u[8]&0x3f | 0x80 // variant 10
	if cp.binary {
		return slices.Clone(u), nil
	}
	out := make([]byte, 36)
	formatUUID(out, u)
	return out, nil
}

func formatUUID(dst, u []byte) {
	hex.Encode(dst[0:8], u[0:4])
	dst[8] = '-'
	hex.Encode(dst[9:13], u[4:6])
	dst[13] = '-'
	hex.Encode(dst[14:18], u[6:8])
	dst[18] = '-'
	hex.Encode(dst[19:23], u[8:10])
	dst[23] = '-'
	hex.Encode(dst[24:36], u[10:16])
}

// maskJSONColumn masks a json or jsonb value as JSON.
func (m *Masker) maskJSONColumn(cp *colPlan, v []byte, counts map[string]int) ([]byte, bool, error) {
	text, err := jsonbText(cp, v)
	if err != nil {
		return nil, false, err
	}
	prefix := cp.class == tcJSONB && cp.binary
	out, changed, err := m.maskJSONValue(text, prefix, counts)
	if err != nil || !changed {
		return nil, false, err
	}
	return out, true, nil
}

// maskDetect runs the detectors over a value's text; buf holds the
// matches, and text the masked text, with room for the row's values
// after it (rest).
func (m *Masker) maskDetect(cp *colPlan, v []byte, counts map[string]int, buf []span, text *rowText, rest [][]byte) ([]byte, bool, error) {
	t := v
	if cp.class == tcInt8 && cp.binary {
		if len(v) != 8 {
			return nil, false, fmt.Errorf("binary int8 value of %d bytes", len(v))
		}
		t = strconv.AppendInt(make([]byte, 0, 20), int64(binary.BigEndian.Uint64(v)), 10)
	}
	c := m.candidates(t)
	if c == 0 && len(m.custom) == 0 {
		return nil, false, nil // the common case: nothing can match
	}
	spans := m.findSpansIn(t, c, buf)
	if len(spans) == 0 {
		return nil, false, nil
	}
	m.countSpans(spans, counts)
	if cp.class != tcText {
		return nil, true, nil // not text: NULL is the only safe replacement
	}
	spans = m.mergeSpans(spans)
	// A replacement is at most a pseudonym or the token long.
	n := len(v) + len(spans)*max(len(m.token), pseudonymLen)
	out, null := m.maskSpans(text.room(n, rest), v, spans)
	if null {
		return nil, true, nil
	}
	return text.keep(out, n), true, nil
}

// rowText holds the masked text of a row's values, so that a row costs
// one allocation rather than one per masked value. Each value is cut from
// it with its capacity capped: an append to one never reaches the next.
type rowText struct {
	buf []byte
}

// room returns an empty slice of capacity n at the end of the buffer. When
// there is too little room it allocates a buffer with room for the values
// after this one (rest) too, as long as they are: masked text is seldom
// longer.
func (t *rowText) room(n int, rest [][]byte) []byte {
	if cap(t.buf)-len(t.buf) < n {
		size := n
		for _, v := range rest {
			size += len(v)
		}
		t.buf = make([]byte, 0, size)
	}
	return t.buf[len(t.buf) : len(t.buf) : len(t.buf)+n]
}

// keep takes out, appended to a slice from room(n), as a value.
func (t *rowText) keep(out []byte, n int) []byte {
	if cap(out) == n { // not moved by append: it lies in buf
		t.buf = t.buf[:len(t.buf)+len(out)]
	}
	return out[:len(out):len(out)]
}
