// Package approvaltest is the conformance suite every approval.Store runs:
// a Broker over the store must create, list, vote, resolve, expire,
// withdraw, abandon and grant the same way whatever keeps the requests,
// and wake a waiter when another Store on the same database (another
// gateway) decides its request. Its central function is Run.
package approvaltest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// Open opens a Store on the test's database. Each call opens another
// Store on the same database, as another gateway would; Open closes them
// when the test ends.
type Open func(t *testing.T) approval.Store

// Fresh makes an empty database for one test and returns how to open
// Stores on it.
type Fresh func(t *testing.T) Open

// Identities the suite uses.
var (
	Alice = &identity.Identity{Subject: "alice", Issuer: "https://idp.example", Name: "Alice", Email: "alice@example.com",
		Groups: []string{"dev", "dba"}, Claims: map[string]any{"internal": "claim"}, Method: identity.MethodOIDC}
	Bob   = &identity.Identity{Subject: "bob", Issuer: "https://idp.example", Name: "Bob", Groups: []string{"dba"}, Method: identity.MethodOIDC}
	Carol = &identity.Identity{Subject: "carol", Issuer: "https://idp.example", Name: "Carol", Groups: []string{"dba", "sre"}, Method: identity.MethodOIDC}
	Dave  = &identity.Identity{Subject: "dave", Issuer: "https://idp.example", Name: "Dave", Groups: []string{"dev"}, Method: identity.MethodOIDC}
	Erin  = &identity.Identity{Subject: "erin", Issuer: "https://idp.example", Name: "Erin", Method: identity.MethodOIDC}
	// AliceElsewhere has Alice's subject at another issuer: another person.
	AliceElsewhere = &identity.Identity{Subject: "alice", Issuer: "https://other.example", Groups: []string{"dba"}, Method: identity.MethodToken}
)

// ProdDB is the suite's target.
var ProdDB = protocol.Target{Name: "prod-db", Protocol: "postgres", Address: "10.0.0.5:5432",
	Labels: map[string]string{"env": "prod"}, Options: map[string]string{"database": "app"}}

// Update is the suite's command.
func Update(text string) protocol.Command {
	return protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: text,
		SQL: &protocol.SQL{Writes: true, Statements: []protocol.Statement{{Kind: "UPDATE", Tables: []string{"accounts"}, HasWhere: true}}}}
}

// NewRequest is a request of Alice's for group:dba.
func NewRequest() *approval.Request {
	info := protocol.SessionInfo{ID: "sess-1", Identity: Alice, Target: &ProdDB}
	return approval.NewRequest(info, Update("UPDATE accounts SET balance = 0 WHERE id = 42"), protocol.Decision{
		Action: protocol.RequireApproval, Rules: []string{"prod-writes"}, Message: "writes to prod need a DBA",
		Approvers: []string{"group:dba"}, Timeout: time.Minute})
}

// Recorder is a Notifier that keeps the events it is told of.
type Recorder struct {
	mu     sync.Mutex
	events []approval.Event
}

// Notify implements approval.Notifier.
func (r *Recorder) Notify(_ context.Context, ev approval.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

// Count returns how many events of type t concern request id ("" any).
func (r *Recorder) Count(t approval.EventType, id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.events {
		if ev.Type == t && (id == "" || ev.Request.ID == id) {
			n++
		}
	}
	return n
}

// Logger logs warnings and errors into the test's output.
func Logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type harness struct {
	t    *testing.T
	open Open
}

// broker starts a Broker on s for gateway gw; it is closed when the test
// ends (before the store).
func (h harness) broker(s approval.Store, gw string, opts ...func(*approval.Config)) *approval.Broker {
	h.t.Helper()
	cfg := approval.Config{Store: s, GatewayID: gw, ApproveURL: "https://sluice.example/approvals", Logger: Logger(h.t)}
	for _, o := range opts {
		o(&cfg)
	}
	b, err := approval.New(context.Background(), cfg)
	require.NoError(h.t, err)
	h.t.Cleanup(func() { assert.NoError(h.t, b.Close()) })
	return b
}

type result struct {
	out approval.Outcome
	err error
	at  time.Time
}

// wait runs p.Wait in a goroutine.
func wait(ctx context.Context, p *approval.Pending) <-chan result {
	ch := make(chan result, 1)
	go func() {
		out, err := p.Wait(ctx)
		ch <- result{out, err, time.Now()}
	}()
	return ch
}

func recv(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("wait did not return within 30s")
		return result{}
	}
}

