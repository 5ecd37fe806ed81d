package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/internal/pgtest"
	"github.com/sluicegw/sluice/protocol"
)

// denyDrops denies any command whose parsed SQL contains a DROP, or that
// could not be parsed — a policy over what the real PostgreSQL parser saw.
func denyDrops(cmd *protocol.Command) protocol.Decision {
	if cmd.SQL != nil {
		if cmd.SQL.ParseError != "" {
			return protocol.Decision{Action: protocol.Deny, Rules: []string{"parse-error"}, Message: "unparseable SQL: " + cmd.SQL.ParseError}
		}
		for _, st := range cmd.SQL.Statements {
			if st.Kind == "DROP" {
				return protocol.Decision{Action: protocol.Deny, Rules: []string{"no-drop"}, Message: "DROP is not allowed"}
			}
		}
	}
	return protocol.Decision{Action: protocol.Allow, Rules: []string{"allow"}}
}

const smuggle = `SELECT 'x\'' ; DROP TABLE IF EXISTS sluice_scs_victim; -- '`

// TestStandardConformingStringsRoutes turns standard_conforming_strings off
// by every route PostgreSQL offers and then tries to smuggle a DROP inside
// what a default-lexing parser reads as one string literal. The relay must
// see the DROP every time, because it lexes as the backend reports.
func TestStandardConformingStringsRoutes(t *testing.T) {
	admin := pgtest.AdminConn(t, "postgres")
	ctx := context.Background()
	_, err := admin.Exec(ctx, "drop role if exists sluice_scs_role; create role sluice_scs_role login; alter role sluice_scs_role set standard_conforming_strings = off")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "drop role if exists sluice_scs_role") })

	h := newHarness(t, nil)
	h.decide = denyDrops

	routes := []struct {
		name  string
		extra string   // connection string additions
		user  string   // backend role
		setup []string // statements run first
	}{
		{name: "SET", setup: []string{"SET standard_conforming_strings = off"}},
		{name: "SET SESSION", setup: []string{"SET SESSION standard_conforming_strings TO off"}},
		{name: "SET LOCAL in a transaction", setup: []string{"BEGIN", "SET LOCAL standard_conforming_strings = off"}},
		{name: "set_config()", setup: []string{"SELECT set_config('standard_conforming_strings', 'off', false)"}},
		{name: "set_config() local", setup: []string{"BEGIN", "SELECT set_config('standard_conforming_strings', 'off', true)"}},
		{name: "startup options", extra: "options='-c standard_conforming_strings=off'"},
		{name: "startup parameter", extra: "standard_conforming_strings=off"},
		{name: "role default (ALTER ROLE ... SET)", user: "sluice_scs_role"},
		{name: "a function that sets it", setup: []string{
			"CREATE OR REPLACE FUNCTION pg_temp.flip() RETURNS int LANGUAGE plpgsql AS $$BEGIN PERFORM set_config('standard_conforming_strings','off',false); RETURN 1; END$$",
			"SELECT pg_temp.flip()"}},
	}
	for _, rt := range routes {
		t.Run(rt.name, func(t *testing.T) {
			h.cred.Username = "postgres"
			if rt.user != "" {
				h.cred.Username = rt.user
			}
			c, err := pgx.Connect(ctx, h.dsn(rt.extra))
			require.NoError(t, err)
			defer c.Close(ctx)
			for _, s := range rt.setup {
				_, err := c.Exec(ctx, s, pgx.QueryExecModeSimpleProtocol)
				require.NoError(t, err, s)
			}
			// pgx itself refuses the simple protocol once the setting is
			// off; pgconn sends what it is given, as an attacker would.
			res, err := c.PgConn().Exec(ctx, "SHOW standard_conforming_strings").ReadAll()
			require.NoError(t, err)
			require.Equal(t, "off", string(res[0].Rows[0][0]), "the route must really turn it off")

			_, err = c.PgConn().Exec(ctx, smuggle).ReadAll()
			require.Error(t, err, "the smuggled DROP must be refused")
			assert.Equal(t, "42501", pgCode(err))
			assert.Contains(t, err.Error(), "no-drop")
		})
	}

	// With the default setting the same text is one harmless SELECT of a
	// string, and it runs.
	h.cred.Username = "postgres"
	c, err := pgx.Connect(ctx, h.dsn(""))
	require.NoError(t, err)
	defer c.Close(ctx)
	var v string
	require.NoError(t, c.QueryRow(ctx, `SELECT 'x\'' ; -- '`, pgx.QueryExecModeSimpleProtocol).Scan(&v))
	assert.Equal(t, `x\' ; -- `, v)
}

