// Package approval pauses risky commands until a human approves them. Its
// central type is Broker, which turns a require_approval decision into a
// request that approvers resolve.
//
// A plugin's command waits like this (the gateway does it inside
// Session.Check):
//
//	if r, err := b.Granted(ctx, id, target, cmd); err == nil && r != nil {
//		// an approval's grant window covers this command: run it
//	}
//	p, err := b.Request(ctx, approval.NewRequest(info, cmd, decision))
//	// tell the client p.Notice() (PostgreSQL NoticeResponse, SSH stderr, ...)
//	out, err := p.Wait(ctx) // ctx cancelled (client gone, CancelRequest) = withdrawn
//	if err != nil || !out.Approved() { /* deny with out.Message() */ }
//
// Requests live in a Store: sqlitestore (embedded, the default) or pgstore
// (several gateways sharing work). Approvers are told through Notifiers
// (package notify: a signed webhook, Slack).
package approval

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// State is where a request is in its life. Every state but StatePending is
// final.
type State string

// Request states.
const (
	StatePending   State = "pending"
	StateApproved  State = "approved"
	StateDenied    State = "denied"
	StateExpired   State = "expired"   // nobody decided before ExpiresAt
	StateWithdrawn State = "withdrawn" // the requester gave up (client cancelled or disconnected)
	StateAbandoned State = "abandoned" // the gateway holding the waiting client restarted or shut down
)

// Final reports whether s is a resolution (anything but pending).
func (s State) Final() bool { return s != StatePending && s != "" }

// Sentinel errors callers branch on. Errors returned by the Broker wrap
// them.
var (
	ErrNotFound     = errors.New("approval: no such request")
	ErrResolved     = errors.New("approval: request is already resolved")
	ErrExpired      = errors.New("approval: request has expired")
	ErrSelfApproval = errors.New("approval: the requester cannot decide their own request")
	ErrNotApprover  = errors.New("approval: not one of the request's approvers")
	ErrAlreadyVoted = errors.New("approval: this approver has already decided")
	ErrNotRequester = errors.New("approval: only the requester can withdraw or use a request")
	ErrUsed         = errors.New("approval: the approved request has already let its command through")
	ErrNotApproved  = errors.New("approval: the request is not approved")
	ErrInvalid      = errors.New("approval: invalid request")
	ErrClosed       = errors.New("approval: broker is closed")
)

// Request is one command waiting for approval. The Broker fills ID,
// GatewayID, GrantKey, CreatedAt, ExpiresAt and State; the caller the rest
// (NewRequest does it from a policy decision).
type Request struct {
	ID        string `json:"id"` // a ULID
	SessionID string `json:"session_id"`
	// Requester is the caller whose command waits. Claims are dropped
	// before the request is stored.
	Requester identity.Identity `json:"requester"`
	Target    protocol.Target   `json:"target"`
	// Command is the exact command with its parsed form.
	Command protocol.Command `json:"command"`
	// Rules names the policy rules that required approval.
	Rules []string `json:"rules,omitempty"`
	// Reason is the policy's message (why approval is needed).
	Reason string `json:"reason,omitempty"`
	// Approvers says who may decide: "group:NAME" (a member of the group)
	// or "user:SUBJECT" (that identity subject).
	Approvers []string `json:"approvers"`
	// Quorum is how many distinct approvers must approve; 0 means 1.
	Quorum int `json:"quorum,omitempty"`
	// GrantWindow, when positive, lets an approval also cover the same
	// normalized command from the same identity on the same target for
	// this long after it was approved.
	GrantWindow time.Duration `json:"grant_window,omitempty"`
	// Timeout is how long the request waits; 0 takes the broker's default.
	Timeout time.Duration `json:"timeout,omitempty"`

	GatewayID string `json:"gateway_id"`
	// GrantKey identifies requester, target and normalized command; see
	// GrantKeyFor.
	GrantKey   string    `json:"grant_key"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	State      State     `json:"state"`
	Decisions  []Vote    `json:"decisions,omitempty"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	// ResolvedReason says why a request ended without a vote deciding it
	// (withdrawn, expired, abandoned), or repeats the deciding vote's reason.
	ResolvedReason string `json:"resolved_reason,omitempty"`
	// GrantUntil is when the grant window of an approved request closes;
	// zero when there is none.
	GrantUntil time.Time `json:"grant_until,omitzero"`
	// UsedAt is when an approved request, presented with the command it
	// approved (a retry under approval: async), let that command through;
	// it lets nothing through again, on any gateway sharing the store.
	UsedAt time.Time `json:"used_at,omitzero"`
}

