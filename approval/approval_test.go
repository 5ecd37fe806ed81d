package approval_test

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/approval/approvaltest"
	"github.com/sluicegw/sluice/approval/sqlitestore"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNormalizeCommand(t *testing.T) {
	q := func(text string) protocol.Command {
		return protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: text}
	}
	for _, tc := range []struct {
		a, b protocol.Command
		same bool
	}{
		{q("SELECT 1"), q("  SELECT\n\t1 ;;"), true},
		{q("UPDATE t SET a = 1"), q("UPDATE t  SET a = 1;"), true},
		{q("UPDATE t SET a = 'x  y'"), q("UPDATE t SET a = 'x y'"), false},
		{q(`SELECT "a  b"`), q(`SELECT "a b"`), false},
		{q("SELECT 1"), q("select 1"), false},
		{q("SELECT 1"), protocol.Command{Protocol: "mysql", Kind: protocol.KindQuery, Text: "SELECT 1"}, false},
		{q("rm -rf /tmp/x"), protocol.Command{Protocol: "postgres", Kind: protocol.KindExec, Text: "rm -rf /tmp/x"}, false},
	} {
		assert.Equal(t, tc.same, approval.NormalizeCommand(tc.a) == approval.NormalizeCommand(tc.b), "%q vs %q", tc.a.Text, tc.b.Text)
	}
}

// TestGrantKeyBindsHTTPAndMCPParts: an HTTP request's text is its method
// and path, so a grant binds its body (parsed, or its digest), query and
// headers too, and an MCP message's tool and arguments; SQL keys stay what
// the text makes them.
func TestGrantKeyBindsHTTPAndMCPParts(t *testing.T) {
	who := &identity.Identity{Subject: "agent", Issuer: "idp"}
	post := func(body any, digest string, query map[string]string) protocol.Command {
		c := protocol.Command{Protocol: "http", Kind: protocol.KindRequest, Text: "POST /payments",
			HTTP: &protocol.HTTP{Method: "POST", Host: "api", Path: "/payments", Query: query, ContentType: "application/json", Body: body}}
		if digest != "" {
			c.Attrs = map[string]string{"body_sha256": digest}
		}
		return c
	}
	call := func(tool string, args map[string]any) protocol.Command {
		return protocol.Command{Protocol: "http", Kind: protocol.KindRequest, Text: "tools/call " + tool,
			MCP: &protocol.MCP{Method: "tools/call", Tool: tool, Arguments: args}}
	}
	key := func(c protocol.Command) string { return approval.GrantKeyFor(who, "api", c) }
	small := map[string]any{"amount": int64(5), "to": "acct-1"}
	for _, tc := range []struct {
		name string
		a, b protocol.Command
		same bool
	}{
		{"same body", post(small, "", nil), post(map[string]any{"to": "acct-1", "amount": int64(5)}, "", nil), true},
		{"same parsed body, other bytes", post(small, "aa", nil), post(small, "bb", nil), true},
		{"another amount", post(small, "", nil), post(map[string]any{"amount": int64(5000), "to": "acct-1"}, "", nil), false},
		{"another unparsed body", post(nil, "aa", nil), post(nil, "bb", nil), false},
		{"same unparsed body", post(nil, "aa", nil), post(nil, "aa", nil), true},
		{"another query", post(small, "", map[string]string{"dry_run": "true"}), post(small, "", map[string]string{"dry_run": "false"}), false},
		{"same arguments", call("delete_user", map[string]any{"id": int64(7)}), call("delete_user", map[string]any{"id": int64(7)}), true},
		{"other arguments", call("delete_user", map[string]any{"id": int64(7)}), call("delete_user", map[string]any{"id": int64(8)}), false},
	} {
		assert.Equal(t, tc.same, key(tc.a) == key(tc.b), tc.name)
	}
	// A value encoding/json refuses: the key matches nothing, not even itself.
	odd := post(map[string]any{"amount": math.NaN()}, "", nil)
	assert.NotEqual(t, key(odd), key(odd))
	// SQL keys are unchanged by the binding: text only.
	sql := protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: "DELETE FROM t WHERE id = 1",
		Attrs: map[string]string{"extended": "parse"}}
	sql2 := sql
	sql2.Attrs = nil
	assert.Equal(t, key(sql), key(sql2))
}

