package masking

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/sluicegw/sluice/internal/jsonquote"
)

// JSON masking: a JSON scanner (RFC 8259) that passes its input through
// in runs, replacing the values that json: rules select and what the
// detectors find in strings, numbers and keys. Memory is bounded by the
// nesting depth and Options.MaxValue, not by the document: only a string
// or number that must be inspected is held, and only when it goes on past
// the end of a write (within a write, values are inspected in place).

// maxJSONDepth bounds nesting.
const maxJSONDepth = 10000

// ErrClosed is returned by writes to a closed stream.
var ErrClosed = errors.New("masking: write to a closed stream")

// A jstate is where the scanner is. The states before jString are those
// between tokens, where white space may come.
type jstate uint8

const (
	jTop      jstate = iota // between top-level values
	jValue                  // a value must follow (after ':' or an array's ',')
	jArrFirst               // after '[': a value or ']'
	jObjFirst               // after '{': a key or '}'
	jObjKey                 // after an object's ',': a key
	jColon                  // after a key: ':'
	jAfter                  // after a member or element: ',' or the close
	jString                 // in a string
	jEsc                    // after a backslash in a string
	jEscU                   // in \uXXXX
	jNumber                 // in a number
	jLiteral                // in true, false or null
)

// How a string's bytes are handled while it is read.
const (
	smPass   = iota // passed on with what surrounds them
	smBuffer        // held to inspect: detectors, hash, partial, keys
	smSkip          // held, not kept: the value is replaced whatever it holds
)

// Number scanner states.
const (
	nMinus = iota // after '-'
	nZero         // a leading 0 (terminal)
	nInt          // integer digits (terminal)
	nDot          // after '.'
	nFrac         // fraction digits (terminal)
	nE            // after 'e'
	nESign        // after the exponent's sign
	nExp          // exponent digits (terminal)
	nEnd          // not a state: the byte does not continue the number
)

type jsonMachine struct {
	m      *Masker
	single bool // exactly one top-level value (a json column)

	out []byte
	// The open containers: steps[i] is the member (isKey: an object's,
	// with its decoded key, kept when paths exist) or element (idx) being
	// read in container i, and masks[i] the path rule masking everything
	// below it, or -1. steps is also the path matched against json: rules.
	steps []step
	masks []int
	state jstate

	// The input of the write in progress, and where the part of it not
	// yet passed on begins: p[mark:] is passed on as it stands unless a
	// held scalar is replaced. Between writes p is nil and mark 0.
	p    []byte
	mark int

	// The scalar being read. A held scalar (a number, a literal, a string
	// to inspect or replace) is not passed on until it ends, when it is
	// passed on as it was read or dropped for its replacement.
	mode    uint8
	isKey   bool
	vmask   int  // path rule masking this value, or -1
	hold    bool // the scalar is held
	carried bool // it began in an earlier write
	vs      int  // where it begins in p (0 when carried)
	// buf holds what earlier writes read of a carried scalar: of a
	// string, from its opening quote, unless it is skipped or too long.
	buf      []byte
	esc      bool
	oversize bool
	uLeft    int
	lit      string
	litPos   int
	num      uint8

	dec   []byte // decoded string
	tmp   []byte // replacement text
	spans []span
	hits  []int // values masked, per count id (see countEntry)

	needSep bool // a top-level scalar ended: white space must follow
	values  int  // complete top-level values
	changed bool
	off     int64
	err     error
}

func (x *jsonMachine) reset(m *Masker, single bool) {
	x.m, x.single = m, single
	x.out = x.out[:0]
	x.steps, x.masks = x.steps[:0], x.masks[:0]
	x.state = jTop
	x.p, x.mark, x.hold, x.carried, x.vs = nil, 0, false, false, 0
	n := len(m.dets) + len(m.paths) + 1
	x.hits = slices.Grow(x.hits[:0], n)[:n]
	clear(x.hits)
	x.needSep, x.values, x.changed, x.off, x.err = false, 0, false, 0, nil
}

// fail records a syntax error at p[i] and passes on what was read before
// it, as a valid document would have been.
func (x *jsonMachine) fail(i int, msg string) error {
	end := i
	if x.hold {
		end = x.vs
	}
	x.out = append(x.out, x.p[x.mark:end]...)
	x.err = fmt.Errorf("masking: invalid JSON at offset %d: %s", x.off+int64(i), msg)
	return x.err
}

