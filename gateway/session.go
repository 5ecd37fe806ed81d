package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/recording"
)

// maxAuthAttempts bounds Authenticate calls on one connection, so that a
// connection cannot be used to guess tokens; SSH-like protocols may try a
// few methods.
const maxAuthAttempts = 3

type sessionState int

const (
	sessHandshake     sessionState = iota // accepted, not authenticated
	sessAuthenticated                     // authenticated, no connect allowed yet
	sessActive                            // a connect was allowed
	sessEnded                             // the plugin returned
)

func (s sessionState) String() string {
	switch s {
	case sessHandshake:
		return "handshake"
	case sessAuthenticated:
		return "authenticated"
	case sessActive:
		return "active"
	}
	return "ended"
}

// session implements protocol.Session for one accepted connection.
type session struct {
	g          *Gateway
	t          *target
	id         string
	conn       net.Conn // the raw accepted connection
	clientAddr string
	start      time.Time
	log        *slog.Logger
	ctx        context.Context
	cancel     context.CancelCauseFunc
	overLimit  bool // set before run; Authenticate refuses
	counted    bool // counted in t.active
	commands   atomic.Uint64
	policyMemo *policy.Memo // rule verdicts by SQL form, for this session's identity

	authMu sync.Mutex // serializes Authenticate

	mu             sync.Mutex
	state          sessionState
	ident          *identity.Identity
	authAttempts   int
	endReason      string // set once: the session is ending for this reason
	handshakeTimer *time.Timer
	expiryTimer    *time.Timer
	closeTimer     *time.Timer // closes the connection if the plugin lingers after terminate

	wmu    sync.Mutex // serializes recorder writes; Seq order is write order
	rec    recording.Recorder
	seq    uint64
	broken bool // a write failed: every later Check fails closed
	closed bool // session.end written and the recorder closed
}

func newSession(g *Gateway, t *target, conn net.Conn, now time.Time) *session {
	s := &session{
		g:          g,
		t:          t,
		id:         ulid.MustNew(ulid.Timestamp(now), ulid.DefaultEntropy()).String(),
		conn:       conn,
		clientAddr: conn.RemoteAddr().String(),
		start:      now,
		policyMemo: policy.NewMemo(),
	}
	s.log = g.cfg.Logger.With("session_id", s.id, "target", t.cfg.Target.Name)
	s.ctx, s.cancel = context.WithCancelCause(g.baseCtx)
	s.handshakeTimer = time.AfterFunc(t.cfg.HandshakeTimeout, s.handshakeExpired)
	return s
}

// clientError is an error whose text is safe to show the client; the cause
// is kept for errors.Is but never printed.
type clientError struct {
	msg   string
	cause error
}

func (e *clientError) Error() string { return e.msg }
func (e *clientError) Unwrap() error { return e.cause }

// run serves the connection through the plugin and ends the session.
func (s *session) run() {
	defer s.g.sessWG.Done()
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("plugin panic: %v", r)
				s.log.Error("plugin panicked", "panic", r, "stack", string(debug.Stack()))
			}
		}()
		err = s.t.plugin.Serve(s.ctx, s.conn, s)
	}()
	s.finish(err)
}

// finish closes the connection, writes session.end exactly once for a
// recorded session and forgets the session.
func (s *session) finish(serveErr error) {
	s.mu.Lock()
	if s.endReason == "" {
		s.endReason = endReason(serveErr, s.state)
	}
	reason := s.endReason
	wasAuthenticated := s.state >= sessAuthenticated
	s.state = sessEnded
	s.handshakeTimer.Stop()
	if s.expiryTimer != nil {
		s.expiryTimer.Stop()
	}
	if s.closeTimer != nil {
		s.closeTimer.Stop()
	}
	subject := ""
	if s.ident != nil {
		subject = s.ident.Subject
	}
	s.mu.Unlock()
	s.cancel(nil)
	_ = s.conn.Close()

	s.wmu.Lock()
	if s.rec != nil && !s.closed {
		// Written even when the recorder is broken: a sink that recovered
		// still gets the end of the story.
		e := &recording.Entry{Type: recording.TypeSessionEnd, Reason: reason}
		if err := s.writeLocked(e); err != nil {
			s.log.Error("recording session.end failed", "error", err)
		}
		if err := s.rec.Close(); err != nil {
			s.log.Error("closing the recording failed", "error", err)
		}
		s.closed = true
	}
	s.wmu.Unlock()

	if wasAuthenticated {
		s.g.metrics.sessionsActive.WithLabelValues(s.t.cfg.Target.Name).Dec()
	}
	attrs := []any{"reason", reason, "duration", time.Since(s.start).Round(time.Millisecond), "commands", s.commands.Load()}
	if subject != "" {
		attrs = append(attrs, "subject", subject)
	}
	if serveErr != nil && reason != serveErr.Error() {
		attrs = append(attrs, "plugin_error", serveErr.Error())
	}
	s.log.Info("session ended", attrs...)
	// Last: whoever waits for the session to leave the live list sees
	// its end fully recorded and logged.
	s.g.removeSession(s)
}

