package postgres

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/protocol/postgres/pgsql"
)

// Fuzz targets for the COPY TO STDOUT codecs (copydata.go) and for the
// masking of COPY data (copyout.go). The properties: decoding arbitrary
// bytes never panics; what the encoder writes decodes to the same values
// (the client must read exactly the masked values, in the same columns);
// masked COPY data never carries what the masker was asked to remove.

// fuzzCopySpec builds a COPY format the way PostgreSQL would accept it
// (ProcessCopyOptions in src/backend/commands/copy.c): the backend refuses
// any other COPY before sending data, so no other spec reaches the codecs.
func fuzzCopySpec(format, delim, quote, escape byte, null string) (*pgsql.CopyOut, bool) {
	spec := &pgsql.CopyOut{Format: pgsql.CopyFormat(format % 3), Delimiter: delim, Null: null, Quote: quote, Escape: escape}
	if spec.Format == pgsql.CopyBinary {
		return spec, true
	}
	// Single one-byte characters (an ASCII byte in a UTF8 database).
	if delim == 0 || delim >= 0x80 || strings.ContainsAny(null, "\x00\r\n") || strings.IndexByte(null, delim) >= 0 {
		return nil, false
	}
	if delim == '\n' || delim == '\r' {
		return nil, false // "COPY delimiter cannot be newline or carriage return"
	}
	if spec.Format == pgsql.CopyText {
		if strings.IndexByte(`\.abcdefghijklmnopqrstuvwxyz0123456789`, delim) >= 0 {
			return nil, false // `COPY delimiter cannot be "%s"`
		}
		if trailing := len(null) - len(strings.TrimRight(null, `\`)); trailing%2 == 1 {
			// PostgreSQL accepts NULL E'\\' but then writes rows that it
			// cannot read back either: the backslash ending a NULL
			// escapes the delimiter or newline after it. The relay fails
			// closed on them (the row does not decode).
			return nil, false
		}
		return spec, true
	}
	if quote == 0 || quote >= 0x80 || escape == 0 || escape >= 0x80 || quote == delim || strings.IndexByte(null, quote) >= 0 {
		return nil, false
	}
	return spec, true
}

// splitValues turns fuzz input into a row: fields separated by 0xFF, the
// ones whose bit is set in nulls are NULL.
func splitValues(data []byte, nulls uint32) [][]byte {
	fields := bytes.Split(data, []byte{0xFF})
	if len(fields) > 32 {
		fields = fields[:32]
	}
	for i := range fields {
		if nulls&(1<<i) != 0 {
			fields[i] = nil
		}
	}
	return fields
}

func sameValues(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) || !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// textNullCollision reports whether a non-NULL value is written exactly as
// the NULL string, which PostgreSQL's own text format cannot tell apart
// either (COPY ... NULL 'x' with a value 'x').
func textNullCollision(vals [][]byte, spec *pgsql.CopyOut) bool {
	for _, v := range vals {
		if v != nil && string(encodeTextCopyRow(nil, [][]byte{v}, spec)) == spec.Null+"\n" {
			return true
		}
	}
	return false
}

func encodeCopyRow(vals [][]byte, spec *pgsql.CopyOut) []byte {
	if spec.Format == pgsql.CopyCSV {
		return encodeCSVCopyRow(nil, vals, spec)
	}
	return encodeTextCopyRow(nil, vals, spec)
}

func decodeCopyRow(row []byte, spec *pgsql.CopyOut) ([][]byte, error) {
	if spec.Format == pgsql.CopyCSV {
		return decodeCSVCopyRow(row, spec, nil)
	}
	return decodeTextCopyRow(row, spec, nil)
}

func addCopyRowSeeds(f *testing.F) {
	for _, s := range []struct {
		format            byte
		delim, quote, esc byte
		null, row         string
		values            string
		nulls             uint32
	}{
		{0, '\t', '"', '"', `\N`, "1\talice@example.com\t\\N\tcall bob\\tre 4012888888881881\n", "1\xffa\tb\xff\\\xff", 0b100},
		{0, '|', '"', '"', "", "a\\|b||\\x41\\101\\\\\n", "a|b\xff\xff\n\r\b\f\v", 0b10},
		{0, '\t', '"', '"', `\N`, "\\N\n", "", 1},
		{1, ',', '"', '"', "", "1,\"alice@example.com\",,\"say \"\"hi\"\"\",\"a,b\nc\"\n", "\"\xff,\xff\n", 0},
		{1, ';', '\'', '\\', "NULL", "'it\\'s';NULL;'NULL';'a\\\\b'\r\n", "NULL\xff'\\\xff", 0b100},
		{1, ',', '"', '"', "", "\"unterminated\n", "", 0b1},
	} {
		f.Add(s.format, s.delim, s.quote, s.esc, s.null, []byte(s.row), []byte(s.values), s.nulls)
	}
}

// FuzzCopyTextCSVRow: decoding a text or CSV row never panics, and for
// every COPY format PostgreSQL accepts, encode then decode gives back the
// values (NULL and empty kept apart), both for fuzzed values and for the
// values of a fuzzed row.
func FuzzCopyTextCSVRow(f *testing.F) {
	addCopyRowSeeds(f)
	f.Fuzz(func(t *testing.T, format, delim, quote, escape byte, null string, row, values []byte, nulls uint32) {
		spec, ok := fuzzCopySpec(format, delim, quote, escape, null)
		if !ok || spec.Format == pgsql.CopyBinary {
			return
		}
		roundTrip := func(vals [][]byte, what string) {
			t.Helper()
			if len(vals) == 0 || (spec.Format == pgsql.CopyText && textNullCollision(vals, spec)) {
				return
			}
			enc := encodeCopyRow(vals, spec)
			got, err := decodeCopyRow(enc, spec)
			if err != nil {
				t.Fatalf("%s: %q encodes to %q, which does not decode: %v", what, vals, enc, err)
			}
			if !sameValues(got, vals) {
				t.Fatalf("%s: %q encodes to %q, which decodes to %q", what, vals, enc, got)
			}
		}
		decoded, err := decodeCopyRow(row, spec)
		if err == nil {
			roundTrip(decoded, "decoded row")
		}
		roundTrip(splitValues(values, nulls), "values")
	})
}

// FuzzCopyBinary: decoding binary COPY data never panics; a message that
// decodes is exactly its pass-through prefix, its tuples re-encoded and the
// trailer (so a masked message differs from the original only in the
// masked values); and tuples built from fuzzed values come back whole.
func FuzzCopyBinary(f *testing.F) {
	header := append(append([]byte(nil), binaryCopySignature...), 0, 0, 0, 0, 0, 0, 0, 0)
	tuple := encodeBinaryCopyTuple(nil, [][]byte{{0, 0, 0, 1}, []byte("alice@example.com"), nil, {}})
	f.Add(header, tuple, []byte{0xFF, 0xFF}, []byte("a\xffb"), uint32(2))
	f.Add(append(append([]byte(nil), header...), tuple...), []byte{}, []byte{}, []byte{}, uint32(0))
	f.Add(append(append([]byte(nil), binaryCopySignature...), 0, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4), []byte{0, 1, 0xFF, 0xFF, 0xFF, 0xFE}, []byte{0, 1}, []byte("x"), uint32(1))
	f.Fuzz(func(t *testing.T, m1, m2, m3, values []byte, nulls uint32) {
		var bc binaryCopy
		for i, msg := range [][]byte{m1, m2, m3} {
			wasEnded := bc.ended
			prefix, tuples, err := bc.decode(msg, nil)
			if err != nil {
				break
			}
			if i > 0 && len(prefix) != 0 {
				t.Fatalf("message %d: a header prefix %q after the first message", i+1, prefix)
			}
			enc := append([]byte(nil), prefix...)
			for _, tp := range tuples {
				enc = encodeBinaryCopyTuple(enc, tp)
			}
			if bc.ended && !wasEnded {
				enc = append(enc, 0xFF, 0xFF)
			}
			if !bytes.Equal(enc, msg) {
				t.Fatalf("message %d: %x decodes and re-encodes to %x", i+1, msg, enc)
			}
		}

		vals := splitValues(values, nulls)
		var fresh binaryCopy
		msg := encodeBinaryCopyTuple(append([]byte(nil), header...), vals)
		msg = append(msg, 0xFF, 0xFF)
		prefix, tuples, err := fresh.decode(msg, nil)
		if err != nil {
			t.Fatalf("%q encodes to %x, which does not decode: %v", vals, msg, err)
		}
		if !bytes.Equal(prefix, header) || len(tuples) != 1 || !sameValues(tuples[0], vals) || !fresh.ended {
			t.Fatalf("%q encodes to %x, which decodes to prefix %x tuples %q (ended %v)", vals, msg, prefix, tuples, fresh.ended)
		}
	})
}

// fuzzMarker is what the fuzz maskers treat as sensitive.
const fuzzMarker = "SECRET"

// markerMasker is a RowMasker for fuzzing (the real maskers have their own
// fuzz targets in package masking): it replaces every value containing
// fuzzMarker with repl, and fails on a value containing "BOOM", so both
// the re-encoding and the fail-closed paths are exercised.
type markerMasker struct{ repl []byte }

var errFuzzMask = errors.New("fuzz masker: BOOM")

func (m markerMasker) MaskRow(_ []masking.Column, vals [][]byte) (int, error) {
	n := 0
	for i, v := range vals {
		if bytes.Contains(v, []byte("BOOM")) {
			return 0, errFuzzMask
		}
		if bytes.Contains(v, []byte(fuzzMarker)) {
			vals[i] = m.repl
			n++
		}
	}
	return n, nil
}

// FuzzCopyOutMasked: COPY data relayed for a masked result, in any format
// PostgreSQL accepts, is either withheld (nil) or rows that decode by the
// format's rules into the same number of columns with no value carrying
// the marker; and what is recorded is within the row cap.
func FuzzCopyOutMasked(f *testing.F) {
	header := append(append([]byte(nil), binaryCopySignature...), 0, 0, 0, 0, 0, 0, 0, 0)
	f.Add(byte(0), byte('\t'), byte('"'), byte('"'), `\N`, uint8(3), []byte("x\ty"),
		[]byte("1\tmy SECRET\t\\N\n"), []byte("2\tnone\tSECRET\\tx\n"), []byte("3\tBOOM\tz\n"))
	f.Add(byte(1), byte(','), byte('"'), byte('"'), "", uint8(2), []byte("a,\"b\"\nc"),
		[]byte("\"SECRET, yes\",\n"), []byte("plain,\"x\"\"SECRET\"\"\"\n"), []byte("\n"))
	f.Add(byte(2), byte(0), byte(0), byte(0), "", uint8(2), []byte{},
		append(header, encodeBinaryCopyTuple(nil, [][]byte{[]byte("SECRET"), nil})...),
		encodeBinaryCopyTuple(nil, [][]byte{{1}, []byte("no")}), []byte{0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, format, delim, quote, escape byte, null string, ncols uint8, repl, m1, m2, m3 []byte) {
		spec, ok := fuzzCopySpec(format, delim, quote, escape, null)
		if !ok || bytes.Contains(repl, []byte(fuzzMarker)) {
			return
		}
		n := int(ncols%8) + 1
		cols := make([]masking.Column, n)
		for i := range cols {
			cols[i] = masking.Column{Name: "c", Binary: spec.Format == pgsql.CopyBinary}
		}
		limits := protocol.Limits{RecordRows: 2, RecordBytes: 64}
		res := &result{masker: markerMasker{repl: repl}, copy: &copyOut{spec: spec, mcols: cols}}
		var client binaryCopy // the client's view of a binary stream
		for i, body := range [][]byte{m1, m2, m3} {
			out := res.copyData(body, limits)
			if out == nil {
				if res.maskErr == nil {
					t.Fatalf("message %d withheld without a masking error", i+1)
				}
				continue
			}
			if res.maskErr != nil {
				t.Fatalf("message %d relayed after a masking error: %q", i+1, out)
			}
			var rows [][][]byte
			if spec.Format == pgsql.CopyBinary {
				_, tuples, err := client.decode(out, nil)
				if err != nil {
					t.Fatalf("message %d relayed as %x does not decode: %v", i+1, out, err)
				}
				rows = tuples
			} else {
				vals, err := decodeCopyRow(out, spec)
				if err != nil {
					t.Fatalf("message %d relayed as %q does not decode: %v", i+1, out, err)
				}
				rows = [][][]byte{vals}
			}
			for _, vals := range rows {
				if len(vals) != n {
					t.Fatalf("message %d relayed as %q: %d values for %d columns", i+1, out, len(vals), n)
				}
				for _, v := range vals {
					if bytes.Contains(v, []byte(fuzzMarker)) {
						t.Fatalf("message %d relayed unmasked: %q", i+1, out)
					}
				}
			}
		}
		if int64(len(res.data)) > int64(limits.RecordRows) {
			t.Fatalf("%d rows recorded over the cap of %d", len(res.data), limits.RecordRows)
		}
		if res.maskErr == nil && !res.truncated && res.rows > int64(limits.RecordRows) {
			t.Fatalf("%d rows, %d recorded, not marked truncated", res.rows, len(res.data))
		}
	})
}
