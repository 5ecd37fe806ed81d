package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/protocol/postgres/pgsql"
)

// denySQL is sent to the backend in place of a refused command. It always
// raises, so PostgreSQL itself aborts the transaction, skips the rest of an
// extended-protocol batch until Sync, and keeps pipelined replies in order.
// The relay rewrites the resulting ErrorResponse into the real denial, so
// nothing of the caller's text or the rule's message is ever placed in SQL.
const denySQL = `DO $sluice$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'sluice: command refused'; END$sluice$`

// errClientClosed ends a session the client closed (Terminate or EOF).
var errClientClosed = errors.New("client closed")

// pending is one client message the backend will answer, in the order sent.
type pending struct {
	typ       byte // 'Q', 'P', 'B', 'D', 'E', 'C', 'S'
	synthetic bool // a ParseComplete/BindComplete the client must not see
	// deny, when set, replaces the backend's error for this message.
	deny   *pgproto3.ErrorResponse
	stmt   *statement
	portal *portal
	res    *result
}

func (p *pending) extended() bool {
	switch p.typ {
	case 'P', 'B', 'D', 'E', 'C':
		return true
	}
	return false
}

// statement is a prepared statement of the client's session.
type statement struct {
	name string
	cmd  *protocol.Command
	seq  uint64 // the recorded command
	ver  uint64 // the policy version it was decided under
	dec  protocol.Decision
	cols []pgproto3.FieldDescription // from a Describe; response loop only
	// paramOIDs are the parameter types the backend described; set by
	// the response loop, read by the request loop, guarded by relay.mu.
	paramOIDs []uint32
}

// portal is a bound statement.
type portal struct {
	stmt          *statement
	params        []*string
	resultFormats []int16
	cols          []pgproto3.FieldDescription // response loop only
}

// relay carries one authenticated session between client and backend.
type relay struct {
	p      *Plugin
	s      protocol.Session
	log    *slog.Logger
	limits protocol.Limits

	client  net.Conn
	backend net.Conn
	cr      *frameReader
	br      *frameReader
	cw      *writer
	bw      *writer

	mu       sync.Mutex
	queue    []*pending
	txStatus byte
	// settled is true when every command sent has been answered and a
	// ReadyForQuery followed: only then has the backend reported every
	// setting change (PostgreSQL sends ParameterStatus just before
	// ReadyForQuery, not when a SET inside an unsynced batch runs).
	settled     bool
	draining    bool
	drainReason string
	closing     bool
	backendErr  string // a FATAL the backend sent, for the end reason
	backendLost bool   // the backend connection ended under the session
	clientDone  bool   // the client sent Terminate
	serverParam map[string]string

	// idle is signalled (under mu) whenever the queue empties or the
	// session starts closing.
	idle *sync.Cond

	database string // the backend database, for catalog lookups
	// searchPathChanged is set once the session may have changed its
	// search_path (response loop reads it only after the request loop set
	// it and the backend answered, so the queue's mutex orders them).
	searchPathChanged atomic.Bool

	// Request-loop state.
	stmts    map[string]*statement
	portals  map[string]*portal
	prepared *pgsql.PreparedSet

	// waitCancel withdraws the check in progress (an approval the client
	// waits for) when the client sends a CancelRequest; guarded by mu.
	waitCancel context.CancelFunc

	// checkCtx is the context checks run under (request loop only): the
	// request loop's context with a cancel of its own and the notice
	// callback, made once and reused until a withdrawal cancels it, so
	// that a check does not allocate one. Check keeps no context past its
	// return (approval waits happen inside it).
	checkCtx    context.Context
	checkParent context.Context
	checkCancel context.CancelFunc

	closeOnce sync.Once
}

func newRelay(p *Plugin, s protocol.Session, client net.Conn, cw *writer, cr *frameReader, hj *pgconn.HijackedConn) *relay {
	limits := s.Limits()
	cr.max = limits.MaxMessageSize
	cw.setTimeout(limits.ClientWriteTimeout)
	r := &relay{
		p:           p,
		s:           s,
		log:         s.Logger(),
		limits:      limits,
		client:      client,
		backend:     hj.Conn,
		cr:          cr,
		br:          newFrameReader(hj.Conn, 0),
		cw:          cw,
		bw:          newWriter(hj.Conn),
		txStatus:    hj.TxStatus,
		serverParam: hj.ParameterStatuses,
		stmts:       map[string]*statement{},
		portals:     map[string]*portal{},
		prepared:    pgsql.NewPreparedSet(),
		// pgconn consumed the login's ReadyForQuery: everything the
		// backend reported at login is in serverParam.
		settled: true,
	}
	r.idle = sync.NewCond(&r.mu)
	return r
}

