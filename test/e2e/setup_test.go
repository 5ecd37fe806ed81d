package e2e

// The plumbing the tests share: an in-process gateway with the real
// PostgreSQL plugin, static tokens, the file recording sink and
// credstore.Default; the refserver binary as a separate process; psql runs;
// a pseudo-terminal for an interactive psql; a TCP tap; recordings.
// Nothing here is a double: every test talks to real servers and clients.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/approval/sqlitestore"
	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/internal/pgtest"
	"github.com/sluicegw/sluice/internal/syncbuf"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/protocol/postgres"
	"github.com/sluicegw/sluice/recording"
)

const (
	// subject is the identity every test token proves.
	subject = "alice"
	// allowRule names the allow-all decision of the in-process gateway.
	allowRule = "e2e-allow-all"
	// opTimeout bounds one client operation.
	opTimeout = 20 * time.Second
)

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	// No goroutine of a gateway, a session or a client may outlive the
	// tests (only checked when they passed: a failure may leave some).
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

type syncBuffer = syncbuf.Buffer

// ---- in-process gateway ----

// env is a running in-process gateway and what it writes.
type env struct {
	g       *gateway.Gateway
	dataDir string
	recDir  string
	logs    *syncBuffer
	token   string
}

// pgTarget is a target for the machine's PostgreSQL, logged in to as the
// postgres superuser (trust authentication on loopback), on a free port,
// with client-facing TLS from the gateway's self-signed certificate.
func pgTarget(name string) gateway.TargetConfig {
	return gateway.TargetConfig{
		Target: protocol.Target{
			Name:     name,
			Protocol: postgres.Name,
			Address:  pgtest.Addr(),
			Labels:   map[string]string{"env": "e2e"},
			Options:  map[string]string{postgres.OptSSLMode: "disable"},
		},
		Listen:           "127.0.0.1:0",
		Credential:       credstore.Ref{Username: "postgres"},
		HandshakeTimeout: 5 * time.Second,
		Limits:           protocol.Limits{ConnectTimeout: 5 * time.Second},
	}
}

// startGateway starts a gateway serving targets with a fresh random token
// for subject (in group dba), an allow-all decider, recordings under a
// temporary data directory and debug logs kept in memory. It is shut down
// when the test ends.
func startGateway(t *testing.T, grace time.Duration, targets ...gateway.TargetConfig) *env {
	t.Helper()
	return startGatewayWith(t, gatewayOptions{grace: grace}, targets...)
}

// gatewayOptions vary startGatewayWith; zero fields take startGateway's
// defaults.
type gatewayOptions struct {
	grace     time.Duration
	decider   policy.Decider
	groups    []string
	approvals *approval.Broker
	// auth replaces the static token authenticator when set; token then
	// is the token clients of env present.
	auth        identity.Authenticator
	token       string
	expiryGrace time.Duration
	creds       credstore.Store // default credstore.Default{}
}

func startGatewayWith(t *testing.T, o gatewayOptions, targets ...gateway.TargetConfig) *env {
	t.Helper()
	if o.decider == nil {
		o.decider = policy.DeciderFunc(func(context.Context, *policy.Input) (protocol.Decision, error) {
			return protocol.Decision{Action: protocol.Allow, Rules: []string{allowRule}}, nil
		})
	}
	if o.groups == nil {
		o.groups = []string{"dba"}
	}
	e := &env{dataDir: t.TempDir(), logs: &syncBuffer{}, token: "tok-" + pgtest.RandomSecret(16)}
	if o.token != "" {
		e.token = o.token
	}
	var creds credstore.Store = credstore.Default{}
	if o.creds != nil {
		creds = o.creds
	}
	e.recDir = filepath.Join(e.dataDir, "recordings")
	var auth identity.Authenticator = o.auth
	if auth == nil {
		static, err := identity.NewStaticTokens([]identity.StaticToken{{
			SHA256: identity.HashToken(e.token), Subject: subject, Groups: o.groups,
		}})
		require.NoError(t, err)
		auth = static
	}
	sink, err := recording.NewFileSink(e.recDir, recording.FileOptions{})
	require.NoError(t, err)
	e.g, err = gateway.New(gateway.Config{
		DataDir:       e.dataDir,
		Targets:       targets,
		Authenticator: auth,
		Decider:       o.decider,
		Approvals:     o.approvals,
		Credentials:   creds,
		Recording:     sink,
		Logger:        slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ShutdownGrace: o.grace,
		ExpiryGrace:   o.expiryGrace,
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
			logs := e.logs.String()
			if len(logs) > 4<<20 {
				logs = "...\n" + logs[len(logs)-4<<20:]
			}
			t.Logf("gateway logs:\n%s", logs)
		}
	})
	return e
}

