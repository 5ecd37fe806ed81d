package approval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// Config configures a Broker. Zero durations and sizes take the defaults
// named on each field.
type Config struct {
	// Store keeps the requests. The Broker does not close it.
	Store Store
	// GatewayID names this gateway, stable across its restarts: New marks
	// this gateway's pending requests abandoned, since their waiting
	// clients cannot have survived the restart.
	GatewayID string
	// Notifiers are told of every new and resolved request.
	Notifiers []Notifier
	// ApproveURL is the base of the web page approving a request; a
	// request's page is ApproveURL + "/" + ID. Empty: no link.
	ApproveURL string

	DefaultTimeout time.Duration // a request's wait when it sets none; 10m
	MaxTimeout     time.Duration // the longest wait a request may ask for; 24h
	// StoreTimeout bounds each store call the Broker makes on a waiter's
	// behalf (checking, expiring, withdrawing); 10s.
	StoreTimeout time.Duration
	// NotifyTimeout bounds one event's delivery to one notifier, retries
	// included; 30s.
	NotifyTimeout time.Duration
	NotifyWorkers int // concurrent deliveries; 4
	NotifyQueue   int // events waiting for a worker before new ones are dropped; 4096
	// SweepInterval is how often requests past their expiry whose waiter
	// is gone (another gateway died) are marked expired; 30s.
	SweepInterval time.Duration
	Logger        *slog.Logger
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.DefaultTimeout, 10*time.Minute)
	def(&c.MaxTimeout, 24*time.Hour)
	def(&c.StoreTimeout, 10*time.Second)
	def(&c.NotifyTimeout, 30*time.Second)
	def(&c.SweepInterval, 30*time.Second)
	if c.NotifyWorkers == 0 {
		c.NotifyWorkers = 4
	}
	if c.NotifyQueue == 0 {
		c.NotifyQueue = 4096
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first bad field.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("approval: Config.Store: required")
	case strings.TrimSpace(c.GatewayID) == "":
		return errors.New("approval: Config.GatewayID: required (a name for this gateway that stays the same across restarts)")
	case c.DefaultTimeout < 0, c.MaxTimeout < 0, c.StoreTimeout < 0, c.NotifyTimeout < 0, c.SweepInterval < 0:
		return errors.New("approval: Config: durations must not be negative")
	case c.DefaultTimeout > c.MaxTimeout && c.MaxTimeout > 0:
		return errors.New("approval: Config.DefaultTimeout: longer than MaxTimeout")
	case c.NotifyWorkers < 0, c.NotifyQueue < 0:
		return errors.New("approval: Config.NotifyWorkers, NotifyQueue: must not be negative")
	}
	for i, n := range c.Notifiers {
		if n == nil {
			return fmt.Errorf("approval: Config.Notifiers[%d]: nil", i)
		}
	}
	return nil
}

// Broker creates approval requests, lets approvers decide them and wakes
// the commands waiting on them. It is safe for concurrent use. A waiting
// command costs no goroutine of the Broker's: it waits in the caller's.
type Broker struct {
	cfg   Config
	store Store
	log   *slog.Logger

	mu      sync.Mutex
	waiters map[string]map[*waiter]struct{}
	closed  bool
	closing chan struct{}
	waiting sync.WaitGroup // Wait calls in progress

	stopWatch func()
	events    chan Event
	bgCancel  context.CancelFunc
	bg        sync.WaitGroup // sweeper and notify workers
}

type waiter struct {
	id   string
	wake chan struct{}
}

// New starts a Broker. It marks this gateway's pending requests (left by
// an earlier run) abandoned before returning.
func New(ctx context.Context, cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	b := &Broker{
		cfg:     cfg,
		store:   cfg.Store,
		log:     cfg.Logger.With("component", "approval", "gateway", cfg.GatewayID),
		waiters: map[string]map[*waiter]struct{}{},
		closing: make(chan struct{}),
		events:  make(chan Event, cfg.NotifyQueue),
	}
	if _, err := b.abandonOwn(ctx); err != nil {
		return nil, err
	}
	b.stopWatch = b.store.Watch(b.wake)
	bg, cancel := context.WithCancel(context.Background())
	b.bgCancel = cancel
	if len(cfg.Notifiers) > 0 {
		for range cfg.NotifyWorkers {
			b.bg.Go(func() { b.deliver(bg) })
		}
	}
	b.bg.Go(func() { b.sweep(bg) })
	return b, nil
}