// run relays until either side ends, the session is terminated, or it is
// drained. A nil error means the client closed the session.
func (r *relay) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reqc := make(chan error, 1)
	respc := make(chan error, 1)
	go func() { reqc <- r.requestLoop(ctx) }()
	go func() { respc <- r.responseLoop(ctx) }()

	var reqErr, respErr error
	var gotReq, gotResp bool
	select {
	case reqErr = <-reqc:
		gotReq = true
	case respErr = <-respc:
		gotResp = true
	case <-ctx.Done():
		if cause := context.Cause(ctx); errors.Is(cause, protocol.ErrCredentialExpired) {
			r.sendFatal(codeConnectionFailure, "sluice: the session ended: "+cause.Error()+"; reconnect with a fresh token")
		} else {
			r.sendFatal(codeAdminShutdown, "sluice: the session was terminated")
		}
	}
	r.closeConns()
	if !gotReq {
		reqErr = <-reqc
	}
	if !gotResp {
		respErr = <-respc
	}
	r.mu.Lock()
	draining, drainReason, backendErr, clientDone := r.draining && r.closing, r.drainReason, r.backendErr, r.clientDone
	backendLost := r.backendLost
	r.mu.Unlock()
	switch {
	case clientDone:
		// The client said goodbye; whichever side noticed the close
		// first, the session ended because the client ended it.
		return nil
	case ctx.Err() != nil && context.Cause(ctx) != nil && !gotReq && !gotResp:
		return context.Cause(ctx)
	case draining:
		return fmt.Errorf("drained: %s", drainReason)
	case backendErr != "":
		return fmt.Errorf("backend ended the session: %s", backendErr)
	case backendLost:
		// Whether or not the client, told so, closed first.
		return errors.New("backend closed the connection")
	case gotReq && errors.Is(reqErr, errClientClosed):
		return nil
	case gotReq:
		return reqErr
	case gotResp && respErr != nil:
		return respErr
	}
	return nil
}

func (r *relay) closeConns() {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closing = true
		r.idle.Broadcast()
		r.mu.Unlock()
		_ = r.client.Close()
		_ = r.backend.Close()
	})
}

// sendFatal tells the client why its session ends, without waiting long
// for a client that does not read. The deadline goes on the connection
// first, without the writer's lock, so that a write already blocked on
// such a client (holding the lock) gives up too.
func (r *relay) sendFatal(code, msg string) {
	_ = r.client.SetWriteDeadline(time.Now().Add(time.Second))
	r.cw.setTimeout(time.Second)
	_ = r.cw.msg(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
	_ = r.cw.flush()
}

// drain ends the session as soon as it is idle: nothing in flight and no
// open transaction.
func (r *relay) drain(reason string) {
	r.mu.Lock()
	r.draining = true
	r.drainReason = reason
	idle := len(r.queue) == 0 && r.txStatus == 'I' && !r.closing
	if idle {
		r.closing = true
	}
	r.mu.Unlock()
	if idle {
		r.sendFatal(codeAdminShutdown, "sluice: "+reason)
		r.closeConns()
	}
}

// push queues expected replies; false means the session is closing and
// nothing more may be sent to the backend.
func (r *relay) push(ps ...*pending) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return false
	}
	r.queue = append(r.queue, ps...)
	r.settled = false
	return true
}

func (r *relay) head() *pending {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return nil
	}
	return r.queue[0]
}

func (r *relay) pop() *pending {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return nil
	}
	p := r.queue[0]
	r.queue[0] = nil
	r.queue = r.queue[1:]
	if len(r.queue) == 0 {
		r.idle.Broadcast()
	}
	return p
}

// skipToSync drops the replies PostgreSQL will not send after an error in
// an extended-protocol batch: everything up to the next Sync.
func (r *relay) skipToSync() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.queue) > 0 && r.queue[0].typ != 'S' {
		r.queue[0] = nil
		r.queue = r.queue[1:]
	}
	if len(r.queue) == 0 {
		r.idle.Broadcast()
	}
}

// ---- client -> backend ----

func (r *relay) requestLoop(ctx context.Context) error {
	for {
		typ, body, err := r.cr.next()
		if err != nil {
			if errors.Is(err, errFrameTooLarge) {
				r.sendFatal(codeProtocolViolation, "sluice: "+err.Error())
				return err
			}
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return errClientClosed
			}
			return fmt.Errorf("reading from client: %w", err)
		}
		msg, err := decodeFrontend(typ, body)
		if err != nil || typ == 'p' {
			if err == nil {
				err = errors.New("unexpected password message")
			}
			r.sendFatal(codeProtocolViolation, "sluice: protocol violation: "+err.Error())
			return err
		}
		if err := r.handleFrontend(ctx, typ, body, msg); err != nil {
			return err
		}
		if !r.cr.buffered() {
			if err := r.bw.flush(); err != nil {
				return fmt.Errorf("writing to backend: %w", err)
			}
		}
	}
}