func waiting(t *testing.T, b *approval.Broker, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return b.Waiting() == n }, 10*time.Second, time.Millisecond)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// Run runs the suite against the stores fresh opens.
func Run(t *testing.T, fresh Fresh) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h harness)
	}{
		{"CreateGetList", testCreateGetList},
		{"InvalidRequests", testInvalid},
		{"ApproveWakesWaiter", testApprove},
		{"SelfApprovalRefused", testSelfApproval},
		{"NonMemberRefused", testNonMember},
		{"DoubleVoteRefused", testDoubleVote},
		{"Quorum", testQuorum},
		{"DenyWins", testDenyWins},
		{"Expiry", testExpiry},
		{"WithdrawOnCancel", testWithdrawOnCancel},
		{"RequesterWithdraws", testRequesterWithdraws},
		{"ConcurrentVotesResolveOnce", testConcurrentVotes},
		{"ConcurrentVotesAcrossGateways", testConcurrentAcross},
		{"GrantWindow", testGrantWindow},
		{"RedeemOnceAcrossGateways", testRedeemOnce},
		{"RestartAbandons", testRestart},
		{"CrossGatewayWakeUp", testCrossGateway},
		{"SweepExpiresOrphans", testSweep},
		{"CloseAbandonsWaiters", testClose},
		{"FailingNotifierNeverBlocks", testFailingNotifier},
		{"ThousandPending", testThousand},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, harness{t: t, open: fresh(t)})
		})
	}
}