// now is the Broker's clock, at the precision every store keeps.
func (b *Broker) now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// abandonOwn marks this gateway's pending requests abandoned.
func (b *Broker) abandonOwn(ctx context.Context) (int, error) {
	left, err := b.store.List(ctx, Filter{States: []State{StatePending}, GatewayID: b.cfg.GatewayID})
	if err != nil {
		return 0, fmt.Errorf("approval: find requests left pending by an earlier run: %w", err)
	}
	n := 0
	for _, r := range left {
		if _, changed, err := b.end(ctx, r.ID, StateAbandoned, "the gateway restarted while the command was waiting"); err != nil {
			return n, fmt.Errorf("approval: abandon request %s: %w", r.ID, err)
		} else if changed {
			n++
		}
	}
	if n > 0 {
		b.log.Info("marked requests left pending by an earlier run abandoned", "count", n)
	}
	return n, nil
}

// Request stores r as a new pending request, notifies the approvers and
// returns the handle to wait on. r is not modified.
func (b *Broker) Request(ctx context.Context, r *Request) (*Pending, error) {
	if b.isClosed() {
		return nil, ErrClosed
	}
	r = r.Clone()
	if err := r.validate(); err != nil {
		return nil, err
	}
	now := b.now()
	r.ID = ulid.Make().String()
	r.GatewayID = b.cfg.GatewayID
	r.Requester = stripped(r.Requester)
	r.GrantKey = GrantKeyFor(&r.Requester, r.Target.Name, r.Command)
	if r.Timeout == 0 {
		r.Timeout = b.cfg.DefaultTimeout
	}
	r.Timeout = min(r.Timeout, b.cfg.MaxTimeout)
	r.CreatedAt = now
	r.ExpiresAt = now.Add(r.Timeout)
	r.State = StatePending
	r.Decisions, r.ResolvedAt, r.ResolvedReason, r.GrantUntil = nil, time.Time{}, "", time.Time{}
	sctx, cancel := context.WithTimeout(ctx, b.cfg.StoreTimeout)
	defer cancel()
	if err := b.store.Create(sctx, r); err != nil {
		return nil, fmt.Errorf("approval: store request: %w", err)
	}
	b.log.Info("approval requested", "request", r.ID, "session", r.SessionID, "requester", r.Requester.Subject,
		"target", r.Target.Name, "rules", r.Rules, "approvers", r.Approvers, "quorum", r.quorum(), "expires", r.ExpiresAt)
	b.notify(EventRequested, r)
	return &Pending{b: b, req: r}, nil
}

// URL is the web page of request id, or "" without Config.ApproveURL.
func (b *Broker) URL(id string) string {
	if b.cfg.ApproveURL == "" {
		return ""
	}
	return strings.TrimRight(b.cfg.ApproveURL, "/") + "/" + id
}

// Approve records who's approval of request id and returns the request as
// it now is. Errors wrap ErrNotFound, ErrResolved, ErrExpired,
// ErrSelfApproval, ErrNotApprover or ErrAlreadyVoted.
func (b *Broker) Approve(ctx context.Context, id string, who *identity.Identity, reason string) (*Request, error) {
	return b.vote(ctx, id, who, true, reason)
}

// Deny records who's denial of request id, which resolves it denied.
// Errors are those of Approve.
func (b *Broker) Deny(ctx context.Context, id string, who *identity.Identity, reason string) (*Request, error) {
	return b.vote(ctx, id, who, false, reason)
}