// Vote is one approver's decision.
type Vote struct {
	// Approver is who decided (claims dropped).
	Approver identity.Identity `json:"approver"`
	Approve  bool              `json:"approve"`
	Reason   string            `json:"reason,omitempty"`
	At       time.Time         `json:"at"`
}

// NewRequest builds a request from a require_approval decision for a
// command of a session, with the decision's approvers, quorum, timeout and
// grant window.
func NewRequest(s protocol.SessionInfo, cmd protocol.Command, d protocol.Decision) *Request {
	r := &Request{
		SessionID:   s.ID,
		Command:     cmd,
		Rules:       append([]string(nil), d.Rules...),
		Reason:      d.Message,
		Approvers:   append([]string(nil), d.Approvers...),
		Quorum:      d.Quorum,
		Timeout:     d.Timeout,
		GrantWindow: d.GrantWindow,
	}
	if s.Identity != nil {
		r.Requester = *s.Identity
	}
	if s.Target != nil {
		r.Target = *s.Target
	}
	return r
}

// Clone returns a deep enough copy of r that changing the copy's slices
// does not change r.
func (r *Request) Clone() *Request {
	if r == nil {
		return nil
	}
	c := *r
	c.Rules = append([]string(nil), r.Rules...)
	c.Approvers = append([]string(nil), r.Approvers...)
	c.Decisions = append([]Vote(nil), r.Decisions...)
	return &c
}

// quorum is the number of approvals needed.
func (r *Request) quorum() int {
	if r.Quorum < 1 {
		return 1
	}
	return r.Quorum
}

// Approvals counts the approving votes.
func (r *Request) Approvals() int {
	n := 0
	for _, v := range r.Decisions {
		if v.Approve {
			n++
		}
	}
	return n
}

// CanDecide reports whether who is one of r's approvers. The requester
// never is, whatever their groups.
func (r *Request) CanDecide(who *identity.Identity) error {
	if who == nil || who.Subject == "" {
		return fmt.Errorf("%w: no identity", ErrNotApprover)
	}
	if sameIdentity(who, &r.Requester) {
		return ErrSelfApproval
	}
	for _, a := range r.Approvers {
		kind, name, _ := strings.Cut(a, ":")
		switch kind {
		case "group":
			if who.InGroup(name) {
				return nil
			}
		case "user":
			if who.Subject == name {
				return nil
			}
		}
	}
	return fmt.Errorf("%w (needs one of %s)", ErrNotApprover, strings.Join(r.Approvers, ", "))
}

// applyVote checks v against r and records it, resolving r when a deny or
// the quorum decides it. now is when the vote is cast.
func (r *Request) applyVote(v Vote, now time.Time) error {
	if r.State.Final() {
		return fmt.Errorf("%w (%s)", ErrResolved, r.State)
	}
	if !now.Before(r.ExpiresAt) {
		return ErrExpired
	}
	if err := r.CanDecide(&v.Approver); err != nil {
		return err
	}
	for _, d := range r.Decisions {
		if sameIdentity(&d.Approver, &v.Approver) {
			return ErrAlreadyVoted
		}
	}
	v.At = now
	r.Decisions = append(r.Decisions, v)
	switch {
	case !v.Approve: // any deny decides
		r.resolve(StateDenied, v.Reason, now)
	case r.Approvals() >= r.quorum():
		r.resolve(StateApproved, v.Reason, now)
		if r.GrantWindow > 0 {
			r.GrantUntil = now.Add(r.GrantWindow)
		}
	}
	return nil
}

func (r *Request) resolve(s State, reason string, now time.Time) {
	r.State = s
	r.ResolvedAt = now
	r.ResolvedReason = reason
}