func (r *relay) handleFrontend(ctx context.Context, typ byte, body []byte, msg pgproto3.FrontendMessage) error {
	switch m := msg.(type) {
	case *pgproto3.Query:
		return r.handleQuery(ctx, body, m)
	case *pgproto3.Parse:
		return r.handleParse(ctx, body, m)
	case *pgproto3.Bind:
		pt := &portal{stmt: r.stmts[m.PreparedStatement], resultFormats: append([]int16(nil), m.ResultFormatCodes...)}
		var oids []uint32
		if pt.stmt != nil {
			r.mu.Lock()
			oids = pt.stmt.paramOIDs
			r.mu.Unlock()
		}
		pt.params = renderParams(m.Parameters, m.ParameterFormatCodes, r.limits.RecordBytes, oids)
		r.portals[m.DestinationPortal] = pt
		return r.forward(typ, body, &pending{typ: 'B', portal: pt})
	case *pgproto3.Describe:
		p := &pending{typ: 'D'}
		if m.ObjectType == 'S' {
			p.stmt = r.stmts[m.Name]
		} else {
			p.portal = r.portals[m.Name]
		}
		return r.forward(typ, body, p)
	case *pgproto3.Execute:
		pt := r.portals[m.Portal]
		res := &result{start: time.Now()}
		if pt != nil {
			res.portal = pt
			res.params = pt.params
		}
		if pt != nil && pt.stmt != nil {
			dec := pt.stmt.dec
			if dec.PerExecution || r.policyVersion() != pt.stmt.ver {
				// Each execution needs its own decision (an approval
				// with its values), or the policy changed since the
				// statement was prepared: decide again before it runs.
				var refusal *pgproto3.ErrorResponse
				if dec, refusal = r.recheck(ctx, pt.stmt, pt); refusal != nil {
					return r.refuseExtended(refusal)
				}
			}
			res.seq = dec.Seq
			res.masker = r.s.Masker(dec)
			res.text = pt.stmt.cmd.Text
			r.noteSearchPath(pt.stmt.cmd.Text, pt.stmt.cmd.SQL)
		}
		return r.forward(typ, body, &pending{typ: 'E', portal: pt, res: res})
	case *pgproto3.Close:
		if m.ObjectType == 'S' {
			delete(r.stmts, m.Name)
			r.prepared.Remove(m.Name)
		} else {
			delete(r.portals, m.Name)
		}
		return r.forward(typ, body, &pending{typ: 'C'})
	case *pgproto3.Sync:
		return r.forward(typ, body, &pending{typ: 'S'})
	case *pgproto3.Flush, *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
		return r.forward(typ, body)
	case *pgproto3.Terminate:
		r.mu.Lock()
		r.clientDone = true
		r.mu.Unlock()
		_ = r.bw.raw(typ, body)
		_ = r.bw.flush()
		return errClientClosed
	case *pgproto3.FunctionCall:
		// The fast-path interface calls a function by OID with no SQL
		// for policy to read; it is refused.
		r.log.Warn("fast-path function call refused", "function_oid", m.Function)
		return r.refuseSimple(errorResponse(codeFeatureNotSupported, "sluice: the fast-path function call interface is not allowed through the gateway"))
	}
	return fmt.Errorf("unexpected %q message", typ)
}

// forward queues the expected replies, then passes the message on as is.
func (r *relay) forward(typ byte, body []byte, ps ...*pending) error {
	if !r.push(ps...) {
		return errClientClosed
	}
	if err := r.bw.raw(typ, body); err != nil {
		return fmt.Errorf("writing to backend: %w", err)
	}
	return nil
}

func (r *relay) check(ctx context.Context, cmd *protocol.Command) (protocol.Decision, *pgproto3.ErrorResponse) {
	if r.checkCtx == nil || r.checkParent != ctx || r.checkCtx.Err() != nil {
		if r.checkCancel != nil {
			r.checkCancel()
		}
		cctx, cancel := context.WithCancel(ctx)
		r.checkCtx, r.checkParent, r.checkCancel = protocol.WithNotice(cctx, r.notice), ctx, cancel
	}
	r.mu.Lock()
	r.waitCancel = r.checkCancel
	r.mu.Unlock()
	dec, err := r.s.Check(r.checkCtx, cmd)
	r.mu.Lock()
	r.waitCancel = nil
	r.mu.Unlock()
	if err != nil {
		r.log.Error("command refused: check failed", "error", err)
		return dec, errorResponse(codeSystemError, clientText(err.Error()))
	}
	if !dec.Allowed() {
		return dec, errorResponse(codeInsufficientPrivilege, denialMessage(dec))
	}
	return dec, nil
}

func (r *relay) handleQuery(ctx context.Context, body []byte, m *pgproto3.Query) error {
	an, sql, err := r.classify(m.String)
	if err != nil {
		return err
	}
	dec, refusal := r.check(ctx, &protocol.Command{Protocol: Name, Kind: protocol.KindQuery, Text: m.String, SQL: sql})
	if refusal != nil {
		return r.refuseSimple(refusal)
	}
	r.prepared.Observe(an)
	// A simple query replaces the unnamed statement and portal.
	delete(r.stmts, "")
	delete(r.portals, "")
	r.noteSearchPath(m.String, sql)
	res := &result{seq: dec.Seq, masker: r.s.Masker(dec), start: time.Now(), text: m.String}
	return r.forward('Q', body, &pending{typ: 'Q', res: res})
}

// refuseSimple answers a refused simple query (or function call) through
// the backend, so the refusal aborts the transaction as an error would.
func (r *relay) refuseSimple(e *pgproto3.ErrorResponse) error {
	delete(r.stmts, "")
	delete(r.portals, "")
	if !r.push(&pending{typ: 'Q', deny: e}) {
		return errClientClosed
	}
	if err := r.bw.msg(&pgproto3.Query{String: denySQL}); err != nil {
		return fmt.Errorf("writing to backend: %w", err)
	}
	return nil
}

