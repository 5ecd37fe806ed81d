package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/internal/pgtest"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/recording"
)

var approvalID = regexp.MustCompile(`approval request ([0-9A-Z]{26})|request ([0-9A-Z]{26})`)

// TestApprovalThroughGateway: a write that policy says needs a DBA waits
// inside the live session; the client is told the request id at once; an
// approval through the broker lets the statement through unchanged, a
// denial or a withdrawal (the client's cancel) refuses it, and the session
// goes on every time. The requester cannot approve their own request.
func TestApprovalThroughGateway(t *testing.T) {
	pgtest.Require(t)
	admin := pgtest.AdminConn(t, "test")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := admin.Exec(ctx, "drop table if exists e2e_approval; create table e2e_approval(v int)")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "drop table if exists e2e_approval") })

	broker := newBroker(t, ctx, "e2e")

	engine, err := policy.Parse("approval.yaml", []byte(`
rules:
  - name: connect
    match: command.kind == "connect"
    action: allow
  - name: reads
    match: '!command.sql.writes'
    action: allow
  - name: writes-need-a-dba
    match: command.sql.writes
    action: require_approval
    approvers: [group:dba]
    timeout: 30s
  - name: deletes-expire-fast
    match: command.sql.statements.exists(s, s.kind == "DELETE")
    action: require_approval
    approvers: [group:dba]
    timeout: 1s
default: deny
`))
	require.NoError(t, err)
	e := startGatewayWith(t, gatewayOptions{grace: 2 * time.Second, decider: engine, groups: []string{"agents"}, approvals: broker}, pgTarget("pg"))

	notices := make(chan string, 8)
	cfg, err := pgx.ParseConfig(e.dsn(t, "pg", "test", "require"))
	require.NoError(t, err)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices <- n.Message }
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 5 * time.Second}
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer c.Close(context.Background())

	dba := &identity.Identity{Subject: "dana", Groups: []string{"dba"}, Method: identity.MethodToken}
	requester := &identity.Identity{Subject: subject, Groups: []string{"agents"}, Method: identity.MethodToken}
	waitID := func() string {
		select {
		case n := <-notices:
			m := approvalID.FindStringSubmatch(n)
			require.NotNil(t, m, "the notice names the request: %q", n)
			if m[1] != "" {
				return m[1]
			}
			return m[2]
		case <-time.After(10 * time.Second):
			t.Fatal("no notice while the command waited")
		}
		return ""
	}
	run := func(ctx context.Context, sql string) chan error {
		done := make(chan error, 1)
		go func() { _, err := c.Exec(ctx, sql); done <- err }()
		return done
	}

	// Approved: runs unchanged.
	done := run(ctx, "insert into e2e_approval values (1)")
	id := waitID()
	_, err = broker.Approve(ctx, id, requester, "self")
	assert.True(t, errors.Is(err, approval.ErrSelfApproval), "the requester cannot approve: %v", err)
	start := time.Now()
	_, err = broker.Approve(ctx, id, dba, "looks fine")
	require.NoError(t, err)
	require.NoError(t, <-done)
	t.Logf("approve -> statement done: %v", time.Since(start))
	var n int
	require.NoError(t, admin.QueryRow(ctx, "select count(*) from e2e_approval").Scan(&n))
	assert.Equal(t, 1, n)

	// Denied: refused with the reason, nothing written.
	done = run(ctx, "insert into e2e_approval values (2)")
	id = waitID()
	_, err = broker.Deny(ctx, id, dba, "not during the freeze")
	require.NoError(t, err)
	err = <-done
	require.Error(t, err)
	var pe *pgconn.PgError
	require.True(t, errors.As(err, &pe))
	assert.Equal(t, "42501", pe.Code)
	assert.Contains(t, strings.ToLower(pe.Message), "denied")

	// Withdrawn by the client's cancel.
	wctx, wcancel := context.WithCancel(ctx)
	done = run(wctx, "insert into e2e_approval values (3)")
	id = waitID()
	wcancel()
	err = <-done
	require.Error(t, err)
	got, gerr := broker.Get(ctx, id)
	require.NoError(t, gerr)
	assert.Equal(t, approval.StateWithdrawn, got.State)

	// Expired: nobody decided within the rule's timeout (the shortest of
	// the matching rules'), so it is refused with 42501 and never runs.
	done = run(ctx, "delete from e2e_approval")
	id = waitID()
	select {
	case err = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the expiring request still waits")
	}
	require.True(t, errors.As(err, &pe), "got %v", err)
	assert.Equal(t, "42501", pe.Code)
	assert.Contains(t, pe.Message, "expired")
	got, gerr = broker.Get(ctx, id)
	require.NoError(t, gerr)
	assert.Equal(t, approval.StateExpired, got.State)

	require.NoError(t, admin.QueryRow(ctx, "select count(*) from e2e_approval").Scan(&n))
	assert.Equal(t, 1, n, "only the approved write ran")

	// A prepared statement (pgx's statement cache, extended protocol):
	// every execution is held for its own approval, and the approver sees
	// the bound values.
	for _, v := range []int{10, 11} {
		done := make(chan error, 1)
		go func() { _, err := c.Exec(ctx, "insert into e2e_approval values ($1)", v); done <- err }()
		id := waitID()
		req, err := broker.Get(ctx, id)
		require.NoError(t, err)
		assert.Contains(t, req.Command.Text, fmt.Sprintf("$1 = '%d'", v), "the approver sees the value")
		_, err = broker.Approve(ctx, id, dba, "ok")
		require.NoError(t, err)
		require.NoError(t, <-done)
	}
	require.NoError(t, admin.QueryRow(ctx, "select count(*) from e2e_approval").Scan(&n))
	assert.Equal(t, 3, n)
	require.NoError(t, c.QueryRow(ctx, "select 5").Scan(&n), "the session goes on")
	assert.Equal(t, 5, n)

	// psql: the notice reaches a person's terminal while the statement
	// waits, and an approval lets it finish.
	if _, err := exec.LookPath("psql"); err == nil {
		pdone := make(chan cmdResult, 1)
		go func() {
			pdone <- e.psql(t, "pg", "test", "require", "-v", "ON_ERROR_STOP=1", "-c", "insert into e2e_approval values (20)")
		}()
		var pending []*approval.Request
		require.Eventually(t, func() bool {
			pending, _ = broker.List(ctx, approval.Filter{States: []approval.State{approval.StatePending}})
			return len(pending) == 1
		}, 10*time.Second, 20*time.Millisecond)
		assert.Contains(t, pending[0].Command.Text, "values (20)")
		_, err = broker.Approve(ctx, pending[0].ID, dba, "psql ok")
		require.NoError(t, err)
		r := <-pdone
		assert.Equal(t, 0, r.code, "stderr: %s", r.stderr)
		assert.Contains(t, r.stderr, "NOTICE:  sluice: this command needs approval")
		assert.Contains(t, r.stdout, "INSERT 0 1")
		require.NoError(t, admin.QueryRow(ctx, "select count(*) from e2e_approval where v = 20").Scan(&n))
		assert.Equal(t, 1, n)
	} else {
		requireTool(t, "psql")
	}

	// Each step is in the session's recording.
	c.Close(ctx)
	require.NoError(t, e.g.Shutdown(ctx))
	var steps []string
	for _, path := range recordingPaths(t, e.recDir) {
		for _, en := range readRecording(t, path).entries {
			if en.Type == recording.TypeApproval {
				steps = append(steps, en.Message)
			}
		}
	}
	joined := strings.Join(steps, "\n")
	for _, want := range []string{"pending", "approved", "denied", "withdrawn", "expired"} {
		assert.Contains(t, joined, want)
	}
}

