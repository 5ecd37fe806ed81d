package e2e

// Fault injection with real processes on loopback: a backend that kills
// its connection or goes away, a recording sink that fails (injected, and
// a real full filesystem), an approval store and an identity provider
// that cannot be reached, a client that stops reading, and the gateway
// process killed with SIGKILL while it is busy.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/approval/pgstore"
	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/identity/oidc"
	"github.com/sluicegw/sluice/internal/oidctest"
	"github.com/sluicegw/sluice/internal/pgtest"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/recording"
)

// ---- helpers ----

// pgErr returns the PostgreSQL error in err, failing the test if there is
// none.
func pgErr(t *testing.T, err error, what string) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	require.True(t, errors.As(err, &pe), "%s: want a PostgreSQL error, got %v", what, err)
	return pe
}

// connectApp connects to a target with application_name set, so that the
// gateway's backend connection can be found in pg_stat_activity (the
// gateway passes the client's application_name on to the backend).
func (e *env) connectApp(t *testing.T, target, database, app string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(e.dsn(t, target, database, "require"))
	require.NoError(t, err)
	cfg.RuntimeParams["application_name"] = app
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// backendPID waits until a backend of application app runs a statement
// containing text, and returns its pid.
func backendPID(t *testing.T, admin *pgx.Conn, app, text string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		var pid int
		err := admin.QueryRow(ctx, `select pid from pg_stat_activity
			where application_name = $1 and state = 'active' and strpos(query, $2) > 0`, app, text).Scan(&pid)
		if err == nil {
			return pid
		}
		require.ErrorIs(t, err, pgx.ErrNoRows)
		select {
		case <-ctx.Done():
			t.Fatalf("no active backend of %s running %q", app, text)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// selectOne requires that c answers a trivial query through the gateway.
func selectOne(t *testing.T, c *pgx.Conn, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var n int
	require.NoError(t, c.QueryRow(ctx, "select 41 + 1").Scan(&n), what)
	require.Equal(t, 42, n, what)
}

// recordingWith returns the one recording among recs whose commands
// include one containing text.
func recordingWith(t *testing.T, recs []rec, text string) rec {
	t.Helper()
	var found []rec
	var ids []string
	for _, r := range recs {
		for _, c := range r.commands() {
			if strings.Contains(c, text) {
				found = append(found, r)
				ids = append(ids, r.id)
				break
			}
		}
	}
	require.Equal(t, 1, len(found), "recordings with a command containing %q: %v", text, ids)
	return found[0]
}

// resultOf returns the result entry recorded for the command entry whose
// text contains text, or nil.
func (r rec) resultOf(text string) *protocol.Result {
	var seq uint64
	for _, e := range r.entries {
		if e.Type == recording.TypeCommand && e.Command != nil && strings.Contains(e.Command.Text, text) {
			seq = e.Seq
		}
		if seq != 0 && e.Type == string(protocol.EventResult) && e.CommandSeq == seq {
			return e.Result
		}
	}
	return nil
}

// ---- throwaway clusters that go away and come back ----

// pgctl runs pg_ctl on a throwaway cluster (as the postgres OS user when
// the tests run as root, as pgtest does): "stop" (fast shutdown: every
// backend's client is told 57P01) or "start".
func pgctl(t *testing.T, cl *pgtest.Cluster, action string) {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	require.NotEmpty(t, bins, "no pg_ctl under /usr/lib/postgresql/*/bin")
	args := []string{"-D", filepath.Join(cl.Dir, "data"), "-w", "-t", "60"}
	switch action {
	case "stop":
		args = append(args, "-m", "fast", "stop")
	case "start":
		args = append(args, "-l", filepath.Join(cl.Dir, "log"), "start")
	default:
		t.Fatalf("pgctl: unknown action %q", action)
	}
	name := bins[len(bins)-1]
	cmd := exec.Command(name, args...)
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "pg_ctl %s: %s", action, out)
}

// ---- backend faults ----

// TestFaultBackendTerminated: the backend connection of a session is
// killed mid-query with pg_terminate_backend, while the client waits on
// pg_sleep and while it streams a long result. The client reads
// PostgreSQL's own FATAL 57P01, or, when PostgreSQL was blocked writing to
// the client and so sent none (it only closes), the gateway's FATAL 08006
// (it used to be a bare EOF). The session ends and is recorded with an
// end reason naming the backend and the interrupted command's result
// (rows so far, the error), and the gateway goes on serving a session
// opened before and one opened after.
func TestFaultBackendTerminated(t *testing.T) {
	pgtest.Require(t)
	admin := pgtest.AdminConn(t, "test")
	for _, tc := range []struct {
		name, query string
		stream      bool
	}{
		{"pg_sleep", "select pg_sleep(30)", false},
		// A set-returning function in the select list streams (in FROM
		// it would be materialized first).
		{"streaming", "select generate_series(1, 100000000) as g, repeat('x', 100)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startGateway(t, 2*time.Second, pgTarget("pg"))
			app := "sluice-fault-" + pgtest.RandomSecret(4)
			before := e.pgx(t, "pg", "test")
			selectOne(t, before, "a session opened before the fault")
			victim := e.connectApp(t, "pg", "test", app)

			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			type outcome struct {
				rows int64
				err  error
			}
			done := make(chan outcome, 1)
			started, finished := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(finished)
				rows, err := victim.Query(ctx, tc.query)
				if err != nil {
					close(started)
					done <- outcome{err: err}
					return
				}
				var n int64
				for rows.Next() {
					if n++; n == 1000 {
						close(started)
					}
				}
				if n < 1000 {
					close(started)
				}
				done <- outcome{rows: n, err: rows.Err()}
			}()
			// Runs before the connection's own cleanup: the query ends
			// before the connection is closed under it.
			t.Cleanup(func() {
				cancel()
				select {
				case <-finished:
				case <-time.After(10 * time.Second):
				}
			})
			if tc.stream {
				select {
				case <-started:
				case <-time.After(10 * time.Second):
					t.Fatal("the stream did not start")
				}
			}
			pid := backendPID(t, admin, app, tc.query[:min(20, len(tc.query))])
			var ok bool
			killed := time.Now()
			require.NoError(t, admin.QueryRow(ctx, "select pg_terminate_backend($1)", pid).Scan(&ok))
			require.True(t, ok)

			var out outcome
			select {
			case out = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the client did not learn that its backend was terminated")
			}
			took := time.Since(killed)
			pe := pgErr(t, out.err, "the client of the terminated backend")
			t.Logf("%s: client read %d rows, then %s %s %q, %v after pg_terminate_backend",
				tc.name, out.rows, pe.Severity, pe.Code, pe.Message, took.Round(time.Millisecond))
			assert.Equal(t, "FATAL", pe.Severity)
			// PostgreSQL's own FATAL 57P01 when the backend was waiting;
			// none when it was blocked writing to the slow client (it
			// just closes), and then the gateway's FATAL 08006.
			if tc.stream && pe.Code == "08006" {
				assert.Contains(t, pe.Message, "the backend closed the connection unexpectedly")
			} else {
				assert.Equal(t, "57P01", pe.Code, "PostgreSQL's own admin-shutdown code reaches the client")
			}
			assert.Less(t, took, 5*time.Second)
			if tc.stream {
				assert.Positive(t, out.rows, "rows streamed before the kill")
			}
			assert.Eventually(t, victim.IsClosed, 5*time.Second, 10*time.Millisecond, "the client's connection is closed")

			// The gateway goes on: the session opened before still works,
			// and a new one does.
			selectOne(t, before, "the session opened before, after the fault")
			after := e.pgx(t, "pg", "test")
			selectOne(t, after, "a session opened after the fault")
			require.NoError(t, before.Close(ctx))
			require.NoError(t, after.Close(ctx))

			recs := waitRecordings(t, e.recDir, 3)
			r := recordingWith(t, recs, tc.query)
			t.Logf("%s: recorded end reason: %q", tc.name, r.last().Reason)
			assert.Equal(t, recording.TypeSessionEnd, r.last().Type)
			assert.Contains(t, r.last().Reason, "backend", "the end reason names the backend")
			res := r.resultOf(tc.query)
			require.NotNil(t, res, "the interrupted command has a result entry")
			t.Logf("%s: recorded result: %d rows, error %q", tc.name, res.Rows, res.Error)
			if pe.Code == "57P01" {
				assert.Contains(t, r.last().Reason, "terminating connection due to administrator command")
				assert.Contains(t, res.Error, "57P01")
			} else {
				assert.Equal(t, "backend closed the connection", r.last().Reason)
				assert.Equal(t, "the backend closed the connection", res.Error)
			}
			if tc.stream {
				assert.GreaterOrEqual(t, res.Rows, out.rows, "the recording counts at least the rows the client read")
			}
		})
	}
}

