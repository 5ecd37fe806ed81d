package postgres

import (
	"bytes"
	"encoding/binary"
	"errors"

	"github.com/sluicegw/sluice/protocol/postgres/pgsql"
)

// COPY TO STDOUT data, as PostgreSQL writes it: one CopyData message per
// row in text and CSV format; in binary format a header before the first
// tuple, whole tuples per message, and a trailer. The codecs below decode a
// row into its values (nil for NULL) and encode values back by the same
// format's rules, so that masked values reach the client in a row that
// still parses.

var errCopyRow = errors.New("malformed COPY data row")

// binaryCopySignature starts a binary COPY stream.
var binaryCopySignature = []byte("PGCOPY\n\xff\r\n\x00")

// decodeTextCopyRow splits a text-format row (ending in a newline) into
// values, undoing backslash escapes.
func decodeTextCopyRow(row []byte, spec *pgsql.CopyOut, dst [][]byte) ([][]byte, error) {
	if len(row) == 0 || row[len(row)-1] != '\n' {
		return nil, errCopyRow
	}
	row = row[:len(row)-1]
	dst = dst[:0]
	for {
		end := fieldEnd(row, spec.Delimiter)
		raw := row[:end]
		if string(raw) == spec.Null {
			dst = append(dst, nil)
		} else {
			v, err := unescapeCopyText(raw)
			if err != nil {
				return nil, err
			}
			dst = append(dst, v)
		}
		if end == len(row) {
			return dst, nil
		}
		row = row[end+1:]
	}
}

// fieldEnd finds the unescaped delimiter ending the first field.
func fieldEnd(b []byte, delim byte) int {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case delim:
			return i
		}
	}
	return len(b)
}

