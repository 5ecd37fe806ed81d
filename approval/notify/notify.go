// Package notify tells approvers about approval requests: a generic JSON
// webhook signed with HMAC-SHA256 (Webhook) and the Slack incoming-webhook
// message format with a link to approve (Slack). Both implement
// approval.Notifier and retry server errors with exponential backoff.
//
// Notifications never carry secrets: the requester's raw claims and the
// target's address and options are left out, password literals in
// commands are masked, and commands are truncated (the store keeps the
// full text).
package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	neturl "net/url"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// Summary is a request as notifications show it.
type Summary struct {
	ID        string         `json:"id"`
	State     approval.State `json:"state"`
	SessionID string         `json:"session_id"`
	GatewayID string         `json:"gateway_id"`
	Requester Person         `json:"requester"`
	Target    Target         `json:"target"`
	Command   Command        `json:"command"`
	Rules     []string       `json:"rules,omitempty"`
	Reason    string         `json:"reason,omitempty"`
	Approvers []string       `json:"approvers"`
	Quorum    int            `json:"quorum"`
	// GrantWindow is the Go duration an approval also covers repeats for,
	// "" when none.
	GrantWindow    string     `json:"grant_window,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	ExpiresAt      time.Time  `json:"expires_at"`
	ResolvedAt     time.Time  `json:"resolved_at,omitzero"`
	ResolvedReason string     `json:"resolved_reason,omitempty"`
	Decisions      []Decision `json:"decisions,omitempty"`
}

// Person is an identity without its claims.
type Person struct {
	Subject string   `json:"subject"`
	Issuer  string   `json:"issuer,omitempty"`
	Name    string   `json:"name,omitempty"`
	Email   string   `json:"email,omitempty"`
	Groups  []string `json:"groups,omitempty"`
}

// Target is a target without its address and options.
type Target struct {
	Name     string            `json:"name"`
	Protocol string            `json:"protocol"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// Command is a command with its text masked and truncated.
type Command struct {
	Protocol string        `json:"protocol"`
	Kind     protocol.Kind `json:"kind"`
	Text     string        `json:"text"`
	// Length is the full text's length in characters; Truncated says
	// whether Text is shorter.
	Length    int           `json:"length"`
	Truncated bool          `json:"truncated,omitempty"`
	SQL       *protocol.SQL `json:"sql,omitempty"`
	HTTP      *HTTP         `json:"http,omitempty"`
	K8s       *protocol.K8s `json:"k8s,omitempty"`
	SSH       *protocol.SSH `json:"ssh,omitempty"`
}

// HTTP is an HTTP request without its headers and query (either may carry
// credentials).
type HTTP struct {
	Method string `json:"method"`
	Host   string `json:"host"`
	Path   string `json:"path"`
}

// Decision is one approver's vote.
type Decision struct {
	Approver Person    `json:"approver"`
	Approve  bool      `json:"approve"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
}

func person(id identity.Identity) Person {
	return Person{Subject: id.Subject, Issuer: id.Issuer, Name: id.Name, Email: id.Email, Groups: id.Groups}
}

// Summarize builds the summary of r, the command text cut to maxChars
// characters (0: 2000).
func Summarize(r *approval.Request, maxChars int) Summary {
	if maxChars <= 0 {
		maxChars = 2000
	}
	text := Redact(r.Command.Text)
	short, cut := Truncate(text, maxChars)
	s := Summary{
		ID: r.ID, State: r.State, SessionID: r.SessionID, GatewayID: r.GatewayID,
		Requester: person(r.Requester),
		Target:    Target{Name: r.Target.Name, Protocol: r.Target.Protocol, Labels: r.Target.Labels},
		Command: Command{Protocol: r.Command.Protocol, Kind: r.Command.Kind, Text: short,
			Length: utf8.RuneCountInString(text), Truncated: cut,
			SQL: r.Command.SQL, K8s: r.Command.K8s, SSH: r.Command.SSH},
		Rules: r.Rules, Reason: r.Reason, Approvers: r.Approvers, Quorum: max(r.Quorum, 1),
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, ResolvedAt: r.ResolvedAt, ResolvedReason: r.ResolvedReason,
	}
	if h := r.Command.HTTP; h != nil {
		s.Command.HTTP = &HTTP{Method: h.Method, Host: h.Host, Path: h.Path}
	}
	if r.GrantWindow > 0 {
		s.GrantWindow = r.GrantWindow.String()
	}
	for _, v := range r.Decisions {
		s.Decisions = append(s.Decisions, Decision{Approver: person(v.Approver), Approve: v.Approve, Reason: v.Reason, At: v.At})
	}
	return s
}

// Truncate cuts s to at most n characters, marking the cut.
func Truncate(s string, n int) (string, bool) {
	if utf8.RuneCountInString(s) <= n {
		return s, false
	}
	i, count := 0, 0
	for i = range s {
		if count == n {
			break
		}
		count++
	}
	return s[:i] + fmt.Sprintf("… [%d characters in all]", utf8.RuneCountInString(s)), true
}

var (
	// PASSWORD 'x' (PostgreSQL CREATE/ALTER ROLE), IDENTIFIED BY 'x' (MySQL).
	sqlPassword = regexp.MustCompile(`(?i)\b(password|identified\s+by)(\s+)[eE]?'(?:[^']|'')*'`)
	// FOO_TOKEN=x, PGPASSWORD=x in shell commands.
	envSecret = regexp.MustCompile(`(?i)\b([a-z0-9_]*(?:password|passwd|secret|token|api_?key)[a-z0-9_]*)=("[^"]*"|'[^']*'|\S+)`)
)