// TestFaultBackendRestart: a throwaway cluster is shut down (fast) under
// an idle and a busy session and started again. Both clients read the
// backend's FATAL 57P01 and their recordings name the backend; a session
// opened during the outage is refused with the gateway's own FATAL 08001
// at once (connection refused, well within connect_timeout); once the
// cluster is back, new sessions work on the same gateway.
func TestFaultBackendRestart(t *testing.T) {
	pgtest.Require(t)
	cl, pw := pgtest.StartScramCluster(t)
	t.Setenv("SLUICE_E2E_FAULT_PG_PASSWORD", pw)
	tc := pgTarget("pg")
	tc.Target.Address = cl.Addr()
	tc.Credential = credstore.Ref{Username: "postgres", Password: "env:SLUICE_E2E_FAULT_PG_PASSWORD"}
	e := startGateway(t, 2*time.Second, tc)

	idle := e.pgx(t, "pg", "postgres")
	selectOne(t, idle, "idle session")
	busy := e.pgx(t, "pg", "postgres")
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	busyErr := make(chan error, 1)
	go func() {
		_, err := busy.Exec(ctx, "select pg_sleep(30)")
		busyErr <- err
	}()
	time.Sleep(300 * time.Millisecond) // let pg_sleep start

	stopped := time.Now()
	pgctl(t, cl, "stop")
	t.Logf("pg_ctl stop -m fast took %v", time.Since(stopped).Round(time.Millisecond))
	select {
	case err := <-busyErr:
		pe := pgErr(t, err, "the busy client")
		t.Logf("busy client: %s %s %q", pe.Severity, pe.Code, pe.Message)
		assert.Equal(t, "57P01", pe.Code)
	case <-time.After(10 * time.Second):
		t.Fatal("the busy client was not told that its backend went away")
	}
	_, err := waitClosed(t, idle, 5*time.Second)
	pe := pgErr(t, err, "the idle client")
	t.Logf("idle client: %s %s %q", pe.Severity, pe.Code, pe.Message)
	assert.Equal(t, "57P01", pe.Code)

	// During the outage: a clear refusal, at once.
	for i := range 3 {
		start := time.Now()
		_, err := pgx.Connect(ctx, e.dsn(t, "pg", "postgres", "require"))
		took := time.Since(start)
		pe := pgErr(t, err, "a connection during the outage")
		if i == 0 {
			t.Logf("during the outage: %s %s %q after %v", pe.Severity, pe.Code, pe.Message, took.Round(time.Millisecond))
		}
		assert.Equal(t, "08001", pe.Code)
		assert.Contains(t, pe.Message, "cannot connect to the backend of target pg")
		assert.Less(t, took, 3*time.Second)
	}

	pgctl(t, cl, "start")
	after := e.pgx(t, "pg", "postgres")
	selectOne(t, after, "a session after the restart")
	require.NoError(t, after.Close(ctx))

	recs := waitRecordings(t, e.recDir, 6)
	var backendEnded, refused int
	for _, r := range recs {
		reason := r.last().Reason
		switch {
		case strings.Contains(reason, "backend ended the session"):
			backendEnded++
			assert.Contains(t, reason, "terminating connection due to administrator command")
		case strings.Contains(reason, "cannot connect to the backend"):
			refused++
		}
	}
	t.Logf("end reasons: %d name the backend's FATAL, %d the failed backend connection", backendEnded, refused)
	assert.Equal(t, 2, backendEnded, "the idle and the busy session")
	assert.Equal(t, 3, refused, "the sessions refused during the outage")
}

// ---- recording faults ----

// switchSink is a recording.Sink that fails on demand: while fail is set,
// Open refuses and every recorder's Write refuses without reaching the
// sink underneath, as a sink whose storage is unreachable would. It wraps
// the real FileSink, so everything written when it does not fail is a real
// recording. (A test double, since nothing else lets a test turn a sink's
// failure on and off at will.)
type switchSink struct {
	inner recording.Sink
	fail  atomic.Bool
	fails atomic.Int64 // refused Opens and Writes
}