func (r *relay) handleParse(ctx context.Context, body []byte, m *pgproto3.Parse) error {
	_, sql, err := r.classify(m.Query)
	if err != nil {
		return err
	}
	cmd := &protocol.Command{Protocol: Name, Kind: protocol.KindQuery, Text: m.Query, SQL: sql,
		Attrs: map[string]string{"extended": "parse", "statement": m.Name}}
	ver := r.policyVersion()
	dec, refusal := r.check(ctx, cmd)
	if refusal != nil {
		delete(r.stmts, m.Name)
		return r.refuseExtended(refusal)
	}
	st := &statement{name: m.Name, cmd: cmd, seq: dec.Seq, ver: ver, dec: dec}
	r.stmts[m.Name] = st
	r.prepared.Add(m.Name, sql)
	return r.forward('P', body, &pending{typ: 'P', stmt: st})
}

// classify parses a command's SQL the way the backend will lex it. The
// lexing depends on session settings the backend reports in
// ParameterStatus (standard_conforming_strings, client_encoding); a text
// whose lexing could depend on them (it has a backslash) is classified
// only once nothing is in flight, so that no pipelined command can change
// the settings between classification and execution.
//
// Inside an extended-protocol batch with no Sync yet, a SET may already
// have run without being reported; then the text is classified under both
// lexings and the policy sees the statements of both (a text whose
// backslashes also meet non-ASCII bytes is refused there, since a change
// of client_encoding cannot be modelled that way).
func (r *relay) classify(text string) (*pgsql.Result, *protocol.SQL, error) {
	settled := true
	if strings.IndexByte(text, '\\') >= 0 {
		if err := r.waitIdle(); err != nil {
			return nil, nil, err
		}
		r.mu.Lock()
		settled = r.settled
		r.mu.Unlock()
	}
	r.mu.Lock()
	opts := pgsql.DefaultOptions()
	opts.StandardConformingStrings = r.serverParam["standard_conforming_strings"] != "off"
	opts.ClientEncoding = r.serverParam["client_encoding"]
	r.mu.Unlock()
	an := r.p.classifier.Analyze(text, opts)
	if !settled {
		if hasNonASCII(text) {
			an = &pgsql.Result{SQL: &protocol.SQL{ParseError: "the session's lexing settings may be changing in this unsynced batch, and the text mixes backslashes with non-ASCII bytes; send a Sync first"}}
		} else {
			opts.StandardConformingStrings = !opts.StandardConformingStrings
			an = unionResults(an, r.p.classifier.Analyze(text, opts))
		}
	}
	return an, r.prepared.Resolve(an), nil
}

// noteSearchPath marks the session once a command may change its
// search_path: a SET or RESET that names it (or RESET ALL), or a call of
// set_config.
func (r *relay) noteSearchPath(text string, sql *protocol.SQL) {
	if sql == nil || r.searchPathChanged.Load() {
		return
	}
	for _, st := range sql.Statements {
		change := (st.Kind == "SET" || st.Kind == "RESET") && (strings.Contains(strings.ToLower(text), "search_path") || st.Kind == "RESET")
		for _, f := range st.Functions {
			change = change || f == "set_config" || strings.HasSuffix(f, ".set_config")
		}
		if change {
			r.searchPathChanged.Store(true)
			return
		}
	}
}

func hasNonASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

// unionResults merges two lexings of one text: every statement either
// would run, with the rollups of both. A lexing that does not parse would
// make the server reject the text, so it adds nothing; only when neither
// parses is the result a parse error.
func unionResults(a, b *pgsql.Result) *pgsql.Result {
	switch {
	case b.SQL.ParseError != "":
		return a
	case a.SQL.ParseError != "":
		return b
	}
	out := &pgsql.Result{SQL: &protocol.SQL{
		Statements: append(append([]protocol.Statement(nil), a.SQL.Statements...), b.SQL.Statements...),
		Writes:     a.SQL.Writes || b.SQL.Writes,
		DDL:        a.SQL.DDL || b.SQL.DDL,
	}}
	out.Effects = append(out.Effects, a.Effects...)
	for _, e := range b.Effects {
		e.Stmt += len(a.SQL.Statements)
		out.Effects = append(out.Effects, e)
	}
	return out
}