// TestApprovalQuorumAndConcurrentSessions: a rule asking for two distinct
// approvers holds the statement after the first approval and lets it run
// after the second; several sessions wait at once, each on its own
// request, and each runs once approved.
func TestApprovalQuorumAndConcurrentSessions(t *testing.T) {
	pgtest.Require(t)
	admin := pgtest.AdminConn(t, "test")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := admin.Exec(ctx, "drop table if exists e2e_quorum; create table e2e_quorum(v int)")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "drop table if exists e2e_quorum") })

	broker := newBroker(t, ctx, "e2e-quorum")
	engine, err := policy.Parse("quorum.yaml", []byte(`
rules:
  - name: connect
    match: command.kind == "connect"
    action: allow
  - name: two-dbas-for-writes
    match: command.sql.writes
    action: require_approval
    approvers: [group:dba]
    quorum: 2
    timeout: 30s
default: deny
`))
	require.NoError(t, err)
	e := startGatewayWith(t, gatewayOptions{grace: 2 * time.Second, decider: engine, groups: []string{"agents"}, approvals: broker}, pgTarget("pg"))
	dana := &identity.Identity{Subject: "dana", Groups: []string{"dba"}, Method: identity.MethodToken}
	omar := &identity.Identity{Subject: "omar", Groups: []string{"dba"}, Method: identity.MethodToken}

	const sessions = 3
	done := make(chan error, sessions)
	for i := range sessions {
		c := e.pgx(t, "pg", "test")
		go func() {
			_, err := c.Exec(ctx, fmt.Sprintf("insert into e2e_quorum values (%d)", i), pgx.QueryExecModeSimpleProtocol)
			done <- err
		}()
	}
	var pending []*approval.Request
	require.Eventually(t, func() bool {
		pending, _ = broker.List(ctx, approval.Filter{States: []approval.State{approval.StatePending}})
		return len(pending) == sessions
	}, 10*time.Second, 20*time.Millisecond, "one request per waiting session")

	for _, r := range pending {
		assert.Equal(t, 2, r.Quorum)
		got, err := broker.Approve(ctx, r.ID, dana, "first")
		require.NoError(t, err)
		assert.Equal(t, approval.StatePending, got.State, "one approval of two")
		_, err = broker.Approve(ctx, r.ID, dana, "again")
		assert.ErrorIs(t, err, approval.ErrAlreadyVoted)
	}
	select {
	case err := <-done:
		t.Fatalf("a statement ran before its quorum: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	var n int
	require.NoError(t, admin.QueryRow(ctx, "select count(*) from e2e_quorum").Scan(&n))
	assert.Zero(t, n)

	for _, r := range pending {
		got, err := broker.Approve(ctx, r.ID, omar, "second")
		require.NoError(t, err)
		assert.Equal(t, approval.StateApproved, got.State)
	}
	for range sessions {
		require.NoError(t, <-done)
	}
	require.NoError(t, admin.QueryRow(ctx, "select count(*) from e2e_quorum").Scan(&n))
	assert.Equal(t, sessions, n)
}

// TestApprovalLatency reports (it does not time-assert) how long a
// waiting statement takes to return its result once approved through the
// broker: the median of 20, for the closing figures.
func TestApprovalLatency(t *testing.T) {
	pgtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	broker := newBroker(t, ctx, "e2e-latency")
	engine, err := policy.Parse("latency.yaml", []byte(`
rules:
  - name: connect
    match: command.kind == "connect"
    action: allow
  - name: everything-needs-a-dba
    match: command.kind == "query"
    action: require_approval
    approvers: [group:dba]
default: deny
`))
	require.NoError(t, err)
	e := startGatewayWith(t, gatewayOptions{grace: 2 * time.Second, decider: engine, groups: []string{"agents"}, approvals: broker}, pgTarget("pg"))
	c := e.pgx(t, "pg", "test")
	dba := &identity.Identity{Subject: "dana", Groups: []string{"dba"}, Method: identity.MethodToken}

	var took []time.Duration
	for i := 0; i < 20; i++ {
		done := make(chan time.Time, 1)
		go func() {
			var v int
			if err := c.QueryRow(ctx, fmt.Sprintf("select %d", i), pgx.QueryExecModeSimpleProtocol).Scan(&v); err == nil {
				done <- time.Now()
			} else {
				done <- time.Time{}
			}
		}()
		var pending []*approval.Request
		require.Eventually(t, func() bool {
			pending, _ = broker.List(ctx, approval.Filter{States: []approval.State{approval.StatePending}})
			return len(pending) == 1
		}, 10*time.Second, time.Millisecond)
		start := time.Now()
		_, err := broker.Approve(ctx, pending[0].ID, dba, "ok")
		require.NoError(t, err)
		end := <-done
		require.False(t, end.IsZero(), "the approved query returned its row")
		took = append(took, end.Sub(start))
	}
	slices.Sort(took)
	t.Logf("approve API call -> result row: median %v (min %v, max %v, n=20)", took[10], took[0], took[19])
}