// count counts a value masked by the rule with the given count id: a
// detector's index in Masker.dets, len(dets) and a path rule's index, or
// the last id for strings too long to inspect.
func (x *jsonMachine) count(id int) {
	x.changed = true
	x.hits[id]++
}

// countEntry returns the entry that counts go under for a count id.
func (m *Masker) countEntry(id int) string {
	switch {
	case id < len(m.dets):
		return m.dets[id].entry
	case id < len(m.dets)+len(m.paths):
		return m.paths[id-len(m.dets)].entry
	}
	return OversizeCount
}

// addCounts adds what x counted to counts, under the entries.
func (x *jsonMachine) addCounts(counts map[string]int) {
	for id, n := range x.hits {
		if n > 0 {
			counts[x.m.countEntry(id)] += n
		}
	}
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// plainLen returns the length of the run at the start of b of bytes a
// string holds as they are: not '"', '\\' or a control character. It
// looks at eight bytes at a time: the lowest byte flagged in special is
// the first that ends the run (a borrow only runs on past a byte that is
// flagged itself).
func plainLen(b []byte) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	n := 0
	for ; len(b)-n >= 8; n += 8 {
		w := binary.LittleEndian.Uint64(b[n:])
		quote, backslash := w^('"'*ones), w^('\\'*ones)
		special := ((w - 0x20*ones) | (quote - ones) | (backslash - ones)) &^ w & highs
		if special != 0 {
			return n + bits.TrailingZeros64(special)/8
		}
	}
	for ; n < len(b); n++ {
		if c := b[n]; c < 0x20 || c == '"' || c == '\\' {
			break
		}
	}
	return n
}

// write reads p, appending to out what can be passed on.
func (x *jsonMachine) write(p []byte) error {
	if x.err != nil {
		return x.err
	}
	x.p = p
	err := x.scan()
	x.p, x.mark = nil, 0
	if err == nil {
		x.off += int64(len(p))
	}
	return err
}

// scan reads x.p: white space, structure and the strings that need no
// inspection are passed on in runs, held scalars as they end.
func (x *jsonMachine) scan() error {
	p := x.p
	for i := 0; i < len(p); {
		c := p[i]
		if x.state < jString && c <= ' ' && isJSONSpace(c) {
			if x.state == jTop {
				x.needSep = false
			}
			i++
			continue
		}
		var err error
		switch x.state {
		case jString:
			i += plainLen(p[i:])
			if i == len(p) {
				continue
			}
			switch p[i] {
			case '"':
				i++
				if err := x.endString(i); err != nil {
					return err
				}
			case '\\':
				x.esc = true
				x.state = jEsc
				i++
			default:
				return x.fail(i, "control character in string")
			}
			continue
		case jEsc:
			switch c {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				x.state = jString
			case 'u':
				x.uLeft, x.state = 4, jEscU
			default:
				return x.fail(i, "invalid escape in string")
			}
		case jEscU:
			if ctype[c]&cHex == 0 {
				return x.fail(i, "invalid \\u escape in string")
			}
			if x.uLeft--; x.uLeft == 0 {
				x.state = jString
			}
		case jNumber:
			// The number is p[vs:i] after what buf holds of it.
			num, held := x.num, len(x.buf)-x.vs
			for ; i < len(p); i++ {
				nx := numNext[num][p[i]]
				if nx == nEnd {
					break
				}
				if held+i >= x.m.maxValue {
					return x.fail(i, "number too long")
				}
				num = nx
			}
			x.num = num
			if i == len(p) {
				continue
			}
			if !numTerminal(x.num) {
				return x.fail(i, "invalid number")
			}
			x.finishNumber(i)
			continue // p[i] belongs to what follows the number
		case jLiteral:
			if c != x.lit[x.litPos] {
				return x.fail(i, "invalid literal")
			}
			if x.litPos++; x.litPos == len(x.lit) {
				x.finishLiteral(i + 1)
			}
		case jTop:
			if x.needSep || x.single && x.values > 0 {
				return x.fail(i, "unexpected data after a top-level value")
			}
			err = x.beginValue(i, c)
		case jValue:
			err = x.beginValue(i, c)
		case jArrFirst:
			if c == ']' {
				x.closeContainer()
			} else {
				err = x.beginValue(i, c)
			}
		case jObjFirst, jObjKey:
			switch {
			case c == '}' && x.state == jObjFirst:
				x.closeContainer()
			case c == '"':
				x.isKey = true
				x.startString(i)
			default:
				err = x.fail(i, "want an object key")
			}
		case jColon:
			if c != ':' {
				return x.fail(i, "want ':' after an object key")
			}
			x.state = jValue
		case jAfter:
			f := &x.steps[len(x.steps)-1]
			switch {
			case c == ',':
				if f.isKey {
					x.state = jObjKey
				} else {
					f.idx++
					x.state = jValue
				}
			case c == '}' && f.isKey, c == ']' && !f.isKey:
				x.closeContainer()
			default:
				err = x.fail(i, "want ',' or the end of the object or array")
			}
		}
		if err != nil {
			return err
		}
		i++
	}
	if !x.hold {
		x.out = append(x.out, p[x.mark:]...)
		return nil
	}
	// A held scalar goes on into the next write: what precedes it is
	// passed on, and what was read of it is kept in buf (not the bytes of
	// a string that is replaced whatever it holds, nor of one too long).
	x.out = append(x.out, p[x.mark:x.vs]...)
	switch {
	case x.state != jString && x.state != jEsc && x.state != jEscU:
		x.buf = append(x.buf, p[x.vs:]...)
	case x.mode == smSkip || x.oversize:
	case len(x.buf)+len(p)-x.vs-1 > x.m.maxValue:
		x.oversize, x.buf = true, x.buf[:0]
	default:
		x.buf = append(x.buf, p[x.vs:]...)
	}
	x.carried, x.vs = true, 0
	return nil
}

