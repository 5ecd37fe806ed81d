package notify_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/approval/approvaltest"
	"github.com/sluicegw/sluice/approval/notify"
	"github.com/sluicegw/sluice/approval/sqlitestore"
	"github.com/sluicegw/sluice/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const secret = "webhook-signing-secret"

func request(text string) *approval.Request {
	r := approvaltest.NewRequest()
	r.ID = "01JABCDEFGHJKMNPQRSTVWXYZ0"
	r.GatewayID = "gw-a"
	r.State = approval.StatePending
	r.Command = approvaltest.Update(text)
	r.Requester = *approvaltest.Alice // with claims, which must not leave
	r.CreatedAt = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r.ExpiresAt = r.CreatedAt.Add(10 * time.Minute)
	r.GrantWindow = 5 * time.Minute
	return r
}

type delivery struct {
	header http.Header
	body   []byte
}

// receiver is a webhook endpoint answering the statuses in order (200
// once they run out).
type receiver struct {
	mu       sync.Mutex
	statuses []int
	got      []delivery
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.got = append(rc.got, delivery{r.Header.Clone(), body})
	status := http.StatusOK
	if len(rc.statuses) > 0 {
		status, rc.statuses = rc.statuses[0], rc.statuses[1:]
	}
	rc.mu.Unlock()
	w.WriteHeader(status)
	_, _ = w.Write([]byte("answer"))
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

func serve(t *testing.T, rc *receiver) *httptest.Server {
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return srv
}

func TestWebhookSignedAndRetried(t *testing.T) {
	rc := &receiver{statuses: []int{http.StatusInternalServerError}}
	srv := serve(t, rc)
	w := &notify.Webhook{URL: srv.URL + "/hook", Secret: secret, Backoff: 10 * time.Millisecond, MaxCommandChars: 100}
	text := "ALTER ROLE app PASSWORD 'hunter2'; UPDATE accounts SET note = '" + strings.Repeat("é", 500) + "'"
	ev := approval.Event{Type: approval.EventRequested, Request: request(text), URL: "https://sluice.example/approvals/01JABCDEFGHJKMNPQRSTVWXYZ0",
		At: time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC)}
	require.NoError(t, w.Notify(context.Background(), ev))

	got := rc.deliveries()
	require.Len(t, got, 2, "one retry after the 500")
	assert.Equal(t, got[0].body, got[1].body, "a retry sends the same body")
	d := got[1]
	assert.True(t, notify.VerifySignature(secret, d.body, d.header.Get(notify.SignatureHeader)), "signature verifies")
	assert.False(t, notify.VerifySignature("other", d.body, d.header.Get(notify.SignatureHeader)))
	assert.False(t, notify.VerifySignature(secret, append(d.body, ' '), d.header.Get(notify.SignatureHeader)), "a changed body fails")
	assert.Regexp(t, `^sha256=[0-9a-f]{64}$`, d.header.Get(notify.SignatureHeader))
	assert.Equal(t, strconv.FormatInt(ev.At.Unix(), 10), d.header.Get(notify.TimestampHeader))
	assert.Equal(t, "approval.requested", d.header.Get(notify.EventHeader))
	assert.Equal(t, "01JABCDEFGHJKMNPQRSTVWXYZ0.approval.requested", d.header.Get(notify.DeliveryHeader))
	assert.Equal(t, "application/json", d.header.Get("Content-Type"))

	var p notify.WebhookPayload
	require.NoError(t, json.Unmarshal(d.body, &p))
	assert.Equal(t, approval.EventRequested, p.Type)
	assert.Equal(t, ev.At, p.At)
	assert.Equal(t, ev.URL, p.URL)
	s := p.Request
	assert.Equal(t, "01JABCDEFGHJKMNPQRSTVWXYZ0", s.ID)
	assert.Equal(t, "alice", s.Requester.Subject)
	assert.Equal(t, "alice@example.com", s.Requester.Email)
	assert.Equal(t, notify.Target{Name: "prod-db", Protocol: "postgres", Labels: map[string]string{"env": "prod"}}, s.Target)
	assert.Equal(t, []string{"prod-writes"}, s.Rules)
	assert.Equal(t, []string{"group:dba"}, s.Approvers)
	assert.Equal(t, 1, s.Quorum)
	assert.Equal(t, "5m0s", s.GrantWindow)
	assert.Equal(t, "UPDATE", s.Command.SQL.Statements[0].Kind)
	assert.True(t, s.Command.Truncated)
	assert.Equal(t, len([]rune(notify.Redact(text))), s.Command.Length)
	assert.True(t, strings.HasPrefix(s.Command.Text, "ALTER ROLE app PASSWORD '***'; UPDATE"), s.Command.Text)
	assert.Contains(t, s.Command.Text, "characters in all]")
	raw := string(d.body)
	for _, secretish := range []string{"hunter2", "internal", "claim", "10.0.0.5", secret} {
		assert.NotContains(t, raw, secretish)
	}
}

