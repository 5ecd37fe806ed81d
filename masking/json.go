package masking

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/sluicegw/sluice/internal/jsonquote"
)

// JSON masking: a byte-at-a-time JSON scanner (RFC 8259) that copies its
// input through, replacing the values that json: rules select and what the
// detectors find in strings, numbers and keys. Memory is bounded by the
// nesting depth and Options.MaxValue, not by the document: only a string
// or number that must be inspected is held.

// maxJSONDepth bounds nesting.
const maxJSONDepth = 10000

// ErrClosed is returned by writes to a closed stream.
var ErrClosed = errors.New("masking: write to a closed stream")

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
	smPass   = iota // copied through as they arrive
	smBuffer        // held to inspect: detectors, hash, partial, keys
	smSkip          // dropped: the value is replaced whatever it holds
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
)

type jsonMachine struct {
	m      *Masker
	counts map[string]int
	single bool // exactly one top-level value (a json column)

	out []byte
	// The open containers: steps[i] is the member (isKey: an object's,
	// with its decoded key, kept when paths exist) or element (idx) being
	// read in container i, and masks[i] the path rule masking everything
	// below it, or -1. steps is also the path matched against json: rules.
	steps []step
	masks []int
	state jstate

	// The scalar being read.
	mode     uint8
	isKey    bool
	vmask    int // path rule masking this value, or -1
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

	needSep bool // a top-level scalar ended: white space must follow
	values  int  // complete top-level values
	changed bool
	off     int64
	err     error
}

func (x *jsonMachine) reset(m *Masker, counts map[string]int, single bool) {
	x.m, x.counts, x.single = m, counts, single
	x.out = x.out[:0]
	x.steps, x.masks = x.steps[:0], x.masks[:0]
	x.state = jTop
	x.needSep, x.values, x.changed, x.off, x.err = false, 0, false, 0, nil
}

func (x *jsonMachine) fail(i int, msg string) error {
	x.err = fmt.Errorf("masking: invalid JSON at offset %d: %s", x.off+int64(i), msg)
	return x.err
}

