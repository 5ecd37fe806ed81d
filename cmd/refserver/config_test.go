package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
)

func policyInput(kind string) *policy.Input {
	return &policy.Input{Command: &protocol.Command{Protocol: "postgres", Kind: protocol.Kind(kind)}}
}

// goodConfig is a minimal valid configuration; the table test below breaks
// one field at a time.
const goodConfig = `
identity:
  tokens:
    - subject: alice
      sha256: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
targets:
  - name: pg
    protocol: postgres
    listen: 127.0.0.1:6432
    address: 127.0.0.1:5432
    credential:
      username: app
      password: env:PG_PASSWORD
`

func parseValid(t *testing.T, yml string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(yml), "test.yaml")
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	return c
}

func TestConfigDefaults(t *testing.T) {
	c := parseValid(t, goodConfig)
	assert.Equal(t, "./sluice-data", c.DataDir)
	assert.Equal(t, "127.0.0.1:9090", c.Admin.Listen)
	assert.Equal(t, "info", c.Log.Level)
	assert.Equal(t, "text", c.Log.Format)
	assert.Equal(t, "deny", c.Policy.Default, "the policy must default to deny")
	assert.Equal(t, filepath.Join("sluice-data", "recordings"), c.Recording.Dir)
	assert.Equal(t, "interval", c.Recording.Fsync)
	assert.Equal(t, time.Second, c.Recording.FsyncInterval.Duration)
	assert.Equal(t, 10*time.Second, c.ShutdownGrace.Duration)
	assert.False(t, c.Credentials.AllowInline)

	// recording.dir follows data_dir unless set.
	c = parseValid(t, "data_dir: /var/lib/sluice\n"+goodConfig)
	assert.Equal(t, "/var/lib/sluice/recordings", c.Recording.Dir)
}

func TestConfigFieldsDecoded(t *testing.T) {
	c := parseValid(t, goodConfig+`
    database: app
    sslmode: verify-full
    options: {sslrootcert: /etc/ca.pem}
    labels: {env: prod}
    tls: {disable: true}
    allow_plaintext_loopback: true
    max_sessions: 7
    handshake_timeout: 3s
    connect_timeout: 1m
    client_write_timeout: 5m
    max_message_size: 1024
    record_rows: 5
    record_bytes: 4096
policy: {default: allow}
recording: {dir: /tmp/rec, fsync: always}
shutdown_grace: 1m30s
`)
	tc := c.Targets[0]
	assert.Equal(t, "app", tc.Database)
	assert.Equal(t, "verify-full", tc.SSLMode)
	assert.Equal(t, map[string]string{"sslrootcert": "/etc/ca.pem", "database": "app", "sslmode": "verify-full"}, targetOptions(tc))
	assert.Equal(t, "prod", tc.Labels["env"])
	assert.True(t, tc.TLS.Disable)
	assert.True(t, tc.AllowPlaintextLoopback)
	assert.Equal(t, 7, tc.MaxSessions)
	assert.Equal(t, 3*time.Second, tc.HandshakeTimeout.Duration)
	assert.Equal(t, time.Minute, tc.ConnectTimeout.Duration)
	assert.Equal(t, 5*time.Minute, tc.ClientWriteTimeout.Duration)
	assert.Equal(t, 1024, tc.MaxMessageSize)
	assert.Equal(t, 5, tc.RecordRows)
	assert.Equal(t, 4096, tc.RecordBytes)
	assert.Equal(t, "allow", c.Policy.Default)
	assert.Equal(t, "always", c.Recording.Fsync)
	assert.Zero(t, c.Recording.FsyncInterval.Duration, "no interval default outside fsync: interval")
	assert.Equal(t, 90*time.Second, c.ShutdownGrace.Duration)
}