// endReason names why the plugin's Serve returned when nobody ended the
// session on purpose.
func endReason(err error, st sessionState) string {
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "client closed"
	case st == sessHandshake && errors.Is(err, os.ErrDeadlineExceeded):
		return "handshake timeout"
	}
	return err.Error()
}

// setEndReason records why the session is about to end, unless a reason
// was already set.
func (s *session) setEndReason(reason string) {
	s.mu.Lock()
	if s.endReason == "" {
		s.endReason = reason
	}
	s.mu.Unlock()
}

// terminateGrace is how long a terminated session's plugin has to tell
// its client why, in its own protocol, before the connection is closed
// under it.
const terminateGrace = time.Second

// terminate ends the session: the plugin's context is cancelled, so that
// it can send the client its protocol's goodbye, and the connection is
// closed at the latest terminateGrace later.
func (s *session) terminate(reason string) {
	s.terminateCause(reason, errors.New(reason))
}

// terminateCause is terminate with the cause the plugin sees through
// context.Cause.
func (s *session) terminateCause(reason string, cause error) {
	s.setEndReason(reason)
	s.cancel(cause)
	s.mu.Lock()
	if s.state != sessEnded && s.closeTimer == nil {
		s.closeTimer = time.AfterFunc(terminateGrace, func() { _ = s.conn.Close() })
	}
	s.mu.Unlock()
}

// cutOff ends the session at once, closing the connection under a plugin
// that may be blocked reading from it.
func (s *session) cutOff(reason string) {
	s.setEndReason(reason)
	s.cancel(errors.New(reason))
	_ = s.conn.Close()
}

// handshakeExpired cuts off a connection that has not authenticated in
// time, even if the plugin moved the connection's deadline.
func (s *session) handshakeExpired() {
	s.mu.Lock()
	expired := s.state == sessHandshake
	s.mu.Unlock()
	if expired {
		s.log.Info("handshake timeout: closing the connection", "timeout", s.t.cfg.HandshakeTimeout)
		s.cutOff("handshake timeout")
	}
}

func (s *session) view() SessionView {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := SessionView{
		ID:         s.id,
		Target:     s.t.cfg.Target.Name,
		Protocol:   s.t.cfg.Target.Protocol,
		ClientAddr: s.clientAddr,
		Start:      s.start,
		Commands:   s.commands.Load(),
		State:      s.state.String(),
	}
	if s.ident != nil {
		v.Subject = s.ident.Subject
		v.Groups = append([]string(nil), s.ident.Groups...)
	}
	if s.endReason != "" && s.state != sessEnded {
		v.State = "ending"
	}
	return v
}

// Info implements protocol.Session.
func (s *session) Info() protocol.SessionInfo {
	s.mu.Lock()
	id := s.ident
	s.mu.Unlock()
	return protocol.SessionInfo{
		ID:         s.id,
		Identity:   id,
		Target:     &s.t.cfg.Target,
		ClientAddr: s.clientAddr,
		Start:      s.start,
	}
}

// CheckTransport implements protocol.Session: a credential may cross a
// plaintext connection only from a loopback address of a target that
// allows it.
func (s *session) CheckTransport(state *tls.ConnectionState) error {
	if state == nil && !(s.t.cfg.AllowPlaintextLoopback && isLoopback(s.conn.RemoteAddr())) {
		return &clientError{msg: msgPlaintext, cause: identity.ErrUnauthenticated}
	}
	return nil
}