func unescapeCopyText(raw []byte) ([]byte, error) {
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw, nil
	}
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i == len(raw) {
			return nil, errCopyRow
		}
		c = raw[i]
		switch c {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'v':
			out = append(out, '\v')
		case 'x':
			v, n := 0, 0
			for n < 2 && i+1 < len(raw) && isHex(raw[i+1]) {
				i++
				v = v*16 + hexVal(raw[i])
				n++
			}
			if n == 0 {
				out = append(out, 'x')
			} else {
				out = append(out, byte(v))
			}
		default:
			if c >= '0' && c <= '7' {
				v := int(c - '0')
				for n := 1; n < 3 && i+1 < len(raw) && raw[i+1] >= '0' && raw[i+1] <= '7'; n++ {
					i++
					v = v*8 + int(raw[i]-'0')
				}
				out = append(out, byte(v))
			} else {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexVal(c byte) int {
	switch {
	case c <= '9':
		return int(c - '0')
	case c >= 'a':
		return int(c-'a') + 10
	}
	return int(c-'A') + 10
}

// encodeTextCopyRow writes values as a text-format row.
func encodeTextCopyRow(dst []byte, values [][]byte, spec *pgsql.CopyOut) []byte {
	for i, v := range values {
		if i > 0 {
			dst = append(dst, spec.Delimiter)
		}
		if v == nil {
			dst = append(dst, spec.Null...)
			continue
		}
		for _, c := range v {
			switch c {
			case '\\':
				dst = append(dst, '\\', '\\')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\v':
				dst = append(dst, '\\', 'v')
			default:
				if c == spec.Delimiter {
					dst = append(dst, '\\')
				}
				dst = append(dst, c)
			}
		}
	}
	return append(dst, '\n')
}

// decodeCSVCopyRow splits a CSV row (ending in a newline, which may also
// appear inside quoted values) into values. An unquoted value equal to the
// null string is NULL.
//
// A row sent to the client always ends in a bare "\n" (CopySendEndOfRow:
// "the FE/BE protocol uses \n as newline for all platforms"), so a "\r"
// before it is data: the closing quote of the last value when the COPY says
// QUOTE E'\r'.
func decodeCSVCopyRow(row []byte, spec *pgsql.CopyOut, dst [][]byte) ([][]byte, error) {
	n := len(row)
	if n == 0 || row[n-1] != '\n' {
		return nil, errCopyRow
	}
	row = row[:n-1]
	dst = dst[:0]
	i := 0
	for {
		var v []byte
		quoted := false
		start := i
		for i < len(row) && row[i] != spec.Delimiter {
			if row[i] != spec.Quote {
				v = append(v, row[i])
				i++
				continue
			}
			quoted = true
			i++
			for {
				if i >= len(row) {
					return nil, errCopyRow // unterminated quote
				}
				c := row[i]
				if c == spec.Escape && i+1 < len(row) && (row[i+1] == spec.Quote || row[i+1] == spec.Escape) && (spec.Escape != spec.Quote || row[i+1] == spec.Quote) {
					v = append(v, row[i+1])
					i += 2
					continue
				}
				if c == spec.Quote {
					i++
					break
				}
				v = append(v, c)
				i++
			}
		}
		switch {
		case !quoted && string(row[start:i]) == spec.Null:
			dst = append(dst, nil)
		case v == nil:
			dst = append(dst, []byte{})
		default:
			dst = append(dst, v)
		}
		if i >= len(row) {
			return dst, nil
		}
		i++ // the delimiter
	}
}

// encodeCSVCopyRow writes values as a CSV row, quoting every non-NULL
// value, so that none can be read as NULL or split.
func encodeCSVCopyRow(dst []byte, values [][]byte, spec *pgsql.CopyOut) []byte {
	for i, v := range values {
		if i > 0 {
			dst = append(dst, spec.Delimiter)
		}
		if v == nil {
			dst = append(dst, spec.Null...)
			continue
		}
		dst = append(dst, spec.Quote)
		for _, c := range v {
			if c == spec.Quote || c == spec.Escape {
				dst = append(dst, spec.Escape)
			}
			dst = append(dst, c)
		}
		dst = append(dst, spec.Quote)
	}
	return append(dst, '\n')
}

// binaryCopy tracks a binary COPY stream across its messages.
type binaryCopy struct {
	headerDone bool
	ended      bool
}

// decodeBinaryCopy reads the tuples in one CopyData message. It returns
// the prefix to pass through as is (the file header, if this message
// carries it), the rows, and whether the message ends the stream.
func (bc *binaryCopy) decode(msg []byte, rows [][][]byte) (prefix []byte, out [][][]byte, err error) {
	p := 0
	if !bc.headerDone {
		if len(msg) < len(binaryCopySignature)+8 || !bytes.Equal(msg[:len(binaryCopySignature)], binaryCopySignature) {
			return nil, nil, errCopyRow
		}
		p = len(binaryCopySignature) + 4
		ext := int(binary.BigEndian.Uint32(msg[p:]))
		p += 4
		if ext < 0 || p+ext > len(msg) {
			return nil, nil, errCopyRow
		}
		p += ext
		bc.headerDone = true
	}
	prefix = msg[:p]
	out = rows[:0]
	for p < len(msg) {
		if bc.ended || p+2 > len(msg) {
			return nil, nil, errCopyRow
		}
		n := int16(binary.BigEndian.Uint16(msg[p:]))
		p += 2
		if n == -1 {
			bc.ended = true
			continue
		}
		if n < 0 {
			return nil, nil, errCopyRow
		}
		vals := make([][]byte, n)
		for i := range vals {
			if p+4 > len(msg) {
				return nil, nil, errCopyRow
			}
			l := int32(binary.BigEndian.Uint32(msg[p:]))
			p += 4
			if l == -1 {
				continue
			}
			if l < 0 || p+int(l) > len(msg) {
				return nil, nil, errCopyRow
			}
			vals[i] = msg[p : p+int(l) : p+int(l)]
			if l == 0 {
				vals[i] = []byte{}
			}
			p += int(l)
		}
		out = append(out, vals)
	}
	return prefix, out, nil
}

// encodeBinaryCopyTuple appends one tuple.
func encodeBinaryCopyTuple(dst []byte, values [][]byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(values)))
	for _, v := range values {
		if v == nil {
			dst = binary.BigEndian.AppendUint32(dst, 0xFFFFFFFF)
			continue
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		dst = append(dst, v...)
	}
	return dst
}
