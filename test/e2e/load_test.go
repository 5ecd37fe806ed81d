package e2e

// Load: many concurrent sessions through one gateway to a throwaway
// cluster sized for them, each running a mix of allowed, masked and denied
// commands; afterwards every command is in exactly one recording with the
// decision the client saw, and nothing leaked. Sizes are reduced for CI;
// SLUICE_LOAD_SESSIONS and SLUICE_LOAD_SECONDS raise them (e.g. 1000 and
// 30).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/internal/pgtest"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/recording"
)

// envInt reads a positive integer from the environment, or def.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, "%s=%q", name, v)
	require.Positive(t, n, "%s=%q", name, v)
	return n
}

// startLoadCluster starts a throwaway cluster that accepts maxConns
// connections (the machine's server allows 100), with small shared
// buffers, the tables the load uses, and returns it and the password of
// its postgres superuser.
func startLoadCluster(t *testing.T, maxConns int) (*pgtest.Cluster, string) {
	t.Helper()
	cl, pw := pgtest.StartScramCluster(t)
	f, err := os.OpenFile(filepath.Join(cl.Dir, "data", "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fmt.Fprintf(f, "\nmax_connections = %d\nshared_buffers = 32MB\n", maxConns)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	// Trust on loopback: the backend's SCRAM exchange (4096 PBKDF2
	// rounds on each side, slow under the race detector) is not what is
	// measured here, and other tests cover it.
	require.NoError(t, os.WriteFile(filepath.Join(cl.Dir, "data", "pg_hba.conf"), []byte("host all all 127.0.0.1/32 trust\n"), 0o600))
	pgctl(t, cl, "stop")
	pgctl(t, cl, "start")
	cl.Exec(t, pw, `create table load_users (id int primary key, email text);
		insert into load_users select g, 'user' || g || '@example.com' from generate_series(1, 10) g;
		create table load_secrets (id int primary key, secret text);
		insert into load_secrets values (1, 'hunter2');
		create table load_events (s int, n int)`)
	return cl, pw
}

// loadPolicy allows connects, inserts and reads (masking e-mail
// addresses), and denies anything touching load_secrets.
const loadPolicy = `
rules:
  - name: connect
    match: command.kind == "connect"
    action: allow
  - name: no-secrets
    match: command.sql.statements.exists(s, "load_secrets" in s.tables)
    action: deny
    message: the secrets table is off limits
  - name: reads-masked
    match: '!command.sql.writes'
    action: allow
    mask: [email]
  - name: inserts
    match: command.sql.writes && command.sql.statements.all(s, s.kind == "INSERT")
    action: allow
default: deny
`

// loadSession is what one client did: commands answered, by kind.
type loadSession struct {
	idx                     int
	allowed, masked, denied int
	texts                   []string
	lat                     []time.Duration
	err                     error
}

// connectAll opens n pgx connections, at most 16 at a time (the gateway's
// handshake timeout bounds each; 200 TLS handshakes at once on a small
// machine could exceed it), closed when the test ends.
func connectAll(t *testing.T, n int, cfg *pgx.ConnConfig) []*pgx.Conn {
	t.Helper()
	conns := make([]*pgx.Conn, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			conns[i], errs[i] = pgx.ConnectConfig(ctx, cfg.Copy())
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close(context.Background())
			}
		}
	})
	for i, err := range errs {
		require.NoError(t, err, "connection %d", i)
	}
	return conns
}

// fdCount is how many file descriptors the test process has open.
func fdCount(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(des)
}