func testCreateGetList(t *testing.T, h harness) {
	c := ctx(t)
	b := h.broker(h.open(t), "gw-a")
	req := NewRequest()
	long := "UPDATE accounts SET note = '" + strings.Repeat("x", 20000) + "' WHERE id = 1"
	req.Command = Update(long)
	req.Command.Attrs = map[string]string{"extended": "true"}
	p, err := b.Request(c, req)
	require.NoError(t, err)
	assert.Len(t, p.ID(), 26, "a ULID")
	assert.Contains(t, p.Notice(), p.ID())
	assert.Contains(t, p.Notice(), "group:dba")
	assert.Contains(t, p.Notice(), "https://sluice.example/approvals/"+p.ID())
	assert.Empty(t, req.ID, "the caller's request is not modified")

	got, err := b.Get(c, p.ID())
	require.NoError(t, err)
	assert.Equal(t, approval.StatePending, got.State)
	assert.Equal(t, "gw-a", got.GatewayID)
	assert.Equal(t, "sess-1", got.SessionID)
	assert.Equal(t, "alice", got.Requester.Subject)
	assert.Equal(t, Alice.Groups, got.Requester.Groups)
	assert.Nil(t, got.Requester.Claims, "claims are not stored")
	assert.Equal(t, ProdDB, got.Target)
	assert.Equal(t, long, got.Command.Text, "the store keeps the full command")
	assert.Equal(t, req.Command, got.Command)
	assert.Equal(t, []string{"prod-writes"}, got.Rules)
	assert.Equal(t, "writes to prod need a DBA", got.Reason)
	assert.Equal(t, []string{"group:dba"}, got.Approvers)
	assert.Equal(t, time.Minute, got.Timeout)
	assert.Equal(t, got.CreatedAt.Add(time.Minute), got.ExpiresAt)
	assert.WithinDuration(t, time.Now(), got.CreatedAt, 5*time.Second)
	assert.Equal(t, approval.GrantKeyFor(Alice, "prod-db", req.Command), got.GrantKey)
	assert.Equal(t, p.Request().CreatedAt, got.CreatedAt)

	other := NewRequest()
	other.SessionID = "sess-2"
	other.Requester = *Dave
	other.Target = protocol.Target{Name: "staging-db", Protocol: "postgres"}
	p2, err := b.Request(c, other)
	require.NoError(t, err)

	ids := func(rs []*approval.Request, err error) []string {
		t.Helper()
		require.NoError(t, err)
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	both := []string{p.ID(), p2.ID()}
	assert.Equal(t, both, ids(b.List(c, approval.Filter{})))
	assert.Equal(t, both, ids(b.List(c, approval.Filter{States: []approval.State{approval.StatePending}, GatewayID: "gw-a"})))
	assert.Empty(t, ids(b.List(c, approval.Filter{States: []approval.State{approval.StateApproved, approval.StateDenied}})))
	assert.Empty(t, ids(b.List(c, approval.Filter{GatewayID: "gw-b"})))
	assert.Equal(t, []string{p2.ID()}, ids(b.List(c, approval.Filter{SessionID: "sess-2"})))
	assert.Equal(t, []string{p.ID()}, ids(b.List(c, approval.Filter{RequesterSubject: "alice"})))
	assert.Equal(t, []string{p2.ID()}, ids(b.List(c, approval.Filter{Target: "staging-db"})))
	assert.Equal(t, []string{p.ID()}, ids(b.List(c, approval.Filter{Limit: 1})))
	assert.Equal(t, []string{p2.ID()}, ids(b.List(c, approval.Filter{AfterID: p.ID()})))
	assert.Equal(t, both, ids(b.List(c, approval.Filter{ExpiresBefore: time.Now().Add(2 * time.Minute)})))
	assert.Empty(t, ids(b.List(c, approval.Filter{ExpiresBefore: time.Now()})))

	_, err = b.Get(c, "01ARZ3NDEKTSV4RRFFQ69G5FAV")
	assert.ErrorIs(t, err, approval.ErrNotFound)
	_, err = b.Approve(c, "01ARZ3NDEKTSV4RRFFQ69G5FAV", Bob, "")
	assert.ErrorIs(t, err, approval.ErrNotFound)
}

func testInvalid(t *testing.T, h harness) {
	c := ctx(t)
	b := h.broker(h.open(t), "gw-a")
	for name, mutate := range map[string]func(r *approval.Request){
		"no approvers":     func(r *approval.Request) { r.Approvers = nil },
		"bare group name":  func(r *approval.Request) { r.Approvers = []string{"dba"} },
		"unknown kind":     func(r *approval.Request) { r.Approvers = []string{"role:dba"} },
		"no requester":     func(r *approval.Request) { r.Requester = identity.Identity{} },
		"no target":        func(r *approval.Request) { r.Target = protocol.Target{} },
		"negative quorum":  func(r *approval.Request) { r.Quorum = -1 },
		"negative timeout": func(r *approval.Request) { r.Timeout = -time.Second },
	} {
		r := NewRequest()
		mutate(r)
		_, err := b.Request(c, r)
		assert.ErrorIs(t, err, approval.ErrInvalid, name)
	}
	rs, err := b.List(c, approval.Filter{})
	require.NoError(t, err)
	assert.Empty(t, rs, "nothing invalid was stored")
}

func testApprove(t *testing.T, h harness) {
	c := ctx(t)
	rec := &Recorder{}
	b := h.broker(h.open(t), "gw-a", func(cfg *approval.Config) { cfg.Notifiers = []approval.Notifier{rec} })
	var lat []time.Duration
	for i := range 20 {
		p, err := b.Request(c, NewRequest())
		require.NoError(t, err)
		res := wait(c, p)
		waiting(t, b, 1)
		start := time.Now()
		r, err := b.Approve(c, p.ID(), Bob, "looks fine")
		require.NoError(t, err)
		got := recv(t, res)
		lat = append(lat, got.at.Sub(start))
		require.NoError(t, got.err)
		require.True(t, got.out.Approved())
		if i > 0 {
			continue
		}
		assert.Equal(t, approval.StateApproved, r.State)
		assert.Equal(t, approval.StateApproved, got.out.Request.State)
		require.Len(t, got.out.Request.Decisions, 1)
		v := got.out.Request.Decisions[0]
		assert.Equal(t, "bob", v.Approver.Subject)
		assert.True(t, v.Approve)
		assert.Equal(t, "looks fine", v.Reason)
		assert.False(t, got.out.Request.ResolvedAt.IsZero())
		assert.True(t, got.out.Request.GrantUntil.IsZero(), "no grant window")
		assert.Contains(t, got.out.Message(), "approved by Bob")
		require.Eventually(t, func() bool {
			return rec.Count(approval.EventRequested, p.ID()) == 1 && rec.Count(approval.EventResolved, p.ID()) == 1
		}, 5*time.Second, time.Millisecond, "approvers are told of the request and its resolution")
		_, err = b.Approve(c, p.ID(), Carol, "")
		assert.ErrorIs(t, err, approval.ErrResolved)
	}
	slices.Sort(lat)
	t.Logf("Approve -> waiter woken, same gateway: median %v, max %v (%d rounds)", lat[len(lat)/2], lat[len(lat)-1], len(lat))
	assert.Equal(t, 0, b.Waiting())
}

func testSelfApproval(t *testing.T, h harness) {
	c := ctx(t)
	b := h.broker(h.open(t), "gw-a")
	p, err := b.Request(c, NewRequest()) // Alice is in group dba herself
	require.NoError(t, err)
	_, err = b.Approve(c, p.ID(), Alice, "trust me")
	assert.ErrorIs(t, err, approval.ErrSelfApproval)
	aliceRenamed := *Alice
	aliceRenamed.Name, aliceRenamed.Email = "Not Alice", "x@example.com"
	_, err = b.Approve(c, p.ID(), &aliceRenamed, "")
	assert.ErrorIs(t, err, approval.ErrSelfApproval, "same subject and issuer is the requester")
	_, err = b.Deny(c, p.ID(), Alice, "")
	assert.ErrorIs(t, err, approval.ErrSelfApproval)
	// Same subject at another issuer is another person.
	r, err := b.Approve(c, p.ID(), AliceElsewhere, "")
	require.NoError(t, err)
	assert.Equal(t, approval.StateApproved, r.State)
}

func testNonMember(t *testing.T, h harness) {
	c := ctx(t)
	b := h.broker(h.open(t), "gw-a")
	req := NewRequest()
	req.Approvers = []string{"group:dba", "user:erin"}
	req.Quorum = 2
	p, err := b.Request(c, req)
	require.NoError(t, err)
	_, err = b.Approve(c, p.ID(), Dave, "")
	assert.ErrorIs(t, err, approval.ErrNotApprover)
	_, err = b.Deny(c, p.ID(), Dave, "")
	assert.ErrorIs(t, err, approval.ErrNotApprover, "a non-member cannot deny either")
	_, err = b.Approve(c, p.ID(), nil, "")
	assert.ErrorIs(t, err, approval.ErrNotApprover)
	_, err = b.Approve(c, p.ID(), &identity.Identity{Groups: []string{"dba"}}, "")
	assert.ErrorIs(t, err, approval.ErrNotApprover, "no subject")
	r, err := b.Approve(c, p.ID(), Erin, "named user")
	require.NoError(t, err)
	assert.Equal(t, approval.StatePending, r.State)
	r, err = b.Approve(c, p.ID(), Carol, "group member")
	require.NoError(t, err)
	assert.Equal(t, approval.StateApproved, r.State)
}

func testDoubleVote(t *testing.T, h harness) {
	c := ctx(t)
	b := h.broker(h.open(t), "gw-a")
	req := NewRequest()
	req.Quorum = 2
	p, err := b.Request(c, req)
	require.NoError(t, err)
	_, err = b.Approve(c, p.ID(), Bob, "")
	require.NoError(t, err)
	_, err = b.Approve(c, p.ID(), Bob, "again")
	assert.ErrorIs(t, err, approval.ErrAlreadyVoted)
	_, err = b.Deny(c, p.ID(), Bob, "changed my mind")
	assert.ErrorIs(t, err, approval.ErrAlreadyVoted)
	r, err := b.Get(c, p.ID())
	require.NoError(t, err)
	assert.Equal(t, approval.StatePending, r.State)
	assert.Len(t, r.Decisions, 1)
}

func testQuorum(t *testing.T, h harness) {
	c := ctx(t)
	b := h.broker(h.open(t), "gw-a")
	req := NewRequest()
	req.Quorum = 2
	p, err := b.Request(c, req)
	require.NoError(t, err)
	res := wait(c, p)
	r, err := b.Approve(c, p.ID(), Bob, "")
	require.NoError(t, err)
	assert.Equal(t, approval.StatePending, r.State, "one approval of two")
	select {
	case got := <-res:
		t.Fatalf("wait returned after one approval of two: %+v", got)
	case <-time.After(100 * time.Millisecond):
	}
	r, err = b.Approve(c, p.ID(), Carol, "")
	require.NoError(t, err)
	assert.Equal(t, approval.StateApproved, r.State)
	got := recv(t, res)
	require.NoError(t, got.err)
	assert.True(t, got.out.Approved())
	assert.Equal(t, 2, got.out.Request.Approvals())
	assert.Contains(t, got.out.Message(), "Bob, Carol")
}

func testDenyWins(t *testing.T, h harness) {
	c := ctx(t)
	b := h.broker(h.open(t), "gw-a")
	req := NewRequest()
	req.Quorum = 2
	p, err := b.Request(c, req)
	require.NoError(t, err)
	res := wait(c, p)
	_, err = b.Approve(c, p.ID(), Bob, "")
	require.NoError(t, err)
	r, err := b.Deny(c, p.ID(), Carol, "not during business hours")
	require.NoError(t, err)
	assert.Equal(t, approval.StateDenied, r.State)
	got := recv(t, res)
	require.NoError(t, got.err)
	assert.False(t, got.out.Approved())
	assert.Equal(t, approval.StateDenied, got.out.State)
	assert.Contains(t, got.out.Message(), "denied by Carol: not during business hours")
	_, err = b.Approve(c, p.ID(), AliceElsewhere, "")
	assert.ErrorIs(t, err, approval.ErrResolved, "a denial is final")
}

func testExpiry(t *testing.T, h harness) {
	c := ctx(t)
	b := h.broker(h.open(t), "gw-a")
	req := NewRequest()
	req.Timeout = 300 * time.Millisecond
	p, err := b.Request(c, req)
	require.NoError(t, err)
	start := time.Now()
	got := recv(t, wait(c, p))
	require.NoError(t, got.err)
	assert.Equal(t, approval.StateExpired, got.out.State)
	assert.False(t, got.out.Approved())
	assert.GreaterOrEqual(t, got.at.Sub(start), 250*time.Millisecond)
	assert.Contains(t, got.out.Message(), "expired")
	r, err := b.Get(c, p.ID())
	require.NoError(t, err)
	assert.Equal(t, approval.StateExpired, r.State)
	_, err = b.Approve(c, p.ID(), Bob, "")
	assert.ErrorIs(t, err, approval.ErrResolved)

	// A vote after ExpiresAt is refused even if nobody marked it expired yet.
	req.Timeout = 50 * time.Millisecond
	p, err = b.Request(c, req)
	require.NoError(t, err)
	time.Sleep(80 * time.Millisecond)
	_, err = b.Approve(c, p.ID(), Bob, "")
	assert.ErrorIs(t, err, approval.ErrExpired)
	got = recv(t, wait(c, p))
	assert.Equal(t, approval.StateExpired, got.out.State)
}

func testWithdrawOnCancel(t *testing.T, h harness) {
	c := ctx(t)
	rec := &Recorder{}
	b := h.broker(h.open(t), "gw-a", func(cfg *approval.Config) { cfg.Notifiers = []approval.Notifier{rec} })
	p, err := b.Request(c, NewRequest())
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(c)
	res := wait(wctx, p)
	waiting(t, b, 1)
	cancel() // the client sent a CancelRequest or hung up
	got := recv(t, res)
	assert.ErrorIs(t, got.err, context.Canceled)
	assert.Equal(t, approval.StateWithdrawn, got.out.State)
	assert.False(t, got.out.Approved())
	r, err := b.Get(c, p.ID())
	require.NoError(t, err)
	assert.Equal(t, approval.StateWithdrawn, r.State)
	_, err = b.Approve(c, p.ID(), Bob, "")
	assert.ErrorIs(t, err, approval.ErrResolved)
	require.Eventually(t, func() bool { return rec.Count(approval.EventResolved, p.ID()) == 1 }, 5*time.Second, time.Millisecond)
}

func testRequesterWithdraws(t *testing.T, h harness) {
	c := ctx(t)
	b := h.broker(h.open(t), "gw-a")
	p, err := b.Request(c, NewRequest())
	require.NoError(t, err)
	res := wait(c, p)
	_, err = b.Withdraw(c, p.ID(), Bob, "")
	assert.ErrorIs(t, err, approval.ErrNotRequester)
	r, err := b.Withdraw(c, p.ID(), Alice, "wrong database")
	require.NoError(t, err)
	assert.Equal(t, approval.StateWithdrawn, r.State)
	got := recv(t, res)
	require.NoError(t, got.err)
	assert.Equal(t, approval.StateWithdrawn, got.out.State)
	assert.Equal(t, "wrong database", got.out.Request.ResolvedReason)
}

func approver(i int) *identity.Identity {
	return &identity.Identity{Subject: fmt.Sprintf("approver-%02d", i), Issuer: "https://idp.example", Groups: []string{"dba"}}
}

func testConcurrentVotes(t *testing.T, h harness) {
	c := ctx(t)
	rec := &Recorder{}
	b := h.broker(h.open(t), "gw-a", func(cfg *approval.Config) { cfg.Notifiers = []approval.Notifier{rec} })
	req := NewRequest()
	req.Quorum = 3
	p, err := b.Request(c, req)
	require.NoError(t, err)
	res := wait(c, p)
	waiting(t, b, 1)
	var ok, resolvedErrs atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			<-start
			_, err := b.Approve(c, p.ID(), approver(i), "")
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, approval.ErrResolved):
				resolvedErrs.Add(1)
			default:
				t.Errorf("approver %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	assert.EqualValues(t, 3, ok.Load(), "exactly the quorum's votes are recorded")
	assert.EqualValues(t, 37, resolvedErrs.Load())
	got := recv(t, res)
	require.NoError(t, got.err)
	assert.True(t, got.out.Approved())
	r, err := b.Get(c, p.ID())
	require.NoError(t, err)
	assert.Len(t, r.Decisions, 3)
	require.Eventually(t, func() bool { return rec.Count(approval.EventResolved, p.ID()) == 1 }, 5*time.Second, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, 1, rec.Count(approval.EventResolved, p.ID()), "resolved exactly once")
}

// testConcurrentAcross races approvals and denials through two gateways
// (two Stores on one database) while the request's own gateway waits.
func testConcurrentAcross(t *testing.T, h harness) {
	c := ctx(t)
	ba := h.broker(h.open(t), "gw-a")
	bb := h.broker(h.open(t), "gw-b")
	for round := range 3 {
		p, err := ba.Request(c, NewRequest())
		require.NoError(t, err)
		res := wait(c, p)
		type vote struct {
			approve bool
			err     error
		}
		votes := make(chan vote, 40)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Go(func() {
				<-start
				b := ba
				if i%2 == 1 {
					b = bb
				}
				decide := b.Approve
				if i%4 >= 2 {
					decide = b.Deny
				}
				_, err := decide(c, p.ID(), approver(i), fmt.Sprintf("vote %d", i))
				votes <- vote{i%4 < 2, err}
			})
		}
		close(start)
		wg.Wait()
		close(votes)
		var winners []vote
		for v := range votes {
			if v.err == nil {
				winners = append(winners, v)
			} else {
				assert.ErrorIs(t, v.err, approval.ErrResolved)
			}
		}
		require.Len(t, winners, 1, "round %d: exactly one vote resolves a quorum-1 request", round)
		got := recv(t, res)
		require.NoError(t, got.err)
		assert.Equal(t, winners[0].approve, got.out.Approved(), "round %d: the waiter sees the winning vote", round)
		r, err := bb.Get(c, p.ID())
		require.NoError(t, err)
		assert.Len(t, r.Decisions, 1)
	}
}