func TestConfigValidateNamesFieldAndFile(t *testing.T) {
	tests := []struct {
		name    string
		replace [2]string // old, new in goodConfig; empty old appends new
		want    string
	}{
		{"target listen not host:port", [2]string{"listen: 127.0.0.1:6432", "listen: 6432"}, "test.yaml: targets[0].listen: \"6432\": must be host:port"},
		{"target listen bad port", [2]string{"listen: 127.0.0.1:6432", "listen: 127.0.0.1:99999"}, "test.yaml: targets[0].listen:"},
		{"target listen missing", [2]string{"listen: 127.0.0.1:6432", ""}, "test.yaml: targets[0].listen: is required"},
		{"target address missing", [2]string{"address: 127.0.0.1:5432", ""}, "test.yaml: targets[0].address: is required"},
		{"target name missing", [2]string{"- name: pg", "- name: \"\""}, "test.yaml: targets[0].name: is required"},
		{"target name with a slash", [2]string{"- name: pg", "- name: a/b"}, "test.yaml: targets[0].name:"},
		{"unknown protocol", [2]string{"protocol: postgres", "protocol: gopher"}, "test.yaml: targets[0].protocol: unknown protocol \"gopher\" (available: http, postgres)"},
		{"protocol missing", [2]string{"protocol: postgres", ""}, "test.yaml: targets[0].protocol: is required"},
		{"bad sslmode", [2]string{"", "    sslmode: sometimes\n"}, "test.yaml: targets[0].sslmode: \"sometimes\" is not one of"},
		{"sslmode in options", [2]string{"", "    options: {sslmode: disable}\n"}, "test.yaml: targets[0].options.sslmode: set it with targets[0].sslmode"},
		{"credential username missing", [2]string{"username: app", "username: \"\""}, "test.yaml: targets[0].credential.username: is required"},
		{"credential bad scheme", [2]string{"password: env:PG_PASSWORD", "password: bogus:x"}, "test.yaml: targets[0].credential.password: unknown reference scheme \"bogus\""},
		{"credential not a reference", [2]string{"password: env:PG_PASSWORD", "password: hunter2"}, "test.yaml: targets[0].credential.password: password reference must be"},
		{"inline without allow_inline", [2]string{"password: env:PG_PASSWORD", "password: inline:x"}, "test.yaml: targets[0].credential.password: inline secrets are refused unless credentials.allow_inline is true"},
		{"tls half set", [2]string{"", "    tls: {cert_file: /c.pem}\n"}, "test.yaml: targets[0].tls: set both cert_file and key_file"},
		{"tls disable with files", [2]string{"", "    tls: {disable: true, cert_file: /c.pem, key_file: /k.pem}\n"}, "test.yaml: targets[0].tls: disable cannot be combined"},
		{"negative max_sessions", [2]string{"", "    max_sessions: -1\n"}, "test.yaml: targets[0].max_sessions: must not be negative"},
		{"bad handshake_timeout", [2]string{"", "    handshake_timeout: 5x\n"}, "test.yaml: targets[0].handshake_timeout: \"5x\" is not a duration"},
		{"integer handshake_timeout", [2]string{"", "    handshake_timeout: 5\n"}, "test.yaml: targets[0].handshake_timeout: \"5\" is not a duration"},
		{"negative connect_timeout", [2]string{"", "    connect_timeout: -1s\n"}, "test.yaml: targets[0].connect_timeout: must not be negative"},
		{"negative client_write_timeout", [2]string{"", "    client_write_timeout: -1s\n"}, "test.yaml: targets[0].client_write_timeout: must not be negative"},
		{"negative max_message_size", [2]string{"", "    max_message_size: -5\n"}, "test.yaml: targets[0].max_message_size: must not be negative"},
		{"negative record_rows", [2]string{"", "    record_rows: -5\n"}, "test.yaml: targets[0].record_rows: must not be negative"},
		{"negative record_bytes", [2]string{"", "    record_bytes: -5\n"}, "test.yaml: targets[0].record_bytes: must not be negative"},
		{"duplicate target name", [2]string{"", "  - {name: pg, protocol: postgres, listen: '127.0.0.1:6433', address: 'db:5432', credential: {username: u}}\n"}, "test.yaml: targets[1].name: \"pg\" is already used by targets[0]"},
		{"duplicate listen", [2]string{"", "  - {name: pg2, protocol: postgres, listen: '127.0.0.1:6432', address: 'db:5432', credential: {username: u}}\n"}, "test.yaml: targets[1].listen: 127.0.0.1:6432 is already used by targets[0].listen"},
		{"listen clashes with admin", [2]string{"listen: 127.0.0.1:6432", "listen: 127.0.0.1:9090"}, "test.yaml: targets[0].listen: 127.0.0.1:9090 is already used by admin.listen"},
		{"no targets", [2]string{"targets:", "other_targets:"}, "unknown field \"other_targets\""},
		{"admin listen", [2]string{"", "admin: {listen: localhost}\n"}, "test.yaml: admin.listen: \"localhost\": must be host:port"},
		{"admin token", [2]string{"", "admin: {token_sha256: abc}\n"}, "test.yaml: admin.token_sha256: must be 64 hex digits"},
		{"log level", [2]string{"", "log: {level: loud}\n"}, "test.yaml: log.level: \"loud\" is not one of debug, info, warn, error"},
		{"log format", [2]string{"", "log: {format: xml}\n"}, "test.yaml: log.format: \"xml\" is not one of text, json"},
		{"token without secret", [2]string{"sha256: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "name: Alice"}, "test.yaml: identity.tokens[0]: one of sha256"},
		{"token with both", [2]string{"sha256: ba", "env: TOK\n      sha256: ba"}, "test.yaml: identity.tokens[0]: set sha256 or env, not both"},
		{"token bad digest", [2]string{"sha256: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256: xyz"}, "test.yaml: identity.tokens[0].sha256: must be 64 hex digits"},
		{"token bad env name", [2]string{"sha256: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "env: 1-X"}, "test.yaml: identity.tokens[0].env: \"1-X\" is not an environment variable name"},
		{"token subject missing", [2]string{"subject: alice", "subject: \"\""}, "test.yaml: identity.tokens[0].subject: is required"},
		{"policy default", [2]string{"", "policy: {default: maybe}\n"}, "test.yaml: policy.default: \"maybe\" is not one of allow, deny"},
		{"policy default with files", [2]string{"", "policy: {files: [p.yaml], default: allow}\n"}, "test.yaml: policy.default: selects the built-in development decider, which policy.files replaces"},
		{"policy files empty entry", [2]string{"", "policy: {files: [p.yaml, '']}\n"}, "test.yaml: policy.files[1]: must not be empty"},
		{"policy files test file", [2]string{"", "policy: {files: [p_test.yaml]}\n"}, "test.yaml: policy.files[0]: \"p_test.yaml\" is a policy test file"},
		{"policy watch without files", [2]string{"", "policy: {watch: true}\n"}, "test.yaml: policy.watch: only applies with policy.files"},
		{"policy watch_interval without files", [2]string{"", "policy: {watch_interval: 5s}\n"}, "test.yaml: policy.watch_interval: only applies with policy.files"},
		{"policy watch_interval without watch", [2]string{"", "policy: {files: [p.yaml], watch: false, watch_interval: 5s}\n"}, "test.yaml: policy.watch_interval: only applies with watch: true"},
		{"policy watch_interval bad", [2]string{"", "policy: {files: [p.yaml], watch_interval: often}\n"}, "test.yaml: policy.watch_interval: \"often\" is not a duration"},
		{"policy watch_interval negative", [2]string{"", "policy: {files: [p.yaml], watch_interval: -1s}\n"}, "test.yaml: policy.watch_interval: must not be negative"},
		{"policy files not a list", [2]string{"", "policy: {files: p.yaml}\n"}, "test.yaml: line"},
		{"recording fsync", [2]string{"", "recording: {fsync: sometimes}\n"}, "test.yaml: recording.fsync: \"sometimes\" is not one of interval, always, never"},
		{"recording fsync_interval", [2]string{"", "recording: {fsync_interval: soon}\n"}, "test.yaml: recording.fsync_interval: \"soon\" is not a duration"},
		{"recording interval without interval policy", [2]string{"", "recording: {fsync: never, fsync_interval: 2s}\n"}, "test.yaml: recording.fsync_interval: only applies with fsync: interval"},
		{"shutdown_grace", [2]string{"", "shutdown_grace: -1s\n"}, "test.yaml: shutdown_grace: must not be negative"},
		{"oidc without audiences", [2]string{"identity:\n", "identity:\n  oidc: {issuers: [{issuer: 'https://idp.example'}]}\n"}, "test.yaml: identity.oidc: issuers[0]: audiences"},
		{"oidc alg none", [2]string{"identity:\n", "identity:\n  oidc: {issuers: [{issuer: 'https://idp.example', audiences: [sluice], allowed_algs: [none]}]}\n"}, "test.yaml: identity.oidc: issuers[0]: allowed_algs"},
		{"oidc unknown key", [2]string{"identity:\n", "identity:\n  oidc: {issuers: [{issuer: 'https://idp.example', audiences: [sluice], audience: x}]}\n"}, "test.yaml: line"},
		{"mtls without ca", [2]string{"identity:\n", "identity:\n  mtls: {subject_from: common_name}\n"}, "test.yaml: identity.mtls.ca_file: is required"},
		{"expiry_grace", [2]string{"identity:\n", "identity:\n  expiry_grace: later\n"}, "test.yaml: identity.expiry_grace: \"later\" is not a duration"},
		{"vault ref without vault", [2]string{"password: env:PG_PASSWORD", "password: 'vault:secret/pg#password'"}, "test.yaml: targets[0].credential.password: vault: references need a vault section"},
		{"vault without address", [2]string{"", "credentials: {vault: {token: env:VAULT_TOKEN}}\n"}, "test.yaml: credentials.vault.address"},
		{"vault with two auths", [2]string{"", "credentials: {vault: {address: 'https://v:8200', token: env:T, approle: {role_id: env:R, secret_id: env:S}}}\n"}, "test.yaml: credentials.vault"},
		{"login without client_id", [2]string{"", "admin: {login: {issuer: 'https://idp.example', redirect_url: 'https://gw.example/auth/callback'}}\n"}, "test.yaml: admin.login.client_id: is required"},
		{"login without redirect", [2]string{"", "admin: {login: {issuer: 'https://idp.example', client_id: sluice}}\n"}, "test.yaml: admin.login.redirect_url: is required"},
		{"login bad issuer", [2]string{"", "admin: {login: {issuer: 'ftp://idp', client_id: sluice, redirect_url: 'https://gw/auth/callback'}}\n"}, "test.yaml: admin.login: issuer"},
		{"login secret not a ref", [2]string{"", "admin: {login: {issuer: 'https://idp.example', client_id: sluice, client_secret: hunter2, redirect_url: 'https://gw/auth/callback'}}\n"}, "test.yaml: admin.login.client_secret: password reference must be"},
		{"http target bad option", [2]string{"protocol: postgres", "protocol: http\n    options: {credential_scheme: magic}"}, "test.yaml: targets[0].options:"},
		{"http target with sslmode", [2]string{"protocol: postgres", "protocol: http\n    sslmode: require"}, "test.yaml: targets[0]: database and sslmode are for postgres targets"},
		{"exec timeout negative", [2]string{"", "credentials: {exec: {timeout: -1s}}\n"}, "test.yaml: credentials.exec.timeout: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yml := goodConfig + tt.replace[1]
			if tt.replace[0] != "" {
				require.Contains(t, goodConfig, tt.replace[0], "test case does not apply")
				yml = strings.Replace(goodConfig, tt.replace[0], tt.replace[1], 1)
			}
			c, err := ParseConfig([]byte(yml), "test.yaml")
			if err == nil {
				err = c.Validate()
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestConfigNoTargets(t *testing.T) {
	c, err := ParseConfig([]byte("log: {level: debug}\n"), "empty.yaml")
	require.NoError(t, err)
	assert.ErrorContains(t, c.Validate(), "empty.yaml: targets: at least one target is required")
}

func TestConfigReportsEveryProblem(t *testing.T) {
	yml := strings.Replace(goodConfig, "listen: 127.0.0.1:6432", "listen: nope", 1) + "log: {level: loud}\n"
	c, err := ParseConfig([]byte(yml), "test.yaml")
	require.NoError(t, err)
	err = c.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "targets[0].listen")
	assert.Contains(t, err.Error(), "log.level")
}

func TestConfigUnknownKeyRefused(t *testing.T) {
	for _, yml := range []string{
		goodConfig + "colour: blue\n",
		strings.Replace(goodConfig, "listen: 127.0.0.1:6432", "listen: 127.0.0.1:6432\n    lisen: 127.0.0.1:6433", 1),
		goodConfig + "admin: {listen: '127.0.0.1:9091', tokn: x}\n",
	} {
		_, err := ParseConfig([]byte(yml), "typo.yaml")
		require.Error(t, err)
		assert.Regexp(t, `^typo.yaml: line \d+: unknown field "(colour|lisen|tokn)"`, err.Error())
	}
}

func TestConfigRefusesMultipleDocuments(t *testing.T) {
	_, err := ParseConfig([]byte(goodConfig+"---\ndata_dir: /x\n"), "two.yaml")
	assert.ErrorContains(t, err, "two.yaml: more than one YAML document")
}

func TestConfigSyntaxErrorNamesFile(t *testing.T) {
	_, err := ParseConfig([]byte("targets: [\n"), "broken.yaml")
	assert.ErrorContains(t, err, "broken.yaml: ")
}

func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "refserver.yaml")
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(goodConfig, "listen: 127.0.0.1:6432", "listen: :x", 1)), 0o600))
	_, err := LoadConfig(path)
	assert.ErrorContains(t, err, `refserver.yaml: targets[0].listen: ":x": port must be a number`)

	_, err = LoadConfig(filepath.Join(dir, "missing.yaml"))
	assert.ErrorContains(t, err, "missing.yaml")
}

func TestEmbeddedExampleValidates(t *testing.T) {
	c, err := ParseConfig(exampleConfig, exampleConfigName)
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Len(t, c.Targets, 1)
	assert.Equal(t, demoTargetName, c.Targets[0].Name)
	assert.Equal(t, []string{"./sluice-data/policy.yaml"}, c.Policy.Files)
	assert.Empty(t, c.Policy.Default, "policy files replace the built-in decider")
	assert.True(t, c.Policy.watching())
	assert.Equal(t, time.Second, c.Policy.WatchInterval.Duration)

	// What the demo does to it still validates, and wires the token and
	// the password file in.
	setup := demoSetup{Role: "r", Database: "d", Dir: "/data/demo"}
	require.NoError(t, applyDemo(c, setup, &demoResult{Token: "tok", PasswordFile: "/data/demo/backend-password", PolicyFile: "/data/policy.yaml"}, "127.0.0.1:7000"))
	require.NoError(t, c.Validate())
	assert.Equal(t, "127.0.0.1:7000", c.Targets[0].Listen)
	assert.Equal(t, "d", c.Targets[0].Database)
	assert.Equal(t, "r", c.Targets[0].Credential.Username)
	assert.Equal(t, "file:/data/demo/backend-password", c.Targets[0].Credential.Password)
	require.Len(t, c.Identity.Tokens, 1)
	assert.Equal(t, "demo", c.Identity.Tokens[0].Subject)
	assert.Equal(t, identity.HashToken("tok"), c.Identity.Tokens[0].SHA256)
	assert.Equal(t, []string{"demo"}, c.Identity.Tokens[0].Groups, "the demo policy allows group demo")
	assert.Equal(t, []string{"/data/policy.yaml"}, c.Policy.Files)
}

func TestBuiltinDecider(t *testing.T) {
	for _, tt := range []struct {
		def, kind string
		want      string
	}{
		{"allow", "connect", "allow"},
		{"allow", "query", "allow"},
		{"deny", "connect", "allow"},
		{"deny", "query", "deny"},
		{"deny", "exec", "deny"},
	} {
		d, err := builtinDecider(tt.def).Decide(t.Context(), policyInput(tt.kind))
		require.NoError(t, err)
		assert.Equal(t, tt.want, string(d.Action), "%s/%s", tt.def, tt.kind)
		if tt.want == "deny" {
			assert.NotEmpty(t, d.Message, "a deny says why")
		}
	}
}

func TestConfigPortZeroMayRepeat(t *testing.T) {
	// Port 0 picks a free port, so two such listeners do not clash.
	parseValid(t, strings.Replace(goodConfig, "listen: 127.0.0.1:6432", "listen: 127.0.0.1:0", 1)+"admin: {listen: '127.0.0.1:0'}\n")
}

// TestREADMEConfigValidates keeps the configuration example in the README
// in step with the code.
func TestREADMEConfigValidates(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	require.True(t, ok, "README.md has no yaml example")
	yml, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	yml = strings.ReplaceAll(yml, "<64 hex digits>", strings.Repeat("ab", 32))
	parseValid(t, yml)
}

func TestConfigPolicyFiles(t *testing.T) {
	c := parseValid(t, goodConfig+"policy: {files: [a.yaml, dir/]}\n")
	assert.Empty(t, c.Policy.Default, "no built-in default with files")
	assert.True(t, c.Policy.watching(), "watch defaults to true")
	assert.Equal(t, time.Second, c.Policy.WatchInterval.Duration)

	c = parseValid(t, goodConfig+"policy: {files: [a.yaml], watch: false}\n")
	assert.False(t, c.Policy.watching())
	assert.Zero(t, c.Policy.WatchInterval.Duration)

	c = parseValid(t, goodConfig+"policy: {files: [a.yaml], watch_interval: 250ms}\n")
	assert.Equal(t, 250*time.Millisecond, c.Policy.WatchInterval.Duration)
}

const testPolicy = `
rules:
  - name: alice-connects
    match: command.kind == "connect" && identity.subject == "alice"
    action: allow
  - name: no-drop
    match: command.sql.statements.exists(s, s.kind == "DROP")
    action: deny
default: deny
`

func TestConfigCheckPolicy(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(testPolicy), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a_test.yaml"), []byte("cases: []\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b.yml"), []byte("rules: [{name: b, match: 'true', action: allow}]\n"), 0o600))
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	require.NoError(t, os.WriteFile(broken, []byte("rules:\n  - name: typo\n    match: command.sql.wrtes\n    action: deny\n"), 0o600))
	testsOnly := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(testsOnly, "x_test.yaml"), []byte("cases: []\n"), 0o600))

	t.Run("directory: its policy files, not its tests", func(t *testing.T) {
		c := parseValid(t, goodConfig+"policy: {files: ['"+dir+"']}\n")
		files, err := c.PolicyFiles()
		require.NoError(t, err)
		assert.Equal(t, []string{filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yml")}, files)
		e, err := c.CheckPolicy()
		require.NoError(t, err)
		assert.Len(t, e.Rules(), 3)
	})
	t.Run("compile error names the config field, file, line and rule", func(t *testing.T) {
		c := parseValid(t, goodConfig+"policy: {files: ['"+broken+"']}\n")
		_, err := c.CheckPolicy()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "test.yaml: policy.files: the policy does not load:\n")
		assert.Contains(t, err.Error(), broken+`:3: rule #1 "typo": match 1:12: undefined field 'wrtes'`)
	})
	t.Run("missing file", func(t *testing.T) {
		c := parseValid(t, goodConfig+"policy: {files: ['"+filepath.Join(dir, "nope.yaml")+"']}\n")
		_, err := c.CheckPolicy()
		assert.ErrorContains(t, err, "test.yaml: policy.files[0]: stat "+filepath.Join(dir, "nope.yaml")+": no such file or directory")
	})
	t.Run("directory of tests only", func(t *testing.T) {
		c := parseValid(t, goodConfig+"policy: {files: ['"+testsOnly+"']}\n")
		_, err := c.CheckPolicy()
		assert.ErrorContains(t, err, "test.yaml: policy.files[0]: "+testsOnly+" holds only policy tests")
	})
	t.Run("no files: the built-in decider, nothing to compile", func(t *testing.T) {
		e, err := parseValid(t, goodConfig).CheckPolicy()
		require.NoError(t, err)
		assert.Nil(t, e)
	})
	t.Run("serve refuses a policy that does not compile", func(t *testing.T) {
		c := parseValid(t, goodConfig+"data_dir: '"+t.TempDir()+"'\npolicy: {files: ['"+broken+"']}\n")
		_, err := newServer(c, slog.New(slog.DiscardHandler))
		require.Error(t, err)
		assert.Contains(t, err.Error(), `rule #1 "typo": match 1:12: undefined field 'wrtes'`)
	})
}