// PolicyVersion implements protocol.PolicyVersioner: the decider's version
// when it has one (policy.Live after reloads), else 0.
func (s *session) PolicyVersion() uint64 {
	if v, ok := s.g.cfg.Decider.(policy.Versioned); ok {
		return v.Version()
	}
	return 0
}

// Limits implements protocol.Session.
func (s *session) Limits() protocol.Limits { return s.t.cfg.Limits }

// TLSConfig implements protocol.Session.
func (s *session) TLSConfig() *tls.Config { return s.t.tls }

// Logger implements protocol.Session.
func (s *session) Logger() *slog.Logger { return s.log }

// Masker implements protocol.Session: the masker compiled from the
// decision's mask entries, nil when there are none. Check has already
// denied a decision whose entries do not compile.
func (s *session) Masker(d protocol.Decision) masking.RowMasker {
	if len(d.Mask) == 0 {
		return nil
	}
	m, err := s.g.masker(d.Mask)
	if err != nil {
		return nil
	}
	return m
}

// Client-facing refusals.
const (
	msgPlaintext        = "sluice: a token must be sent over TLS; connect with sslmode=require"
	msgBadToken         = "sluice: authentication failed: token not recognised"
	msgNoToken          = "sluice: authentication failed: no token was sent"
	msgExpiredToken     = "sluice: authentication failed: the token has expired"
	msgIdPUnavailable   = "sluice: authentication failed: the identity service is unavailable, try again later"
	msgRecordingRefused = "sluice: recording unavailable, session refused"
	msgRecordingCommand = "sluice: recording unavailable, command refused"
	msgShuttingDown     = "sluice: the gateway is shutting down; reconnect in a moment"
	msgTooManyAttempts  = "sluice: too many authentication attempts on this connection"
	msgTerminated       = "sluice: the session was ended"
)