func TestWebhookDoesNotRetryRefusals(t *testing.T) {
	rc := &receiver{statuses: []int{http.StatusBadRequest}}
	srv := serve(t, rc)
	w := &notify.Webhook{URL: srv.URL, Secret: secret, Backoff: time.Millisecond}
	err := w.Notify(context.Background(), approval.Event{Type: approval.EventRequested, Request: request("SELECT 1")})
	assert.ErrorContains(t, err, "400")
	assert.Len(t, rc.deliveries(), 1)
}

func TestWebhookRetriesAreBounded(t *testing.T) {
	rc := &receiver{statuses: []int{503, 503, 503, 503, 503, 503, 503, 503, 503, 503}}
	srv := serve(t, rc)
	w := &notify.Webhook{URL: srv.URL, Secret: secret, MaxAttempts: 3, Backoff: time.Millisecond}
	err := w.Notify(context.Background(), approval.Event{Type: approval.EventRequested, Request: request("SELECT 1")})
	assert.ErrorContains(t, err, "after 3 attempts")
	assert.Len(t, rc.deliveries(), 3)

	// The context bounds the whole, backoff included.
	rc = &receiver{statuses: []int{503, 503, 503, 503, 503, 503, 503, 503, 503, 503}}
	srv = serve(t, rc)
	w = &notify.Webhook{URL: srv.URL, Secret: secret, MaxAttempts: 10, Backoff: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = w.Notify(ctx, approval.Event{Type: approval.EventRequested, Request: request("SELECT 1")})
	assert.ErrorContains(t, err, "gave up after 1 attempts")
	assert.Less(t, time.Since(start), time.Second)
}

func TestWebhookErrorsDoNotCarryTheURL(t *testing.T) {
	w := &notify.Webhook{URL: "http://127.0.0.1:1/hooks/T000/B000/s3cr3t-token", Secret: secret, MaxAttempts: 2, Backoff: time.Millisecond}
	err := w.Notify(context.Background(), approval.Event{Type: approval.EventRequested, Request: request("SELECT 1")})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cr3t-token")
	assert.ErrorContains(t, (&notify.Webhook{URL: "ftp://x/s3cr3t", Secret: "x"}).Validate(), "Webhook.URL")
	assert.NotContains(t, (&notify.Webhook{URL: "ftp://x/s3cr3t", Secret: "x"}).Validate().Error(), "s3cr3t")
	assert.ErrorContains(t, (&notify.Webhook{URL: "https://x/"}).Validate(), "Webhook.Secret")
}

func TestSlackPayload(t *testing.T) {
	rc := &receiver{}
	srv := serve(t, rc)
	s := &notify.Slack{WebhookURL: srv.URL + "/services/T/B/x", ApproveURLBase: "https://sluice.example/ui/approvals/"}
	r := request("UPDATE accounts SET a = '<b>&```' WHERE id = 1")
	r.Quorum = 2
	require.NoError(t, s.Notify(context.Background(), approval.Event{Type: approval.EventRequested, Request: r}))
	got := rc.deliveries()
	require.Len(t, got, 1)
	var m struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type     string `json:"type"`
			Text     *struct{ Type, Text string }
			Fields   []struct{ Type, Text string }
			Elements []struct {
				Type     string `json:"type"`
				URL      string `json:"url"`
				Style    string `json:"style"`
				ActionID string `json:"action_id"`
				Text     any    `json:"text"`
			}
		} `json:"blocks"`
	}
	require.NoError(t, json.Unmarshal(got[0].body, &m))
	link := "https://sluice.example/ui/approvals/01JABCDEFGHJKMNPQRSTVWXYZ0"
	assert.Equal(t, "Approval needed: Alice (alice@example.com) wants to run a postgres query on prod-db (rule prod-writes): "+link, m.Text)
	var types []string
	for _, b := range m.Blocks {
		types = append(types, b.Type)
	}
	require.Equal(t, []string{"header", "section", "section", "actions", "context"}, types)
	assert.Equal(t, "plain_text", m.Blocks[0].Text.Type)
	cmd := m.Blocks[1].Text.Text
	assert.Equal(t, "mrkdwn", m.Blocks[1].Text.Type)
	assert.Contains(t, cmd, "*Alice (alice@example.com)* wants to run this postgres query on *prod-db* (postgres)")
	assert.Contains(t, cmd, "```UPDATE accounts SET a = '&lt;b&gt;&amp;` ` `' WHERE id = 1```", "mrkdwn escaped, no early end of the code block")
	fields := ""
	for _, f := range m.Blocks[2].Fields {
		fields += f.Text + "\n"
	}
	for _, want := range []string{"*Rule*\nprod-writes", "*Approvers*\ngroup:dba (2 distinct approvers)", "*Request*\n`01JABCDEFGHJKMNPQRSTVWXYZ0`",
		"*Why*\nwrites to prod need a DBA", "*Grant window*\n5m0s", "<!date^" + strconv.FormatInt(r.ExpiresAt.Unix(), 10) + "^"} {
		assert.Contains(t, fields, want)
	}
	btn := m.Blocks[3].Elements[0]
	assert.Equal(t, "button", btn.Type)
	assert.Equal(t, link, btn.URL)
	assert.Equal(t, "primary", btn.Style)
	assert.NotContains(t, string(got[0].body), "internal", "no claims")

	// Resolution.
	r.State = approval.StateDenied
	r.Decisions = []approval.Vote{{Approver: *approvaltest.Bob, Approve: false, Reason: "not today"}}
	msg := s.Message(approval.Event{Type: approval.EventResolved, Request: r})
	assert.Equal(t, "Approval request 01JABCDEFGHJKMNPQRSTVWXYZ0 (postgres query on prod-db by Alice (alice@example.com)) is denied", msg.Text)
	require.Len(t, msg.Blocks, 2)
	assert.Contains(t, msg.Blocks[0]["text"].(map[string]any)["text"], "Bob denied: not today")

	// Without a link: the event's URL, and none at all when neither is set.
	s.ApproveURLBase = ""
	msg = s.Message(approval.Event{Type: approval.EventRequested, Request: request("SELECT 1"), URL: "https://gw/a/1"})
	assert.Contains(t, msg.Text, "https://gw/a/1")
	msg = s.Message(approval.Event{Type: approval.EventRequested, Request: request("SELECT 1")})
	for _, b := range msg.Blocks {
		assert.NotEqual(t, "actions", b["type"], "no button without a link")
	}
}