func TestCanDecide(t *testing.T) {
	r := &approval.Request{Requester: identity.Identity{Subject: "alice", Issuer: "idp", Groups: []string{"dba"}},
		Approvers: []string{"group:dba", "user:erin"}}
	for _, tc := range []struct {
		who  *identity.Identity
		want error
	}{
		{&identity.Identity{Subject: "bob", Issuer: "idp", Groups: []string{"dba"}}, nil},
		{&identity.Identity{Subject: "erin", Issuer: "idp"}, nil},
		{&identity.Identity{Subject: "alice", Issuer: "idp", Groups: []string{"dba"}}, approval.ErrSelfApproval},
		{&identity.Identity{Subject: "dave", Issuer: "idp", Groups: []string{"dev"}}, approval.ErrNotApprover},
		{&identity.Identity{Subject: "dave", Groups: []string{"group:dba"}}, approval.ErrNotApprover},
		{&identity.Identity{Groups: []string{"dba"}}, approval.ErrNotApprover},
		{nil, approval.ErrNotApprover},
	} {
		err := r.CanDecide(tc.who)
		if tc.want == nil {
			assert.NoError(t, err)
		} else {
			assert.ErrorIs(t, err, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	s := openSQLite(t)
	for _, tc := range []struct {
		cfg  approval.Config
		want string
	}{
		{approval.Config{GatewayID: "gw"}, "Config.Store"},
		{approval.Config{Store: s}, "Config.GatewayID"},
		{approval.Config{Store: s, GatewayID: "gw", DefaultTimeout: -time.Second}, "negative"},
		{approval.Config{Store: s, GatewayID: "gw", DefaultTimeout: time.Hour, MaxTimeout: time.Minute}, "DefaultTimeout"},
		{approval.Config{Store: s, GatewayID: "gw", Notifiers: []approval.Notifier{nil}}, "Notifiers[0]"},
	} {
		_, err := approval.New(context.Background(), tc.cfg)
		assert.ErrorContains(t, err, tc.want)
	}
}

func openSQLite(t *testing.T) *sqlitestore.Store {
	s, err := sqlitestore.Open(context.Background(), sqlitestore.Config{Path: filepath.Join(t.TempDir(), sqlitestore.DefaultFile)})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// outage wraps a real store and fails every call while down is set: the
// one thing here that stands in for something (a database outage) that
// cannot be produced on demand with the embedded store.
type outage struct {
	approval.Store
	down atomic.Bool
}

var errDown = errors.New("store unreachable")

func (o *outage) Get(ctx context.Context, id string) (*approval.Request, error) {
	if o.down.Load() {
		return nil, errDown
	}
	return o.Store.Get(ctx, id)
}

func (o *outage) Update(ctx context.Context, id string, fn func(*approval.Request) error) (*approval.Request, error) {
	if o.down.Load() {
		return nil, errDown
	}
	return o.Store.Update(ctx, id, fn)
}

func TestExpiryFailsClosedWhenStoreIsDown(t *testing.T) {
	st := &outage{Store: openSQLite(t)}
	ctx := context.Background()
	b, err := approval.New(ctx, approval.Config{Store: st, GatewayID: "gw", StoreTimeout: time.Second, Logger: approvaltest.Logger(t)})
	require.NoError(t, err)
	defer b.Close()
	req := approvaltest.NewRequest()
	req.Timeout = 300 * time.Millisecond
	p, err := b.Request(ctx, req)
	require.NoError(t, err)
	st.down.Store(true)
	start := time.Now()
	out, err := p.Wait(ctx)
	assert.ErrorIs(t, err, errDown)
	assert.Equal(t, approval.StateExpired, out.State)
	assert.False(t, out.Approved())
	assert.Less(t, time.Since(start), 2*time.Second, "expiry does not wait for the store")
	_, err = b.Approve(ctx, p.ID(), approvaltest.Bob, "")
	assert.ErrorIs(t, err, errDown, "no vote lands while the store is down")
	st.down.Store(false)
}

func TestWaitSurvivesAShortOutage(t *testing.T) {
	st := &outage{Store: openSQLite(t)}
	ctx := context.Background()
	b, err := approval.New(ctx, approval.Config{Store: st, GatewayID: "gw", Logger: approvaltest.Logger(t)})
	require.NoError(t, err)
	defer b.Close()
	p, err := b.Request(ctx, approvaltest.NewRequest())
	require.NoError(t, err)
	st.down.Store(true)
	done := make(chan approval.Outcome, 1)
	go func() {
		out, _ := p.Wait(ctx)
		done <- out
	}()
	require.Eventually(t, func() bool { return b.Waiting() == 1 }, 5*time.Second, time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	st.down.Store(false)
	// The approval's wake-up may arrive while the waiter's check still
	// fails; it retries on its own.
	_, err = b.Approve(ctx, p.ID(), approvaltest.Bob, "")
	require.NoError(t, err)
	select {
	case out := <-done:
		assert.True(t, out.Approved())
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not see the approval after the outage")
	}
}

func TestOutcomeMessage(t *testing.T) {
	r := &approval.Request{ID: "01ABC", Decisions: []approval.Vote{
		{Approver: identity.Identity{Subject: "bob", Name: "Bob"}, Approve: true},
		{Approver: identity.Identity{Subject: "carol"}, Approve: false, Reason: "not now"},
	}}
	for state, want := range map[approval.State]string{
		approval.StateApproved:  "sluice: request 01ABC approved by Bob",
		approval.StateDenied:    "sluice: request 01ABC denied by carol: not now",
		approval.StateExpired:   "sluice: request 01ABC expired: nobody approved it in time; the command was not run",
		approval.StateWithdrawn: "sluice: request 01ABC withdrawn; the command was not run",
		approval.StateAbandoned: "sluice: request 01ABC abandoned (the gateway restarted or shut down); the command was not run",
	} {
		assert.Equal(t, want, approval.Outcome{State: state, Request: r}.Message())
	}
}

func TestNewRequestFromDecision(t *testing.T) {
	info := protocol.SessionInfo{ID: "s1", Identity: approvaltest.Alice, Target: &approvaltest.ProdDB}
	cmd := approvaltest.Update("DELETE FROM t")
	d := protocol.Decision{Action: protocol.RequireApproval, Rules: []string{"r1", "r2"}, Message: "why",
		Approvers: []string{"group:dba"}, Timeout: 5 * time.Minute}
	r := approval.NewRequest(info, cmd, d)
	assert.Equal(t, "s1", r.SessionID)
	assert.Equal(t, "alice", r.Requester.Subject)
	assert.Equal(t, "prod-db", r.Target.Name)
	assert.Equal(t, cmd, r.Command)
	assert.Equal(t, []string{"r1", "r2"}, r.Rules)
	assert.Equal(t, "why", r.Reason)
	assert.Equal(t, []string{"group:dba"}, r.Approvers)
	assert.Equal(t, 5*time.Minute, r.Timeout)
	d.Approvers[0] = "changed"
	assert.Equal(t, []string{"group:dba"}, r.Approvers, "copied, not shared")
}

func TestTimeoutDefaultsAndCap(t *testing.T) {
	ctx := context.Background()
	b, err := approval.New(ctx, approval.Config{Store: openSQLite(t), GatewayID: "gw", DefaultTimeout: 2 * time.Minute,
		MaxTimeout: time.Hour, Logger: approvaltest.Logger(t)})
	require.NoError(t, err)
	defer b.Close()
	req := approvaltest.NewRequest()
	req.Timeout = 0
	p, err := b.Request(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, 2*time.Minute, p.Request().ExpiresAt.Sub(p.Request().CreatedAt))
	req.Timeout = 48 * time.Hour
	p, err = b.Request(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, time.Hour, p.Request().ExpiresAt.Sub(p.Request().CreatedAt))
}