// Authenticate implements protocol.Session.
func (s *session) Authenticate(ctx context.Context, c identity.Credentials) (*identity.Identity, error) {
	s.authMu.Lock()
	defer s.authMu.Unlock()

	s.mu.Lock()
	st, ending := s.state, s.endReason != ""
	s.authAttempts++
	attempts := s.authAttempts
	s.mu.Unlock()
	switch {
	case st != sessHandshake && st != sessEnded:
		return nil, fmt.Errorf("sluice: the session is already authenticated: %w", protocol.ErrNotAuthorized)
	case s.g.isClosing():
		return nil, s.refuse(msgShuttingDown, nil, nil)
	case st == sessEnded || ending:
		return nil, s.refuse(msgTerminated, nil, nil)
	case attempts > maxAuthAttempts:
		return nil, s.refuse(msgTooManyAttempts, identity.ErrUnauthenticated, nil)
	case s.overLimit:
		msg := fmt.Sprintf("sluice: target %s has reached its session limit (%d)", s.t.cfg.Target.Name, s.t.cfg.MaxSessions)
		return nil, s.refuse(msg, nil, nil)
	case s.CheckTransport(c.TLS) != nil:
		return nil, s.refuse(msgPlaintext, identity.ErrUnauthenticated, nil)
	}

	// The authenticator and the sink answer before the handshake deadline
	// cuts the connection, so that the client can still be told why it
	// is refused (an identity provider that hangs is "unavailable").
	ctx, cancel := context.WithDeadline(ctx, s.authDeadline())
	defer cancel()
	id, err := s.g.cfg.Authenticator.Authenticate(ctx, c)
	switch {
	case err != nil && errors.Is(err, identity.ErrUnauthenticated):
		msg := msgBadToken
		if c.Token == "" {
			msg = msgNoToken
		}
		return nil, s.refuse(msg, identity.ErrUnauthenticated, scrub(err, c.Token))
	case err != nil:
		return nil, s.refuse(msgIdPUnavailable, nil, scrub(err, c.Token))
	case id == nil:
		return nil, s.refuse(msgBadToken, identity.ErrUnauthenticated, errors.New("authenticator returned no identity"))
	case !id.Expiry.IsZero() && !time.Now().Before(s.deadline(id)):
		return nil, s.refuse(msgExpiredToken, identity.ErrUnauthenticated, nil)
	}

	// Fail closed: no recorder, no session.
	info := s.Info()
	info.Identity = id
	rec, err := s.g.cfg.Recording.Open(ctx, info)
	if err != nil {
		return nil, s.refuse(msgRecordingRefused, protocol.ErrRecording, err)
	}
	if rec == nil {
		return nil, s.refuse(msgRecordingRefused, protocol.ErrRecording, errors.New("sink returned no recorder"))
	}
	s.wmu.Lock()
	s.rec = rec
	err = s.writeLocked(&recording.Entry{
		Type:       recording.TypeSessionStart,
		Identity:   id,
		Target:     info.Target,
		ClientAddr: s.clientAddr,
	})
	if err != nil {
		// Not a recorded session: no session.end follows.
		_ = rec.Close()
		s.rec, s.broken = nil, false
	}
	s.wmu.Unlock()
	if err != nil {
		return nil, s.refuse(msgRecordingRefused, protocol.ErrRecording, err)
	}

	s.mu.Lock()
	if s.endReason != "" { // terminated or timed out while we authenticated
		s.mu.Unlock()
		return nil, s.refuse(msgTerminated, nil, nil)
	}
	s.state = sessAuthenticated
	s.ident = id
	s.handshakeTimer.Stop()
	if !id.Expiry.IsZero() {
		expiry := id.Expiry
		s.expiryTimer = time.AfterFunc(time.Until(s.deadline(id)), func() {
			s.log.Info("credential expired: ending the session", "expired_at", expiry)
			s.terminateCause("credential expired", fmt.Errorf("%w at %s", protocol.ErrCredentialExpired, expiry.UTC().Format(time.RFC3339)))
		})
	}
	s.mu.Unlock()
	_ = s.conn.SetDeadline(time.Time{})

	name := s.t.cfg.Target.Name
	s.g.metrics.sessionsTotal.WithLabelValues(name, resultAuthenticated).Inc()
	s.g.metrics.sessionsActive.WithLabelValues(name).Inc()
	s.log.Info("session authenticated", "subject", id.Subject, "method", id.Method, "groups", id.Groups, "client_addr", s.clientAddr)
	return id, nil
}

// authDeadline is when Authenticate stops waiting on the authenticator
// and the recording sink: a tenth of the handshake timeout (at most
// 500ms) before the handshake deadline, which leaves the plugin time to
// send its refusal.
func (s *session) authDeadline() time.Time {
	timeout := s.t.cfg.HandshakeTimeout
	return s.start.Add(timeout - min(timeout/10, 500*time.Millisecond))
}

// refuse counts and logs a refused authentication and returns the
// client-safe error. cause is what errors.Is finds; detail is logged only.
func (s *session) refuse(msg string, cause, detail error) error {
	s.g.metrics.sessionsTotal.WithLabelValues(s.t.cfg.Target.Name, resultRefused).Inc()
	attrs := []any{"reason", msg, "client_addr", s.clientAddr}
	if detail != nil {
		attrs = append(attrs, "error", detail.Error())
	}
	s.log.Warn("authentication refused", attrs...)
	return &clientError{msg: msg, cause: cause}
}

// scrub removes the token from an error's text: authenticators promise
// not to echo it, and the gateway does not rely on the promise.
func scrub(err error, token string) error {
	if err == nil || token == "" || !strings.Contains(err.Error(), token) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), token, "[redacted]"))
}

