package credstore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// script writes an executable /bin/sh script into dir. Each run appends a
// line to dir/runs, so runs(dir) counts them.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	content := "#!/bin/sh\necho run >> " + filepath.Join(dir, "runs") + "\n" + body + "\n"
	require.NoError(t, os.WriteFile(path, []byte(content), 0o700))
	return path
}

func runs(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "runs"))
	if os.IsNotExist(err) {
		return 0
	}
	require.NoError(t, err)
	return strings.Count(string(b), "run\n")
}

func TestExecPlainAndCache(t *testing.T) {
	dir := t.TempDir()
	cmd := script(t, dir, "pw", `printf '%s\n' "plain-Ex11-$1"`)
	h := newHarness(t, Config{Exec: ExecConfig{TTL: time.Minute}})
	ref := "exec:" + cmd + " orders"

	assert.Equal(t, "plain-Ex11-orders", h.must(ref))
	assert.Equal(t, "plain-Ex11-orders", h.must(ref))
	assert.Equal(t, 1, runs(t, dir), "cached within the TTL")
	assert.Equal(t, "plain-Ex11-other", h.must("exec:"+cmd+" other"), "another command line is another entry")
	assert.Equal(t, 2, runs(t, dir))

	h.clk.Advance(61 * time.Second)
	h.must(ref)
	assert.Equal(t, 3, runs(t, dir), "run again after the TTL")

	h.r.Purge()
	h.must(ref)
	assert.Equal(t, 4, runs(t, dir), "run again after Purge")
	assert.Contains(t, h.logs.String(), `"msg":"credstore: ran exec command","program":"`+cmd+`"`)
	h.assertClean("Ex11")
}

func TestExecNoShell(t *testing.T) {
	h := newHarness(t, Config{})
	t.Setenv("SLUICE_EXEC_TEST", "expanded")
	assert.Equal(t, "$SLUICE_EXEC_TEST *", h.must("exec:/bin/echo $SLUICE_EXEC_TEST *"))
	assert.Equal(t, "expanded", h.must(`exec:/bin/sh -c 'echo "$SLUICE_EXEC_TEST"'`), "a shell only when the command is one")
}

func TestExecJSON(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, Config{Exec: ExecConfig{TTL: time.Hour}})
	expires := h.clk.Now().Add(5 * time.Minute).Format(time.RFC3339)
	cmd := script(t, dir, "cred", `echo '{"password": "json-Ex22", "expires_at": "`+expires+`", "extra": 1}'`)

	assert.Equal(t, "json-Ex22", h.must("exec:"+cmd))
	h.clk.Advance(4 * time.Minute)
	h.must("exec:" + cmd)
	assert.Equal(t, 1, runs(t, dir), "cached until expires_at")
	h.clk.Advance(2 * time.Minute)
	// The script's expires_at is now in the past.
	h.fail("exec:"+cmd, "exec "+cmd+": printed a secret that expired at "+expires)
	assert.Equal(t, 2, runs(t, dir), "expires_at ended the cache entry, not the 1h TTL")

	noExpiry := script(t, dir, "noexp", `echo '{"password":"json-Ex33"}'`)
	assert.Equal(t, "json-Ex33", h.must("exec:"+noExpiry))
	h.assertClean("Ex22", "Ex33")
}

