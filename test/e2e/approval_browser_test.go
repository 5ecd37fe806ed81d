package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/internal/pgtest"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/recording"
)

// chromiumPath is Debian's chromium package.
const chromiumPath = "/usr/bin/chromium"

// browserTimeout bounds everything the browser does in one test.
const browserTimeout = 60 * time.Second

// TestApprovalPageInBrowser: the approver page in headless Chromium,
// against an in-process gateway in front of the machine's PostgreSQL. A
// `psql` INSERT that policy holds for a DBA waits; the request appears on
// the page of a DBA signed in with their own token (a different identity
// from the requester), showing the requester, the target, the exact SQL
// and the rule; the Approve button lets psql finish with the row written,
// and the request leaves the page without a reload. While nothing
// changes, the polls leave the card alone (a selection in it survives).
// A second INSERT
// denied on the page with a reason fails in psql with SQLSTATE 42501 and
// that reason. A screenshot of the pending request is saved in the
// test's temporary directory.
func TestApprovalPageInBrowser(t *testing.T) {
	pgtest.Require(t)
	requireTool(t, "psql")
	requireChromium(t)
	admin := pgtest.AdminConn(t, "test")
	ctx, cancel := context.WithTimeout(context.Background(), 2*browserTimeout)
	defer cancel()
	_, err := admin.Exec(ctx, "drop table if exists e2e_browser_approval; create table e2e_browser_approval(v int, note text)")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "drop table if exists e2e_browser_approval") })

	broker := newBroker(t, ctx, "e2e-browser")
	engine, err := policy.Parse("browser.yaml", []byte(`
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
    timeout: 2m
default: deny
`))
	require.NoError(t, err)

	requester := identity.StaticToken{Subject: subject, Name: "Alice Agent", Email: "alice@example.com", Groups: []string{"agents"}}
	approver := identity.StaticToken{Subject: "dana", Name: "Dana DBA", Groups: []string{"dba"}}
	e, approverToken := startApprovalsGateway(t, engine, broker, requester, approver)
	// The operator's admin listener; the approvers' page and API are on
	// it. polls counts the page's list requests: a new one is only sent
	// once the previous one has been drawn (or left alone).
	var polls atomic.Int64
	adminHandler := e.g.AdminHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/api/approvals" {
			polls.Add(1)
		}
		adminHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	page := startBrowser(t)
	bctx, bcancel := context.WithTimeout(page, browserTimeout)
	defer bcancel()

	// Sign in as the DBA. Nothing waits yet.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/approvals"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), approverToken),
		chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("main")),
		chromedp.WaitVisible(chromedp.ID("empty")),
		// A mark that a reload would wipe: every change from here on
		// must come from the page's own script (its polls, its votes).
		chromedp.Evaluate[chromedp.Void](`window.e2eNoReload = true`),
	), "signing in on the approver page")
	empty, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("empty")))
	require.NoError(t, err)
	assert.Equal(t, "No requests are waiting.", empty)

	// waitCard waits until exactly one request is on the page, and
	// returns its fields as shown: the heading, the command text and the
	// rows of its description list.
	waitCard := func(t *testing.T) (heading, command string, rows map[string]string) {
		t.Helper()
		require.NoError(t, chromedp.Do(bctx, chromedp.WaitVisible(chromedp.CSS(`#list .req button`))), "the request appears on the page")
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#list .req").length`))
		require.NoError(t, err)
		require.Equal(t, 1, n, "one request is pending")
		heading, err = chromedp.Run(bctx, chromedp.TextContent(chromedp.CSS(`#list .req h2`)))
		require.NoError(t, err)
		command, err = chromedp.Run(bctx, chromedp.TextContent(chromedp.CSS(`#list .req pre`)))
		require.NoError(t, err)
		rows, err = chromedp.Run(bctx, chromedp.Evaluate[map[string]string](
			`Object.fromEntries([...document.querySelectorAll("#list .req dt")].map((dt) => [dt.textContent, dt.nextElementSibling.textContent]))`))
		require.NoError(t, err)
		return heading, command, rows
	}
	// waitGone waits until the page, without a reload, lists nothing
	// and reports the request's new state.
	waitGone := func(t *testing.T, id string, state approval.State) {
		t.Helper()
		require.NoError(t, chromedp.Do(bctx,
			chromedp.WaitNotPresent(chromedp.CSS(`#list .req`)),
			chromedp.WaitVisible(chromedp.ID("empty")),
		), "the request leaves the page")
		st, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("status")))
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("Request %s: %s.", id, state), st)
		kept, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.e2eNoReload === true`))
		require.NoError(t, err)
		assert.True(t, kept, "the page was not reloaded")
	}

	t.Run("approve", func(t *testing.T) {
		const sql = "insert into e2e_browser_approval values (1, 'approved in the browser')"
		done := startPsql(ctx, t, e, sql)
		heading, command, rows := waitCard(t)
		id := rows["Request"]
		req, err := broker.Get(ctx, id)
		require.NoError(t, err, "the page shows the broker's request id %q", id)
		assert.Equal(t, approval.StatePending, req.State)
		assert.Equal(t, "pg — Alice Agent (alice)", heading)
		assert.Equal(t, sql, command, "the exact SQL text")
		assert.Equal(t, "Alice Agent (alice) <alice@example.com>", rows["Requester"])
		assert.Equal(t, "pg (postgres)", rows["Target"])
		assert.Equal(t, "writes-need-a-dba", rows["Rule"])
		assert.Equal(t, "group:dba — 0 of 1", rows["Approvers"])

		// While nothing changes the card is not redrawn: what the
		// approver selected in the command stays selected across polls.
		require.NoError(t, chromedp.Do(bctx, chromedp.Evaluate[chromedp.Void](
			`window.e2eCard = document.querySelector("#list .req"); getSelection().selectAllChildren(e2eCard.querySelector("pre"))`)))
		from := polls.Load()
		require.Eventually(t, func() bool { return polls.Load() >= from+2 }, 10*time.Second, 10*time.Millisecond,
			"the page polls every 2s")
		kept, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`e2eCard.isConnected && getSelection().toString() === `+strconv.Quote(sql)))
		require.NoError(t, err)
		assert.True(t, kept, "an unchanged request is not redrawn under the approver")

		shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		path := filepath.Join(t.TempDir(), "approvals.png")
		require.NoError(t, os.WriteFile(path, shot, 0o600))
		t.Logf("screenshot of the pending request: %s (%d bytes)", path, len(shot))
		require.NotEmpty(t, shot)
		img, err := png.Decode(bytes.NewReader(shot))
		require.NoError(t, err, "the screenshot is a PNG")
		assert.Positive(t, img.Bounds().Dx())
		assert.Positive(t, img.Bounds().Dy())

		select {
		case r := <-done:
			t.Fatalf("psql finished before the approval: %+v", r)
		default:
		}
		start := time.Now()
		require.NoError(t, chromedp.Do(bctx, chromedp.Click(chromedp.Search(`//div[@id="list"]//button[text()="Approve"]`))))
		r := waitPsql(ctx, t, done)
		t.Logf("Approve click -> psql exit: %v", time.Since(start))
		assert.Equal(t, 0, r.code, "stderr: %s", r.stderr)
		assert.Contains(t, r.stderr, "NOTICE:  00000: sluice: this command needs approval (rule writes-need-a-dba); request "+id,
			"psql told the person at the terminal what it waits for")
		assert.Contains(t, r.stdout, "INSERT 0 1")
		var note string
		require.NoError(t, admin.QueryRow(ctx, "select note from e2e_browser_approval where v = 1").Scan(&note))
		assert.Equal(t, "approved in the browser", note)

		waitGone(t, id, approval.StateApproved)
		req, err = broker.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, approval.StateApproved, req.State)
		require.Len(t, req.Decisions, 1)
		assert.Equal(t, "dana", req.Decisions[0].Approver.Subject, "the vote is the signed-in approver's")
	})

	t.Run("deny with a reason", func(t *testing.T) {
		const sql = "insert into e2e_browser_approval values (2, 'denied in the browser')"
		const reason = "not during the release freeze"
		done := startPsql(ctx, t, e, sql)
		_, command, rows := waitCard(t)
		id := rows["Request"]
		assert.Equal(t, sql, command)
		require.NoError(t, chromedp.Do(bctx,
			chromedp.SendKeys(chromedp.CSS(`#list .req input[type="text"]`), reason),
			chromedp.Click(chromedp.Search(`//div[@id="list"]//button[text()="Deny"]`)),
		))
		r := waitPsql(ctx, t, done)
		assert.NotEqual(t, 0, r.code, "psql fails: stdout %s", r.stdout)
		assert.Contains(t, r.stderr, "ERROR:  42501: sluice: request "+id+" denied by Dana DBA: "+reason)
		assert.NotContains(t, r.stdout, "INSERT")
		var n int
		require.NoError(t, admin.QueryRow(ctx, "select count(*) from e2e_browser_approval where v = 2").Scan(&n))
		assert.Zero(t, n, "nothing was written")

		waitGone(t, id, approval.StateDenied)
		req, err := broker.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, approval.StateDenied, req.State)
		require.Len(t, req.Decisions, 1)
		assert.Equal(t, reason, req.Decisions[0].Reason)
	})
}