// hostPort is the listen address of a target.
func (e *env) hostPort(t *testing.T, target string) (string, string) {
	t.Helper()
	a := e.g.Addr(target)
	require.NotNil(t, a, "target %s is not listening", target)
	host, port, err := net.SplitHostPort(a.String())
	require.NoError(t, err)
	return host, port
}

// dsn is a libpq connection string to a target carrying the token.
func (e *env) dsn(t *testing.T, target, database, sslmode string) string {
	host, port := e.hostPort(t, target)
	return fmt.Sprintf("host=%s port=%s user=%s dbname=%s password=%s sslmode=%s connect_timeout=5",
		host, port, subject, database, e.token, sslmode)
}

// pgx connects to a target over TLS; the connection is closed when the
// test ends.
func (e *env) pgx(t *testing.T, target, database string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	c, err := pgx.Connect(ctx, e.dsn(t, target, database, "require"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// psql runs psql against a target with the token as PGPASSWORD.
func (e *env) psql(t *testing.T, target, database, sslmode string, args ...string) cmdResult {
	t.Helper()
	host, port := e.hostPort(t, target)
	cmd := exec.Command("psql", append([]string{"-X", "-P", "pager=off"}, args...)...)
	cmd.Env = psqlEnv(t, host, port, database, e.token, sslmode)
	return run(t, cmd, opTimeout)
}

// requireTool skips (or fails under SLUICE_REQUIRE_INTEGRATION=1) when a
// client program is not installed.
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		pgtest.Unavailable(t, name+" is not installed; install it with: apt-get install postgresql-client")
	}
}

// psqlEnv is a clean libpq environment: nothing from the test's own
// environment or a ~/.pgpass or ~/.postgresql can change what is tested.
func psqlEnv(t *testing.T, host, port, database, token, sslmode string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"LANG=C", "LC_ALL=C",
		"PGHOST=" + host, "PGPORT=" + port, "PGUSER=" + subject, "PGDATABASE=" + database,
		"PGPASSWORD=" + token, "PGSSLMODE=" + sslmode,
		"PGCONNECT_TIMEOUT=5", "PGAPPNAME=sluice-e2e",
		"PSQL_HISTORY=/dev/null",
	}
}

// cmdResult is what a finished command printed and its exit status.
type cmdResult struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// run runs cmd to completion within timeout (then it is killed and the
// test fails).
func run(t *testing.T, cmd *exec.Cmd, timeout time.Duration) cmdResult {
	t.Helper()
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not finish within %s\nstdout:\n%s\nstderr:\n%s", cmd.Args, timeout, stdout.String(), stderr.String())
	}
	r := cmdResult{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%s: %v", cmd.Args, err)
	}
	return r
}

// ---- recordings ----

// rec is one verified recording.
type rec struct {
	id, path string
	raw      []byte
	entries  []recording.Entry
}

func (r rec) last() recording.Entry { return r.entries[len(r.entries)-1] }

// commands returns the texts of the command entries.
func (r rec) commands() []string {
	var out []string
	for _, e := range r.entries {
		if e.Type == recording.TypeCommand && e.Command != nil {
			out = append(out, e.Command.Text)
		}
	}
	return out
}

// readRecording reads a recording, requiring its hash chain to verify.
func readRecording(t *testing.T, path string) rec {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	r := rec{id: strings.TrimSuffix(filepath.Base(path), ".jsonl"), path: path, raw: raw}
	rd := recording.NewReader(bytes.NewReader(raw))
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "recording %s", path)
		r.entries = append(r.entries, *e)
	}
	rep := rd.Report()
	require.True(t, rep.Intact, "recording %s: %s", path, rep)
	require.True(t, rep.Complete, "recording %s has no session.end", path)
	require.NotEmpty(t, r.entries, "recording %s is empty", path)
	return r
}