func (b *Broker) vote(ctx context.Context, id string, who *identity.Identity, approve bool, reason string) (*Request, error) {
	if who == nil {
		return nil, fmt.Errorf("%w: no identity", ErrNotApprover)
	}
	v := Vote{Approver: stripped(*who), Approve: approve, Reason: reason}
	resolved := false
	r, err := b.store.Update(ctx, id, func(r *Request) error {
		if err := r.applyVote(v, b.now()); err != nil {
			return err
		}
		resolved = r.State.Final()
		return nil
	})
	if err != nil {
		return nil, err
	}
	b.log.Info("approval vote", "request", id, "session", r.SessionID, "approver", who.Subject, "approve", approve, "state", r.State)
	if resolved {
		b.notify(EventResolved, r)
	}
	return r, nil
}

// Withdraw resolves request id withdrawn on behalf of its requester.
func (b *Broker) Withdraw(ctx context.Context, id string, who *identity.Identity, reason string) (*Request, error) {
	if who == nil {
		return nil, ErrNotRequester
	}
	changed := false
	r, err := b.store.Update(ctx, id, func(r *Request) error {
		if !sameIdentity(who, &r.Requester) {
			return ErrNotRequester
		}
		if r.State.Final() {
			return fmt.Errorf("%w (%s)", ErrResolved, r.State)
		}
		r.resolve(StateWithdrawn, reason, b.now())
		changed = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	if changed {
		b.notify(EventResolved, r)
	}
	return r, nil
}

// Redeem uses approved request id for the command it approved, presented
// by its requester who (a retry under approval: async): atomically in the
// store, so that of every gateway and session presenting it, exactly one
// gets the request back and the others ErrUsed. A request that is not
// approved gives an error wrapping ErrNotApproved.
func (b *Broker) Redeem(ctx context.Context, id string, who *identity.Identity) (*Request, error) {
	if who == nil {
		return nil, ErrNotRequester
	}
	return b.store.Update(ctx, id, func(r *Request) error {
		switch {
		case !sameIdentity(who, &r.Requester):
			return ErrNotRequester
		case r.State != StateApproved:
			return fmt.Errorf("%w (%s)", ErrNotApproved, r.State)
		case !r.UsedAt.IsZero():
			return fmt.Errorf("%w at %s", ErrUsed, r.UsedAt.Format(time.RFC3339))
		}
		r.UsedAt = b.now()
		return nil
	})
}

// Get returns request id; the error wraps ErrNotFound when there is none.
func (b *Broker) Get(ctx context.Context, id string) (*Request, error) {
	return b.store.Get(ctx, id)
}

// List returns the requests matching f.
func (b *Broker) List(ctx context.Context, f Filter) ([]*Request, error) {
	return b.store.List(ctx, f)
}

// Granted returns the approved request whose grant window covers who
// running cmd on target now, or nil when none does. Call it before
// Request. On a store error it returns the error and no grant: callers
// then ask for approval (fail closed).
func (b *Broker) Granted(ctx context.Context, who *identity.Identity, target protocol.Target, cmd protocol.Command) (*Request, error) {
	if who == nil || who.Subject == "" {
		return nil, nil
	}
	sctx, cancel := context.WithTimeout(ctx, b.cfg.StoreTimeout)
	defer cancel()
	rs, err := b.store.List(sctx, Filter{
		States:        []State{StateApproved},
		GrantKey:      GrantKeyFor(who, target.Name, cmd),
		GrantActiveAt: b.now(),
		Limit:         1,
	})
	if err != nil {
		return nil, fmt.Errorf("approval: look up grants: %w", err)
	}
	if len(rs) == 0 {
		return nil, nil
	}
	return rs[0], nil
}

// end resolves request id as s unless it is resolved already; it returns
// the request as stored and whether this call changed it.
func (b *Broker) end(ctx context.Context, id string, s State, reason string) (*Request, bool, error) {
	changed := false
	r, err := b.store.Update(ctx, id, func(r *Request) error {
		if r.State.Final() {
			return nil
		}
		r.resolve(s, reason, b.now())
		changed = true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if changed {
		b.log.Info("approval request ended", "request", id, "session", r.SessionID, "state", s, "reason", reason)
		b.notify(EventResolved, r)
	}
	return r, changed, nil
}

// wake is the store's Watch callback: it nudges the waiters of id (of
// every request when id is ""). It never blocks.
func (b *Broker) wake(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	nudge := func(ws map[*waiter]struct{}) {
		for w := range ws {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
	if id != "" {
		nudge(b.waiters[id])
		return
	}
	for _, ws := range b.waiters {
		nudge(ws)
	}
}

func (b *Broker) register(id string) (*waiter, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	w := &waiter{id: id, wake: make(chan struct{}, 1)}
	ws := b.waiters[id]
	if ws == nil {
		ws = map[*waiter]struct{}{}
		b.waiters[id] = ws
	}
	ws[w] = struct{}{}
	b.waiting.Add(1)
	return w, nil
}

func (b *Broker) unregister(w *waiter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ws := b.waiters[w.id]; ws != nil {
		delete(ws, w)
		if len(ws) == 0 {
			delete(b.waiters, w.id)
		}
	}
	b.waiting.Done()
}

// Waiting is how many Wait calls are in progress.
func (b *Broker) Waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, ws := range b.waiters {
		n += len(ws)
	}
	return n
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// sweep marks requests past their expiry expired when nobody else does
// (their waiting gateway died).
func (b *Broker) sweep(ctx context.Context) {
	t := time.NewTicker(b.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, b.cfg.StoreTimeout)
		rs, err := b.store.List(sctx, Filter{States: []State{StatePending}, ExpiresBefore: b.now(), Limit: 1000})
		if err != nil && ctx.Err() == nil {
			b.log.Warn("approval sweep: list expired requests", "err", err)
		}
		for _, r := range rs {
			if _, _, err := b.end(sctx, r.ID, StateExpired, "nobody decided in time"); err != nil && ctx.Err() == nil {
				b.log.Warn("approval sweep: expire request", "request", r.ID, "err", err)
			}
		}
		cancel()
	}
}

// Close ends every wait (marking the requests abandoned: their clients
// will not get an answer from this gateway) and stops the Broker's
// goroutines. Notifications still queued are dropped. It does not close
// the Store.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.closing)
	b.mu.Unlock()
	b.waiting.Wait()
	b.stopWatch()
	b.bgCancel()
	b.bg.Wait()
	if n := len(b.events); n > 0 {
		b.log.Warn("approval: notifications dropped at close", "count", n)
	}
	return nil
}

// Pending is a request a command waits on.
type Pending struct {
	b   *Broker
	req *Request
}

// ID is the request's ID.
func (p *Pending) ID() string { return p.req.ID }

// Request is the request as created.
func (p *Pending) Request() *Request { return p.req.Clone() }

// URL is the request's approval page, or "".
func (p *Pending) URL() string { return p.b.URL(p.req.ID) }

// Notice is what to tell the waiting client (PostgreSQL NoticeResponse,
// SSH stderr, an HTTP header): which request, who can approve, how long
// it waits, and where to approve it.
func (p *Pending) Notice() string {
	r := p.req
	var s strings.Builder
	fmt.Fprintf(&s, "sluice: this command needs approval")
	if len(r.Rules) > 0 {
		fmt.Fprintf(&s, " (rule %s)", strings.Join(r.Rules, ", "))
	}
	fmt.Fprintf(&s, "; request %s is waiting for %s", r.ID, strings.Join(r.Approvers, " or "))
	if q := r.quorum(); q > 1 {
		fmt.Fprintf(&s, " (%d distinct approvers)", q)
	}
	fmt.Fprintf(&s, " for up to %s", r.Timeout)
	if u := p.URL(); u != "" {
		fmt.Fprintf(&s, "; approve at %s", u)
	}
	fmt.Fprintf(&s, " or with: sluice approvals approve %s", r.ID)
	return s.String()
}

// Wait blocks until the request is resolved and returns how. Cancelling
// ctx (the client cancelled or went away) withdraws the request; reaching
// ExpiresAt expires it, even when the store cannot be reached (fail
// closed); closing the Broker abandons it. Whenever the error is not nil
// the command must not run; Outcome.Approved is then false unless the
// store recorded an approval just before.
//
// Wait costs one timer and one channel; it starts no goroutine.
func (p *Pending) Wait(ctx context.Context) (Outcome, error) {
	b, id := p.b, p.req.ID
	w, err := b.register(id)
	if err != nil {
		return b.finish(p.req, StateAbandoned, "the gateway is shutting down", ErrClosed)
	}
	defer b.unregister(w)
	expiry := time.NewTimer(time.Until(p.req.ExpiresAt))
	defer expiry.Stop()
	last := p.req
	for {
		// Check after registering, so a decision made in between still
		// wakes us.
		gctx, cancel := context.WithTimeout(ctx, b.cfg.StoreTimeout)
		r, err := b.store.Get(gctx, id)
		cancel()
		var retry <-chan time.Time
		switch {
		case err == nil:
			last = r
			if r.State.Final() {
				return Outcome{State: r.State, Request: r}, nil
			}
		case ctx.Err() == nil:
			b.log.Warn("approval wait: check request", "request", id, "session", p.req.SessionID, "err", err)
			retry = time.After(time.Second)
		}
		select {
		case <-w.wake:
		case <-retry:
		case <-ctx.Done():
			return b.finish(last, StateWithdrawn, "the waiting client went away", ctx.Err())
		case <-expiry.C:
			return b.finish(last, StateExpired, fmt.Sprintf("nobody decided within %s", p.req.Timeout), nil)
		case <-b.closing:
			return b.finish(last, StateAbandoned, "the gateway shut down while the command was waiting", ErrClosed)
		}
	}
}

// finish ends a wait as s, returning the state the store settled on (an
// approval may have landed first). When the store cannot be reached the
// outcome is still s, never approved.
func (b *Broker) finish(last *Request, s State, reason string, cause error) (Outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.StoreTimeout)
	defer cancel()
	r, _, err := b.end(ctx, last.ID, s, reason)
	if err != nil {
		b.log.Warn("approval: record end of wait", "request", last.ID, "session", last.SessionID, "state", s, "err", err)
		r = last.Clone()
		r.resolve(s, reason, b.now())
		return Outcome{State: s, Request: r}, errors.Join(cause, fmt.Errorf("approval: record %s: %w", s, err))
	}
	return Outcome{State: r.State, Request: r}, cause
}

// Outcome is how a wait ended.
type Outcome struct {
	State   State
	Request *Request
}

// Approved reports whether the command may run.
func (o Outcome) Approved() bool { return o.State == StateApproved }

// Message explains the outcome to the waiting client.
func (o Outcome) Message() string {
	id := ""
	if o.Request != nil {
		id = o.Request.ID
	}
	by := func(approve bool) (names []string, reason string) {
		if o.Request == nil {
			return nil, ""
		}
		for _, v := range o.Request.Decisions {
			if v.Approve == approve {
				n := v.Approver.Name
				if n == "" {
					n = v.Approver.Subject
				}
				names = append(names, n)
				if v.Reason != "" {
					reason = v.Reason
				}
			}
		}
		return names, reason
	}
	switch o.State {
	case StateApproved:
		names, _ := by(true)
		return fmt.Sprintf("sluice: request %s approved by %s", id, strings.Join(names, ", "))
	case StateDenied:
		names, reason := by(false)
		m := fmt.Sprintf("sluice: request %s denied by %s", id, strings.Join(names, ", "))
		if reason != "" {
			m += ": " + reason
		}
		return m
	case StateExpired:
		return fmt.Sprintf("sluice: request %s expired: nobody approved it in time; the command was not run", id)
	case StateWithdrawn:
		return fmt.Sprintf("sluice: request %s withdrawn; the command was not run", id)
	case StateAbandoned:
		return fmt.Sprintf("sluice: request %s abandoned (the gateway restarted or shut down); the command was not run", id)
	}
	return fmt.Sprintf("sluice: request %s is %s; the command was not run", id, o.State)
}
