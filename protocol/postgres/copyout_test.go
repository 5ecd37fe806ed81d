package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/csv"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/protocol/postgres/pgsql"
)

// copyMaskHarness is a relay whose policy masks commands that name
// copy_pii, over a real table (the catalog connection that describes a
// COPY's columns cannot see a session's temporary tables).
func copyMaskHarness(t *testing.T) (*harness, string) {
	t.Helper()
	h := newHarness(t, nil)
	entries := []string{"email", "credit_card", "column:copy_pii.secret_code=null", "column:card=partial:4"}
	m, err := masking.Compile(entries, masking.Options{})
	require.NoError(t, err)
	h.masker = m
	h.decide = func(cmd *protocol.Command) protocol.Decision {
		d := protocol.Decision{Action: protocol.Allow, Rules: []string{"allow"}}
		if strings.Contains(cmd.Text, "copy_pii") {
			d.Mask = entries
		}
		return d
	}
	const table = "copy_pii"
	ctx := context.Background()
	admin, err := pgconn.Connect(ctx, "postgres://postgres@"+backendAddr()+"/postgres?sslmode=disable")
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = admin.Exec(context.Background(), "drop table if exists "+table).Close()
		admin.Close(context.Background())
	})
	_, err = admin.Exec(ctx, fmt.Sprintf(`drop table if exists %[1]s; create table %[1]s(id int, email text, card text, secret_code int, note text);
		insert into %[1]s values (1, 'alice@example.com', '4111 1111 1111 1111', 1234, e'call bob@example.org\tre 4012888888881881'),
		                         (2, null, 'n/a', 5, 'order ORD-2024-000123, "quoted", comma')`, table)).ReadAll()
	require.NoError(t, err)
	return h, table
}

// TestCopyOutMasked: COPY TO STDOUT data is masked in text, CSV and binary
// format, rows still parse by their format's rules, untouched rows pass
// as they are, and the recording keeps the masked rows with counts.
func TestCopyOutMasked(t *testing.T) {
	h, table := copyMaskHarness(t)
	// The policy keys on the text "copy_pii"; the table's name has it.
	c := connect(t, h)
	ctx := context.Background()
	pc := c.PgConn()

	t.Run("text", func(t *testing.T) {
		var buf bytes.Buffer
		_, err := pc.CopyTo(ctx, &buf, "copy "+table+" to stdout")
		require.NoError(t, err)
		lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
		require.Len(t, lines, 2)
		f := strings.Split(lines[0], "\t")
		require.Len(t, f, 5, "the escaped tab inside a value stays escaped: %q", lines[0])
		assert.Equal(t, "1", f[0])
		assert.NotContains(t, f[1], "alice@example.com")
		assert.True(t, strings.HasSuffix(f[2], "1111") && !strings.Contains(f[2], "4111 1111"), "partial: %q", f[2])
		assert.Equal(t, `\N`, f[3], "the int column masked by null")
		assert.Contains(t, f[4], `\t`, "the tab in the note is still escaped")
		assert.NotContains(t, f[4], "bob@example.org")
		assert.NotContains(t, f[4], "4012888888881881")
		f = strings.Split(lines[1], "\t")
		require.Len(t, f, 5)
		assert.Equal(t, `\N`, f[1])
		assert.Equal(t, `order ORD-2024-000123, "quoted", comma`, f[4])

		last := h.resultEvents()
		res := last[len(last)-1].Result
		assert.Equal(t, int64(2), res.Rows)
		assert.Positive(t, res.MaskedBy["email"])
		assert.Positive(t, res.MaskedBy["column:copy_pii.secret_code=null"])
		require.Len(t, res.Data, 2)
		for _, row := range res.Data {
			for _, v := range row {
				if v != nil {
					assert.NotContains(t, *v, "alice@example.com", "the recording keeps what the client saw")
				}
			}
		}
	})

	t.Run("csv", func(t *testing.T) {
		var buf bytes.Buffer
		_, err := pc.CopyTo(ctx, &buf, "copy (select id, email as contact, card, secret_code, note from "+table+" order by id) to stdout with (format csv, header)")
		require.NoError(t, err)
		recs, err := csv.NewReader(&buf).ReadAll()
		require.NoError(t, err, "masked CSV still parses")
		require.Len(t, recs, 3)
		assert.Equal(t, []string{"id", "contact", "card", "secret_code", "note"}, recs[0], "the header passes as it is")
		assert.NotContains(t, recs[1][1], "alice@example.com", "an alias does not escape")
		assert.True(t, strings.HasSuffix(recs[1][2], "1111"))
		assert.Equal(t, "", recs[1][3])
		assert.NotContains(t, recs[1][4], "bob@example.org")
		assert.Equal(t, `order ORD-2024-000123, "quoted", comma`, recs[2][4], "an unmasked row with quotes and commas is intact")
	})

	t.Run("binary", func(t *testing.T) {
		var buf bytes.Buffer
		_, err := pc.CopyTo(ctx, &buf, "copy "+table+" (id, email, secret_code) to stdout (format binary)")
		require.NoError(t, err)
		rows := parseBinaryCopy(t, buf.Bytes())
		require.Len(t, rows, 2)
		assert.Equal(t, []byte{0, 0, 0, 1}, rows[0][0])
		require.NotNil(t, rows[0][1])
		assert.NotContains(t, string(rows[0][1]), "alice@example.com")
		assert.Nil(t, rows[0][2], "int masked by null is NULL in binary too")
		assert.Nil(t, rows[1][1])
	})

	t.Run("unmasked command passes bytes through", func(t *testing.T) {
		var buf bytes.Buffer
		_, err := pc.CopyTo(ctx, &buf, "copy (select 'alice@example.com'::text) to stdout")
		require.NoError(t, err)
		assert.Equal(t, "alice@example.com\n", buf.String())
	})
}