// scalar returns the bytes of the held scalar that ends at p[e-1],
// gathering them in buf when it was carried over.
func (x *jsonMachine) scalar(e int) []byte {
	if !x.carried {
		return x.p[x.vs:e]
	}
	x.buf = append(x.buf, x.p[:e]...)
	return x.buf
}

// pass passes on the held scalar that ends at p[e-1] as it was read
// (scalar has gathered it).
func (x *jsonMachine) pass(e int) {
	if x.carried {
		x.out = append(x.out, x.buf...)
		x.mark = e
	}
	x.hold, x.carried = false, false
}

// drop drops the held scalar that ends at p[e-1], passing on what
// precedes it: its replacement follows.
func (x *jsonMachine) drop(e int) {
	x.out = append(x.out, x.p[x.mark:x.vs]...)
	x.mark = e
	x.hold, x.carried = false, false
}

// finish checks that the input ended at the end of a value.
func (x *jsonMachine) finish() error {
	if x.err != nil {
		return x.err
	}
	if x.state == jNumber && len(x.steps) == 0 && numTerminal(x.num) {
		x.finishNumber(0)
	}
	if x.state != jTop {
		return x.fail(0, "unexpected end of JSON input")
	}
	if x.single && x.values != 1 {
		return x.fail(0, "want one JSON value")
	}
	return nil
}

// valueMask returns the path rule that masks the value starting now.
func (x *jsonMachine) valueMask() int {
	n := len(x.masks)
	if n > 0 && x.masks[n-1] >= 0 {
		return x.masks[n-1]
	}
	// A path's last segment matches the last step: most values are
	// ruled out by their key's length.
	if n > 0 && !x.m.ends.mayEnd(&x.steps[n-1]) {
		return -1
	}
	paths := x.m.paths
	best := -1
	for k := range paths {
		if paths[k].path.match(x.steps) && (best < 0 || paths[k].strat.stronger(paths[best].strat)) {
			best = k
		}
	}
	return best
}

func (x *jsonMachine) beginValue(i int, c byte) error {
	mask := x.valueMask()
	switch c {
	case '{', '[':
		if len(x.steps) >= maxJSONDepth {
			return x.fail(i, "nested too deeply")
		}
		if n := len(x.steps); n < cap(x.steps) {
			x.steps = x.steps[:n+1] // keeps the key buffer
		} else {
			x.steps = append(x.steps, step{})
		}
		f := &x.steps[len(x.steps)-1]
		f.isKey, f.key, f.idx = c == '{', f.key[:0], 0
		x.masks = append(x.masks, mask)
		x.state = jArrFirst
		if f.isKey {
			x.state = jObjFirst
		}
	case '"':
		x.isKey, x.vmask = false, mask
		x.startString(i)
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		x.vmask = mask
		x.holdScalar(i)
		x.num = nInt
		switch c {
		case '-':
			x.num = nMinus
		case '0':
			x.num = nZero
		}
		x.state = jNumber
	case 't', 'f', 'n':
		x.vmask = mask
		x.holdScalar(i)
		switch c {
		case 't':
			x.lit = "true"
		case 'f':
			x.lit = "false"
		default:
			x.lit = "null"
		}
		x.litPos = 1
		x.state = jLiteral
	default:
		return x.fail(i, "want a value")
	}
	return nil
}