// testRedeemOnce: an approved request presented by 20 sessions on two
// gateways at once lets exactly one through; a pending or denied request,
// or another caller, redeems nothing.
func testRedeemOnce(t *testing.T, h harness) {
	c := ctx(t)
	ba := h.broker(h.open(t), "gw-a")
	bb := h.broker(h.open(t), "gw-b")
	p, err := ba.Request(c, NewRequest())
	require.NoError(t, err)
	_, err = ba.Redeem(c, p.ID(), Alice)
	assert.ErrorIs(t, err, approval.ErrNotApproved, "pending")
	_, err = bb.Approve(c, p.ID(), Bob, "ok")
	require.NoError(t, err)
	_, err = ba.Redeem(c, p.ID(), Dave)
	assert.ErrorIs(t, err, approval.ErrNotRequester)

	results := make(chan error, 20)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			<-start
			b := ba
			if i%2 == 1 {
				b = bb
			}
			_, err := b.Redeem(c, p.ID(), Alice)
			results <- err
		})
	}
	close(start)
	wg.Wait()
	close(results)
	won := 0
	for err := range results {
		if err == nil {
			won++
		} else {
			assert.ErrorIs(t, err, approval.ErrUsed)
		}
	}
	assert.Equal(t, 1, won, "exactly one redemption")
	r, err := bb.Get(c, p.ID())
	require.NoError(t, err)
	assert.False(t, r.UsedAt.IsZero(), "the store keeps when it was used")
	assert.Equal(t, approval.StateApproved, r.State)

	d, err := ba.Request(c, NewRequest())
	require.NoError(t, err)
	_, err = bb.Deny(c, d.ID(), Bob, "no")
	require.NoError(t, err)
	_, err = ba.Redeem(c, d.ID(), Alice)
	assert.ErrorIs(t, err, approval.ErrNotApproved, "denied")
}