// validate checks what the caller filled in.
func (r *Request) validate() error {
	var errs []string
	if r.Requester.Subject == "" {
		errs = append(errs, "requester: no subject")
	}
	if r.Target.Name == "" {
		errs = append(errs, "target: no name")
	}
	if len(r.Approvers) == 0 {
		errs = append(errs, "approvers: none (nobody could approve)")
	}
	for _, a := range r.Approvers {
		kind, name, ok := strings.Cut(a, ":")
		if !ok || name == "" || (kind != "group" && kind != "user") {
			errs = append(errs, fmt.Sprintf("approvers: %q is not group:NAME or user:SUBJECT", a))
		}
	}
	if r.Quorum < 0 || r.Quorum > 100 {
		errs = append(errs, fmt.Sprintf("quorum: %d is not between 1 and 100", r.Quorum))
	}
	if r.GrantWindow < 0 {
		errs = append(errs, "grant_window: negative")
	}
	if r.Timeout < 0 {
		errs = append(errs, "timeout: negative")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return nil
}

func sameIdentity(a, b *identity.Identity) bool {
	return a.Subject == b.Subject && a.Issuer == b.Issuer
}

// stripped returns id without its raw claims, which may hold anything the
// identity provider put there and are not needed to decide or audit.
func stripped(id identity.Identity) identity.Identity {
	id.Claims = nil
	id.Groups = append([]string(nil), id.Groups...)
	return id
}

// NormalizeCommand is the form of a command that a grant window compares:
// protocol, kind and text with runs of white space outside quotes folded
// to one space and trailing semicolons dropped. It does not fold case or
// literals, so two commands that differ in anything that could change
// their meaning never share a grant.
func NormalizeCommand(cmd protocol.Command) string {
	var b strings.Builder
	b.WriteString(cmd.Protocol)
	b.WriteByte(0)
	b.WriteString(string(cmd.Kind))
	b.WriteByte(0)
	var quote rune
	space := false
	for _, c := range strings.TrimSpace(cmd.Text) {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			space = true
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(c)
	}
	return strings.TrimRight(b.String(), "; \t\n")
}

// GrantKeyFor identifies who runs which normalized command on which
// target; an approved request with a grant window covers later commands
// with the same key. For an HTTP request or an MCP message the key also
// binds what the text does not say (see boundParts): an approved
// "POST /payments" with one body does not cover another body.
func GrantKeyFor(who *identity.Identity, target string, cmd protocol.Command) string {
	h := sha256.New()
	parts := []string{who.Issuer, who.Subject, target, NormalizeCommand(cmd)}
	if b := boundParts(cmd); b != "" {
		parts = append(parts, b)
	}
	for _, s := range parts {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// boundParts is what a grant binds beyond a command's text: an HTTP
// request's parsed parts (query, selected headers, content type, the JSON
// body as parsed, so that the same object with its keys in another order
// is the same request) or, for a body read whole but not parsed, its
// digest; an MCP message's tool, arguments, resource and prompt. Empty for commands whose text says all
// (SQL, shell). A command that cannot be encoded gets a key of its own
// that nothing else matches: no grant covers it.
func boundParts(cmd protocol.Command) string {
	if cmd.HTTP == nil && cmd.MCP == nil {
		return ""
	}
	digest := cmd.Attrs["body_sha256"]
	if cmd.HTTP != nil && cmd.HTTP.Body != nil {
		digest = ""
	}
	b, err := json.Marshal(struct {
		HTTP       *protocol.HTTP `json:"http,omitempty"`
		MCP        *protocol.MCP  `json:"mcp,omitempty"`
		BodySHA256 string         `json:"body_sha256,omitempty"`
	}{cmd.HTTP, cmd.MCP, digest})
	if err != nil {
		nonce := make([]byte, 16)
		_, _ = rand.Read(nonce)
		return "unencodable:" + hex.EncodeToString(nonce)
	}
	return string(b)
}

// Filter selects requests for Store.List. Zero fields select everything.
type Filter struct {
	States    []State
	GatewayID string
	SessionID string
	// RequesterSubject selects the requests of one subject.
	RequesterSubject string
	Target           string
	// GrantKey with GrantActiveAt selects approved requests with that key
	// whose grant window is open at GrantActiveAt.
	GrantKey      string
	GrantActiveAt time.Time
	// ExpiresBefore selects requests whose ExpiresAt is before it.
	ExpiresBefore time.Time
	// AfterID continues a listing after that ID (requests come in ID
	// order, which is creation order).
	AfterID string
	// Limit caps the result; 0 means no cap.
	Limit int
}

// Store keeps requests durably. It is safe for concurrent use, and
// across processes sharing its database.
type Store interface {
	// Create stores a new request. Its ID must be unused.
	Create(ctx context.Context, r *Request) error
	// Get returns a request or an error wrapping ErrNotFound.
	Get(ctx context.Context, id string) (*Request, error)
	// List returns the requests matching f in ID order.
	List(ctx context.Context, f Filter) ([]*Request, error)
	// Update changes a request atomically: it locks the request against
	// every other Update (in this process and any other sharing the
	// database), passes it to fn, and stores fn's changes unless fn
	// returns an error, which Update then returns. The Broker keeps all
	// the rules (who may vote, quorum, state transitions) in fn, so every
	// store enforces them the same way.
	Update(ctx context.Context, id string, fn func(*Request) error) (*Request, error)
	// Watch calls fn with the ID of every request created or updated
	// through any Store on the same database, or with "" when changes may
	// have been missed (re-check everything). fn must not block. stop
	// ends the watch.
	Watch(fn func(id string)) (stop func())
	// Close releases the store; it ends every goroutine the store started.
	Close() error
}