// holdScalar starts holding a scalar that begins at p[i].
func (x *jsonMachine) holdScalar(i int) {
	x.hold, x.vs, x.buf = true, i, x.buf[:0]
}

func (x *jsonMachine) closeContainer() {
	x.steps, x.masks = x.steps[:len(x.steps)-1], x.masks[:len(x.masks)-1]
	if len(x.steps) == 0 {
		x.values++
		x.state = jTop
		x.needSep = false
		return
	}
	x.state = jAfter
}

func (x *jsonMachine) endValue() {
	if len(x.steps) == 0 {
		x.values++
		x.state = jTop
		x.needSep = true
		return
	}
	x.state = jAfter
}

// startString starts a string whose opening quote is p[i].
func (x *jsonMachine) startString(i int) {
	m := x.m
	switch {
	case x.isKey:
		x.mode = smPass
		if len(m.paths) > 0 || len(m.dets) > 0 {
			x.mode = smBuffer
		}
	case x.vmask >= 0:
		x.mode = smBuffer
		if k := m.paths[x.vmask].strat.Kind; k == Redact || k == Null {
			x.mode = smSkip
		}
	case len(m.dets) > 0:
		x.mode = smBuffer
	default:
		x.mode = smPass
	}
	if x.mode != smPass {
		x.holdScalar(i)
	}
	x.esc, x.oversize = false, false
	x.state = jString
}

// stringValue returns the bytes between the quotes of the held string
// that ends at p[e-1], or false when it is longer than MaxValue.
func (x *jsonMachine) stringValue(e int) ([]byte, bool) {
	if x.oversize || len(x.buf)+e-x.vs-2 > x.m.maxValue {
		x.oversize = true
		return nil, false
	}
	s := x.scalar(e)
	return s[1 : len(s)-1], true
}

// decoded returns the value of raw, a string's bytes between its quotes,
// escapes resolved.
func (x *jsonMachine) decoded(raw []byte) []byte {
	if !x.esc {
		return raw
	}
	x.dec = decodeJSONString(x.dec[:0], raw)
	return x.dec
}

// detect runs the detectors over v and returns the merged spans.
func (x *jsonMachine) detect(v []byte) []span {
	if len(v) < x.m.minFind { // (always when there are no detectors)
		return nil
	}
	spans := x.m.findSpans(v, x.spans[:0])
	x.spans = spans
	if len(spans) == 0 {
		return nil
	}
	for _, s := range spans {
		x.count(s.rule)
	}
	return x.m.mergeSpans(spans)
}

// endString ends the string that ends at p[e-1].
func (x *jsonMachine) endString(e int) error {
	m := x.m
	if x.isKey {
		x.state = jColon
		if x.mode == smPass {
			return nil
		}
		raw, ok := x.stringValue(e)
		if !ok {
			return x.fail(e, "object key longer than MaxValue")
		}
		key := x.decoded(raw)
		if len(m.paths) > 0 {
			f := &x.steps[len(x.steps)-1]
			f.key = append(f.key[:0], key...)
		}
		if spans := x.detect(key); spans != nil {
			masked, null := m.maskSpans(x.tmp[:0], key, spans)
			if null {
				masked = append(masked[:0], m.token...) // a key cannot be null
			}
			x.tmp = masked
			x.drop(e)
			x.out = appendJSONString(x.out, masked)
			return nil
		}
		x.pass(e)
		return nil
	}
	switch x.mode {
	case smPass:
	case smSkip:
		x.drop(e)
		x.maskedScalar(nil)
	default:
		raw, ok := x.stringValue(e)
		switch {
		case !ok:
			x.drop(e)
			if x.vmask >= 0 && m.paths[x.vmask].strat.Kind == Null {
				x.out = append(x.out, "null"...)
			} else {
				x.out = append(x.out, m.jsonToken...)
			}
			if x.vmask >= 0 {
				x.count(len(m.dets) + x.vmask)
			} else {
				x.count(len(m.dets) + len(m.paths))
			}
		case x.vmask >= 0:
			x.drop(e)
			x.maskedScalar(x.decoded(raw))
		default:
			v := x.decoded(raw)
			if spans := x.detect(v); spans != nil {
				x.drop(e)
				x.emitSpans(v, spans)
			} else {
				x.pass(e)
			}
		}
	}
	x.endValue()
	return nil
}