func testGrantWindow(t *testing.T, h harness) {
	c := ctx(t)
	b := h.broker(h.open(t), "gw-a")
	cmd := Update("UPDATE accounts SET balance = 0 WHERE id = 42")
	g, err := b.Granted(c, Alice, ProdDB, cmd)
	require.NoError(t, err)
	assert.Nil(t, g, "nothing approved yet")

	req := NewRequest()
	req.GrantWindow = time.Second
	p, err := b.Request(c, req)
	require.NoError(t, err)
	g, err = b.Granted(c, Alice, ProdDB, cmd)
	require.NoError(t, err)
	assert.Nil(t, g, "a pending request grants nothing")
	r, err := b.Approve(c, p.ID(), Bob, "for the next second")
	require.NoError(t, err)
	assert.Equal(t, r.ResolvedAt.Add(time.Second), r.GrantUntil)

	same := Update("  UPDATE   accounts\n\tSET balance = 0 WHERE id = 42;")
	for name, tc := range map[string]struct {
		who    *identity.Identity
		target protocol.Target
		cmd    protocol.Command
		want   bool
	}{
		"same command":                  {Alice, ProdDB, cmd, true},
		"same normalized command":       {Alice, ProdDB, same, true},
		"other literal":                 {Alice, ProdDB, Update("UPDATE accounts SET balance = 0 WHERE id = 43"), false},
		"other spacing inside a string": {Alice, ProdDB, Update("UPDATE accounts SET note = 'a  b' WHERE id = 42"), false},
		"other identity":                {Dave, ProdDB, cmd, false},
		"same subject, other issuer":    {AliceElsewhere, ProdDB, cmd, false},
		"other target":                  {Alice, protocol.Target{Name: "staging-db", Protocol: "postgres"}, cmd, false},
		"no identity":                   {nil, ProdDB, cmd, false},
	} {
		g, err := b.Granted(c, tc.who, tc.target, tc.cmd)
		require.NoError(t, err, name)
		if tc.want {
			if assert.NotNil(t, g, name) {
				assert.Equal(t, p.ID(), g.ID, name)
			}
		} else {
			assert.Nil(t, g, name)
		}
	}

	// An approval without a window grants nothing further.
	other := NewRequest()
	other.Command = Update("DELETE FROM sessions")
	p2, err := b.Request(c, other)
	require.NoError(t, err)
	_, err = b.Approve(c, p2.ID(), Bob, "")
	require.NoError(t, err)
	g, err = b.Granted(c, Alice, ProdDB, other.Command)
	require.NoError(t, err)
	assert.Nil(t, g)

	time.Sleep(time.Until(r.GrantUntil) + 50*time.Millisecond)
	g, err = b.Granted(c, Alice, ProdDB, cmd)
	require.NoError(t, err)
	assert.Nil(t, g, "the window has closed")
}