func TestSlackTruncatesLongCommands(t *testing.T) {
	s := &notify.Slack{WebhookURL: "https://hooks.example/x"}
	msg := s.Message(approval.Event{Type: approval.EventRequested, Request: request(strings.Repeat("x", 50000))})
	sec := msg.Blocks[1]["text"].(map[string]any)["text"].(string)
	assert.Less(t, len(sec), 3000, "Slack's section limit")
	assert.Contains(t, sec, "[50000 characters in all]")
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"ALTER ROLE app WITH PASSWORD 'hunter2'":         "ALTER ROLE app WITH PASSWORD '***'",
		"CREATE USER u PASSWORD E'it''s'":                "CREATE USER u PASSWORD '***'",
		"SET PASSWORD FOR u IDENTIFIED BY 'pw'":          "SET PASSWORD FOR u IDENTIFIED BY '***'",
		"PGPASSWORD=hunter2 psql -h db":                  "PGPASSWORD=*** psql -h db",
		`API_TOKEN="a b" ./deploy`:                       "API_TOKEN=*** ./deploy",
		"SELECT password FROM users WHERE id = 1":        "SELECT password FROM users WHERE id = 1",
		"UPDATE t SET secret_note = 'kept' WHERE id = 1": "UPDATE t SET secret_note = 'kept' WHERE id = 1",
	} {
		assert.Equal(t, want, notify.Redact(in))
	}
	s, cut := notify.Truncate("héllo", 10)
	assert.Equal(t, "héllo", s)
	assert.False(t, cut)
	s, cut = notify.Truncate("héllo wörld", 5)
	assert.Equal(t, "héllo… [11 characters in all]", s)
	assert.True(t, cut)
}

// TestBrokerDeliversToWebhook runs a Broker with a Webhook: approvers hear
// of the request, then of its resolution.
func TestBrokerDeliversToWebhook(t *testing.T) {
	rc := &receiver{}
	srv := serve(t, rc)
	ctx := context.Background()
	st, err := sqlitestore.Open(ctx, sqlitestore.Config{Path: t.TempDir() + "/" + sqlitestore.DefaultFile})
	require.NoError(t, err)
	defer st.Close()
	var slackCalls atomic.Int32
	slackSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { slackCalls.Add(1) }))
	defer slackSrv.Close()
	b, err := approval.New(ctx, approval.Config{Store: st, GatewayID: "gw", ApproveURL: "https://sluice.example/approvals",
		Logger: approvaltest.Logger(t), Notifiers: []approval.Notifier{
			&notify.Webhook{URL: srv.URL, Secret: secret}, &notify.Slack{WebhookURL: slackSrv.URL}}})
	require.NoError(t, err)
	defer b.Close()
	p, err := b.Request(ctx, approval.NewRequest(protocol.SessionInfo{ID: "s", Identity: approvaltest.Alice, Target: &approvaltest.ProdDB},
		approvaltest.Update("DELETE FROM t"), protocol.Decision{Approvers: []string{"group:dba"}, Rules: []string{"r"}}))
	require.NoError(t, err)
	_, err = b.Approve(ctx, p.ID(), approvaltest.Bob, "ok")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(rc.deliveries()) == 2 && slackCalls.Load() == 2 }, 5*time.Second, 5*time.Millisecond)
	types := map[string]string{}
	for _, d := range rc.deliveries() {
		require.True(t, notify.VerifySignature(secret, d.body, d.header.Get(notify.SignatureHeader)))
		var pl notify.WebhookPayload
		require.NoError(t, json.Unmarshal(d.body, &pl))
		types[string(pl.Type)] = string(pl.Request.State)
		assert.Equal(t, "https://sluice.example/approvals/"+p.ID(), pl.URL)
	}
	assert.Equal(t, map[string]string{"approval.requested": "pending", "approval.resolved": "approved"}, types)
}
