package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/identity"
)

// buildRefserver compiles the command into a temporary directory.
func buildRefserver(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "refserver")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

type result struct {
	code           int
	stdout, stderr string
}

// runBinary runs the built refserver with stdin and returns its exit status
// and output.
func runBinary(t *testing.T, bin, stdin string, args ...string) result {
	t.Helper()
	return runBinaryIn(t, "", bin, stdin, args...)
}

// runBinaryIn is runBinary in working directory dir ("" for the test's).
func runBinaryIn(t *testing.T, dir, bin, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{code, stdout.String(), stderr.String()}
}

func TestCLIBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildRefserver(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	require.NoError(t, os.WriteFile(good, []byte(goodConfig), 0o600))
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(strings.Replace(goodConfig, "listen: 127.0.0.1:6432", "listen: 6432", 1)+"log: {format: xml}\n"), 0o600))
	unknown := filepath.Join(dir, "unknown.yaml")
	require.NoError(t, os.WriteFile(unknown, []byte(goodConfig+"polcy: {default: allow}\n"), 0o600))

	t.Run("config validate good", func(t *testing.T) {
		r := runBinary(t, bin, "", "config", "validate", good)
		assert.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, good+": ok\n", r.stdout)
	})
	t.Run("config validate bad", func(t *testing.T) {
		r := runBinary(t, bin, "", "config", "validate", bad)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, `bad.yaml: targets[0].listen: "6432": must be host:port`)
		assert.Contains(t, r.stderr, `bad.yaml: log.format: "xml" is not one of text, json`)
		assert.Empty(t, r.stdout)
	})
	t.Run("config validate unknown key", func(t *testing.T) {
		r := runBinary(t, bin, "", "config", "validate", unknown)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, `unknown.yaml: line 14: unknown field "polcy"`)
	})
	t.Run("config validate missing file", func(t *testing.T) {
		r := runBinary(t, bin, "", "config", "validate", filepath.Join(dir, "nope.yaml"))
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "nope.yaml")
	})
	t.Run("config validate without a file", func(t *testing.T) {
		r := runBinary(t, bin, "", "config", "validate")
		assert.Equal(t, 2, r.code)
		assert.Contains(t, r.stderr, "config validate needs exactly one FILE")
	})
	t.Run("config example round-trips", func(t *testing.T) {
		r := runBinary(t, bin, "", "config", "example")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, string(exampleConfig), r.stdout)
		path := filepath.Join(dir, "example.yaml")
		require.NoError(t, os.WriteFile(path, []byte(r.stdout), 0o600))

		// Its policy file is the one the demo writes on first start;
		// validation compiles it, so it must exist.
		wd := t.TempDir()
		r = runBinaryIn(t, wd, bin, "", "config", "validate", path)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "policy.files[0]: stat ./sluice-data/policy.yaml: no such file or directory")
		require.NoError(t, writeDemoPolicy(filepath.Join(wd, "sluice-data", "policy.yaml")))
		r = runBinaryIn(t, wd, bin, "", "config", "validate", path)
		assert.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, path+": ok (policy: 5 rules in 1 files, default deny)\n", r.stdout)
	})
	t.Run("config validate compiles the policy", func(t *testing.T) {
		pol := filepath.Join(dir, "typo.yaml")
		require.NoError(t, os.WriteFile(pol, []byte("rules:\n  - name: typo\n    match: command.sql.wrtes\n    action: deny\n"), 0o600))
		cfg := filepath.Join(dir, "with-policy.yaml")
		require.NoError(t, os.WriteFile(cfg, []byte(goodConfig+"policy: {files: ['"+pol+"']}\n"), 0o600))
		r := runBinary(t, bin, "", "config", "validate", cfg)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "with-policy.yaml: policy.files: the policy does not load:\n"+pol+`:3: rule #1 "typo": match 1:12: undefined field 'wrtes'`)

		r = runBinary(t, bin, "", "serve", "--config", cfg)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, pol+`:3: rule #1 "typo": match 1:12: undefined field 'wrtes'`)
	})
	t.Run("policy test", func(t *testing.T) {
		r := runBinary(t, bin, "", "policy", "test", filepath.Join("..", "..", "examples", "policies"))
		assert.Equal(t, 0, r.code, r.stderr)
		assert.Regexp(t, `(?m)^\d+ passed, 0 failed\n\z`, r.stdout)
	})
	t.Run("token hash", func(t *testing.T) {
		r := runBinary(t, bin, "s3cret-token\n", "token", "hash")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, identity.HashToken("s3cret-token")+"\n", r.stdout)
		assert.NotContains(t, r.stdout+r.stderr, "s3cret-token")

		// printf without a newline gives the same digest.
		r = runBinary(t, bin, "s3cret-token", "token", "hash")
		assert.Equal(t, identity.HashToken("s3cret-token")+"\n", r.stdout)
	})
	t.Run("token hash empty", func(t *testing.T) {
		r := runBinary(t, bin, "", "token", "hash")
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "no token on standard input")
	})
	t.Run("version", func(t *testing.T) {
		r := runBinary(t, bin, "", "version")
		assert.Equal(t, 0, r.code)
		assert.Regexp(t, `^refserver \S+ go1\.\S+ \w+/\w+\n$`, r.stdout)
	})
	t.Run("help", func(t *testing.T) {
		r := runBinary(t, bin, "", "-h")
		assert.Equal(t, 0, r.code)
		for _, cmd := range []string{"serve", "replay", "sessions list", "sessions kill", "config validate", "config example",
			"policy test", "policy eval", "policy check", "token hash", "version"} {
			assert.Contains(t, r.stdout, "refserver "+cmd)
		}
	})
	t.Run("no command", func(t *testing.T) {
		r := runBinary(t, bin, "")
		assert.Equal(t, 2, r.code)
		assert.Contains(t, r.stderr, "Usage:")
	})
	t.Run("unknown command", func(t *testing.T) {
		r := runBinary(t, bin, "", "frobnicate")
		assert.Equal(t, 2, r.code)
		assert.Contains(t, r.stderr, `unknown command "frobnicate"`)
	})
	t.Run("unknown flag", func(t *testing.T) {
		r := runBinary(t, bin, "", "serve", "--confg", good)
		assert.Equal(t, 2, r.code)
		assert.Contains(t, r.stderr, "flag provided but not defined: -confg")
		assert.Contains(t, r.stderr, "Usage: refserver serve")
	})
	t.Run("serve refuses an invalid config", func(t *testing.T) {
		r := runBinary(t, bin, "", "serve", "--config", bad)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, `bad.yaml: targets[0].listen`)
	})
}