func testRestart(t *testing.T, h harness) {
	c := ctx(t)
	first := h.broker(h.open(t), "gw-a")
	p1, err := first.Request(c, NewRequest())
	require.NoError(t, err)
	res := wait(c, p1)
	p2, err := first.Request(c, NewRequest()) // nobody waits on it
	require.NoError(t, err)
	approved, err := first.Request(c, NewRequest())
	require.NoError(t, err)
	_, err = first.Approve(c, approved.ID(), Bob, "")
	require.NoError(t, err)
	otherGW := h.broker(h.open(t), "gw-b")
	p3, err := otherGW.Request(c, NewRequest())
	require.NoError(t, err)
	waiting(t, first, 1)

	// gw-a starts again (on a store of its own): its pending requests
	// cannot have a client any more.
	h.broker(h.open(t), "gw-a")
	for _, id := range []string{p1.ID(), p2.ID()} {
		r, err := otherGW.Get(c, id)
		require.NoError(t, err)
		assert.Equal(t, approval.StateAbandoned, r.State, "not approved: abandoned")
	}
	got := recv(t, res)
	require.NoError(t, got.err)
	assert.Equal(t, approval.StateAbandoned, got.out.State)
	assert.False(t, got.out.Approved())
	r, err := otherGW.Get(c, approved.ID())
	require.NoError(t, err)
	assert.Equal(t, approval.StateApproved, r.State, "resolved requests are left alone")
	r, err = otherGW.Get(c, p3.ID())
	require.NoError(t, err)
	assert.Equal(t, approval.StatePending, r.State, "another gateway's requests are left alone")
}

