package sqlitestore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/approval/approvaltest"
	"github.com/sluicegw/sluice/approval/sqlitestore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, path string) *sqlitestore.Store {
	t.Helper()
	// A short poll interval: the suite's second "gateway" on the same
	// file sees changes through the poller.
	s, err := sqlitestore.Open(context.Background(), sqlitestore.Config{Path: path, PollInterval: 20 * time.Millisecond, Logger: approvaltest.Logger(t)})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	return s
}

func TestConformance(t *testing.T) {
	approvaltest.Run(t, func(t *testing.T) approvaltest.Open {
		path := filepath.Join(t.TempDir(), "data", sqlitestore.DefaultFile)
		return func(t *testing.T) approval.Store { return open(t, path) }
	})
}

func TestFileIsPrivateAndWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", sqlitestore.DefaultFile)
	s := open(t, path)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "commands are sensitive: the file is private")
	di, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), di.Mode().Perm())
	b, err := approval.New(context.Background(), approval.Config{Store: s, GatewayID: "gw"})
	require.NoError(t, err)
	defer b.Close()
	_, err = b.Request(context.Background(), approvaltest.NewRequest())
	require.NoError(t, err)
	_, err = os.Stat(path + "-wal")
	assert.NoError(t, err, "WAL mode keeps a -wal file beside the database")
}

func TestReopenKeepsRequests(t *testing.T) {
	path := filepath.Join(t.TempDir(), sqlitestore.DefaultFile)
	ctx := context.Background()
	s, err := sqlitestore.Open(ctx, sqlitestore.Config{Path: path})
	require.NoError(t, err)
	b, err := approval.New(ctx, approval.Config{Store: s, GatewayID: "gw"})
	require.NoError(t, err)
	p, err := b.Request(ctx, approvaltest.NewRequest())
	require.NoError(t, err)
	// The gateway stops with nobody waiting (a waiter would be abandoned
	// by Close).
	require.NoError(t, b.Close())
	require.NoError(t, s.Close())

	s = open(t, path)
	r, err := s.Get(ctx, p.ID())
	require.NoError(t, err)
	assert.Equal(t, approval.StatePending, r.State, "pending requests survive a restart")
	b2, err := approval.New(ctx, approval.Config{Store: s, GatewayID: "gw"})
	require.NoError(t, err)
	defer b2.Close()
	r, err = s.Get(ctx, p.ID())
	require.NoError(t, err)
	assert.Equal(t, approval.StateAbandoned, r.State, "and are marked abandoned when the gateway starts again")
}

func TestConfigValidate(t *testing.T) {
	_, err := sqlitestore.Open(context.Background(), sqlitestore.Config{})
	assert.ErrorContains(t, err, "Config.Path")
}
