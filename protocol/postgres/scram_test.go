package postgres

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/internal/pgtest"
)

// TestBackendSCRAM logs in to a throwaway cluster whose pg_hba.conf
// demands scram-sha-256, with a role whose password is stored as SCRAM.
func TestBackendSCRAM(t *testing.T) {
	cl, superPW := pgtest.StartScramCluster(t)
	appPW := pgtest.RandomSecret(12)
	cl.Exec(t, superPW, "create role app login password '"+appPW+"'")

	h := newHarness(t, nil)
	h.target.Address = cl.Addr()
	h.plugin.host, h.plugin.port, _ = splitHostPort(cl.Addr())
	h.cred = credstore.Credential{Username: "app", Password: credstore.NewSecret(appPW)}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, h.dsn(""))
	require.NoError(t, err)
	defer c.Close(context.Background())
	var who, stored string
	require.NoError(t, c.QueryRow(ctx, "select current_user").Scan(&who))
	assert.Equal(t, "app", who)
	c2, err := pgx.Connect(ctx, "host=127.0.0.1 port="+strconv.Itoa(cl.Port)+" user=postgres dbname=postgres sslmode=disable password="+superPW)
	require.NoError(t, err)
	defer c2.Close(context.Background())
	require.NoError(t, c2.QueryRow(ctx, "select rolpassword from pg_authid where rolname='app'").Scan(&stored))
	assert.Contains(t, stored, "SCRAM-SHA-256$")

	// A wrong backend password: the client learns only that the gateway
	// could not log in, never the password.
	h.cred = credstore.Credential{Username: "app", Password: credstore.NewSecret("wrong-" + appPW)}
	_, err = pgx.Connect(ctx, h.dsn(""))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot connect to the backend")
	assert.NotContains(t, err.Error(), appPW)
}