func testCrossGateway(t *testing.T, h harness) {
	c := ctx(t)
	ba := h.broker(h.open(t), "gw-a")
	bb := h.broker(h.open(t), "gw-b")
	var lat []time.Duration
	for i := range 20 {
		p, err := ba.Request(c, NewRequest())
		require.NoError(t, err)
		list, err := bb.List(c, approval.Filter{States: []approval.State{approval.StatePending}})
		require.NoError(t, err)
		require.Len(t, list, 1, "gw-b sees gw-a's request")
		res := wait(c, p)
		waiting(t, ba, 1)
		start := time.Now()
		decide := bb.Approve
		if i%2 == 1 {
			decide = bb.Deny
		}
		_, err = decide(c, p.ID(), Bob, "")
		require.NoError(t, err)
		got := recv(t, res)
		lat = append(lat, got.at.Sub(start))
		require.NoError(t, got.err)
		assert.Equal(t, i%2 == 0, got.out.Approved())
	}
	slices.Sort(lat)
	t.Logf("Approve through gw-b -> waiter in gw-a woken: median %v, max %v (%d rounds)", lat[len(lat)/2], lat[len(lat)-1], len(lat))
}

func testSweep(t *testing.T, h harness) {
	c := ctx(t)
	dead := h.broker(h.open(t), "gw-dead")
	req := NewRequest()
	req.Timeout = 100 * time.Millisecond
	p, err := dead.Request(c, req) // its client never waits: the gateway "died"
	require.NoError(t, err)
	h.broker(h.open(t), "gw-live", func(cfg *approval.Config) { cfg.SweepInterval = 50 * time.Millisecond })
	require.Eventually(t, func() bool {
		r, err := dead.Get(c, p.ID())
		return err == nil && r.State == approval.StateExpired
	}, 10*time.Second, 10*time.Millisecond)
}

