package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/approval/sqlitestore"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
)

// TestThousandPendingApprovals holds 1,000 commands, one per live session,
// each waiting for approval in one gateway, and reports what that costs:
// goroutines and heap per waiting command. Approving them all lets every
// one finish.
func TestThousandPendingApprovals(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 sessions")
	}
	const n = 1000
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	store, err := sqlitestore.Open(ctx, sqlitestore.Config{Path: filepath.Join(t.TempDir(), sqlitestore.DefaultFile)})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	b, err := approval.New(ctx, approval.Config{Store: store, GatewayID: "scale", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	e := newEnv(t, protoLine, func(c *Config) {
		c.Approvals = b
		c.Targets[0].MaxSessions = n + 10
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	})
	e.setDecider(func(in *policy.Input) (protocol.Decision, error) {
		if in.Command.Kind == protocol.KindConnect {
			return protocol.Decision{Action: protocol.Allow, Rules: []string{"connect"}}, nil
		}
		return protocol.Decision{Action: protocol.RequireApproval, Rules: []string{"hold"}, Approvers: []string{"group:dba"}, Timeout: 2 * time.Minute}, nil
	})

	type conn struct {
		c net.Conn
		r *bufio.Reader
	}
	idle := measure()
	conns := make([]conn, n)
	for i := range conns {
		c, err := net.DialTimeout("tcp", e.g.Addr("t1").String(), 5*time.Second)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
		conns[i] = conn{c, bufio.NewReader(c)}
		_, err = fmt.Fprintf(c, "AUTH %s\nCONNECT\n", goodToken)
		require.NoError(t, err)
		for range 2 {
			line, err := conns[i].r.ReadString('\n')
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(line, "OK"), line)
		}
	}
	before := measure()
	for i := range conns {
		_, err := fmt.Fprintf(conns[i].c, "Q insert %d\n", i)
		require.NoError(t, err)
	}
	var pending []*approval.Request
	require.Eventually(t, func() bool {
		pending, err = b.List(ctx, approval.Filter{States: []approval.State{approval.StatePending}})
		return err == nil && len(pending) == n
	}, 2*time.Minute, 100*time.Millisecond, "not all %d commands are waiting", n)
	after := measure()
	t.Logf("%d sessions (gateway and test client sides): +%d goroutines, heap +%.1f MiB (%.1f KiB per session)",
		n, before.goroutines-idle.goroutines, float64(before.heap-idle.heap)/(1<<20), float64(before.heap-idle.heap)/1024/n)
	t.Logf("each then waiting for approval: +%d goroutines, heap +%.1f MiB (%.1f KiB per waiting command)",
		after.goroutines-before.goroutines, float64(after.heap-before.heap)/(1<<20), float64(after.heap-before.heap)/1024/n)

	dba := &identity.Identity{Subject: "dana", Groups: []string{"dba"}, Method: identity.MethodToken}
	for _, r := range pending {
		_, err := b.Approve(ctx, r.ID, dba, "ok")
		require.NoError(t, err)
	}
	for i := range conns {
		line, err := conns[i].r.ReadString('\n')
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(line, "OK"), "session %d: %s", i, line)
	}
}

type usage struct {
	goroutines int
	heap       uint64
}

func measure() usage {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{runtime.NumGoroutine(), ms.HeapAlloc}
}