// Redact masks the password literals and secret-named variables a command
// may contain.
func Redact(text string) string {
	text = sqlPassword.ReplaceAllString(text, "$1$2'***'")
	return envSecret.ReplaceAllString(text, "$1=***")
}

// retrier posts a body with retries.
type retrier struct {
	client      *http.Client
	maxAttempts int
	backoff     time.Duration
	maxBackoff  time.Duration
}

// errPermanent marks a failure retrying cannot fix (a 4xx answer).
type errPermanent struct{ error }

// post sends body to url, retrying network errors, 408, 429 and 5xx with
// exponential backoff (with jitter) until maxAttempts or ctx ends.
func (r retrier) post(ctx context.Context, url string, body []byte, header func(http.Header)) error {
	delay := r.backoff
	var last error
	for attempt := 1; ; attempt++ {
		last = r.once(ctx, url, body, header)
		var perm errPermanent
		if last == nil || errors.As(last, &perm) {
			return last
		}
		if attempt >= r.maxAttempts {
			return fmt.Errorf("after %d attempts: %w", attempt, last)
		}
		wait := delay/2 + rand.N(delay/2+1) // jitter: [delay/2, delay]
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("gave up after %d attempts (%v): %w", attempt, ctx.Err(), last)
		case <-t.C:
		}
		delay = min(2*delay, r.maxBackoff)
	}
}

func (r retrier) once(ctx context.Context, url string, body []byte, header func(http.Header)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return errPermanent{err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sluice-approval")
	if header != nil {
		header(req.Header)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		// The URL may be a secret (a Slack webhook URL is): keep it out of
		// the error.
		var ue *neturl.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("%s request: %w", ue.Op, ue.Err)
		}
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return fmt.Errorf("server answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	default:
		return errPermanent{fmt.Errorf("server refused the notification: %s: %s", resp.Status, bytes.TrimSpace(msg))}
	}
}

func newRetrier(client *http.Client, attempts int, backoff time.Duration) retrier {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if attempts <= 0 {
		attempts = 5
	}
	if backoff <= 0 {
		backoff = 500 * time.Millisecond
	}
	return retrier{client: client, maxAttempts: attempts, backoff: backoff, maxBackoff: max(backoff, 30*time.Second)}
}

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