func testClose(t *testing.T, h harness) {
	c := ctx(t)
	s := h.open(t)
	b, err := approval.New(c, approval.Config{Store: s, GatewayID: "gw-a", Logger: Logger(t)})
	require.NoError(t, err)
	p, err := b.Request(c, NewRequest())
	require.NoError(t, err)
	res := wait(c, p)
	waiting(t, b, 1)
	require.NoError(t, b.Close())
	got := recv(t, res)
	assert.ErrorIs(t, got.err, approval.ErrClosed)
	assert.Equal(t, approval.StateAbandoned, got.out.State)
	r, err := s.Get(c, p.ID())
	require.NoError(t, err)
	assert.Equal(t, approval.StateAbandoned, r.State)
	_, err = b.Request(c, NewRequest())
	assert.ErrorIs(t, err, approval.ErrClosed)
	require.NoError(t, b.Close(), "Close twice")
}

func testFailingNotifier(t *testing.T, h harness) {
	c := ctx(t)
	var calls atomic.Int32
	stuck := approval.NotifierFunc(func(ctx context.Context, _ approval.Event) error {
		calls.Add(1)
		<-ctx.Done() // a notifier that hangs until its timeout
		return ctx.Err()
	})
	failing := approval.NotifierFunc(func(context.Context, approval.Event) error {
		calls.Add(1)
		return errors.New("webhook answered 500")
	})
	b := h.broker(h.open(t), "gw-a", func(cfg *approval.Config) {
		cfg.Notifiers = []approval.Notifier{stuck, failing}
		cfg.NotifyTimeout = 5 * time.Second
	})
	start := time.Now()
	p, err := b.Request(c, NewRequest())
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 2*time.Second, "Request does not wait for notifiers")
	res := wait(c, p)
	waiting(t, b, 1)
	_, err = b.Approve(c, p.ID(), Bob, "through the API")
	require.NoError(t, err)
	got := recv(t, res)
	require.NoError(t, got.err)
	assert.True(t, got.out.Approved())

	req := NewRequest()
	req.Timeout = 300 * time.Millisecond
	p, err = b.Request(c, req)
	require.NoError(t, err)
	got = recv(t, wait(c, p))
	require.NoError(t, got.err)
	assert.Equal(t, approval.StateExpired, got.out.State, "a failing notifier never approves")
	assert.Positive(t, calls.Load())
}

// testThousand holds 1,000 pending requests with a waiting command each
// and reports what they cost.
func testThousand(t *testing.T, h harness) {
	if testing.Short() {
		t.Skip("1,000 pending requests: not in -short")
	}
	c := ctx(t)
	b := h.broker(h.open(t), "gw-a")
	const n = 1000
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()

	start := time.Now()
	ps := make([]*approval.Pending, n)
	for i := range ps {
		var err error
		ps[i], err = b.Request(c, NewRequest())
		require.NoError(t, err)
	}
	created := time.Since(start)
	results := make(chan result, n)
	for _, p := range ps {
		go func() {
			out, err := p.Wait(c)
			results <- result{out, err, time.Now()}
		}()
	}
	waiting(t, b, n)
	// Once every wait has made its first check, only the waiting commands'
	// own goroutines are left (the store's query goroutines end).
	assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= g0+n+5 }, 20*time.Second, 10*time.Millisecond,
		"no goroutine of the broker's per waiting command")
	runtime.GC()
	runtime.ReadMemStats(&m1)
	g1 := runtime.NumGoroutine()
	for range 20 { // the least seen: pollers and pools come and go
		time.Sleep(5 * time.Millisecond)
		g1 = min(g1, runtime.NumGoroutine())
	}
	heap := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	t.Logf("1,000 pending requests: created in %v (%v each); %d goroutines more (one per waiting command, the broker adds none); "+
		"heap +%.2f MiB (%.1f KiB per waiting command, goroutine stacks not included: stack in use +%.2f MiB)",
		created, created/n, g1-g0, float64(heap)/(1<<20), float64(heap)/n/1024, float64(int64(m1.StackInuse)-int64(m0.StackInuse))/(1<<20))

	start = time.Now()
	var wg sync.WaitGroup
	work := make(chan string)
	for range 16 {
		wg.Go(func() {
			for id := range work {
				_, err := b.Approve(c, id, Bob, "")
				assert.NoError(t, err)
			}
		})
	}
	for _, p := range ps {
		work <- p.ID()
	}
	close(work)
	wg.Wait()
	for range n {
		got := recv(t, results)
		require.NoError(t, got.err)
		require.True(t, got.out.Approved())
	}
	t.Logf("1,000 approvals and wake-ups in %v", time.Since(start))
	assert.Equal(t, 0, b.Waiting())
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= g0+2 }, 5*time.Second, 10*time.Millisecond,
		"the waiting goroutines are gone")
}