// settle waits (up to 15s) until the goroutines and file descriptors are
// back to at most base plus slack, and returns the last counts.
func settle(t *testing.T, baseG, baseFD, slack int) (int, int) {
	t.Helper()
	var g, fd int
	deadline := time.Now().Add(15 * time.Second)
	for {
		runtime.GC()
		g, fd = runtime.NumGoroutine(), fdCount(t)
		if (g <= baseG+slack && fd <= baseFD+slack) || time.Now().After(deadline) {
			return g, fd
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLoadMixedSessions: N sessions (200; SLUICE_LOAD_SESSIONS) run for a
// bounded time (10s; SLUICE_LOAD_SECONDS) a mix of inserts and reads
// (allowed), reads of e-mail addresses (masked) and reads of a forbidden
// table (denied), over the simple protocol so that one command is one
// recorded command. Afterwards: every command a client was answered for
// is in exactly one recording, with the decision the client saw; the
// per-session counts match; recordings verify and are complete; and the
// test process (gateway and clients) is back to its goroutines and file
// descriptors from before the load.
func TestLoadMixedSessions(t *testing.T) {
	pgtest.Require(t)
	n := envInt(t, "SLUICE_LOAD_SESSIONS", 200)
	dur := time.Duration(envInt(t, "SLUICE_LOAD_SECONDS", 10)) * time.Second
	cl, pw := startLoadCluster(t, n+20)
	t.Setenv("SLUICE_E2E_LOAD_PG_PASSWORD", pw)
	engine, err := policy.Parse("load.yaml", []byte(loadPolicy))
	require.NoError(t, err)
	tc := pgTarget("pg")
	tc.Target.Address = cl.Addr()
	tc.Credential = credstore.Ref{Username: "postgres", Password: "env:SLUICE_E2E_LOAD_PG_PASSWORD"}
	tc.MaxSessions = n + 10
	tc.HandshakeTimeout = 30 * time.Second
	tc.Limits.ConnectTimeout = 30 * time.Second
	e := startGatewayWith(t, gatewayOptions{grace: 5 * time.Second, decider: engine}, tc)

	cfg, err := pgx.ParseConfig(e.dsn(t, "pg", "postgres", "require") + " connect_timeout=60")
	require.NoError(t, err)
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	// A warm-up session, so that lazily started goroutines are counted
	// in the baseline.
	warm := connectAll(t, 1, cfg)[0]
	selectOne(t, warm, "warm-up")
	require.NoError(t, warm.Close(context.Background()))
	waitRecordings(t, e.recDir, 1)
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	baseG, baseFD := runtime.NumGoroutine(), fdCount(t)

	start := time.Now()
	conns := connectAll(t, n, cfg)
	t.Logf("%d sessions connected in %v", n, time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), dur+60*time.Second)
	defer cancel()
	sessions := make([]*loadSession, n)
	var wg sync.WaitGroup
	var unexpected atomic.Int64
	loadStart := time.Now()
	deadline := loadStart.Add(dur)
	for i, c := range conns {
		ls := &loadSession{idx: i}
		sessions[i] = ls
		wg.Go(func() {
			// Bounded in count and time; every session runs each kind of
			// command at least once, however loaded the machine.
			for k := 0; k < 1_000_000 && (k < 4 || time.Now().Before(deadline)); k++ {
				tag := fmt.Sprintf("/* s%d n%d */", i, k)
				var text string
				switch k % 4 {
				case 0:
					text = fmt.Sprintf("insert into load_events values (%d, %d) %s", i, k, tag)
				case 1:
					text = fmt.Sprintf("select email %s from load_users where id = %d", tag, k%10+1)
				case 2:
					text = fmt.Sprintf("select secret %s from load_secrets", tag)
				case 3:
					text = fmt.Sprintf("select count(*) %s from load_events where s = %d", tag, i)
				}
				t0 := time.Now()
				var email string
				var err error
				if k%4 == 1 {
					err = c.QueryRow(ctx, text).Scan(&email)
				} else {
					_, err = c.Exec(ctx, text)
				}
				ls.lat = append(ls.lat, time.Since(t0))
				var pe *pgconn.PgError
				switch {
				case k%4 == 2 && errors.As(err, &pe) && pe.Code == "42501":
					ls.denied++
				case err != nil:
					ls.err = fmt.Errorf("%s: %w", text, err)
					unexpected.Add(1)
					return
				case k%4 == 1:
					if strings.Contains(email, "@example.com") {
						ls.err = fmt.Errorf("%s: unmasked %q", text, email)
						unexpected.Add(1)
						return
					}
					ls.masked++
				case k%4 == 2:
					ls.err = fmt.Errorf("%s: not denied", text)
					unexpected.Add(1)
					return
				default:
					ls.allowed++
				}
				ls.texts = append(ls.texts, text)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(loadStart)
	var total, allowed, masked, denied int
	var lat []time.Duration
	for _, ls := range sessions {
		require.NoError(t, ls.err, "session %d", ls.idx)
		allowed += ls.allowed
		masked += ls.masked
		denied += ls.denied
		lat = append(lat, ls.lat...)
	}
	total = allowed + masked + denied
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(10 * time.Microsecond)
	}
	t.Logf("%d sessions for %v (planned %v): %d commands (%d allowed, %d masked, %d denied), %.0f commands/s; latency p50 %v, p99 %v, max %v",
		n, elapsed.Round(time.Millisecond), dur, total, allowed, masked, denied, float64(total)/elapsed.Seconds(), pct(0.5), pct(0.99), lat[len(lat)-1].Round(time.Millisecond))
	require.Zero(t, unexpected.Load())
	require.Positive(t, min(allowed, masked, denied), "every kind of command ran")

	// Close every session; their recordings complete.
	for _, c := range conns {
		require.NoError(t, c.Close(context.Background()))
	}
	recs := waitRecordings(t, e.recDir, n+1)

	// Every command in exactly one recording, with the decision the
	// client saw.
	where := map[string]int{} // command text -> occurrences
	type counts struct{ allowed, masked, denied int }
	bySession := map[int]counts{}
	for _, r := range recs {
		masks := map[uint64]bool{} // command seq -> its result masked something
		for _, en := range r.entries {
			if en.Type == string(protocol.EventResult) && en.Result != nil && en.Result.Masked > 0 {
				masks[en.CommandSeq] = true
			}
		}
		for _, en := range r.entries {
			if en.Type != recording.TypeCommand || en.Command == nil || en.Command.Kind != protocol.KindQuery {
				continue
			}
			text := en.Command.Text
			where[text]++
			var s, k int
			i := strings.Index(text, "/* s")
			if i < 0 {
				continue // the warm-up
			}
			_, err := fmt.Sscanf(text[i:], "/* s%d n%d */", &s, &k)
			require.NoError(t, err, text)
			c := bySession[s]
			switch {
			case en.Decision.Action == protocol.Deny:
				c.denied++
			case masks[en.Seq]:
				c.masked++
			default:
				c.allowed++
			}
			bySession[s] = c
		}
	}
	var recorded int
	for _, ls := range sessions {
		for _, text := range ls.texts {
			assert.Equal(t, 1, where[text], "%q is in %d recordings", text, where[text])
			recorded++
		}
		got := bySession[ls.idx]
		assert.Equal(t, counts{ls.allowed, ls.masked, ls.denied}, got, "session %d: client counts vs recorded", ls.idx)
	}
	assert.Equal(t, total, recorded)
	assert.Equal(t, total+1, len(where), "no command recorded that no client was answered for (the warm-up aside)")

	// No leaks: goroutines and file descriptors back to the baseline.
	g, fd := settle(t, baseG, baseFD, 5)
	t.Logf("goroutines %d before the load, %d after; file descriptors %d before, %d after", baseG, g, baseFD, fd)
	assert.LessOrEqual(t, g, baseG+5, "goroutines leaked")
	assert.LessOrEqual(t, fd, baseFD+5, "file descriptors leaked")
}

// TestLoadIdleSessionMemory: the refserver binary (so that its process is
// measured alone) in front of a throwaway cluster, with N idle sessions
// open (200; SLUICE_LOAD_SESSIONS): the resident memory and the Go heap
// each idle session costs, from VmRSS and the process's own
// go_memstats_heap_inuse_bytes metric.
func TestLoadIdleSessionMemory(t *testing.T) {
	pgtest.Require(t)
	n := envInt(t, "SLUICE_LOAD_SESSIONS", 200)
	cl, pw := startLoadCluster(t, n+20)
	bin := buildRefserver(t)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "backend-password")
	require.NoError(t, os.WriteFile(pwFile, []byte(pw), 0o600))
	token := "tok-" + pgtest.RandomSecret(16)
	listen, admin := pgtest.FreeAddr(t), pgtest.FreeAddr(t)
	config := filepath.Join(dir, "refserver.yaml")
	require.NoError(t, os.WriteFile(config, []byte(fmt.Sprintf(`data_dir: %[1]s/data
admin:
  listen: %[2]s
log: {level: info, format: text}
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
    database: postgres
    sslmode: disable
    credential:
      username: postgres
      password: file:%[7]s
    max_sessions: %[8]d
    handshake_timeout: 30s
    connect_timeout: 30s
policy:
  default: allow
recording:
  dir: %[1]s/recordings
shutdown_grace: 2s
`, dir, admin, subject, identity.HashToken(token), listen, cl.Addr(), pwFile, n+10)), 0o600))
	s := startRefserver(t, bin, config, listen)
	cfg, err := pgx.ParseConfig(s.dsn(token) + " dbname=postgres connect_timeout=60")
	require.NoError(t, err)

	heap := func() float64 {
		t.Helper()
		resp, err := http.Get("http://" + admin + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
				f, err := strconv.ParseFloat(v, 64)
				require.NoError(t, err)
				return f
			}
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		t.Fatal("no go_memstats_heap_inuse_bytes in /metrics")
		return 0
	}
	warm := connectAll(t, 1, cfg)[0]
	selectOne(t, warm, "warm-up")
	time.Sleep(time.Second)
	rss0, heap0 := procStatusKB(t, s.pid(), "VmRSS"), heap()

	conns := connectAll(t, n, cfg)
	for _, c := range conns {
		selectOne(t, c, "an idle session's first command")
	}
	time.Sleep(2 * time.Second)
	rss1, heap1 := procStatusKB(t, s.pid(), "VmRSS"), heap()
	rssPer := float64(rss1-rss0) / float64(n)
	heapPer := (heap1 - heap0) / float64(n) / 1024
	t.Logf("%d idle sessions: refserver VmRSS %.1f -> %.1f MiB (%.1f KiB per session), Go heap in use %.1f -> %.1f MiB (%.1f KiB per session)",
		n, float64(rss0)/1024, float64(rss1)/1024, rssPer, heap0/(1<<20), heap1/(1<<20), heapPer)
	assert.Less(t, rssPer, 512.0, "an idle session should cost well under 512 KiB")
	for _, c := range conns {
		require.NoError(t, c.Close(context.Background()))
	}
	require.NoError(t, warm.Close(context.Background()))
	s.stop(t)
}