// waitIdle waits until every forwarded command has been answered, asking
// the backend to flush replies it may be holding for a Sync.
func (r *relay) waitIdle() error {
	r.mu.Lock()
	busy := len(r.queue) > 0
	r.mu.Unlock()
	if !busy {
		return nil
	}
	_ = r.bw.raw('H', nil)
	if err := r.bw.flush(); err != nil {
		return fmt.Errorf("writing to backend: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.queue) > 0 && !r.closing {
		r.idle.Wait()
	}
	if r.closing {
		return errClientClosed
	}
	return nil
}

// refuseExtended answers a refused Parse or Execute: the raising
// statement is parsed, bound and executed as the unnamed statement, so the
// error arrives where the client's message would have failed and the
// backend skips the rest of the batch until Sync.
func (r *relay) refuseExtended(e *pgproto3.ErrorResponse) error {
	delete(r.stmts, "")
	delete(r.portals, "")
	r.prepared.Remove("")
	if !r.push(&pending{typ: 'P', synthetic: true}, &pending{typ: 'B', synthetic: true}, &pending{typ: 'E', deny: e}) {
		return errClientClosed
	}
	_ = r.bw.msg(&pgproto3.Parse{Query: denySQL})
	_ = r.bw.msg(&pgproto3.Bind{})
	if err := r.bw.msg(&pgproto3.Execute{}); err != nil {
		return fmt.Errorf("writing to backend: %w", err)
	}
	return nil
}

// policyVersion is the session's policy version, 0 when the gateway's
// policy never changes.
func (r *relay) policyVersion() uint64 {
	if v, ok := r.s.(protocol.PolicyVersioner); ok {
		return v.PolicyVersion()
	}
	return 0
}

// recheck decides an execution of a prepared statement under the current
// policy, with the bound values, recording the decision. A statement
// whose decision holds for one execution only keeps being checked; any
// other takes the new decision as its own.
func (r *relay) recheck(ctx context.Context, st *statement, pt *portal) (protocol.Decision, *pgproto3.ErrorResponse) {
	ver := r.policyVersion()
	cmd := *st.cmd
	cmd.Attrs = map[string]string{"extended": "execute", "statement": st.name}
	if len(pt.params) > 0 {
		vals := make([]string, len(pt.params))
		for i, p := range pt.params {
			if p == nil {
				vals[i] = fmt.Sprintf("$%d = NULL", i+1)
			} else {
				vals[i] = fmt.Sprintf("$%d = %s", i+1, quoteParam(*p))
			}
		}
		cmd.Attrs["params"] = strings.Join(vals, ", ")
		cmd.Text = st.cmd.Text + "  -- " + cmd.Attrs["params"]
	}
	dec, refusal := r.check(ctx, &cmd)
	if refusal != nil {
		return dec, refusal
	}
	if !st.dec.PerExecution {
		st.dec, st.seq, st.ver = dec, dec.Seq, ver
	}
	return dec, nil
}

// quoteParam shows a bound value as a SQL literal for people reading a
// command (approvers, recordings).
func quoteParam(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// notice sends the client a NoticeResponse at once, while its command is
// held (PostgreSQL clients show notices as they arrive).
func (r *relay) notice(msg string) {
	_ = r.cw.msg(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: msg})
	if err := r.cw.flush(); err != nil {
		r.log.Warn("sending a notice to the client failed", "error", err)
	}
}

// withdraw cancels a check the client is waiting on: its CancelRequest
// withdraws a pending approval. It reports whether a check was waiting.
func (r *relay) withdraw() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waitCancel == nil {
		return false
	}
	r.waitCancel()
	return true
}

func errorResponse(code, msg string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg}
}

// ---- backend -> client ----

func (r *relay) responseLoop(ctx context.Context) error {
	for {
		typ, body, err := r.br.next()
		if err != nil {
			r.cw.flush()
			r.backendGone(ctx)
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
				return errors.New("backend closed the connection")
			}
			return fmt.Errorf("reading from backend: %w", err)
		}
		if err := r.handleBackend(ctx, typ, body); err != nil {
			if r.clientStalled(ctx, err) {
				return fmt.Errorf("writing to client: %w", err)
			}
			return err
		}
		if !r.br.buffered() {
			if err := r.cw.flush(); err != nil {
				r.clientStalled(ctx, err)
				return fmt.Errorf("writing to client: %w", err)
			}
		}
	}
}

// clientStalled records the command in flight as failed when err is a
// write the client did not take within the target's ClientWriteTimeout:
// the session ends, and its recording says why the result stopped.
func (r *relay) clientStalled(ctx context.Context, err error) bool {
	if !errors.Is(err, errStalled) {
		return false
	}
	if h := r.head(); h != nil && h.res != nil && h.deny == nil {
		r.recordResult(ctx, h.res, "", "the client "+err.Error())
	}
	return true
}

// backendGone records the command in flight as failed when the backend
// connection ended under it, and tells the client why its session ends
// when the backend sent no FATAL of its own. PostgreSQL sends none when it
// is terminated (pg_terminate_backend, a fast shutdown) while blocked
// writing to a client that reads slowly: it only closes the socket
// (ProcessClientWriteInterrupt in src/backend/tcop/postgres.c stops output
// so as not to block). A client reading through the gateway would then see
// a bare EOF; it reads an 08006 FATAL instead, as libpq reports "server
// closed the connection unexpectedly". Nothing is done when the gateway
// closed the backend itself or the client said goodbye.
func (r *relay) backendGone(ctx context.Context) {
	r.mu.Lock()
	quiet := r.closing || r.clientDone
	told := r.backendErr != ""
	if !quiet {
		r.backendLost = true
	}
	r.mu.Unlock()
	if quiet {
		return
	}
	if h := r.head(); h != nil && h.res != nil && h.deny == nil && !told {
		r.recordResult(ctx, h.res, "", "the backend closed the connection")
	}
	if !told {
		r.sendFatal(codeConnectionFailure, "sluice: the backend closed the connection unexpectedly (it may have been terminated or restarted); reconnect")
	}
}