// requireChromium skips (or fails under SLUICE_REQUIRE_INTEGRATION=1)
// when Debian's chromium is not installed.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		pgtest.Unavailable(t, chromiumPath+" is not installed; install it with: apt-get install chromium")
	}
}

// startBrowser starts headless Chromium and returns the context of its
// first tab. The browser is closed, and its process waited for, when the
// test ends; what it printed and what chromedp reported go to the test
// log if the test failed.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	out := &syncBuffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(out),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	logf := func(format string, args ...any) { fmt.Fprintf(out, "chromedp: "+format+"\n", args...) }
	page, pcancel := chromedp.NewContext(actx, chromedp.WithErrorf(logf), chromedp.WithLogf(logf))
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(page, 10*time.Second)
		defer ccancel()
		if err := chromedp.Cancel(cctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("closing the browser: %v", err)
		}
		pcancel()
		acancel() // waits for the process to exit
		if t.Failed() {
			t.Logf("browser output:\n%s", out.String())
		}
	})
	// The first action starts the browser and binds its life to the
	// context it runs with, so it runs with the tab's own, which has no
	// deadline; later actions take their deadlines from the test.
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(page) }()
	select {
	case err := <-started:
		require.NoError(t, err, "starting %s:\n%s", chromiumPath, out.String())
	case <-sctx.Done():
		t.Fatalf("%s did not start within 30s:\n%s", chromiumPath, out.String())
	}
	return page
}

