package e2e

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/internal/pgtest"
	"github.com/sluicegw/sluice/policy"
)

// TestMaskingThroughGateway: a CEL policy's mask entries mask what real
// clients read — pgx (binary and text), lib/pq and psql — and the
// recording holds only the masked values.
func TestMaskingThroughGateway(t *testing.T) {
	pgtest.Require(t)
	requireTool(t, "psql")
	admin := pgtest.AdminConn(t, "test")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := admin.Exec(ctx, `drop table if exists e2e_pii;
		create table e2e_pii(id int primary key, email text, card text, pin int, note text);
		insert into e2e_pii values
		  (1, 'alice@example.com', '4111-1111-1111-1111', 1234, 'ssn 123-45-6789, mail bob@example.org'),
		  (2, 'carol@example.net', '5500 0000 0000 0004', 9876, 'ticket ORD-2024-000123 v1.2.3')`)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "drop table if exists e2e_pii") })

	engine, err := policy.Parse("mask.yaml", []byte(`
rules:
  - name: connect
    match: command.kind == "connect"
    action: allow
  - name: read-pii-masked
    match: '!command.sql.writes'
    action: allow
    mask: [email, ssn, credit_card, "column:e2e_pii.card=partial:4", "column:pin=null"]
default: deny
`))
	require.NoError(t, err)
	e := startGatewayWith(t, gatewayOptions{grace: 2 * time.Second, decider: engine}, pgTarget("pg"))
	secrets := []string{"alice@example.com", "bob@example.org", "123-45-6789", "4111-1111-1111-1111", "5500 0000 0000 0004", "1234", "9876"}
	const q = "select id, email, card, pin, note from e2e_pii order by id"

	check := func(t *testing.T, client string, email, card []string, pin []*int64, note []string) {
		t.Helper()
		all := strings.Join(append(append(append([]string{}, email...), card...), note...), "|")
		for _, s := range secrets[:5] {
			assert.NotContains(t, all, s, "%s sees %q", client, s)
		}
		require.Len(t, card, 2)
		assert.True(t, strings.HasSuffix(card[0], "1111"), "%s: partial keeps the last four: %q", client, card[0])
		for _, p := range pin {
			assert.Nil(t, p, "%s: the int column masked with null is NULL", client)
		}
		assert.Contains(t, note[1], "ORD-2024-000123 v1.2.3", "%s: no false positive", client)
	}

	t.Run("pgx binary and text", func(t *testing.T) {
		c := e.pgx(t, "pg", "test")
		for _, simple := range []bool{false, true} {
			args := []any{}
			if simple {
				args = append(args, pgx.QueryExecModeSimpleProtocol)
			}
			rows, err := c.Query(ctx, q, args...)
			require.NoError(t, err)
			var email, card, note []string
			var pin []*int64
			for rows.Next() {
				var id int
				var em, ca, no string
				var p *int64
				require.NoError(t, rows.Scan(&id, &em, &ca, &p, &no))
				email, card, note, pin = append(email, em), append(card, ca), append(note, no), append(pin, p)
			}
			require.NoError(t, rows.Err())
			check(t, "pgx", email, card, pin, note)
		}
	})
	t.Run("lib/pq", func(t *testing.T) {
		db, err := sql.Open("postgres", e.dsn(t, "pg", "test", "require"))
		require.NoError(t, err)
		defer db.Close()
		rows, err := db.QueryContext(ctx, q)
		require.NoError(t, err)
		defer rows.Close()
		var email, card, note []string
		var pin []*int64
		for rows.Next() {
			var id int
			var em, ca, no string
			var p sql.NullInt64
			require.NoError(t, rows.Scan(&id, &em, &ca, &p, &no))
			var pp *int64
			if p.Valid {
				pp = &p.Int64
			}
			email, card, note, pin = append(email, em), append(card, ca), append(note, no), append(pin, pp)
		}
		require.NoError(t, rows.Err())
		check(t, "lib/pq", email, card, pin, note)
	})
	t.Run("psql", func(t *testing.T) {
		r := e.psql(t, "pg", "test", "require", "-At", "-F", ";", "-c", q)
		require.Equal(t, 0, r.code, r.stderr)
		for _, s := range secrets {
			assert.NotContains(t, r.stdout, s)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		require.Len(t, lines, 2)
		assert.Contains(t, lines[1], "ORD-2024-000123")
	})
	t.Run("psql copy", func(t *testing.T) {
		// \copy ... to stdout is COPY TO STDOUT on the wire.
		for _, c := range []string{`\copy e2e_pii to stdout`, `\copy (select * from e2e_pii order by id) to stdout with (format csv, header)`} {
			r := e.psql(t, "pg", "test", "require", "-X", "-c", c)
			require.Equal(t, 0, r.code, r.stderr)
			for _, s := range secrets {
				assert.NotContains(t, r.stdout, s, c)
			}
			assert.Contains(t, r.stdout, "ORD-2024-000123", c)
			assert.Contains(t, r.stdout, "1111", c)
		}
	})

	// The recordings keep what the clients saw.
	require.NoError(t, e.g.Shutdown(ctx))
	for _, path := range recordingPaths(t, e.recDir) {
		rec := readRecording(t, path)
		for _, en := range rec.entries {
			if en.Result == nil {
				continue
			}
			for _, row := range en.Result.Data {
				for _, v := range row {
					if v == nil {
						continue
					}
					for _, s := range secrets[:5] {
						assert.NotContains(t, *v, s, "recording %s", path)
					}
				}
			}
		}
	}
}

// TestPolicyDefinedDetector: a detector defined in the policy file (a
// pattern with a checksum validator) masks matching values through the
// gateway, and a look-alike failing the checksum passes.
func TestPolicyDefinedDetector(t *testing.T) {
	pgtest.Require(t)
	engine, err := policy.Parse("detectors.yaml", []byte(`
detectors:
  - name: employee_id
    pattern: '\bEMP-[0-9]{6}\b'
  - name: account_no
    pattern: '\b[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{4}\b'
    validate: luhn
rules:
  - name: all
    match: "true"
    action: allow
    mask: [employee_id, "account_no=partial:4"]
`))
	require.NoError(t, err)
	e := startGatewayWith(t, gatewayOptions{grace: 2 * time.Second, decider: engine}, pgTarget("pg"))
	c := e.pgx(t, "pg", "test")
	var a, b string
	require.NoError(t, c.QueryRow(context.Background(), "select 'ask EMP-123456', 'acct 4111-1111-1111-1111 / 4111-1111-1111-1112'").Scan(&a, &b))
	assert.NotContains(t, a, "EMP-123456")
	assert.NotContains(t, b, "4111-1111-1111-1111")
	assert.Contains(t, b, "4111-1111-1111-1112", "fails Luhn: not an account number")
	assert.Contains(t, b, "1111", "partial keeps the last four")
}