func (r *relay) handleBackend(ctx context.Context, typ byte, body []byte) error {
	switch typ {
	case 'D': // DataRow
		if h := r.head(); h != nil && h.res != nil {
			if h.deny != nil {
				return nil
			}
			if res := h.res; res.masker != nil && !res.resolved {
				res.resolved = true
				res.describeFromPortal()
				srcs, err := r.p.sources(ctx, r.s, r.database, res.cols)
				if err != nil {
					// Masking by name cannot be trusted: withhold.
					res.maskErr = fmt.Errorf("resolving the result's source columns: %w", err)
				}
				res.sources = srcs
			}
			out, err := h.res.row(body, r.limits)
			if err != nil {
				return fmt.Errorf("backend sent a malformed DataRow: %w", err)
			}
			if out == nil {
				return nil // withheld: masking failed
			}
			return r.cw.raw(typ, out)
		}
	case '1', '2': // ParseComplete, BindComplete
		if h := r.pop(); h != nil && h.synthetic {
			return nil
		}
	case 't': // ParameterDescription, of a Describe of a statement
		if h := r.head(); h != nil && h.typ == 'D' && h.stmt != nil {
			var pd pgproto3.ParameterDescription
			if err := pd.Decode(body); err == nil {
				r.mu.Lock()
				h.stmt.paramOIDs = append([]uint32(nil), pd.ParameterOIDs...)
				r.mu.Unlock()
			}
		}
	case '3', 'n': // CloseComplete, NoData
		r.pop()
	case 'T': // RowDescription
		var rd pgproto3.RowDescription
		if err := rd.Decode(body); err != nil {
			return fmt.Errorf("backend sent a malformed RowDescription: %w", err)
		}
		cols := copyFields(rd.Fields)
		if h := r.head(); h != nil {
			switch h.typ {
			case 'D':
				r.pop()
				if h.portal != nil {
					h.portal.cols = cols
				} else if h.stmt != nil {
					h.stmt.cols = cols
				}
			case 'Q':
				if h.res != nil {
					h.res.describe(cols, nil)
				}
			}
		}
	case 'C', 'I', 's': // CommandComplete, EmptyQueryResponse, PortalSuspended
		h := r.head()
		if h == nil {
			break
		}
		if h.deny != nil {
			// The raising statement cannot complete; if it ever did,
			// the client still gets the refusal.
			if h.typ == 'E' {
				r.pop()
			}
			return r.cw.msg(h.deny)
		}
		if h.res != nil && h.res.maskErr != nil {
			r.log.Error("masking failed; the result was withheld", "error", h.res.maskErr)
			r.recordResult(ctx, h.res, "", "masking failed: "+h.res.maskErr.Error())
			msg := "sluice: a row could not be masked, so the result was withheld"
			var sr safeReason
			if errors.As(h.res.maskErr, &sr) {
				msg = "sluice: the result could not be masked, so it was withheld: " + string(sr)
			}
			if h.typ == 'Q' {
				h.res.reset()
			} else {
				r.pop()
			}
			return r.cw.msg(errorResponse(codeSystemError, msg))
		}
		if h.res != nil {
			tag := ""
			if typ == 'C' {
				var cc pgproto3.CommandComplete
				if err := cc.Decode(body); err == nil {
					tag = string(cc.CommandTag)
				}
			}
			r.recordResult(ctx, h.res, tag, "")
			if h.typ == 'Q' {
				h.res.reset()
			}
		}
		if h.typ == 'E' {
			r.pop()
		}
	case 'E': // ErrorResponse
		var er pgproto3.ErrorResponse
		if err := er.Decode(body); err != nil {
			return fmt.Errorf("backend sent a malformed ErrorResponse: %w", err)
		}
		if er.Severity == "FATAL" || er.Severity == "PANIC" {
			r.mu.Lock()
			r.backendErr = er.Severity + ": " + er.Message
			r.mu.Unlock()
		}
		h := r.head()
		if h == nil {
			break
		}
		if h.extended() {
			r.skipToSync()
		}
		if h.typ == 'P' && h.stmt != nil {
			if err := r.s.Record(ctx, protocol.Event{Type: protocol.EventError, CommandSeq: h.stmt.seq, Code: er.Code, Message: er.Message}); err != nil {
				r.log.Error("recording an error failed; later commands will be refused", "error", err)
			}
		}
		if h.deny != nil && er.Code != "25P02" {
			return r.cw.msg(h.deny)
		}
		if h.res != nil && h.deny == nil {
			r.recordResult(ctx, h.res, "", er.Code+": "+er.Message)
			if h.typ == 'Q' {
				h.res.reset()
			}
		}
	case 'Z': // ReadyForQuery
		r.mu.Lock()
		// Pop through the Sync or Query this answers. Anything before it
		// is an expectation the backend did not meet; dropping it here
		// resynchronises the tracking at every ReadyForQuery.
		for len(r.queue) > 0 {
			t := r.queue[0].typ
			r.queue[0] = nil
			r.queue = r.queue[1:]
			if t == 'S' || t == 'Q' {
				break
			}
		}
		if len(r.queue) == 0 {
			r.settled = true
			r.idle.Broadcast()
		}
		if len(body) == 1 {
			r.txStatus = body[0]
		}
		drain := r.draining && len(r.queue) == 0 && r.txStatus == 'I' && !r.closing
		if drain {
			r.closing = true
		}
		reason := r.drainReason
		r.mu.Unlock()
		if drain {
			_ = r.cw.raw(typ, body)
			r.sendFatal(codeAdminShutdown, "sluice: "+reason)
			r.closeConns()
			return errors.New("drained")
		}
	case 'H': // CopyOutResponse
		if h := r.head(); h != nil && h.res != nil && h.deny == nil {
			r.startCopyOut(ctx, h.res, body)
		}
	case 'd': // CopyData (COPY TO STDOUT)
		if h := r.head(); h != nil && h.res != nil {
			out := h.res.copyData(body, r.limits)
			if out == nil {
				return nil // withheld: masking failed
			}
			return r.cw.raw(typ, out)
		}
	case 'S': // ParameterStatus
		var ps pgproto3.ParameterStatus
		if err := ps.Decode(body); err == nil {
			r.mu.Lock()
			r.serverParam[ps.Name] = ps.Value
			r.mu.Unlock()
		}
	}
	return r.cw.raw(typ, body)
}