// TestDemoPolicyMatchesExample keeps the embedded demo policy the same as
// examples/policies/demo.yaml, whose tests run in policy/policytest.
func TestDemoPolicyMatchesExample(t *testing.T) {
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "policies", "demo.yaml"))
	require.NoError(t, err)
	assert.Equal(t, string(example), string(demoPolicy), "cmd/refserver/demo-policy.yaml must be a copy of examples/policies/demo.yaml")
}

func TestWriteDemoPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "policy.yaml")
	require.NoError(t, writeDemoPolicy(path))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, demoPolicy, b)
	_, err = policy.Load(path)
	require.NoError(t, err)

	// An existing file, perhaps edited, is kept.
	require.NoError(t, os.WriteFile(path, []byte("default: allow\n"), 0o600))
	require.NoError(t, writeDemoPolicy(path))
	b, err = os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "default: allow\n", string(b))
}

// TestGatewayConfigLimits: a target's limits reach the gateway's target
// configuration, which hands them to the plugin.
func TestGatewayConfigLimits(t *testing.T) {
	t.Setenv("PG_PASSWORD", "unused")
	c := parseValid(t, "data_dir: "+t.TempDir()+"\n"+goodConfig+`
    connect_timeout: 1m
    client_write_timeout: 5m
    max_message_size: 1024
    record_rows: 5
    record_bytes: 4096
`)
	g, err := gatewayConfig(c, builtinDecider("deny"), nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Len(t, g.Targets, 1)
	assert.Equal(t, protocol.Limits{
		MaxMessageSize: 1024, RecordRows: 5, RecordBytes: 4096,
		ConnectTimeout: time.Minute, ClientWriteTimeout: 5 * time.Minute,
	}, g.Targets[0].Limits)
}