var errSinkDown = errors.New("injected: recording storage unreachable")

func (s *switchSink) Open(ctx context.Context, info protocol.SessionInfo) (recording.Recorder, error) {
	if s.fail.Load() {
		s.fails.Add(1)
		return nil, errSinkDown
	}
	r, err := s.inner.Open(ctx, info)
	if err != nil {
		return nil, err
	}
	return &switchRecorder{s: s, r: r}, nil
}

type switchRecorder struct {
	s *switchSink
	r recording.Recorder
}

func (r *switchRecorder) Write(e *recording.Entry) error {
	if r.s.fail.Load() {
		r.s.fails.Add(1)
		return errSinkDown
	}
	return r.r.Write(e)
}

func (r *switchRecorder) Close() error { return r.r.Close() }

// startGatewaySink starts a gateway as startGatewayWith does (static token,
// allow-all unless o.decider), recording to sink; env.recDir is recDir.
func startGatewaySink(t *testing.T, sink recording.Sink, recDir string, o gatewayOptions, targets ...gateway.TargetConfig) *env {
	t.Helper()
	if o.decider == nil {
		o.decider = policy.DeciderFunc(func(context.Context, *policy.Input) (protocol.Decision, error) {
			return protocol.Decision{Action: protocol.Allow, Rules: []string{allowRule}}, nil
		})
	}
	e := &env{dataDir: t.TempDir(), recDir: recDir, logs: &syncBuffer{}, token: "tok-" + pgtest.RandomSecret(16)}
	static, err := identity.NewStaticTokens([]identity.StaticToken{{
		SHA256: identity.HashToken(e.token), Subject: subject, Groups: []string{"dba"},
	}})
	require.NoError(t, err)
	e.g, err = gateway.New(gateway.Config{
		DataDir:       e.dataDir,
		Targets:       targets,
		Authenticator: static,
		Decider:       o.decider,
		Credentials:   credstore.Default{},
		Recording:     sink,
		Logger:        slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ShutdownGrace: 2 * time.Second,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, e.g.Start(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := e.g.Shutdown(ctx); err != nil {
			t.Errorf("gateway shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("gateway logs:\n%s", e.logs.String())
		}
	})
	return e
}

// refusedForRecording requires err to be the gateway's fail-closed
// refusal of a command.
func refusedForRecording(t *testing.T, err error, what string) {
	t.Helper()
	pe := pgErr(t, err, what)
	assert.Equal(t, "ERROR", pe.Severity, what)
	assert.Equal(t, "58000", pe.Code, what)
	assert.Equal(t, "sluice: recording unavailable, command refused", pe.Message, what)
}

// sessionRefusedForRecording requires err to be the gateway's refusal of
// a new session it cannot record.
func sessionRefusedForRecording(t *testing.T, err error, what string) {
	t.Helper()
	pe := pgErr(t, err, what)
	assert.Equal(t, "FATAL", pe.Severity, what)
	assert.Equal(t, "08001", pe.Code, what)
	assert.Equal(t, "sluice: recording unavailable, session refused", pe.Message, what)
}

// TestFaultRecordingSinkFails: while the recording sink fails, the gateway
// fails closed: a command of an open session is refused with 58000
// "recording unavailable" and the session stays open (refusing), a new
// session is refused with FATAL 08001. When the sink recovers, new
// sessions work; a session whose recording failed keeps refusing every
// command (its recording has a hole that nothing can fill, so it never
// runs another command unrecorded: the client has to reconnect), and its
// recording still gets its session.end when it ends.
//
// Two ways to fail: an injected sink switched off and on (always
// available), and a real full filesystem (a 256 KiB tmpfs, when the tests
// run as root with mount(8); root ignores permission bits, so a read-only
// directory would not stop its writes).
func TestFaultRecordingSinkFails(t *testing.T) {
	pgtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("injected", func(t *testing.T) {
		recDir := filepath.Join(t.TempDir(), "recordings")
		fs, err := recording.NewFileSink(recDir, recording.FileOptions{})
		require.NoError(t, err)
		sink := &switchSink{inner: fs}
		e := startGatewaySink(t, sink, recDir, gatewayOptions{}, pgTarget("pg"))

		c1 := e.pgx(t, "pg", "test")
		selectOne(t, c1, "before the sink fails")

		sink.fail.Store(true)
		start := time.Now()
		_, err = c1.Exec(ctx, "select 'while the sink is down'")
		t.Logf("a command while the sink fails: %v (after %v)", err, time.Since(start).Round(time.Millisecond))
		refusedForRecording(t, err, "a command while the sink fails")
		assert.False(t, c1.IsClosed(), "the session stays open")
		_, err = c1.Exec(ctx, "select 'again'", pgx.QueryExecModeSimpleProtocol)
		refusedForRecording(t, err, "a simple-protocol command while the sink fails")

		_, err = pgx.Connect(ctx, e.dsn(t, "pg", "test", "require"))
		t.Logf("a new session while the sink fails: %v", err)
		sessionRefusedForRecording(t, err, "a new session while the sink fails")

		sink.fail.Store(false)
		c2 := e.pgx(t, "pg", "test")
		selectOne(t, c2, "a new session after the sink recovered")
		_, err = c1.Exec(ctx, "select 'after the recovery'")
		refusedForRecording(t, err, "the session whose recording failed, after the recovery")
		assert.False(t, c1.IsClosed())
		require.NoError(t, c1.Close(ctx))
		require.NoError(t, c2.Close(ctx))

		// Two recordings (the refused session has none), both verified
		// and complete; the first holds what ran before the failure and
		// nothing refused.
		recs := waitRecordings(t, recDir, 2)
		first := recs[0] // oldest first
		cmds := strings.Join(first.commands(), "\n")
		assert.NotContains(t, cmds, "while the sink is down")
		assert.NotContains(t, cmds, "after the recovery")
		assert.Equal(t, "client closed", first.last().Reason)
		t.Logf("sink refused %d opens/writes", sink.fails.Load())
	})

	t.Run("full filesystem", func(t *testing.T) {
		recDir := mountTinyTmpfs(t, 256<<10)
		fs, err := recording.NewFileSink(recDir, recording.FileOptions{})
		require.NoError(t, err)
		e := startGatewaySink(t, fs, recDir, gatewayOptions{}, pgTarget("pg"))

		c1 := e.pgx(t, "pg", "test")
		selectOne(t, c1, "before the filesystem fills")
		filler := fillFilesystem(t, recDir)

		// The recording's last page may still have room for a few
		// entries; the first that does not fit is refused.
		ok, refusedAt := 0, -1
		for i := range 200 {
			_, err := c1.Exec(ctx, fmt.Sprintf("select 'fill %d'", i), pgx.QueryExecModeSimpleProtocol)
			if err != nil {
				refusedForRecording(t, err, "a command on a full filesystem")
				refusedAt = i
				break
			}
			ok++
		}
		t.Logf("full filesystem: %d commands still fitted the recording's last page, then refused", ok)
		require.GreaterOrEqual(t, refusedAt, 0, "no command was refused on a full filesystem")
		assert.False(t, c1.IsClosed(), "the session stays open")

		_, err = pgx.Connect(ctx, e.dsn(t, "pg", "test", "require"))
		t.Logf("a new session on a full filesystem: %v", err)
		sessionRefusedForRecording(t, err, "a new session on a full filesystem")

		require.NoError(t, os.Remove(filler))
		c2 := e.pgx(t, "pg", "test")
		selectOne(t, c2, "a new session once there is room again")
		_, err = c1.Exec(ctx, "select 'after the recovery'")
		refusedForRecording(t, err, "the session whose recording failed, after the recovery")
		require.NoError(t, c1.Close(ctx))
		require.NoError(t, c2.Close(ctx))

		require.Eventually(t, func() bool { return len(e.g.Sessions()) == 0 }, 10*time.Second, 20*time.Millisecond)

		// The session whose recording hit the full disk: its recording
		// verifies up to the last whole entry that fitted (the cut line
		// is removed; it used to be left half-written, which verifying
		// reports as damage) and is incomplete, with every command that
		// ran. The session refused on the full disk may leave an empty
		// file (its session.start did not fit; List reports "empty
		// recording"). The session after the recovery is complete.
		sums, err := recording.List(recDir)
		require.NoError(t, err)
		require.Contains(t, []int{2, 3}, len(sums))
		var empty, complete int
		for _, s := range sums {
			f, err := os.Open(filepath.Join(recDir, s.ID+".jsonl"))
			require.NoError(t, err)
			rd := recording.NewReader(f)
			var cmds []string
			for {
				en, err := rd.Next()
				if err != nil {
					break
				}
				if en.Type == recording.TypeCommand {
					cmds = append(cmds, en.Command.Text)
				}
			}
			f.Close()
			rep := rd.Report()
			t.Logf("recording %s: %d bytes, %s, complete %v (list: problem %q)", s.ID, s.Size, rep, rep.Complete, s.Problem)
			assert.True(t, rep.Intact, "recording %s: %s", s.ID, rep.Problem)
			switch {
			case s.Size == 0:
				empty++
			case rep.Complete:
				complete++
			default:
				for i := range ok {
					assert.Contains(t, cmds, fmt.Sprintf("select 'fill %d'", i), "a command that ran is recorded")
				}
				assert.NotContains(t, cmds, fmt.Sprintf("select 'fill %d'", refusedAt))
			}
		}
		assert.Equal(t, len(sums)-2, empty, "only the session refused on the full disk has an empty file")
		assert.Equal(t, 1, complete, "the session after the recovery")
	})
}

// mountTinyTmpfs mounts a tmpfs of size bytes on a new directory,
// unmounted when the test ends; it skips (fails under
// SLUICE_REQUIRE_INTEGRATION=1) unless running as root with mount(8).
func mountTinyTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		pgtest.Unavailable(t, "a full filesystem needs a tmpfs mount, which needs root; run the tests as root")
	}
	if _, err := exec.LookPath("mount"); err != nil {
		pgtest.Unavailable(t, "a full filesystem needs mount(8); install util-linux")
	}
	dir := filepath.Join(t.TempDir(), "tiny")
	require.NoError(t, os.Mkdir(dir, 0o700))
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		pgtest.Unavailable(t, fmt.Sprintf("cannot mount a tmpfs (%v: %s); run the tests as root outside a restricted container", err, out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// fillFilesystem writes a file into dir until the filesystem is full, and
// returns its path.
func fillFilesystem(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	chunk := make([]byte, 4096)
	for range 1 << 16 { // bounded: 256 MiB at most
		if _, err := f.Write(chunk); err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			return path
		}
	}
	t.Fatalf("%s never filled up", dir)
	return ""
}

// ---- unreachable services ----

// stallProxy forwards TCP connections to upstream until stalled: then it
// behaves like a network partition that drops packets silently. Bytes
// read from either side are held, not forwarded, and new connections are
// accepted but never connected onwards, so whoever talks through it waits
// with no error, as a client of a blackholed server does.
type stallProxy struct {
	ln       net.Listener
	upstream string
	stalled  atomic.Bool
	resume   chan struct{} // replaced on every stall; closed by unstall
	closed   chan struct{}

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startStallProxy(t *testing.T, upstream string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &stallProxy{ln: ln, upstream: upstream, resume: make(chan struct{}), closed: make(chan struct{})}
	close(p.resume)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) port() string {
	_, port, _ := net.SplitHostPort(p.ln.Addr().String())
	return port
}

func (p *stallProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled.Load() {
		p.resume = make(chan struct{})
		p.stalled.Store(true)
	}
}

func (p *stallProxy) unstall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled.Load() {
		p.stalled.Store(false)
		close(p.resume)
	}
}

// wait blocks while the proxy is stalled; false once it is closed.
func (p *stallProxy) wait() bool {
	p.mu.Lock()
	resume := p.resume
	p.mu.Unlock()
	select {
	case <-resume:
		return true
	case <-p.closed:
		return false
	}
}

func (p *stallProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closed:
		c.Close()
		return false
	default:
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *stallProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if !p.wait() {
				return
			}
			u, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
			if err != nil || !p.track(u) {
				c.Close()
				return
			}
			p.wg.Add(2)
			go p.pipe(u, c)
			go p.pipe(c, u)
		}()
	}
}