// maskedScalar writes the replacement of a scalar under a path rule.
func (x *jsonMachine) maskedScalar(v []byte) {
	r := &x.m.paths[x.vmask]
	switch r.strat.Kind {
	case Null:
		x.out = append(x.out, "null"...)
	case Redact:
		x.out = append(x.out, x.m.jsonToken...)
	default:
		x.tmp = x.m.appendReplacement(x.tmp[:0], v, r.strat)
		x.out = appendJSONString(x.out, x.tmp)
	}
	x.count(len(x.m.dets) + x.vmask)
}

// emitSpans writes v with spans replaced, as a JSON string (or null).
func (x *jsonMachine) emitSpans(v []byte, spans []span) {
	if len(spans) == 1 && spans[0].i == 0 && spans[0].j == len(v) && x.m.dets[spans[0].rule].strat.Kind == Redact {
		// The value is the redaction token, quoted once at Compile.
		x.out = append(x.out, x.m.jsonToken...)
		return
	}
	masked, null := x.m.maskSpans(x.tmp[:0], v, spans)
	x.tmp = masked
	if null {
		x.out = append(x.out, "null"...)
		return
	}
	x.out = appendJSONString(x.out, masked)
}

// finishNumber ends the number that ends at p[e-1].
func (x *jsonMachine) finishNumber(e int) {
	v := x.scalar(e)
	switch {
	case x.vmask >= 0:
		x.drop(e)
		x.maskedScalar(v)
	default:
		if spans := x.detect(v); spans != nil {
			x.drop(e)
			x.emitSpans(v, spans)
		} else {
			x.pass(e)
		}
	}
	x.endValue()
}

// finishLiteral ends the literal that ends at p[e-1].
func (x *jsonMachine) finishLiteral(e int) {
	v := x.scalar(e)
	if x.vmask >= 0 && x.lit != "null" {
		x.drop(e)
		if r := &x.m.paths[x.vmask]; r.strat.Kind == Partial {
			x.out = append(x.out, x.m.jsonToken...) // a part of "true" says it all
			x.count(len(x.m.dets) + x.vmask)
		} else {
			x.maskedScalar(v)
		}
	} else {
		x.pass(e)
	}
	x.endValue()
}

func numStep(s uint8, c byte) (uint8, bool) {
	digit := isDigit(c)
	switch s {
	case nMinus:
		if c == '0' {
			return nZero, true
		}
		if digit {
			return nInt, true
		}
	case nZero, nInt:
		switch {
		case digit && s == nInt:
			return nInt, true
		case c == '.':
			return nDot, true
		case c == 'e' || c == 'E':
			return nE, true
		}
	case nDot, nFrac:
		if digit {
			return nFrac, true
		}
		if s == nFrac && (c == 'e' || c == 'E') {
			return nE, true
		}
	case nE:
		if c == '+' || c == '-' {
			return nESign, true
		}
		if digit {
			return nExp, true
		}
	case nESign, nExp:
		if digit {
			return nExp, true
		}
	}
	return s, false
}

// numNext is numStep as a table: numNext[s][c] is the state after c, or
// nEnd.
var numNext = func() (t [nEnd][256]uint8) {
	for s := range t {
		for c := range t[s] {
			nx, ok := numStep(uint8(s), byte(c))
			if !ok {
				nx = nEnd
			}
			t[s][c] = nx
		}
	}
	return t
}()

func numTerminal(s uint8) bool { return s == nZero || s == nInt || s == nFrac || s == nExp }

// decodeJSONString appends the value of raw, the validated bytes between
// a JSON string's quotes.
func decodeJSONString(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		e := raw[i+1]
		i += 2
		switch e {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(raw[i:])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					r2 = hex4(raw[i+2:])
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, e)
		}
	}
	return dst
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a':
			r = r<<4 | rune(c-'a'+10)
		default:
			r = r<<4 | rune(c-'A'+10)
		}
	}
	return r
}

// appendJSONString appends s as a JSON string, as encoding/json would.
func appendJSONString(dst, s []byte) []byte { return jsonquote.Append(dst, s) }

var jsonMachines = sync.Pool{New: func() any { return new(jsonMachine) }}

// getJSONMachine returns a machine from the pool, reset for m.
func getJSONMachine(m *Masker, single bool) *jsonMachine {
	x := jsonMachines.Get().(*jsonMachine)
	x.reset(m, single)
	return x
}