// startApprovalsGateway starts a gateway like startGatewayWith does, but
// with a token for each of several identities, as the approvers' page
// needs a person other than the requester: the first identity gets
// e.token (the one env.psql sends), and the token of the second is
// returned. The identities' Name and Email show on the page. edit, if
// given, adjusts the configuration before the gateway is built.
func startApprovalsGateway(t *testing.T, decider policy.Decider, broker *approval.Broker, requester, approver identity.StaticToken,
	edit ...func(*gateway.Config)) (*env, string) {
	t.Helper()
	require.Equal(t, subject, requester.Subject, "env.psql logs in as %s", subject)
	e := &env{dataDir: t.TempDir(), logs: &syncBuffer{}, token: "tok-" + pgtest.RandomSecret(16)}
	e.recDir = filepath.Join(e.dataDir, "recordings")
	approverToken := "tok-" + pgtest.RandomSecret(16)
	requester.SHA256, approver.SHA256 = identity.HashToken(e.token), identity.HashToken(approverToken)
	auth, err := identity.NewStaticTokens([]identity.StaticToken{requester, approver})
	require.NoError(t, err)
	sink, err := recording.NewFileSink(e.recDir, recording.FileOptions{})
	require.NoError(t, err)
	cfg := gateway.Config{
		DataDir:       e.dataDir,
		Targets:       []gateway.TargetConfig{pgTarget("pg")},
		Authenticator: auth,
		Decider:       decider,
		Approvals:     broker,
		Credentials:   credstore.Default{},
		Recording:     sink,
		Logger:        slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ShutdownGrace: 2 * time.Second,
	}
	for _, f := range edit {
		f(&cfg)
	}
	e.g, err = gateway.New(cfg)
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
	return e, approverToken
}

// startPsql runs `psql -c sql` against target pg as the requester, in the
// background (the statement waits for a decision), with verbose errors so
// that stderr carries the SQLSTATE. The result arrives on the channel; ctx
// kills psql if it ends first.
func startPsql(ctx context.Context, t *testing.T, e *env, sql string) <-chan cmdResult {
	t.Helper()
	host, port := e.hostPort(t, "pg")
	cmd := exec.CommandContext(ctx, "psql", "-X", "-P", "pager=off",
		"-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-c", sql)
	cmd.Env = psqlEnv(t, host, port, "test", e.token, "require")
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	done := make(chan cmdResult, 1)
	exited := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(exited)
		err := cmd.Wait()
		r := cmdResult{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			r.code = ee.ExitCode()
		default:
			r.code = -1
			r.stderr += "\n" + err.Error()
		}
		done <- r
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // fails harmlessly once psql has exited
		<-exited
	})
	return done
}

// waitPsql waits for psql to finish within opTimeout.
func waitPsql(ctx context.Context, t *testing.T, done <-chan cmdResult) cmdResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(opTimeout):
		t.Fatalf("psql did not finish within %s of the decision", opTimeout)
	case <-ctx.Done():
		t.Fatalf("psql did not finish: %v", ctx.Err())
	}
	return cmdResult{}
}