func (p *stallProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait() {
				break
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

func (p *stallProxy) close() {
	p.mu.Lock()
	select {
	case <-p.closed:
	default:
		close(p.closed)
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

// approvalPolicy lets reads through and holds writes for a DBA.
const approvalPolicy = `
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
default: deny
`

// TestFaultApprovalStoreUnreachable: the approval store is PostgreSQL on a
// throwaway cluster (pgstore), reached through a proxy. When the store
// cannot be reached, a write that needs approval is denied with a clear
// reason, and soon: within the broker's StoreTimeout plus slack when the
// store's network path silently drops everything (stalled), at once when
// the store is down (connection refused). Reads need no approval and go
// on; when the store is back, writes are held for approval again.
func TestFaultApprovalStoreUnreachable(t *testing.T) {
	pgtest.Require(t)
	admin := pgtest.AdminConn(t, "test")
	table := scratchTable(t, admin, "e2e_fault_approval")
	cl, pw := pgtest.StartScramCluster(t)
	proxy := startStallProxy(t, cl.Addr())

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const storeTimeout = 2 * time.Second
	store, err := pgstore.Open(ctx, pgstore.Config{
		ConnString:     fmt.Sprintf("host=127.0.0.1 port=%s user=postgres password=%s dbname=postgres sslmode=disable connect_timeout=2", proxy.port(), pw),
		ReconnectDelay: 200 * time.Millisecond,
	})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	broker, err := approval.New(ctx, approval.Config{Store: store, GatewayID: "e2e-fault", StoreTimeout: storeTimeout})
	require.NoError(t, err)
	t.Cleanup(func() { broker.Close() })
	engine, err := policy.Parse("approval.yaml", []byte(approvalPolicy))
	require.NoError(t, err)
	e := startGatewayWith(t, gatewayOptions{grace: 2 * time.Second, decider: engine, groups: []string{"agents"}, approvals: broker}, pgTarget("pg"))
	c := e.pgx(t, "pg", "test")
	dba := &identity.Identity{Subject: "dana", Groups: []string{"dba"}, Method: identity.MethodToken}

	// insert runs a write that needs approval and returns how long it
	// took and its error; with approve, it approves the request once it
	// is pending (an error if none shows up). It never leaves the write
	// running: the connection is free again when it returns.
	insert := func(v int, approve bool) (time.Duration, error) {
		ictx, icancel := context.WithTimeout(ctx, 20*time.Second)
		defer icancel()
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := c.Exec(ictx, fmt.Sprintf("insert into %s values (%d, 'approval store')", table, v))
			done <- err
		}()
		for approve {
			select {
			case err := <-done:
				return time.Since(start), fmt.Errorf("the write was not held for approval: %w", err)
			case <-ictx.Done():
				return time.Since(start), errors.Join(errors.New("no pending request"), <-done)
			case <-time.After(20 * time.Millisecond):
			}
			pending, err := broker.List(ictx, approval.Filter{States: []approval.State{approval.StatePending}})
			i := slices.IndexFunc(pending, func(r *approval.Request) bool {
				return strings.Contains(r.Command.Text, fmt.Sprintf("values (%d,", v))
			})
			if err != nil || i < 0 {
				continue
			}
			if _, err := broker.Approve(ictx, pending[i].ID, dba, "ok"); err != nil {
				icancel()
				return time.Since(start), errors.Join(err, <-done)
			}
			approve = false
		}
		err := <-done
		return time.Since(start), err
	}
	refused := func(t *testing.T, err error, took time.Duration, what string, limit time.Duration) {
		t.Helper()
		t.Logf("%s: refused after %v: %v", what, took.Round(time.Millisecond), err)
		pe := pgErr(t, err, what)
		assert.Equal(t, "42501", pe.Code, what)
		assert.Contains(t, pe.Message, "approval service is unavailable", what)
		assert.Less(t, took, limit, "%s: no hang beyond the store timeout", what)
		selectOne(t, c, what+": reads go on")
	}

	_, err = insert(1, true)
	require.NoError(t, err, "the store works: an approved write runs")

	t.Run("store down", func(t *testing.T) {
		pgctl(t, cl, "stop")
		took, err := insert(2, false)
		refused(t, err, took, "store down", storeTimeout+time.Second)
		pgctl(t, cl, "start")
		require.Eventually(t, func() bool {
			_, err := insert(3, true)
			return err == nil
		}, 20*time.Second, 500*time.Millisecond, "writes are held for approval again once the store is back")
	})
	t.Run("store stalled", func(t *testing.T) {
		proxy.stall()
		took, err := insert(4, false)
		proxy.unstall()
		// Granted, then Request: each store call is bounded by the
		// broker's StoreTimeout.
		refused(t, err, took, "store stalled", 2*storeTimeout+3*time.Second)
		require.Eventually(t, func() bool {
			_, err := insert(5, true)
			return err == nil
		}, 20*time.Second, 500*time.Millisecond, "writes are held for approval again once the store answers")
	})

	assert.Equal(t, []int{1, 3, 5}, ids(t, admin, table), "only the approved writes ran")
	require.NoError(t, c.Close(ctx))
	r := waitRecordings(t, e.recDir, 1)[0]
	var steps []string
	for _, en := range r.entries {
		if en.Type == recording.TypeApproval {
			steps = append(steps, en.Message)
		}
	}
	assert.Contains(t, strings.Join(steps, "\n"), "approval service unavailable", "the recording says why the write was denied")
}

// TestFaultIdentityProviderUnreachable: OIDC tokens are verified against
// an issuer that is down before any of its keys were cached. A client is
// refused with a clear FATAL (the identity service is unavailable, try
// again later), at once when the issuer refuses connections or answers
// 503, and within the target's handshake timeout (plus slack) when it
// accepts connections and never answers. Once the issuer is back, the
// same kind of token gets in.
func TestFaultIdentityProviderUnreachable(t *testing.T) {
	pgtest.Require(t)
	iss := oidctest.New(t)
	iss.Down(oidctest.Refused)
	// Accepts and never answers: a hung identity provider.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var held []net.Conn
	var heldMu sync.Mutex
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, c)
			heldMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		hung.Close()
		heldMu.Lock()
		for _, c := range held {
			c.Close()
		}
		heldMu.Unlock()
	})

	newAuth := func(discovery string) *oidc.Authenticator {
		a, err := oidc.New(oidc.Config{Issuers: []oidc.IssuerConfig{{
			Issuer: iss.URL, DiscoveryURL: discovery, Audiences: []string{"sluice"},
			MinRefreshInterval: 200 * time.Millisecond,
		}}})
		require.NoError(t, err)
		return a
	}
	const handshake = 5 * time.Second // pgTarget's
	e := startGatewayWith(t, gatewayOptions{grace: 2 * time.Second, auth: newAuth("")}, pgTarget("pg"))
	eHung := startGatewayWith(t, gatewayOptions{grace: 2 * time.Second, auth: newAuth("http://" + hung.Addr().String() + "/.well-known/openid-configuration")}, pgTarget("pg"))
	token := iss.Mint(iss.Claims(subject, "sluice"))

	connect := func(t *testing.T, e *env) (*pgx.Conn, time.Duration, error) {
		host, port := e.hostPort(t, "pg")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=%s dbname=test password=%s sslmode=require connect_timeout=30", host, port, subject, token))
		return c, time.Since(start), err
	}
	refused := func(t *testing.T, e *env, what string, limit time.Duration) {
		t.Helper()
		_, took, err := connect(t, e)
		t.Logf("%s: refused after %v: %v", what, took.Round(time.Millisecond), err)
		pe := pgErr(t, err, what)
		assert.Equal(t, "FATAL", pe.Severity, what)
		assert.Equal(t, "08001", pe.Code, what)
		assert.Equal(t, "sluice: authentication failed: the identity service is unavailable, try again later", pe.Message, what)
		assert.Less(t, took, limit, what)
	}

	t.Run("refused", func(t *testing.T) {
		refused(t, e, "issuer refuses connections", time.Second)
	})
	t.Run("503", func(t *testing.T) {
		require.NoError(t, iss.Up())
		iss.Down(oidctest.Unavailable)
		time.Sleep(250 * time.Millisecond) // past MinRefreshInterval
		refused(t, e, "issuer answers 503", time.Second)
	})
	t.Run("hangs", func(t *testing.T) {
		// The gateway stops waiting shortly before the handshake
		// deadline, so the refusal reaches the client before the cut.
		refused(t, eHung, "issuer accepts and never answers", handshake)
	})

	require.NoError(t, iss.Up())
	time.Sleep(250 * time.Millisecond)
	c, took, err := connect(t, e)
	require.NoError(t, err, "the issuer is back")
	t.Logf("issuer back: connected in %v", took.Round(time.Millisecond))
	selectOne(t, c, "after the issuer is back")
	require.NoError(t, c.Close(context.Background()))
}