// release puts x back in the pool, unless a large value grew its buffers.
func (x *jsonMachine) release() {
	x.m, x.p = nil, nil
	if max(cap(x.out), cap(x.buf), cap(x.dec), cap(x.tmp)) <= 1<<20 {
		jsonMachines.Put(x)
	}
}

// maskJSONValue masks one JSON value (a json or jsonb column), returning
// a fresh copy when anything changed; prefix prepends jsonb's binary
// version byte.
func (m *Masker) maskJSONValue(text []byte, prefix bool, counts map[string]int) ([]byte, bool, error) {
	x := getJSONMachine(m, true)
	defer func() {
		if counts != nil {
			x.addCounts(counts)
		}
		x.release()
	}()
	if prefix {
		x.out = append(x.out, 1)
	}
	err := x.write(text)
	if err == nil {
		err = x.finish()
	}
	if err != nil || !x.changed {
		return nil, false, err
	}
	return slices.Clone(x.out), true, nil
}

// MaskJSON masks a JSON document (or a sequence of them, as in JSON
// Lines) in one call, returning doc itself when nothing changed. Counts,
// if not nil, gains one per value masked, under the entry that masked it.
func (m *Masker) MaskJSON(doc []byte, counts map[string]int) (_ []byte, err error) {
	defer guard(&err)
	x := getJSONMachine(m, false)
	own := x.out // the result gets a buffer of its own
	x.out = make([]byte, 0, len(doc)+len(doc)/8)
	defer func() {
		if counts != nil {
			x.addCounts(counts)
		}
		x.out = own
		x.release()
	}()
	err = x.write(doc)
	if err == nil {
		err = x.finish()
	}
	if err != nil {
		return nil, err
	}
	if !x.changed {
		return doc, nil
	}
	return x.out, nil
}

// JSONStream masks a JSON body as it is written: JSON values (one, or a
// sequence as in JSON Lines) in, masked JSON out, in bounded memory. Each
// Write passes on what it could mask; Close checks the input ended at the
// end of a value. It does not close the underlying writer.
//
// Invalid JSON makes Write or Close return an error, and every later call
// returns it too: what was written before is masked, but the caller must
// treat the body as failed (fail closed).
type JSONStream struct {
	x      *jsonMachine // nil once closed: back in the pool
	w      io.Writer
	counts map[string]int // the counts at Close (nil if none)
	err    error          // the stream's error at Close
	closed bool
}

// NewJSONStream returns a JSONStream writing to w.
func (m *Masker) NewJSONStream(w io.Writer) *JSONStream {
	return &JSONStream{x: getJSONMachine(m, false), w: w}
}

// streamChunk bounds how much input a stream processes before writing.
const streamChunk = 32 << 10

// Write implements io.Writer.
func (s *JSONStream) Write(p []byte) (_ int, err error) {
	if s.closed {
		return 0, ErrClosed
	}
	defer func() {
		if r := recover(); r != nil {
			err = ErrDetectorPanic
			s.x.err, s.x.p = err, nil
		}
	}()
	n := 0
	for len(p) > 0 {
		k := min(len(p), streamChunk)
		err := s.x.write(p[:k])
		if werr := s.flush(); err == nil {
			err = werr
		}
		if err != nil {
			s.x.err = err
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

func (s *JSONStream) flush() error {
	if len(s.x.out) == 0 {
		return nil
	}
	_, err := s.w.Write(s.x.out)
	s.x.out = s.x.out[:0]
	return err
}

// Close flushes and checks that the input was complete JSON.
func (s *JSONStream) Close() error {
	if s.closed {
		return s.err
	}
	s.closed = true
	err := s.x.finish()
	if werr := s.flush(); err == nil {
		err = werr
	}
	s.err = s.x.err
	if s.x.changed {
		s.counts = map[string]int{}
		s.x.addCounts(s.counts)
	}
	s.x.release()
	s.x = nil
	return err
}

// Counts returns how many values each entry masked so far (strings that
// were too long to inspect count under OversizeCount).
func (s *JSONStream) Counts() map[string]int {
	if s.x == nil {
		return copyCounts(s.counts)
	}
	counts := map[string]int{}
	s.x.addCounts(counts)
	return counts
}

func copyCounts(c map[string]int) map[string]int {
	out := make(map[string]int, len(c))
	for k, v := range c {
		out[k] = v
	}
	return out
}