// recordingPaths lists the recording files in dir (none if dir is absent).
func recordingPaths(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	require.NoError(t, err)
	return paths
}

// waitRecordings waits until dir holds exactly n recordings that all end
// with session.end (sessions end a moment after their client leaves), and
// returns them verified, oldest first.
func waitRecordings(t *testing.T, dir string, n int) []rec {
	t.Helper()
	var sums []recording.Summary
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		sums, err = recording.List(dir)
		require.NoError(t, err)
		complete := 0
		for _, s := range sums {
			if s.Complete {
				complete++
			}
		}
		if len(sums) == n && complete == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d complete recordings in %s, have %d (%d complete): %+v", n, dir, len(sums), complete, sums)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := make([]rec, len(sums))
	for i, s := range sums {
		out[i] = readRecording(t, filepath.Join(dir, s.ID+".jsonl"))
	}
	return out
}

// ---- the refserver binary ----

// buildRefserver builds cmd/refserver once per test run (`go build` into a
// temporary directory removed by TestMain) and returns the binary's path.
func buildRefserver(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "sluice-e2e-bin-")
		if buildErr != nil {
			return
		}
		bin := filepath.Join(buildDir, "refserver")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/sluicegw/sluice/cmd/refserver").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/refserver: %v\n%s", err, out)
			return
		}
		buildBin = bin
	})
	require.NoError(t, buildErr)
	return buildBin
}

// refserver is a `refserver serve --config` process.
type refserver struct {
	listen         string
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{} // closed when the process has exited
	exitErr        error         // its exit status, once done
}