func (r *relay) recordResult(ctx context.Context, res *result, tag, errMsg string) {
	ev := protocol.Event{Type: protocol.EventResult, CommandSeq: res.seq, Result: res.summary(tag, errMsg)}
	if err := r.s.Record(ctx, ev); err != nil {
		r.log.Error("recording a result failed; later commands will be refused", "error", err)
	}
}

func copyFields(in []pgproto3.FieldDescription) []pgproto3.FieldDescription {
	out := make([]pgproto3.FieldDescription, len(in))
	for i, f := range in {
		out[i] = f
		out[i].Name = append([]byte(nil), f.Name...)
	}
	return out
}

// renderParams turns bind parameters into recordable text: text-format
// values as they are, binary ones as \x hex, NULL as nil, within a total
// budget of max bytes.
//
// A binary value whose type is known (oids, from the statement's
// ParameterDescription) is decoded to its text form, so that people
// reading it (approvers, recordings) see 10, not \x0000000a.
func renderParams(values [][]byte, formats []int16, max int, oids []uint32) []*string {
	if len(values) == 0 {
		return nil
	}
	out := make([]*string, len(values))
	budget := max
	for i, v := range values {
		if v == nil {
			continue
		}
		f := formatOf(formats, i)
		if f == 1 && i < len(oids) {
			if txt, ok := decodeBinary(oids[i], v); ok {
				v, f = []byte(txt), 0
			}
		}
		s := renderValue(v, f, &budget)
		out[i] = &s
	}
	return out
}

// paramTypes holds type maps for decoding binary parameters; a
// pgtype.Map caches plans as it decodes, so each goroutine takes its own.
var paramTypes = sync.Pool{New: func() any { return pgtype.NewMap() }}

// decodeBinary turns a binary-format value of type oid into text.
func decodeBinary(oid uint32, v []byte) (s string, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	m := paramTypes.Get().(*pgtype.Map)
	defer paramTypes.Put(m)
	t, found := m.TypeForOID(oid)
	if !found {
		return "", false
	}
	val, err := t.Codec.DecodeValue(m, oid, pgtype.BinaryFormatCode, v)
	if err != nil || val == nil {
		return "", false
	}
	switch x := val.(type) {
	case time.Time:
		return x.Format(time.RFC3339Nano), true
	case []byte:
		return `\x` + hex.EncodeToString(x), true
	}
	return fmt.Sprint(val), true
}

func formatOf(formats []int16, i int) int16 {
	switch {
	case len(formats) == 0:
		return 0
	case len(formats) == 1:
		return formats[0]
	case i < len(formats):
		return formats[i]
	}
	return 0
}

const truncatedMark = "…[truncated]"

func renderValue(v []byte, format int16, budget *int) string {
	var s string
	if format == 1 {
		n := len(v)
		if 2+2*n > *budget {
			n = max(0, (*budget-2)/2)
		}
		s = `\x` + hex.EncodeToString(v[:n])
		if n < len(v) {
			s += truncatedMark
		}
	} else {
		n := min(len(v), max(0, *budget))
		s = string(v[:n])
		if n < len(v) {
			s += truncatedMark
		}
	}
	*budget -= len(s)
	return s
}

// result accumulates what one command returned.
type result struct {
	seq    uint64
	start  time.Time
	masker masking.RowMasker
	portal *portal
	params []*string

	described bool
	cols      []pgproto3.FieldDescription
	formats   []int16
	mcols     []masking.Column

	rows      int64
	bytes     int64
	masked    int64
	data      [][]*string
	dataBytes int
	truncated bool
	row0      pgproto3.DataRow
	maskErr   error          // a row could not be masked: the rest is withheld
	sources   []sourceColumn // where each column comes from, for masking
	resolved  bool           // sources were looked up
	maskedBy  map[string]int // masked values per mask entry

	text string   // the SQL text that produced this result
	nth  int      // which statement of text (simple queries hold several)
	copy *copyOut // a COPY TO STDOUT in progress
}