func TestExecFailures(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, Config{Exec: ExecConfig{Timeout: 300 * time.Millisecond}})

	// Non-zero exit, having printed the secret on both streams: the
	// error keeps the status and the masked last line of stderr.
	fails := script(t, dir, "fails", `echo "leak-Ex44"; echo "trace: got leak-Ex44" >&2; echo "error: vault sealed" >&2; exit 3`)
	err := h.fail("exec:"+fails+" --token arg-Ex55", `credstore: exec `+fails+`: exit status 3 (stderr: "error: vault sealed")`)
	assert.NotContains(t, err.Error(), "--token", "arguments are not shown")

	echoes := script(t, dir, "echoes", `echo "stdout-Ex66"; echo "failed with stdout-Ex66" >&2; exit 1`)
	h.fail("exec:"+echoes, `exit status 1 (stderr: "failed with [redacted]")`)

	long := script(t, dir, "long", `printf '%0300d\n' 0 >&2; exit 1`)
	err = h.fail("exec:"+long, `exit status 1 (stderr: "000`)
	assert.Less(t, len(err.Error()), len(long)+200)

	h.fail("exec:"+filepath.Join(dir, "missing"), "exec "+filepath.Join(dir, "missing")+": command not found")
	h.fail("exec:sluice-no-such-command-anywhere", "exec sluice-no-such-command-anywhere: command not found")
	notExec := filepath.Join(dir, "not-executable")
	require.NoError(t, os.WriteFile(notExec, []byte("#!/bin/sh\necho x\n"), 0o600))
	h.fail("exec:"+notExec, "cannot run it: permission denied")

	h.fail("exec:"+script(t, dir, "empty", `exit 0`), "printed nothing on standard output")
	h.fail("exec:"+script(t, dir, "blank", `echo "  "`), "printed nothing on standard output")
	h.fail("exec:"+script(t, dir, "badjson", `echo '{"token": "json-Ex77"}'`), `printed a JSON object without a non-empty "password" string`)
	h.fail("exec:"+script(t, dir, "badtime", `echo '{"password": "json-Ex88", "expires_at": "tomorrow"}'`), `printed an "expires_at" that is not an RFC 3339 time`)
	h.fail("exec:"+script(t, dir, "huge", `head -c 70000 /dev/zero | tr '\0' x`), "printed more than 65536 bytes")
	h.fail("exec:'unterminated", "exec reference: unterminated single quote")

	start := time.Now()
	slow := script(t, dir, "slow", `sleep 30; echo "slow-Ex99"`)
	h.fail("exec:"+slow, "exec "+slow+": no answer within 300ms; killed it (exec.timeout)")
	assert.Less(t, time.Since(start), 5*time.Second, "the timeout kills the script and its sleep")

	before := runs(t, dir)
	h.fail("exec:"+fails, "exit status 3")
	assert.Equal(t, before+1, runs(t, dir), "failures are not cached")
	h.assertClean("leak-Ex44", "arg-Ex55", "stdout-Ex66", "json-Ex77", "json-Ex88", "slow-Ex99")
}

func TestExecHideStderr(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, Config{Exec: ExecConfig{HideStderr: true}})
	cmd := script(t, dir, "fails", `echo "+ curl -u admin:hidden-Ex10" >&2; exit 2`)
	err := h.fail("exec:"+cmd, "exec "+cmd+": exit status 2")
	assert.NotContains(t, err.Error(), "stderr")
	h.assertClean("hidden-Ex10")
}

func TestExecCoalesces(t *testing.T) {
	dir := t.TempDir()
	cmd := script(t, dir, "slowish", `sleep 0.3; echo "shared-Ex12"`)
	h := newHarness(t, Config{})
	var wg sync.WaitGroup
	const n = 10
	got := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			c, err := h.r.Resolve(context.Background(), Ref{Password: "exec:" + cmd})
			got[i], errs[i] = c.Password.Reveal(), err
		})
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		assert.Equal(t, "shared-Ex12", got[i])
	}
	assert.Equal(t, 1, runs(t, dir), "concurrent Resolves share one run")
}

func TestExecCallerContext(t *testing.T) {
	dir := t.TempDir()
	cmd := script(t, dir, "slowish", `sleep 1; echo "late-Ex13"`)
	h := newHarness(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := h.r.Resolve(ctx, Ref{Password: "exec:" + cmd})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 500*time.Millisecond, "the caller is not held for the run")
	// The run goes on and is cached for the next caller.
	assert.Eventually(t, func() bool {
		c, err := h.r.Resolve(context.Background(), Ref{Password: "exec:" + cmd})
		return err == nil && c.Password.Reveal() == "late-Ex13"
	}, 5*time.Second, 50*time.Millisecond)
	assert.Equal(t, 1, runs(t, dir))
}

func TestCloseKillsRunningCommand(t *testing.T) {
	dir := t.TempDir()
	cmd := script(t, dir, "hangs", `sleep 30; echo "never-Ex14"`)
	h := newHarness(t, Config{})
	errc := make(chan error, 1)
	go func() {
		_, err := h.r.Resolve(context.Background(), Ref{Password: "exec:" + cmd})
		errc <- err
	}()
	require.Eventually(t, func() bool { return runs(t, dir) == 1 }, 5*time.Second, 10*time.Millisecond)
	start := time.Now()
	require.NoError(t, h.r.Close())
	assert.Less(t, time.Since(start), 3*time.Second, "Close kills the command rather than waiting out exec.timeout")
	err := <-errc
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exec "+cmd+": killed it: the credential store was closed")
}