// TestCopyOutRefusedAfterSearchPathChange: once the session may have
// changed its search_path, a masked COPY's columns cannot be resolved
// reliably, so its data is withheld with an error; the session goes on.
func TestCopyOutRefusedAfterSearchPathChange(t *testing.T) {
	h, table := copyMaskHarness(t)
	c := connect(t, h)
	ctx := context.Background()
	_, err := c.Exec(ctx, "set search_path = public")
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = c.PgConn().CopyTo(ctx, &buf, "copy "+table+" to stdout")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "search_path")
	assert.NotContains(t, buf.String(), "alice@example.com")
	var one int
	require.NoError(t, c.QueryRow(ctx, "select 1").Scan(&one), "the session goes on")
}

func parseBinaryCopy(t *testing.T, b []byte) [][][]byte {
	t.Helper()
	sig := []byte("PGCOPY\n\xff\r\n\x00")
	require.True(t, bytes.HasPrefix(b, sig))
	p := len(sig) + 4
	p += 4 + int(binary.BigEndian.Uint32(b[p:]))
	var rows [][][]byte
	for {
		n := int16(binary.BigEndian.Uint16(b[p:]))
		p += 2
		if n == -1 {
			require.Equal(t, len(b), p, "nothing after the trailer")
			return rows
		}
		row := make([][]byte, n)
		for i := range row {
			l := int32(binary.BigEndian.Uint32(b[p:]))
			p += 4
			if l >= 0 {
				row[i] = b[p : p+int(l)]
				p += int(l)
			}
		}
		rows = append(rows, row)
	}
}

// TestCopyCodecs: the text and CSV codecs read what they write, and read
// PostgreSQL's escapes.
func TestCopyCodecs(t *testing.T) {
	text := &pgsql.CopyOut{Format: pgsql.CopyText, Delimiter: '\t', Null: `\N`}
	vals, err := decodeTextCopyRow([]byte("a\\tb\t\\N\t\\\\x\\101\\x41\\q\t\n"), text, nil)
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("a\tb"), nil, []byte(`\xAAq`), {}}, vals)
	enc := encodeTextCopyRow(nil, vals, text)
	back, err := decodeTextCopyRow(enc, text, nil)
	require.NoError(t, err)
	assert.Equal(t, vals, back)

	c := &pgsql.CopyOut{Format: pgsql.CopyCSV, Delimiter: ',', Null: "", Quote: '"', Escape: '"'}
	vals, err = decodeCSVCopyRow([]byte("1,,\"\",\"a \"\"b\"\", c\nd\"\n"), c, nil)
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("1"), nil, {}, []byte("a \"b\", c\nd")}, vals)
	enc = encodeCSVCopyRow(nil, vals, c)
	back, err = decodeCSVCopyRow(enc, c, nil)
	require.NoError(t, err)
	assert.Equal(t, vals, back)

	_, err = decodeCSVCopyRow([]byte("\"open\n"), c, nil)
	assert.Error(t, err)
	_, err = decodeTextCopyRow([]byte("no newline"), text, nil)
	assert.Error(t, err)

	// COPY ... (FORMAT csv, QUOTE E'\r') is accepted by PostgreSQL, which
	// then ends a row "\r\n": the "\r" closes the last value (found by
	// FuzzCopyTextCSVRow).
	cr := &pgsql.CopyOut{Format: pgsql.CopyCSV, Delimiter: ',', Null: "", Quote: '\r', Escape: '\r'}
	vals, err = decodeCSVCopyRow([]byte("\r0\r,\ra\"b\r\n"), cr, nil)
	require.NoError(t, err)
	assert.Equal(t, [][]byte{[]byte("0"), []byte(`a"b`)}, vals)
}

// TestCopyDataWithoutCopyOutResponse: CopyData for a masked result that
// no CopyOutResponse announced cannot be read by any format, so it is
// withheld and the result fails, rather than relayed unmasked (found by
// FuzzRelay). Unmasked, it is relayed as it is.
func TestCopyDataWithoutCopyOutResponse(t *testing.T) {
	res := &result{masker: markerMasker{repl: []byte("x")}}
	assert.Nil(t, res.copyData([]byte("1\tSECRET\n"), protocol.Limits{}))
	assert.Error(t, res.maskErr)

	res = &result{}
	assert.Equal(t, []byte("1\tSECRET\n"), res.copyData([]byte("1\tSECRET\n"), protocol.Limits{}))
}
