package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/protocol"
)

// TestMaskedResults: values leave the relay masked, in text and binary
// format, typed columns stay decodable, and the recording keeps only what
// the client saw with counts per entry.
func TestMaskedResults(t *testing.T) {
	h := newHarness(t, nil)
	entries := []string{"email", "credit_card", "column:secret_code=null", "column:card=partial:4"}
	m, err := masking.Compile(entries, masking.Options{})
	require.NoError(t, err)
	h.masker = m
	h.decide = func(cmd *protocol.Command) protocol.Decision {
		d := protocol.Decision{Action: protocol.Allow, Rules: []string{"allow"}}
		if strings.Contains(cmd.Text, "pii") {
			d.Mask = entries
		}
		return d
	}
	ctx := context.Background()
	c := connect(t, h)
	_, err = c.Exec(ctx, `create temp table pii(id int, email text, card text, secret_code int, note text)`)
	require.NoError(t, err)
	_, err = c.Exec(ctx, `insert into pii values (1, 'alice@example.com', '4111 1111 1111 1111', 1234, 'call bob@example.org re 4012888888881881'), (2, null, 'n/a', 5, 'order ORD-2024-000123')`)
	require.NoError(t, err)

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			rows, err := c.Query(ctx, "select id, email, card, secret_code, note from pii order by id", mode)
			require.NoError(t, err)
			type row struct {
				id         int
				email      *string
				card, note string
				code       *int32
			}
			var got []row
			for rows.Next() {
				var r row
				require.NoError(t, rows.Scan(&r.id, &r.email, &r.card, &r.code, &r.note))
				got = append(got, r)
			}
			require.NoError(t, rows.Err())
			require.Len(t, got, 2)
			require.NotNil(t, got[0].email)
			assert.NotContains(t, *got[0].email, "alice@example.com")
			assert.True(t, strings.HasSuffix(got[0].card, "1111"), "partial keeps the last 4: %q", got[0].card)
			assert.NotContains(t, got[0].card, "4111 1111 1111")
			assert.Nil(t, got[0].code, "an int column masked by null decodes as NULL")
			assert.NotContains(t, got[0].note, "bob@example.org")
			assert.NotContains(t, got[0].note, "4012888888881881")
			assert.Equal(t, 1, got[0].id)
			assert.Nil(t, got[1].email)
			assert.Equal(t, "order ORD-2024-000123", got[1].note, "no false positive")

			res := h.resultEvents()
			last := res[len(res)-1].Result
			assert.Positive(t, last.Masked)
			assert.Positive(t, last.MaskedBy["email"])
			assert.Positive(t, last.MaskedBy["column:secret_code=null"])
			for _, r := range last.Data {
				for _, v := range r {
					if v != nil {
						assert.NotContains(t, *v, "alice@example.com", "the recording keeps what the client saw")
						assert.NotContains(t, *v, "4111 1111 1111 1111")
					}
				}
			}
		})
	}
}

// TestMaskingFollowsSourceColumns: column rules apply to what a column is,
// resolved through the catalog, not to what the query calls it: an alias
// does not escape, and a table-qualified rule leaves another table's
// column of the same name alone.
func TestMaskingFollowsSourceColumns(t *testing.T) {
	h := newHarness(t, nil)
	entries := []string{"column:pii2.card=partial:4", "column:secret_code=null"}
	m, err := masking.Compile(entries, masking.Options{})
	require.NoError(t, err)
	h.masker = m
	h.decide = func(cmd *protocol.Command) protocol.Decision {
		d := protocol.Decision{Action: protocol.Allow, Rules: []string{"allow"}}
		if strings.Contains(cmd.Text, "from pii2") || strings.Contains(cmd.Text, "from other2") {
			d.Mask = entries
		}
		return d
	}
	ctx := context.Background()
	c := connect(t, h)
	_, err = c.Exec(ctx, `create temp table pii2(card text, secret_code int); create temp table other2(card text);
		insert into pii2 values ('4111111111111111', 42); insert into other2 values ('not-a-secret-1234')`)
	require.NoError(t, err)

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		var card string
		var code *int32
		require.NoError(t, c.QueryRow(ctx, "select card as c, secret_code as innocent from pii2", mode).Scan(&card, &code))
		assert.NotEqual(t, "4111111111111111", card, "an alias does not escape the rule (%s)", mode)
		assert.True(t, strings.HasSuffix(card, "1111"))
		assert.Nil(t, code, "aliased secret_code is still NULLed (%s)", mode)

		var other string
		require.NoError(t, c.QueryRow(ctx, "select card from other2", mode).Scan(&other))
		assert.Equal(t, "not-a-secret-1234", other, "pii2.card's rule leaves other2.card alone (%s)", mode)
	}
}