// ---- slow and stalled clients ----

// heapInUse is the test process's live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// backendWaitEvent returns the wait_event of application app's backend
// ("" when it waits on nothing).
func backendWaitEvent(ctx context.Context, admin *pgx.Conn, app string) (string, error) {
	var wait string
	err := admin.QueryRow(ctx, `select coalesce(wait_event, '') from pg_stat_activity where application_name = $1`, app).Scan(&wait)
	return wait, err
}

// backendCount returns how many backends application app has.
func backendCount(ctx context.Context, admin *pgx.Conn, app string) (int, error) {
	var n int
	err := admin.QueryRow(ctx, `select count(*) from pg_stat_activity where application_name = $1`, app).Scan(&n)
	return n, err
}

// waitClientWrite waits until application app's backend is blocked
// writing to the gateway (wait_event ClientWrite): the sockets between
// the backend and a client that stopped reading are full.
func waitClientWrite(t *testing.T, ctx context.Context, admin *pgx.Conn, app string) {
	t.Helper()
	var wait string
	require.Eventually(t, func() bool {
		wait, _ = backendWaitEvent(ctx, admin, app)
		return wait == "ClientWrite"
	}, 20*time.Second, 50*time.Millisecond, "the backend should be blocked writing to the gateway (last wait_event %q)", wait)
}