func (x *jsonMachine) count(entry string) {
	x.changed = true
	if x.counts != nil {
		x.counts[entry]++
	}
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (x *jsonMachine) write(p []byte) error {
	if x.err != nil {
		return x.err
	}
	for i := 0; i < len(p); {
		c := p[i]
		switch x.state {
		case jString:
			j := i
			for j < len(p) && p[j] != '"' && p[j] != '\\' && p[j] >= 0x20 {
				j++
			}
			x.strBytes(p[i:j])
			i = j
			if i == len(p) {
				continue
			}
			switch c = p[i]; c {
			case '"':
				i++
				if err := x.endString(i); err != nil {
					return err
				}
			case '\\':
				x.esc = true
				x.strBytes(p[i : i+1])
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
			x.strBytes(p[i : i+1])
			i++
			continue
		case jEscU:
			if ctype[c]&cHex == 0 {
				return x.fail(i, "invalid \\u escape in string")
			}
			x.strBytes(p[i : i+1])
			if x.uLeft--; x.uLeft == 0 {
				x.state = jString
			}
			i++
			continue
		case jNumber:
			if nx, ok := numStep(x.num, c); ok {
				if len(x.buf) >= x.m.maxValue {
					return x.fail(i, "number too long")
				}
				x.num = nx
				x.buf = append(x.buf, c)
				i++
				continue
			}
			if !numTerminal(x.num) {
				return x.fail(i, "invalid number")
			}
			x.finishNumber()
			continue // c belongs to what follows the number
		case jLiteral:
			if c != x.lit[x.litPos] {
				return x.fail(i, "invalid literal")
			}
			i++
			if x.litPos++; x.litPos == len(x.lit) {
				x.finishLiteral()
			}
			continue
		}
		if isJSONSpace(c) {
			x.out = append(x.out, c)
			if x.state == jTop {
				x.needSep = false
			}
			i++
			continue
		}
		var err error
		switch x.state {
		case jTop:
			if x.needSep || x.single && x.values > 0 {
				return x.fail(i, "unexpected data after a top-level value")
			}
			err = x.beginValue(i, c)
		case jValue:
			err = x.beginValue(i, c)
		case jArrFirst:
			if c == ']' {
				x.closeContainer(c)
			} else {
				err = x.beginValue(i, c)
			}
		case jObjFirst, jObjKey:
			switch {
			case c == '}' && x.state == jObjFirst:
				x.closeContainer(c)
			case c == '"':
				x.isKey = true
				x.startString()
			default:
				err = x.fail(i, "want an object key")
			}
		case jColon:
			if c != ':' {
				return x.fail(i, "want ':' after an object key")
			}
			x.out = append(x.out, c)
			x.state = jValue
		case jAfter:
			f := &x.steps[len(x.steps)-1]
			switch {
			case c == ',':
				x.out = append(x.out, c)
				if f.isKey {
					x.state = jObjKey
				} else {
					f.idx++
					x.state = jValue
				}
			case c == '}' && f.isKey, c == ']' && !f.isKey:
				x.closeContainer(c)
			default:
				err = x.fail(i, "want ',' or the end of the object or array")
			}
		}
		if err != nil {
			return err
		}
		i++
	}
	x.off += int64(len(p))
	return nil
}

// finish checks that the input ended at the end of a value.
func (x *jsonMachine) finish() error {
	if x.err != nil {
		return x.err
	}
	if x.state == jNumber && len(x.steps) == 0 && numTerminal(x.num) {
		x.finishNumber()
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
	if n := len(x.masks); n > 0 && x.masks[n-1] >= 0 {
		return x.masks[n-1]
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
		x.out = append(x.out, c)
		x.state = jArrFirst
		if f.isKey {
			x.state = jObjFirst
		}
	case '"':
		x.isKey, x.vmask = false, mask
		x.startString()
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		x.vmask = mask
		x.buf = append(x.buf[:0], c)
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

func (x *jsonMachine) closeContainer(c byte) {
	x.out = append(x.out, c)
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

func (x *jsonMachine) startString() {
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
	if x.mode == smPass {
		x.out = append(x.out, '"')
	}
	x.buf, x.esc, x.oversize = x.buf[:0], false, false
	x.state = jString
}

func (x *jsonMachine) strBytes(b []byte) {
	switch x.mode {
	case smPass:
		x.out = append(x.out, b...)
	case smBuffer:
		if x.oversize {
			return
		}
		if len(x.buf)+len(b) > x.m.maxValue {
			x.oversize, x.buf = true, x.buf[:0]
			return
		}
		x.buf = append(x.buf, b...)
	}
}

// decoded returns the current string's value, escapes resolved.
func (x *jsonMachine) decoded() []byte {
	if !x.esc {
		return x.buf
	}
	x.dec = decodeJSONString(x.dec[:0], x.buf)
	return x.dec
}

// detect runs the detectors over v and returns the merged spans.
func (x *jsonMachine) detect(v []byte) []span {
	if len(x.m.dets) == 0 {
		return nil
	}
	spans := x.m.findSpans(v, x.spans[:0])
	x.spans = spans
	if len(spans) == 0 {
		return nil
	}
	for _, s := range spans {
		x.count(x.m.dets[s.rule].entry)
	}
	return x.m.mergeSpans(spans)
}

func (x *jsonMachine) endString(i int) error {
	m := x.m
	if x.isKey {
		x.state = jColon
		if x.mode == smPass {
			x.out = append(x.out, '"')
			return nil
		}
		if x.oversize {
			return x.fail(i, "object key longer than MaxValue")
		}
		key := x.decoded()
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
			x.out = appendJSONString(x.out, masked)
			return nil
		}
		x.out = append(append(append(x.out, '"'), x.buf...), '"')
		return nil
	}
	switch {
	case x.mode == smPass:
		x.out = append(x.out, '"')
	case x.mode == smSkip:
		x.maskedScalar(nil)
	case x.oversize:
		if x.vmask >= 0 && m.paths[x.vmask].strat.Kind == Null {
			x.out = append(x.out, "null"...)
		} else {
			x.out = append(x.out, m.jsonToken...)
		}
		if x.vmask >= 0 {
			x.count(m.paths[x.vmask].entry)
		} else {
			x.count(OversizeCount)
		}
	case x.vmask >= 0:
		x.maskedScalar(x.decoded())
	default:
		v := x.decoded()
		if spans := x.detect(v); spans != nil {
			x.emitSpans(v, spans)
		} else {
			x.out = append(append(append(x.out, '"'), x.buf...), '"')
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
	x.count(r.entry)
}

// emitSpans writes v with spans replaced, as a JSON string (or null).
func (x *jsonMachine) emitSpans(v []byte, spans []span) {
	masked, null := x.m.maskSpans(x.tmp[:0], v, spans)
	x.tmp = masked
	if null {
		x.out = append(x.out, "null"...)
		return
	}
	x.out = appendJSONString(x.out, masked)
}

func (x *jsonMachine) finishNumber() {
	switch {
	case x.vmask >= 0:
		x.maskedScalar(x.buf)
	default:
		if spans := x.detect(x.buf); spans != nil {
			x.emitSpans(x.buf, spans)
		} else {
			x.out = append(x.out, x.buf...)
		}
	}
	x.endValue()
}

func (x *jsonMachine) finishLiteral() {
	if x.vmask >= 0 && x.lit != "null" {
		r := &x.m.paths[x.vmask]
		if r.strat.Kind == Partial {
			x.out = append(x.out, x.m.jsonToken...) // a part of "true" says it all
			x.count(r.entry)
		} else {
			x.maskedScalar([]byte(x.lit))
		}
	} else {
		x.out = append(x.out, x.lit...)
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

// maskJSONValue masks one JSON value (a json or jsonb column), returning
// a fresh copy when anything changed; prefix prepends jsonb's binary
// version byte.
func (m *Masker) maskJSONValue(text []byte, prefix bool, counts map[string]int) ([]byte, bool, error) {
	x := jsonMachines.Get().(*jsonMachine)
	defer func() {
		x.m, x.counts = nil, nil
		if cap(x.out) <= 1<<20 && cap(x.buf) <= 1<<20 {
			jsonMachines.Put(x)
		}
	}()
	x.reset(m, counts, true)
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
	var x jsonMachine
	x.reset(m, counts, false)
	x.out = make([]byte, 0, len(doc)+len(doc)/8)
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
	x      jsonMachine
	w      io.Writer
	counts map[string]int
	closed bool
}

// NewJSONStream returns a JSONStream writing to w.
func (m *Masker) NewJSONStream(w io.Writer) *JSONStream {
	s := &JSONStream{w: w, counts: map[string]int{}}
	s.x.reset(m, s.counts, false)
	return s
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
			s.x.err = err
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
		return s.x.err
	}
	s.closed = true
	err := s.x.finish()
	if werr := s.flush(); err == nil {
		err = werr
	}
	return err
}

// Counts returns how many values each entry masked so far (strings that
// were too long to inspect count under OversizeCount).
func (s *JSONStream) Counts() map[string]int { return copyCounts(s.counts) }

func copyCounts(c map[string]int) map[string]int {
	out := make(map[string]int, len(c))
	for k, v := range c {
		out[k] = v
	}
	return out
}