func isLoopback(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// deny is the decision returned alongside an error: the plugin must not
// forward the command either way.
func deny(msg string) protocol.Decision {
	return protocol.Decision{Action: protocol.Deny, Message: msg}
}

// Check implements protocol.Session.
func (s *session) Check(ctx context.Context, cmd *protocol.Command) (protocol.Decision, error) {
	started := time.Now()
	if cmd == nil {
		return deny("sluice: no command"), errors.New("sluice: Check called without a command")
	}
	s.mu.Lock()
	st, id := s.state, s.ident
	s.mu.Unlock()
	var orderErr error
	switch {
	case st == sessHandshake:
		orderErr = fmt.Errorf("sluice: authenticate before sending commands: %w", protocol.ErrNotAuthorized)
	case st == sessEnded || s.ctx.Err() != nil:
		orderErr = fmt.Errorf("sluice: the session has ended: %w", protocol.ErrNotAuthorized)
	case st == sessAuthenticated && cmd.Kind != protocol.KindConnect:
		orderErr = fmt.Errorf("sluice: no connect has been allowed on this session yet: %w", protocol.ErrNotAuthorized)
	}
	if orderErr != nil {
		s.log.Warn("command refused: out of order", "kind", cmd.Kind, "state", st.String())
		return deny(orderErr.Error()), orderErr
	}
	if s.isBroken() {
		return deny(msgRecordingCommand), &clientError{msg: msgRecordingCommand, cause: protocol.ErrRecording}
	}

	now := time.Now()
	in := &policy.Input{Identity: id, Target: &s.t.cfg.Target, Session: s.Info(), Command: cmd, Now: now, Memo: s.policyMemo}
	d, err := s.g.cfg.Decider.Decide(ctx, in)
	if err != nil {
		s.log.Warn("policy could not decide; denying", "error", err)
		d = deny("sluice: policy could not decide: " + err.Error())
	}
	d = s.enforce(d, id, now)
	if d.Action == protocol.RequireApproval && cmd.Attrs["extended"] == "parse" {
		// A prepared statement runs later, many times, with values not
		// known yet: let it be prepared, and hold each execution for
		// approval instead, when the plugin checks it with its values.
		d.Action = protocol.Allow
		d.PerExecution = true
		d.Message = "sluice: each execution of this statement needs approval"
	}

	rd := d
	seq, err := s.write(&recording.Entry{Type: recording.TypeCommand, Command: cmd, Decision: &rd})
	if err != nil {
		s.log.Error("recording the command failed; refusing it and every later command", "error", err)
		s.t.metrics.denied.Inc()
		return protocol.Decision{Action: protocol.Deny, Message: msgRecordingCommand, Rules: d.Rules},
			&clientError{msg: msgRecordingCommand, cause: protocol.ErrRecording}
	}
	d.Seq = seq
	if d.Action == protocol.RequireApproval {
		d = s.awaitApproval(ctx, cmd, d)
		if d.Action == protocol.Allow {
			d.Seq = seq
		}
	}
	s.commands.Add(1)
	if cmd.Kind == protocol.KindConnect && d.Allowed() {
		s.mu.Lock()
		if s.state == sessAuthenticated {
			s.state = sessActive
		}
		s.mu.Unlock()
	}
	s.t.metrics.command(d.Action).Inc()
	s.t.metrics.check.Observe(time.Since(started).Seconds())
	s.log.Debug("command checked", "seq", seq, "kind", cmd.Kind, "action", d.Action, "rules", d.Rules)
	return d, nil
}

// awaitApproval holds a command that policy says needs approval: a grant
// window from an earlier approval lets it through; otherwise it files a
// request, tells the client where to get it approved (through the
// plugin's NoticeFunc), and waits until approvers decide, the request
// expires, or ctx ends (the client withdrew it). Every step is recorded.
// Anything but an approval denies (fail closed).
func (s *session) awaitApproval(ctx context.Context, cmd *protocol.Command, d protocol.Decision) protocol.Decision {
	b := s.g.cfg.Approvals
	info := s.Info()
	denied := func(msg string) protocol.Decision {
		return protocol.Decision{Action: protocol.Deny, Rules: d.Rules, Message: msg}
	}
	approved := func(msg string) protocol.Decision {
		return protocol.Decision{Action: protocol.Allow, Rules: d.Rules, Mask: d.Mask, Message: msg}
	}
	recordStep := func(msg string) bool {
		if _, err := s.write(&recording.Entry{Type: recording.TypeApproval, CommandSeq: d.Seq, Message: msg}); err != nil {
			s.log.Error("recording an approval step failed; refusing the command", "error", err)
			return false
		}
		return true
	}
	if g, err := b.Granted(ctx, info.Identity, *info.Target, *cmd); err == nil && g != nil {
		if !recordStep("allowed by the grant window of approval request " + g.ID) {
			return denied(msgRecordingCommand)
		}
		return approved("sluice: allowed by the grant window of approval request " + g.ID)
	}
	if ids := protocol.ApprovalIDs(ctx); len(ids) > 0 {
		if out, ok := s.redeem(ctx, cmd, d, ids); ok {
			return out
		}
	}
	req := approval.NewRequest(info, *cmd, d)
	p, err := b.Request(ctx, req)
	if err != nil {
		s.log.Error("the approval service could not take the request; denying", "error", err)
		recordStep("approval service unavailable: " + err.Error())
		return denied("sluice: this command needs approval, but the approval service is unavailable")
	}
	if !recordStep("approval request " + p.ID() + " pending") {
		return denied(msgRecordingCommand)
	}
	if protocol.AsyncApproval(ctx) {
		// The client does not wait: it comes back with the id.
		s.log.Info("command filed for approval; the client will come back with the request id", "request", p.ID(), "rules", d.Rules)
		return protocol.Decision{Action: protocol.RequireApproval, Rules: d.Rules, Message: p.Notice(),
			Approvers: d.Approvers, Quorum: d.Quorum, Timeout: d.Timeout, Seq: d.Seq, ApprovalID: p.ID()}
	}
	s.log.Info("command waiting for approval", "request", p.ID(), "rules", d.Rules)
	if notify := protocol.NoticeFrom(ctx); notify != nil {
		notify(p.Notice())
	}
	out, err := p.Wait(ctx)
	msg := out.Message()
	if err != nil && msg == "" {
		msg = "sluice: approval request " + p.ID() + " could not be decided: " + err.Error()
	}
	if !recordStep(fmt.Sprintf("approval request %s %s", p.ID(), out.State)) {
		return denied(msgRecordingCommand)
	}
	s.log.Info("approval decided", "request", p.ID(), "state", out.State)
	if err == nil && out.Approved() {
		return approved(msg)
	}
	return denied(msg)
}

// deadline is when a session of id must end: its credential's expiry
// plus the configured grace.
func (s *session) deadline(id *identity.Identity) time.Time {
	return id.Expiry.Add(s.g.cfg.ExpiryGrace)
}

// enforce turns a decision into one the gateway can carry out, failing
// closed on anything it cannot.
func (s *session) enforce(d protocol.Decision, id *identity.Identity, now time.Time) protocol.Decision {
	if id != nil && !id.Expiry.IsZero() && !now.Before(s.deadline(id)) {
		return protocol.Decision{Action: protocol.Deny, Rules: d.Rules,
			Message: "sluice: your token has expired; reconnect with a fresh one"}
	}
	switch d.Action {
	case protocol.Allow:
		if len(d.Mask) > 0 {
			if _, err := s.g.masker(d.Mask); err != nil {
				s.log.Error("the decision's masking does not compile; denying", "mask", d.Mask, "error", err)
				d.Action = protocol.Deny
				d.Message = "sluice: the masking this command needs cannot be applied (" + err.Error() + ")"
			}
		}
	case protocol.Deny:
		if d.Message == "" {
			d.Message = "sluice: command denied by policy"
		}
	case protocol.RequireApproval:
		if len(d.Mask) > 0 {
			if _, err := s.g.masker(d.Mask); err != nil {
				d.Action = protocol.Deny
				d.Message = "sluice: the masking this command needs cannot be applied (" + err.Error() + ")"
				return d
			}
		}
		if s.g.cfg.Approvals != nil {
			return d // Check waits for the approvers
		}
		// No approval service: fail closed, keeping the rules.
		rule := strings.Join(d.Rules, ", ")
		if rule == "" {
			rule = "unnamed"
		}
		d.Action = protocol.Deny
		d.Message = fmt.Sprintf("sluice: this command needs approval (rule %s) but no approval service is configured", rule)
	default:
		d.Message = fmt.Sprintf("sluice: policy returned an unknown action %q", d.Action)
		d.Action = protocol.Deny
	}
	return d
}

// Record implements protocol.Session.
func (s *session) Record(_ context.Context, ev protocol.Event) error {
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	if st == sessHandshake {
		return fmt.Errorf("sluice: nothing is recorded before authentication: %w", protocol.ErrNotAuthorized)
	}
	switch string(ev.Type) {
	case "":
		return errors.New("sluice: Record: event type is empty")
	case recording.TypeSessionStart, recording.TypeSessionEnd, recording.TypeCommand, recording.TypeApproval:
		return fmt.Errorf("sluice: Record: event type %q is written by the gateway", ev.Type)
	}
	_, err := s.write(&recording.Entry{
		Type:       string(ev.Type),
		CommandSeq: ev.CommandSeq,
		Result:     ev.Result,
		Data:       ev.Data,
		Message:    ev.Message,
		Code:       ev.Code,
	})
	if err != nil {
		s.log.Error("recording an event failed; later commands are refused", "type", ev.Type, "error", err)
		return &clientError{msg: "sluice: recording unavailable", cause: protocol.ErrRecording}
	}
	if r := ev.Result; r != nil {
		if r.Bytes > 0 {
			s.t.metrics.bytes.Add(float64(r.Bytes))
		}
		if r.Rows > 0 {
			s.t.metrics.rows.Add(float64(r.Rows))
		}
		if r.Duration > 0 {
			s.t.metrics.duration.Observe(r.Duration.Seconds())
		}
	}
	return nil
}

// Credential implements protocol.Session.
func (s *session) Credential(ctx context.Context) (credstore.Credential, error) {
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	if st != sessActive || s.ctx.Err() != nil {
		return credstore.Credential{}, fmt.Errorf("sluice: the backend credential is available only after an allowed connect: %w", protocol.ErrNotAuthorized)
	}
	c, err := s.g.cfg.Credentials.Resolve(ctx, s.t.cfg.Credential)
	if err != nil {
		// credstore errors name the reference, never the secret.
		s.log.Error("resolving the backend credential failed", "error", err)
		return credstore.Credential{}, &clientError{
			msg:   fmt.Sprintf("sluice: the backend credential of target %s is unavailable", s.t.cfg.Target.Name),
			cause: err,
		}
	}
	return c, nil
}

func (s *session) isBroken() bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.broken
}