// TestSmugglingPipelinedBehindTheSet sends the SET and the smuggling text
// in one write, so the second is classified before the backend has
// answered the first: the relay must wait for the answer (and the
// ParameterStatus it carries) before it lexes a text with a backslash.
func TestSmugglingPipelinedBehindTheSet(t *testing.T) {
	h := newHarness(t, nil)
	h.decide = denyDrops
	for _, extended := range []bool{false, true} {
		t.Run(fmt.Sprintf("extended=%v", extended), func(t *testing.T) {
			c, fe := login(t, h)
			if extended {
				fe.Send(&pgproto3.Parse{Query: "SET standard_conforming_strings = off"})
				fe.Send(&pgproto3.Bind{})
				fe.Send(&pgproto3.Execute{})
				// No Sync in between: the backend holds its replies
				// until the relay asks it to flush.
				fe.Send(&pgproto3.Parse{Query: `SELECT 'x\'' ; DROP TABLE IF EXISTS sluice_scs_victim; -- '`})
				fe.Send(&pgproto3.Bind{})
				fe.Send(&pgproto3.Execute{})
				fe.Send(&pgproto3.Sync{})
			} else {
				fe.Send(&pgproto3.Query{String: "SET standard_conforming_strings = off"})
				fe.Send(&pgproto3.Query{String: smuggle})
			}
			require.NoError(t, fe.Flush())
			require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
			var errs []*pgproto3.ErrorResponse
			rfq := 0
			want := 2
			if extended {
				want = 1
			}
			for rfq < want {
				m, err := fe.Receive()
				require.NoError(t, err)
				switch m := m.(type) {
				case *pgproto3.ErrorResponse:
					e := *m
					errs = append(errs, &e)
				case *pgproto3.ReadyForQuery:
					rfq++
				}
			}
			require.Len(t, errs, 1)
			assert.Equal(t, "42501", errs[0].Code)
			assert.Contains(t, errs[0].Message, "no-drop")
		})
	}
}

// TestSingleStatementSmuggleInUnsyncedBatch: in an extended batch with no
// Sync, the backend reports a SET only at the next ReadyForQuery, so the
// relay cannot know the lexing; it must judge both readings. Here the
// off-reading calls a function the on-reading hides in a comment.
func TestSingleStatementSmuggleInUnsyncedBatch(t *testing.T) {
	h := newHarness(t, nil)
	h.decide = func(cmd *protocol.Command) protocol.Decision {
		if cmd.SQL != nil {
			for _, st := range cmd.SQL.Statements {
				for _, f := range st.Functions {
					if f == "pg_sleep" {
						return protocol.Decision{Action: protocol.Deny, Rules: []string{"no-sleep"}}
					}
				}
			}
		}
		return protocol.Decision{Action: protocol.Allow}
	}
	c, fe := login(t, h)
	fe.Send(&pgproto3.Parse{Query: "SET standard_conforming_strings = off"})
	fe.Send(&pgproto3.Bind{})
	fe.Send(&pgproto3.Execute{})
	fe.Send(&pgproto3.Parse{Query: `SELECT 'a\' , 1 -- ', pg_sleep(0)`})
	fe.Send(&pgproto3.Bind{})
	fe.Send(&pgproto3.Execute{})
	fe.Send(&pgproto3.Sync{})
	require.NoError(t, fe.Flush())
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	var codes []string
	for {
		m, err := fe.Receive()
		require.NoError(t, err)
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			codes = append(codes, e.Code)
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	assert.Equal(t, []string{"42501"}, codes)
}

// TestFirstCommandIsSettled: the login's ReadyForQuery came before the
// relay took over, so the first command of a session is lexed with the
// settings the backend reported, not treated as in flight.
func TestFirstCommandIsSettled(t *testing.T) {
	h := newHarness(t, nil)
	h.decide = denyDrops
	ctx := context.Background()
	for _, q := range []string{`SELECT 'naïve\d'`, `SET standard_conforming_strings = off; SELECT 'x\'' ; -- '`} {
		c, err := pgx.Connect(ctx, h.dsn(""))
		require.NoError(t, err)
		_, err = c.PgConn().Exec(ctx, q).ReadAll()
		assert.NoError(t, err, "first command %q", q)
		c.Close(ctx)
	}
}