func (res *result) describe(cols []pgproto3.FieldDescription, resultFormats []int16) {
	res.described = true
	res.cols = cols
	res.formats = make([]int16, len(cols))
	for i := range cols {
		if resultFormats != nil {
			res.formats[i] = formatOf(resultFormats, i)
		} else {
			res.formats[i] = cols[i].Format
		}
	}
	res.mcols = nil
}

// describeFromPortal takes an extended-protocol result's columns from the
// Describe of its portal or statement.
func (res *result) describeFromPortal() {
	if res.described || res.portal == nil {
		return
	}
	cols := res.portal.cols
	if cols == nil && res.portal.stmt != nil {
		cols = res.portal.stmt.cols
	}
	res.describe(cols, res.portal.resultFormats)
	if res.portal.cols != nil {
		// A described portal reports its real formats.
		for i := range cols {
			res.formats[i] = cols[i].Format
		}
	}
}

// row accounts for one DataRow, masks it if the decision says so, keeps it
// for the recording while under the caps, and returns the bytes to send.
func (res *result) row(body []byte, limits protocol.Limits) ([]byte, error) {
	if res.maskErr != nil {
		return nil, nil
	}
	if res.start.IsZero() {
		res.start = time.Now()
	}
	res.describeFromPortal()
	res.rows++
	capture := res.rows <= int64(limits.RecordRows) && res.dataBytes < limits.RecordBytes
	if !capture && res.rows > int64(limits.RecordRows) {
		res.truncated = true
	}
	if res.masker == nil && !capture {
		res.bytes += int64(len(body))
		return body, nil
	}
	dr := &res.row0
	if err := dr.Decode(body); err != nil {
		return nil, err
	}
	if res.masker != nil {
		if res.mcols == nil || len(res.mcols) != len(dr.Values) {
			res.mcols = make([]masking.Column, len(dr.Values))
			for i := range res.mcols {
				if i < len(res.cols) {
					res.mcols[i] = masking.Column{Name: string(res.cols[i].Name), TypeOID: res.cols[i].DataTypeOID}
				}
				if i < len(res.sources) && res.sources[i].column != "" {
					// A plain column reference is masked by what it
					// is, whatever the query calls it.
					res.mcols[i].Name, res.mcols[i].Table = res.sources[i].column, res.sources[i].table
				}
				res.mcols[i].Binary = i < len(res.formats) && res.formats[i] == 1
			}
		}
		n, err := res.maskValues(res.mcols, dr.Values)
		if err != nil {
			// Fail closed: this row and the rest of the result are
			// withheld, and the result ends in an error.
			res.maskErr = err
			return nil, nil
		}
		if n > 0 {
			enc, err := dr.Encode(nil)
			if err != nil {
				return nil, err
			}
			body = enc[5:]
		}
	}
	res.bytes += int64(len(body))
	if capture {
		res.capture(dr.Values, limits)
	}
	return body, nil
}

// maskValues masks one row's values in place, counting per mask entry.
func (res *result) maskValues(cols []masking.Column, vals [][]byte) (int, error) {
	var n int
	var err error
	if rc, ok := res.masker.(masking.RowCounter); ok {
		if res.maskedBy == nil {
			res.maskedBy = map[string]int{}
		}
		n, err = rc.MaskRowCounts(cols, vals, res.maskedBy)
	} else {
		n, err = res.masker.MaskRow(cols, vals)
	}
	if err == nil {
		res.masked += int64(n)
	}
	return n, err
}

// capture keeps a row (as the client received it) for the recording,
// while under the caps.
func (res *result) capture(vals [][]byte, limits protocol.Limits) {
	if res.rows > int64(limits.RecordRows) || res.dataBytes >= limits.RecordBytes {
		res.truncated = true
		return
	}
	budget := limits.RecordBytes - res.dataBytes
	row := make([]*string, len(vals))
	for i, v := range vals {
		if v == nil {
			continue
		}
		f := int16(0)
		if i < len(res.formats) {
			f = res.formats[i]
		}
		s := renderValue(v, f, &budget)
		row[i] = &s
	}
	res.dataBytes = limits.RecordBytes - budget
	if res.dataBytes >= limits.RecordBytes {
		res.truncated = true
	}
	res.data = append(res.data, row)
}

func (res *result) summary(tag, errMsg string) *protocol.Result {
	start := res.start
	if start.IsZero() {
		start = time.Now()
	}
	out := &protocol.Result{
		Tag:       tag,
		Rows:      res.rows,
		Bytes:     res.bytes,
		Duration:  time.Since(start),
		Data:      res.data,
		Truncated: res.truncated,
		Masked:    res.masked,
		MaskedBy:  maskedBy(res.maskedBy),
		Error:     errMsg,
		Params:    res.params,
	}
	if len(res.cols) > 0 {
		out.Columns = make([]string, len(res.cols))
		for i, c := range res.cols {
			out.Columns[i] = string(c.Name)
		}
	}
	return out
}

func maskedBy(m map[string]int) map[string]int64 {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		if v > 0 {
			out[k] = int64(v)
		}
	}
	return out
}

// reset readies a simple query's result for its next statement.
func (res *result) reset() {
	*res = result{seq: res.seq, masker: res.masker, start: time.Now(), text: res.text, nth: res.nth + 1}
}