// write records an entry, filling Seq, Time and Session. A nil error means
// the recorder holds the entry as durably as its own policy promises (the
// file sink has handed it to the OS); the gateway does not Flush per entry,
// which would override a sink's fsync policy.
func (s *session) write(e *recording.Entry) (uint64, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	switch {
	case s.rec == nil:
		return 0, errors.New("no recorder is open")
	case s.closed:
		return 0, errors.New("the recording is closed")
	case s.broken:
		return 0, errors.New("the recording failed earlier")
	}
	if err := s.writeLocked(e); err != nil {
		return 0, err
	}
	return e.Seq, nil
}

// writeLocked writes with s.wmu held. A failure marks the recording
// broken; an entry the recorder refused does not consume its Seq.
func (s *session) writeLocked(e *recording.Entry) error {
	e.Seq = s.seq + 1
	e.Time = time.Now().UTC()
	e.Session = s.id
	if err := s.rec.Write(e); err != nil {
		s.broken = true
		return err
	}
	s.seq = e.Seq
	return nil
}

// MayAllow reports whether policy could allow cmd (or send it for
// approval) for this session's caller with some values of the parts
// policy.Prober treats as unknown (a tool's arguments, a body). It decides
// nothing and records nothing: the MCP extension uses it to list only the
// tools the caller may call; every call is still checked. It is false
// before a connect was allowed, and when the decider cannot probe.
func (s *session) MayAllow(ctx context.Context, cmd *protocol.Command) (bool, error) {
	s.mu.Lock()
	st, id := s.state, s.ident
	s.mu.Unlock()
	if st != sessActive || cmd == nil {
		return false, nil
	}
	p, ok := s.g.cfg.Decider.(policy.Prober)
	if !ok {
		return false, nil
	}
	return p.MayAllow(ctx, &policy.Input{Identity: id, Target: &s.t.cfg.Target, Session: s.Info(), Command: cmd, Now: time.Now()})
}