// refserverConfig writes a configuration for one PostgreSQL target "pg" in
// front of the machine's PostgreSQL (database test, as postgres), with
// client TLS from a self-signed certificate in dir/data, recordings in
// dir/recordings with their default caps, and the token's hash.
func refserverConfig(t *testing.T, dir, token, fsync string) (path, listen, recDir string) {
	t.Helper()
	listen = pgtest.FreeAddr(t)
	recDir = filepath.Join(dir, "recordings")
	cfg := fmt.Sprintf(`data_dir: %[1]s/data
admin:
  listen: %[2]s
log: {level: debug, format: text}
identity:
  tokens:
    - subject: %[3]s
      groups: [dba]
      sha256: %[4]s
targets:
  - name: pg
    protocol: postgres
    listen: %[5]s
    address: %[6]s
    database: test
    sslmode: disable
    credential:
      username: postgres
    handshake_timeout: 5s
    connect_timeout: 5s
policy:
  default: allow
recording:
  dir: %[7]s
  fsync: %[8]s
shutdown_grace: 2s
`, dir, pgtest.FreeAddr(t), subject, identity.HashToken(token), listen, pgtest.Addr(), recDir, fsync)
	path = filepath.Join(dir, "refserver.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	return path, listen, recDir
}

// startRefserver runs `refserver serve --config config` and waits until it
// logs that it started. It is killed when the test ends if still running.
func startRefserver(t *testing.T, bin, config, listen string) *refserver {
	t.Helper()
	s := &refserver{listen: listen, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, "serve", "--config", config)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	s.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	require.NoError(t, s.cmd.Start())
	go func() { s.exitErr = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("refserver stderr:\n%s", s.stderr.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.stderr.String(), "msg=\"refserver started\"") {
		select {
		case <-s.done:
			t.Fatalf("refserver exited before it started (%v):\n%s", s.exitErr, s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("refserver did not start within 20s:\n%s", s.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// pid is the server's process id.
func (s *refserver) pid() int { return s.cmd.Process.Pid }

// dsn is a libpq connection string to the server's target over TLS.
func (s *refserver) dsn(token string) string {
	host, port, _ := net.SplitHostPort(s.listen)
	return fmt.Sprintf("host=%s port=%s user=%s dbname=test password=%s sslmode=require connect_timeout=5", host, port, subject, token)
}

// stop sends SIGTERM and requires a clean exit within 20s.
func (s *refserver) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-s.done:
		require.NoError(t, s.exitErr, "refserver must exit 0 on SIGTERM:\n%s", s.stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("refserver did not stop within 20s of SIGTERM:\n%s", s.stderr.String())
	}
}

// refserverCmd runs another refserver command (replay, ...).
func refserverCmd(t *testing.T, bin string, args ...string) cmdResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	return run(t, cmd, opTimeout)
}

// procStatusKB reads a "VmRSS"-style field of /proc/<pid>/status in kB.
func procStatusKB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		require.NoError(t, err, "%s: %q", field, rest)
		return v
	}
	require.NoError(t, sc.Err())
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// ---- network helpers ----

// tap is a TCP proxy that keeps every byte passing through it in each
// direction: what clients sent (up) and what they received (down).
type tap struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup

	mu       sync.Mutex
	up, down bytes.Buffer
	conns    []net.Conn
}

// startTap proxies a loopback port to upstream until the test ends.
func startTap(t *testing.T, upstream string) *tap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tp := &tap{ln: ln, upstream: upstream}
	tp.wg.Add(1)
	go tp.accept()
	t.Cleanup(tp.close)
	return tp
}

func (tp *tap) addr() (string, string) {
	host, port, _ := net.SplitHostPort(tp.ln.Addr().String())
	return host, port
}

func (tp *tap) accept() {
	defer tp.wg.Done()
	for {
		c, err := tp.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.DialTimeout("tcp", tp.upstream, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		tp.mu.Lock()
		tp.conns = append(tp.conns, c, u)
		tp.mu.Unlock()
		tp.wg.Add(2)
		go tp.pipe(u, c, &tp.up)
		go tp.pipe(c, u, &tp.down)
	}
}

// pipe copies src to dst, keeping a copy; when either side ends, both
// connections are closed so the other direction ends too.
func (tp *tap) pipe(dst, src net.Conn, keep *bytes.Buffer) {
	defer tp.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			tp.mu.Lock()
			keep.Write(buf[:n])
			tp.mu.Unlock()
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

func (tp *tap) close() {
	tp.ln.Close()
	tp.mu.Lock()
	for _, c := range tp.conns {
		c.Close()
	}
	tp.mu.Unlock()
	tp.wg.Wait()
}

// bytes returns copies of what went up (client to server) and down.
func (tp *tap) bytes() (up, down []byte) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return bytes.Clone(tp.up.Bytes()), bytes.Clone(tp.down.Bytes())
}

// ---- a pseudo-terminal, for psql in interactive mode ----

// pty is the master side of a pseudo-terminal a command runs on, with
// everything the command printed.
type pty struct {
	master *os.File
	out    *syncBuffer
	done   chan struct{}
}

// startOnPTY starts cmd with a new pseudo-terminal as its controlling
// terminal and its stdin, stdout and stderr. psql only behaves as it does
// for a person at a terminal (Ctrl-C cancels the query and the session
// goes on) when stdin and stdout are terminals; with a pipe, a script
// stops at the first Ctrl-C, whatever the server.
func startOnPTY(t *testing.T, cmd *exec.Cmd) *pty {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	var n uint32
	rc, err := master.SyscallConn()
	require.NoError(t, err)
	var ioErr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		if ioErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioErr != nil {
			return
		}
		n, ioErr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN)
	}))
	require.NoError(t, ioErr, "unlocking the pseudo-terminal")
	slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err = cmd.Start()
	slave.Close() // the child has its own; EOF (EIO) reaches us when it exits
	require.NoError(t, err)
	p := &pty{master: master, out: &syncBuffer{}, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		_, _ = io.Copy(p.out, master)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		master.Close()
		<-p.done
	})
	return p
}

// waitFor waits until the command has printed s, and returns when it saw
// it.
func (p *pty) waitFor(t *testing.T, s string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %s; the terminal shows:\n%s", s, timeout, p.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Now()
}

func (p *pty) write(t *testing.T, s string) {
	t.Helper()
	_, err := p.master.WriteString(s)
	require.NoError(t, err)
}

// newBroker starts an approval broker on a SQLite store in the test's temp
// dir; both close when the test ends.
func newBroker(t *testing.T, ctx context.Context, gatewayID string) *approval.Broker {
	t.Helper()
	store, err := sqlitestore.Open(ctx, sqlitestore.Config{Path: filepath.Join(t.TempDir(), sqlitestore.DefaultFile)})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	broker, err := approval.New(ctx, approval.Config{Store: store, GatewayID: gatewayID})
	require.NoError(t, err)
	t.Cleanup(func() { broker.Close() })
	return broker
}