// stallRows is how many 1,000-byte rows the stalled client asks for: 2
// million (2 GB through the gateway) with SLUICE_LOAD_FULL=1, 200,000 by
// default so that the race-enabled run stays short.
func stallRows() int {
	if os.Getenv("SLUICE_LOAD_FULL") == "1" {
		return 2_000_000
	}
	return 200_000
}

// TestFaultStalledClient: a client asks for a large result and stops
// reading after the first rows. The gateway applies back-pressure instead
// of buffering: while the client stalls, the (in-process) gateway's live
// heap stays flat, and the backend itself ends up waiting to write
// (pg_stat_activity wait_event ClientWrite). When the client reads again
// it gets every row. By default the gateway has no write timeout of its
// own: a client that never reads again holds its session (and its backend)
// until it goes away or the session is terminated, as with PostgreSQL
// itself; TestFaultStalledClientTimeout sets one.
func TestFaultStalledClient(t *testing.T) {
	pgtest.Require(t)
	admin := pgtest.AdminConn(t, "test")
	e := startGateway(t, 2*time.Second, pgTarget("pg"))
	app := "sluice-stall-" + pgtest.RandomSecret(4)
	c := e.connectApp(t, "pg", "test", app)
	n := stallRows()
	query := fmt.Sprintf("select repeat('x', 1000) from generate_series(1, %d)", n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	mrr := c.PgConn().Exec(ctx, query)
	require.True(t, mrr.NextResult())
	rr := mrr.ResultReader()
	read := 0
	for read < 1000 && rr.NextRow() {
		read++
	}
	require.Equal(t, 1000, read)

	// Stalled: nothing reads. Wait until the backend blocks on the full
	// socket, then watch the heap for a few seconds.
	base := heapInUse()
	waitClientWrite(t, ctx, admin, app)
	peak := base
	for range 16 { // 4 s
		time.Sleep(250 * time.Millisecond)
		peak = max(peak, heapInUse())
	}
	growth := float64(peak) - float64(base)
	t.Logf("stalled client: backend wait_event ClientWrite; gateway process heap in use %.1f MiB before, peak %.1f MiB during a 4 s stall (growth %.2f MiB)",
		float64(base)/(1<<20), float64(peak)/(1<<20), growth/(1<<20))
	assert.Less(t, growth, float64(32<<20), "the gateway must not buffer what a stalled client does not read")

	// The client reads again and gets every row.
	start := time.Now()
	for rr.NextRow() {
		if read++; len(rr.Values()[0]) != 1000 {
			t.Fatalf("row %d: %d bytes", read, len(rr.Values()[0]))
		}
	}
	tag, err := rr.Close()
	require.NoError(t, err)
	require.NoError(t, mrr.Close())
	took := time.Since(start)
	assert.Equal(t, n, read)
	assert.Equal(t, fmt.Sprintf("SELECT %d", n), tag.String())
	t.Logf("resumed: %d rows (%.0f MB) in %v after the stall", read, float64(read)*1000/1e6, took.Round(time.Millisecond))
	selectOne(t, c, "the session goes on after the stall")
}

// TestFaultStalledClientTimeout: with the target's ClientWriteTimeout
// (client_write_timeout) set, a client that reads slowly but steadily
// keeps its session while megabytes go through a full socket, and a client
// that stops reading mid-result loses it once it has taken nothing for
// that long (noticed within twice the timeout): the backend connection is closed (its query ends), the interrupted
// command's result and the session's end say why, and the gateway goes on
// serving.
func TestFaultStalledClientTimeout(t *testing.T) {
	pgtest.Require(t)
	admin := pgtest.AdminConn(t, "test")
	const timeout = 2 * time.Second
	target := pgTarget("pg")
	target.Limits.ClientWriteTimeout = timeout
	e := startGateway(t, 2*time.Second, target)
	app := "sluice-stall-timeout-" + pgtest.RandomSecret(4)
	c := e.connectApp(t, "pg", "test", app)
	query := "select repeat('x', 1000) from generate_series(1, 200000)"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	mrr := c.PgConn().Exec(ctx, query)
	require.True(t, mrr.NextResult())
	rr := mrr.ResultReader()

	// Slow but steady: 100 rows (100 kB), then a 25 ms pause, for 30 MB
	// (over three timeouts). The backend fills the sockets between the
	// gateway and this client at once, so the gateway's writes wait on
	// this reader throughout.
	start := time.Now()
	read := 0
	for read < 30_000 && rr.NextRow() {
		if read++; read%100 == 0 {
			time.Sleep(25 * time.Millisecond)
		}
	}
	require.Equal(t, 30_000, read, "the slow reader is not cut off")
	wait, err := backendWaitEvent(ctx, admin, app)
	require.NoError(t, err)
	t.Logf("slow reader: %d rows in %v; the backend then waits on %q", read, time.Since(start).Round(time.Millisecond), wait)

	// Stalled: nothing reads. The gateway gives up on its write once the
	// client has taken nothing for the timeout, and closes the backend
	// connection. (What the client's socket takes stops somewhat before
	// this reader stops: TCP reopens a full receive window in large steps,
	// and the socket holds megabytes of rows not read yet.)
	stalled := time.Now()
	require.Eventually(t, func() bool {
		n, err := backendCount(ctx, admin, app)
		return err == nil && n == 0
	}, 2*timeout+10*time.Second, 20*time.Millisecond, "the stalled client's backend connection should be closed")
	took := time.Since(stalled)
	t.Logf("stalled client: backend connection closed %v after the client stopped reading (timeout %v)", took.Round(time.Millisecond), timeout)

	// What the client reads now is cut short by an error, not a complete
	// result.
	for rr.NextRow() {
		read++
	}
	_, err = rr.Close()
	require.Error(t, err, "the stalled client's result ends in an error")
	assert.Less(t, read, 200_000)
	t.Logf("the stalled client read %d rows in all, then: %v", read, err)

	// The gateway goes on.
	after := e.pgx(t, "pg", "test")
	selectOne(t, after, "a session opened after the stalled one ended")
	require.NoError(t, after.Close(ctx))

	recs := waitRecordings(t, e.recDir, 2)
	r := recordingWith(t, recs, query)
	t.Logf("recorded end reason: %q", r.last().Reason)
	assert.Equal(t, recording.TypeSessionEnd, r.last().Type)
	assert.Contains(t, r.last().Reason, "writing to client: stopped reading: nothing written to it was taken for 2s")
	res := r.resultOf(query)
	require.NotNil(t, res, "the interrupted command has a result entry")
	assert.Contains(t, res.Error, "the client stopped reading: nothing written to it was taken for 2s")
	assert.GreaterOrEqual(t, res.Rows, int64(read), "the recording counts at least the rows the client read")
}

// ---- the gateway process killed ----

// crashClient is one session's loop of writes and reads through the
// gateway, and what the client saw acknowledged.
type crashClient struct {
	idx   int
	acked []ackedCommand
	err   error // what ended the loop
}

type ackedCommand struct {
	text string
	at   time.Time
}

// TestFaultGatewayKilled: the refserver process is killed with SIGKILL
// while 50 sessions run inserts and selects as fast as they can. Every
// recording it leaves verifies (its hash chain is intact up to its last
// entry) and is incomplete (no session.end), and `refserver replay
// --list` shows it so. Nothing a client got an answer for is missing:
// every acknowledged command has its command entry. With fsync: always
// every acknowledged command also has its result entry; with fsync:
// interval, results may wait in memory up to the file sink's linger
// (100ms) and only those of the last moments may be missing. The
// restarted server serves new sessions.
func TestFaultGatewayKilled(t *testing.T) {
	pgtest.Require(t)
	admin := pgtest.AdminConn(t, "test")
	bin := buildRefserver(t)
	const sessions = 50
	for _, fsync := range []string{"always", "interval"} {
		t.Run("fsync "+fsync, func(t *testing.T) {
			table := scratchTable(t, admin, "e2e_crash")
			dir := t.TempDir()
			token := "tok-" + pgtest.RandomSecret(16)
			config, listen, recDir := refserverConfig(t, dir, token, fsync)
			s := startRefserver(t, bin, config, listen)

			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cfg, err := pgx.ParseConfig(s.dsn(token))
			require.NoError(t, err)
			cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol // one command, one result
			conns := make([]*pgx.Conn, sessions)
			for i := range conns {
				conns[i], err = pgx.ConnectConfig(ctx, cfg)
				require.NoError(t, err)
				defer conns[i].Close(context.Background())
			}
			clients := make([]*crashClient, sessions)
			var wg sync.WaitGroup
			for i, c := range conns {
				cc := &crashClient{idx: i}
				clients[i] = cc
				wg.Go(func() {
					for n := range 1_000_000 { // bounded; ends when the gateway dies
						id := i*1_000_000 + n
						texts := []string{
							fmt.Sprintf("insert into %s values (%d, 'crash s%d n%d')", table, id, i, n),
							fmt.Sprintf("select note /* s%d n%d */ from %s where id = %d", i, n, table, id),
						}
						for _, text := range texts {
							if _, err := c.Exec(ctx, text); err != nil {
								cc.err = err
								return
							}
							cc.acked = append(cc.acked, ackedCommand{text: text, at: time.Now()})
						}
					}
				})
			}
			time.Sleep(2 * time.Second)
			killedAt := time.Now()
			require.NoError(t, syscall.Kill(s.pid(), syscall.SIGKILL))
			select {
			case <-s.done:
			case <-time.After(10 * time.Second):
				t.Fatal("refserver survived SIGKILL")
			}
			wg.Wait()
			total := 0
			for _, cc := range clients {
				total += len(cc.acked)
				require.Error(t, cc.err, "session %d ended without an error", cc.idx)
			}
			t.Logf("fsync %s: %d commands acknowledged in 50 sessions before SIGKILL; a client saw: %v", fsync, total, clients[0].err)

			// Every recording verifies and is incomplete.
			sums, err := recording.List(recDir)
			require.NoError(t, err)
			require.Len(t, sums, sessions)
			bySession := map[int]rec{}
			for _, sum := range sums {
				assert.False(t, sum.Complete, "recording %s of a killed gateway has a session.end", sum.ID)
				assert.Empty(t, sum.Problem, sum.ID)
				path := filepath.Join(recDir, sum.ID+".jsonl")
				raw, err := os.ReadFile(path)
				require.NoError(t, err)
				rd := recording.NewReader(strings.NewReader(string(raw)))
				r := rec{id: sum.ID, path: path}
				for {
					en, err := rd.Next()
					if err != nil {
						break
					}
					r.entries = append(r.entries, *en)
				}
				rep := rd.Report()
				require.True(t, rep.Intact, "recording %s: %s", sum.ID, rep.Problem)
				require.False(t, rep.Complete)
				idx := -1
				for _, c := range r.commands() {
					if _, err := fmt.Sscanf(c[strings.Index(c, "'crash s")+1:], "crash s%d", &idx); err == nil && strings.HasPrefix(c, "insert") {
						break
					}
				}
				require.GreaterOrEqual(t, idx, 0, "recording %s has no insert of a session", sum.ID)
				_, dup := bySession[idx]
				require.False(t, dup, "two recordings of session %d", idx)
				bySession[idx] = r
			}

			// Nothing acknowledged is missing (but the results of the
			// last linger, under fsync: interval).
			var missingCmd, missingRes int
			var lateness []time.Duration
			for _, cc := range clients {
				r := bySession[cc.idx]
				seqOf := map[string]uint64{}
				results := map[uint64]bool{}
				for _, en := range r.entries {
					switch {
					case en.Type == recording.TypeCommand && en.Command != nil:
						seqOf[en.Command.Text] = en.Seq
					case en.Type == string(protocol.EventResult):
						results[en.CommandSeq] = true
					}
				}
				for _, a := range cc.acked {
					seq, ok := seqOf[a.text]
					if !ok {
						missingCmd++
						continue
					}
					if !results[seq] {
						missingRes++
						lateness = append(lateness, killedAt.Sub(a.at))
					}
				}
			}
			var oldest time.Duration
			for _, l := range lateness {
				oldest = max(oldest, l)
			}
			t.Logf("fsync %s: of %d acknowledged commands, %d have no command entry, %d no result entry (acknowledged at most %v before the kill)",
				fsync, total, missingCmd, missingRes, oldest.Round(time.Millisecond))
			assert.Zero(t, missingCmd, "an acknowledged command is missing from its recording")
			if fsync == "always" {
				assert.Zero(t, missingRes, "with fsync: always, an acknowledged command's result is missing")
			} else {
				assert.Less(t, oldest, recording.DefaultLinger+200*time.Millisecond, "only results of the last linger may be missing")
			}

			// replay --list says so, and the server starts again on the
			// same directories and serves.
			out := refserverCmd(t, bin, "replay", "--dir", recDir, "--list")
			require.Equal(t, 0, out.code, out.stderr)
			t.Logf("replay --list (first lines):\n%s", firstLines(out.stdout, 3))
			s2 := startRefserver(t, bin, config, listen)
			c, err := pgx.Connect(ctx, s2.dsn(token))
			require.NoError(t, err)
			var one int
			require.NoError(t, c.QueryRow(ctx, "select 1").Scan(&one))
			require.NoError(t, c.Close(ctx))
			s2.stop(t)
		})
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// TestFaultStalledClientTerminated: a session whose client stopped reading
// in the middle of a result (no client_write_timeout) is terminated
// through the gateway: it ends at once, although the gateway's write to
// that client is blocked, and its backend connection goes away.
func TestFaultStalledClientTerminated(t *testing.T) {
	pgtest.Require(t)
	admin := pgtest.AdminConn(t, "test")
	e := startGateway(t, 2*time.Second, pgTarget("pg"))
	app := "sluice-stall-term-" + pgtest.RandomSecret(4)
	c := e.connectApp(t, "pg", "test", app)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mrr := c.PgConn().Exec(ctx, "select repeat('x', 1000) from generate_series(1, 200000)")
	require.True(t, mrr.NextResult())
	rr := mrr.ResultReader()
	require.True(t, rr.NextRow())
	waitClientWrite(t, ctx, admin, app)

	live := e.g.Sessions()
	require.Len(t, live, 1)
	start := time.Now()
	require.NoError(t, e.g.Terminate(live[0].ID, "e2e: stalled client"))
	require.Eventually(t, func() bool {
		n, err := backendCount(ctx, admin, app)
		return err == nil && n == 0 && len(e.g.Sessions()) == 0
	}, 10*time.Second, 20*time.Millisecond, "the terminated session and its backend connection should be gone")
	took := time.Since(start)
	t.Logf("terminated a session blocked writing to its client: gone in %v", took.Round(time.Millisecond))
	assert.Less(t, took, 5*time.Second)
	for rr.NextRow() {
	}
	_, err := rr.Close()
	require.Error(t, err, "the stalled client's result ends in an error")
}
