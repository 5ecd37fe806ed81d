// These tests run the Source against internal/vaulttest, an HTTP fixture
// that stands in for a HashiCorp Vault server: none can be installed where
// the tests run. The fixture speaks the endpoints the Source uses (KV v2
// read with versions, AppRole login, token lookup-self and renew-self),
// checks X-Vault-Token, and counts requests, which is how caching,
// renewal and coalescing are observed. Token lifetimes are judged by the
// Source on a fake clock, so renewal and expiry need no waiting.
package vault

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/internal/syncbuf"
	"github.com/sluicegw/sluice/internal/vaulttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Distinctive values that must never show up in an error or a log line.
const (
	pgPassword  = "pg-pw-Zq81-distinct"
	oldPassword = "pg-old-pw-Kx52-distinct"
	apiKey      = "api-key-Wt07-distinct"
	rootToken   = "hvs.root-token-Hy33-distinct"
	roleID      = "role-id-Mc49-distinct"
	secretID    = "secret-id-Pv66-distinct"
	secretID2   = "secret-id-rotated-Lb90-distinct"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	t    *testing.T
	srv  *vaulttest.Server
	src  *Source
	clk  *clock
	logs *syncbuf.Buffer
	dir  string
	errs []error // every error seen, checked for secrets at the end
}

// newFixture starts the fake Vault with a secret at secret/pg and builds a
// Source with token auth; mutate adjusts the configuration (e.g. AppRole).
func newFixture(t *testing.T, mutate func(f *fixture, c *credstore.VaultConfig)) *fixture {
	t.Helper()
	f := &fixture{t: t, srv: vaulttest.New(), clk: &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}, logs: &syncbuf.Buffer{}, dir: t.TempDir()}
	t.Cleanup(f.srv.Close)
	f.srv.AddToken(rootToken, vaulttest.TokenOptions{})
	f.srv.Put("secret", "pg", map[string]any{"password": pgPassword, "username": "app", "port": 5432})
	t.Setenv("SLUICE_TEST_VAULT_TOKEN", rootToken)
	cfg := credstore.VaultConfig{
		Address:    f.srv.URL,
		Token:      "env:SLUICE_TEST_VAULT_TOKEN",
		Timeout:    2 * time.Second,
		MaxRetries: -1,
		TTL:        10 * time.Second,
	}
	if mutate != nil {
		mutate(f, &cfg)
	}
	logger := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	refs, err := credstore.New(credstore.Config{}, credstore.Options{Logger: logger})
	require.NoError(t, err)
	src, err := New(cfg, refs, logger)
	require.NoError(t, err)
	src.now = f.clk.Now
	f.src = src
	t.Cleanup(func() {
		require.NoError(t, src.Close())
		require.NoError(t, refs.Close())
		f.assertNoSecrets()
	})
	return f
}

// useAppRole switches the fixture to AppRole login with role and secret
// IDs in files, issuing tokens with o.
func useAppRole(o vaulttest.TokenOptions) func(*fixture, *credstore.VaultConfig) {
	return func(f *fixture, c *credstore.VaultConfig) {
		f.srv.AddAppRole("approle", roleID, secretID, o)
		f.write("role-id", roleID)
		f.write("secret-id", secretID)
		c.Token = ""
		c.AppRole = &credstore.VaultAppRoleConfig{
			RoleID:   "file:" + filepath.Join(f.dir, "role-id"),
			SecretID: "file:" + filepath.Join(f.dir, "secret-id"),
		}
	}
}

func (f *fixture) write(name, content string) {
	f.t.Helper()
	path := filepath.Join(f.dir, name)
	tmp := path + ".tmp"
	require.NoError(f.t, os.WriteFile(tmp, []byte(content+"\n"), 0o600))
	require.NoError(f.t, os.Rename(tmp, path))
}

func (f *fixture) lookup(ref string) (string, error) {
	return f.lookupCtx(context.Background(), ref)
}

func (f *fixture) lookupCtx(ctx context.Context, ref string) (string, error) {
	s, err := f.src.Lookup(ctx, ref)
	if err != nil {
		f.errs = append(f.errs, err)
	}
	return s.Reveal(), err
}

func (f *fixture) mustLookup(ref string) string {
	f.t.Helper()
	v, err := f.lookup(ref)
	require.NoError(f.t, err)
	return v
}

func (f *fixture) count(op vaulttest.Op) int { return f.srv.Count(op) }

// assertNoSecrets checks every error seen and every log line.
func (f *fixture) assertNoSecrets() {
	f.t.Helper()
	secrets := append([]string{pgPassword, oldPassword, apiKey, rootToken, roleID, secretID, secretID2}, f.srv.Tokens()...)
	texts := []string{f.logs.String()}
	for _, err := range f.errs {
		texts = append(texts, err.Error())
	}
	for _, text := range texts {
		for _, s := range secrets {
			assert.NotContains(f.t, text, s)
		}
	}
}

func TestTokenAuthReadsFields(t *testing.T) {
	f := newFixture(t, nil)
	assert.Equal(t, pgPassword, f.mustLookup("secret/data/pg#password"))
	assert.Equal(t, pgPassword, f.mustLookup("secret/pg"), "default field password, short form")
	assert.Equal(t, "app", f.mustLookup("secret/pg#username"))
	assert.Equal(t, "5432", f.mustLookup("secret/pg#port"), "a number reads as its text")
	assert.Equal(t, 1, f.count(vaulttest.OpLookupSelf), "the token is looked up once to learn its TTL")
	assert.Equal(t, 1, f.count(vaulttest.OpRead), "every field comes from one cached read")
	assert.Equal(t, 0, f.count(vaulttest.OpLogin))
}

func TestAppRoleLogin(t *testing.T) {
	f := newFixture(t, useAppRole(vaulttest.TokenOptions{TTL: time.Hour, Renewable: true}))
	assert.Equal(t, pgPassword, f.mustLookup("secret/data/pg#password"))
	assert.Equal(t, 1, f.count(vaulttest.OpLogin))
	assert.Equal(t, 0, f.count(vaulttest.OpLookupSelf))

	// A wrong secret ID: the login error is Vault's, and names no ID.
	f.src.Purge()
	f.write("secret-id", "wrong-"+secretID)
	_, err := f.lookup("secret/pg")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "approle login at auth/approle/login: Vault answered 400 Bad Request: invalid role or secret ID")
	assert.Contains(t, err.Error(), "secret/data/pg#password")

	// A missing role ID file names the field and the file.
	require.NoError(t, os.Remove(filepath.Join(f.dir, "role-id")))
	_, err = f.lookup("secret/pg")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "vault.approle.role_id: file ")
	assert.ErrorIs(t, err, credstore.ErrNotFound)
}

func TestRenewsBeforeExpiry(t *testing.T) {
	f := newFixture(t, useAppRole(vaulttest.TokenOptions{TTL: time.Minute, Renewable: true}))
	f.mustLookup("secret/pg")
	require.Equal(t, 1, f.count(vaulttest.OpLogin))

	f.clk.Advance(30 * time.Second) // past the secret's TTL, not 2/3 of the token's
	f.mustLookup("secret/pg")
	assert.Equal(t, 0, f.count(vaulttest.OpRenewSelf))
	assert.Equal(t, 2, f.count(vaulttest.OpRead))

	f.clk.Advance(15 * time.Second) // 45s: past 2/3 of 60s
	f.mustLookup("secret/pg")
	assert.Equal(t, 1, f.count(vaulttest.OpRenewSelf), "renewed before the token expired")
	assert.Equal(t, 1, f.count(vaulttest.OpLogin), "renewal, not a new login")

	f.clk.Advance(15 * time.Second) // 15s after renewal: fresh again
	f.mustLookup("secret/pg")
	assert.Equal(t, 1, f.count(vaulttest.OpRenewSelf))
	assert.Equal(t, 4, f.count(vaulttest.OpRead))
}

func TestLogsInAgainWhenNotRenewable(t *testing.T) {
	f := newFixture(t, useAppRole(vaulttest.TokenOptions{TTL: time.Minute}))
	f.mustLookup("secret/pg")
	f.clk.Advance(45 * time.Second)
	f.mustLookup("secret/pg")
	assert.Equal(t, 0, f.count(vaulttest.OpRenewSelf))
	assert.Equal(t, 2, f.count(vaulttest.OpLogin))
	tokens := f.srv.Tokens()
	require.Len(t, tokens, 2)
}

func TestLogsInAgainNearMaxTTL(t *testing.T) {
	// The fixture caps renewals at 3s after issue (real time), so the
	// renewal at 45s (fake time) yields a token that would not last.
	f := newFixture(t, useAppRole(vaulttest.TokenOptions{TTL: time.Minute, Renewable: true, MaxTTL: 3 * time.Second}))
	f.mustLookup("secret/pg")
	f.clk.Advance(45 * time.Second)
	f.mustLookup("secret/pg")
	assert.Equal(t, 1, f.count(vaulttest.OpRenewSelf))
	assert.Equal(t, 2, f.count(vaulttest.OpLogin))
}

func TestReloginAfterTokenExpiry(t *testing.T) {
	f := newFixture(t, useAppRole(vaulttest.TokenOptions{TTL: time.Hour, Renewable: true}))
	f.mustLookup("secret/pg")

	// Vault drops the token early (revoked, or Vault restarted); the
	// secret ID was rotated meanwhile, and the file says so.
	f.srv.ExpireAllTokens()
	f.srv.AddAppRole("approle", roleID, secretID2, vaulttest.TokenOptions{TTL: time.Hour})
	f.write("secret-id", secretID2)
	f.clk.Advance(11 * time.Second)

	assert.Equal(t, pgPassword, f.mustLookup("secret/pg"))
	assert.Equal(t, 2, f.count(vaulttest.OpLogin), "logged in again with the rotated secret ID")
	assert.Equal(t, 1, f.count(vaulttest.OpLookupSelf), "asked whether the 403 was the token's")
	assert.Equal(t, 3, f.count(vaulttest.OpRead))
	assert.Contains(t, f.logs.String(), "the token was refused")
}

func TestStaticTokenRevoked(t *testing.T) {
	f := newFixture(t, nil)
	f.mustLookup("secret/pg")
	f.srv.ExpireToken(rootToken)
	f.clk.Advance(11 * time.Second)
	_, err := f.lookup("secret/pg")
	require.Error(t, err)
	assert.ErrorIs(t, err, credstore.ErrDenied)
	assert.Contains(t, err.Error(), "vault.token: Vault refuses the token from env:SLUICE_TEST_VAULT_TOKEN")

	// A new token put where the reference points is picked up.
	newToken := "hvs.replacement-token-Gd21"
	f.srv.AddToken(newToken, vaulttest.TokenOptions{TTL: time.Hour, Renewable: true})
	t.Setenv("SLUICE_TEST_VAULT_TOKEN", newToken)
	assert.Equal(t, pgPassword, f.mustLookup("secret/pg"))
	for _, err := range f.errs {
		assert.NotContains(t, err.Error(), newToken)
	}
}

func TestVersions(t *testing.T) {
	f := newFixture(t, func(f *fixture, c *credstore.VaultConfig) {
		f.srv.Put("secret", "app/api", map[string]any{"password": oldPassword})
		f.srv.Put("secret", "app/api", map[string]any{"password": apiKey})
	})
	assert.Equal(t, apiKey, f.mustLookup("secret/data/app/api"))
	assert.Equal(t, oldPassword, f.mustLookup("secret/data/app/api?version=1#password"))
	assert.Equal(t, apiKey, f.mustLookup("secret/app/api?version=2"))

	_, err := f.lookup("secret/app/api?version=3")
	require.Error(t, err)
	assert.ErrorIs(t, err, credstore.ErrNotFound)
	assert.Contains(t, err.Error(), "vault secret/data/app/api?version=3#password: no version 3")

	f.srv.DeleteVersion("secret", "app/api", 1)
	f.src.Purge()
	_, err = f.lookup("secret/app/api?version=1")
	require.Error(t, err)
	assert.ErrorIs(t, err, credstore.ErrNotFound)
	assert.Contains(t, err.Error(), "that version was deleted")

	_, err = f.lookup("secret/app/none")
	require.Error(t, err)
	assert.ErrorIs(t, err, credstore.ErrNotFound)
	assert.Contains(t, err.Error(), "vault secret/data/app/none#password: no such secret")
}

func TestMissingField(t *testing.T) {
	f := newFixture(t, func(f *fixture, c *credstore.VaultConfig) {
		f.srv.Put("secret", "nested", map[string]any{"password": map[string]any{"inner": apiKey}})
	})
	_, err := f.lookup("secret/data/pg#passwd")
	require.Error(t, err)
	assert.ErrorIs(t, err, credstore.ErrNotFound)
	assert.Equal(t, `vault secret/data/pg#passwd: the secret has no field "passwd" (it has "password", "port", "username"): credential not found`, err.Error())

	_, err = f.lookup("secret/nested")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `vault secret/data/nested#password: field "password" is not a string`)
}

func TestPermissionDenied(t *testing.T) {
	f := newFixture(t, useAppRole(vaulttest.TokenOptions{TTL: time.Hour}))
	f.srv.Put("secret", "other-team", map[string]any{"password": apiKey})
	f.srv.Deny("secret", "other-team")
	for range 3 {
		_, err := f.lookup("secret/other-team")
		require.Error(t, err)
		assert.ErrorIs(t, err, credstore.ErrDenied)
		assert.Contains(t, err.Error(), "vault secret/data/other-team#password: Vault answered 403 Forbidden: permission denied")
	}
	assert.Equal(t, 1, f.count(vaulttest.OpLogin), "a policy denial does not cause logins")
	assert.Equal(t, 3, f.count(vaulttest.OpLookupSelf), "each refusal is checked against the token")
	assert.Equal(t, pgPassword, f.mustLookup("secret/pg"), "other paths still work")
}

func TestServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())

	f := newFixture(t, func(_ *fixture, c *credstore.VaultConfig) { c.Address = addr })
	start := time.Now()
	_, err = f.lookup("secret/pg")
	require.Error(t, err)
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.Contains(t, err.Error(), "vault secret/data/pg#password: vault.token: lookup-self: cannot reach Vault")
	assert.Contains(t, err.Error(), "connection refused")
}

func TestServerStalls(t *testing.T) {
	f := newFixture(t, func(_ *fixture, c *credstore.VaultConfig) { c.Timeout = 300 * time.Millisecond })
	f.mustLookup("secret/pg")
	f.srv.Stall()
	defer f.srv.Unstall()
	f.clk.Advance(11 * time.Second)

	start := time.Now()
	_, err := f.lookup("secret/pg")
	require.Error(t, err)
	assert.Less(t, time.Since(start), 2*time.Second, "bounded by vault.timeout, not a hang")
	assert.Contains(t, err.Error(), "no answer from Vault at "+f.srv.URL+" within 300ms (vault.timeout)")

	// A caller whose own context ends sooner returns at once.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = f.lookupCtx(ctx, "secret/pg")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 250*time.Millisecond)
}

func TestRetriesServerErrors(t *testing.T) {
	f := newFixture(t, func(_ *fixture, c *credstore.VaultConfig) { c.MaxRetries = 1 })
	f.srv.FailNext(vaulttest.OpRead, 1, 503, "Vault is sealed")
	assert.Equal(t, pgPassword, f.mustLookup("secret/pg"))
	assert.Equal(t, 2, f.count(vaulttest.OpRead))
}

func TestCaching(t *testing.T) {
	f := newFixture(t, func(f *fixture, c *credstore.VaultConfig) {
		f.srv.Put("secret", "leased", map[string]any{"password": apiKey})
		f.srv.SetLeaseDuration("secret", "leased", 3*time.Second)
	})
	for range 5 {
		f.mustLookup("secret/pg")
	}
	assert.Equal(t, 1, f.count(vaulttest.OpRead))
	f.srv.Put("secret", "pg", map[string]any{"password": "changed-" + pgPassword})
	f.clk.Advance(9 * time.Second)
	assert.Equal(t, pgPassword, f.mustLookup("secret/pg"), "within TTL the cached version is used")
	f.clk.Advance(2 * time.Second)
	assert.Equal(t, "changed-"+pgPassword, f.mustLookup("secret/pg"), "after TTL the new version is read")
	assert.Equal(t, 2, f.count(vaulttest.OpRead))

	f.mustLookup("secret/leased")
	f.clk.Advance(4 * time.Second) // past the 3s lease, within the 10s TTL
	f.mustLookup("secret/leased")
	assert.Equal(t, 4, f.count(vaulttest.OpRead), "a shorter lease_duration wins")

	f.src.Purge()
	assert.Equal(t, 0, f.src.cache.Len())
	f.mustLookup("secret/pg")
	assert.Equal(t, 5, f.count(vaulttest.OpRead))
	assert.Equal(t, 2, f.count(vaulttest.OpLookupSelf), "Purge drops the token too")
}

func TestCoalescesConcurrentReads(t *testing.T) {
	f := newFixture(t, useAppRole(vaulttest.TokenOptions{TTL: time.Hour}))
	f.srv.Stall()
	const n = 20
	var wg sync.WaitGroup
	results := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			s, err := f.src.Lookup(context.Background(), "secret/pg")
			results[i], errs[i] = s.Reveal(), err
		})
	}
	require.Eventually(t, func() bool { return f.count(vaulttest.OpLogin) == 1 }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(50 * time.Millisecond) // let the other callers join the flight
	f.srv.Unstall()
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		assert.Equal(t, pgPassword, results[i])
	}
	assert.Equal(t, 1, f.count(vaulttest.OpLogin))
	assert.Equal(t, 1, f.count(vaulttest.OpRead))
}

func TestErrorsMaskWhatVaultEchoes(t *testing.T) {
	f := newFixture(t, nil)
	f.mustLookup("secret/pg")
	f.clk.Advance(11 * time.Second)
	// A misbehaving proxy or plugin that echoes the token.
	f.srv.FailNext(vaulttest.OpRead, 1, 500, "internal error for token "+rootToken)
	_, err := f.lookup("secret/pg")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Vault answered 500 Internal Server Error: internal error for token [redacted]")

	f.srv.FailNext(vaulttest.OpRead, 1, 500, strings.Repeat("x", 500))
	_, err = f.lookup("secret/pg")
	require.Error(t, err)
	assert.Less(t, len(err.Error()), 300, "Vault's text is cut short")
}

func TestRefErrors(t *testing.T) {
	f := newFixture(t, nil)
	for _, ref := range []string{"secret", "/secret/pg", "secret/pg?version=x", "secret/pg#", "secret/../pg"} {
		_, err := f.lookup(ref)
		assert.Error(t, err, ref)
	}
	assert.Equal(t, 0, f.count(vaulttest.OpRead))
}

func TestNewValidates(t *testing.T) {
	refs := credstore.Default{}
	_, err := New(credstore.VaultConfig{Address: "vault:8200", Token: "env:X"}, refs, nil)
	assert.ErrorContains(t, err, "vault.address")
	_, err = New(credstore.VaultConfig{Address: "http://127.0.0.1:8200"}, refs, nil)
	assert.ErrorContains(t, err, "set token")
	_, err = New(credstore.VaultConfig{Address: "http://127.0.0.1:8200", Token: "env:X", TLS: credstore.VaultTLSConfig{CACert: "/nonexistent/ca.pem"}}, refs, nil)
	assert.ErrorContains(t, err, "vault.tls.ca_cert: cannot read /nonexistent/ca.pem")
	s, err := New(credstore.VaultConfig{Address: "http://127.0.0.1:8200", Token: "env:X"}, refs, nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

// TestThroughResolver wires the source into credstore.New as the reference
// server does, with the secret ID coming from a command.
func TestThroughResolver(t *testing.T) {
	srv := vaulttest.New()
	defer srv.Close()
	srv.Put("kv", "orders/db", map[string]any{"password": pgPassword})
	srv.AddAppRole("approle", roleID, secretID, vaulttest.TokenOptions{TTL: time.Hour, Renewable: true})
	t.Setenv("SLUICE_TEST_ROLE_ID", roleID)
	var logs syncbuf.Buffer
	store, err := credstore.New(credstore.Config{
		Vault: &credstore.VaultConfig{
			Address: srv.URL,
			AppRole: &credstore.VaultAppRoleConfig{
				RoleID:   "env:SLUICE_TEST_ROLE_ID",
				SecretID: "exec:/bin/echo " + secretID,
			},
			MaxRetries: -1,
		},
	}, credstore.Options{OpenVault: Open, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	defer func() { require.NoError(t, store.Close()) }()

	c, err := store.Resolve(context.Background(), credstore.Ref{Username: "orders", Password: "vault:kv/data/orders/db#password"})
	require.NoError(t, err)
	assert.Equal(t, pgPassword, c.Password.Reveal())

	_, err = store.Resolve(context.Background(), credstore.Ref{Username: "orders", Password: "vault:kv/orders/db#user"})
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "credstore: vault kv/data/orders/db#user: the secret has no field"), err.Error())

	require.NoError(t, store.Close())
	_, err = store.Resolve(context.Background(), credstore.Ref{Password: "vault:kv/orders/db"})
	assert.ErrorIs(t, err, credstore.ErrClosed)
	for _, s := range []string{pgPassword, roleID, secretID, srv.Tokens()[0]} {
		assert.NotContains(t, logs.String(), s)
	}
	assert.Contains(t, logs.String(), "vault: logged in")
}

func TestConfigErrorsFromWrongRefs(t *testing.T) {
	err := credstore.Config{Vault: &credstore.VaultConfig{
		Address: "https://vault.example:8200",
		AppRole: &credstore.VaultAppRoleConfig{RoleID: "vault:secret/x", SecretID: "inline:abc"},
	}}.Validate()
	require.Error(t, err)
	var fe *credstore.FieldError
	require.True(t, errors.As(err, &fe))
	assert.ErrorContains(t, err, "vault.approle.role_id: must not be a vault: reference")
	assert.ErrorContains(t, err, "vault.approle.secret_id: inline secrets are refused unless allow_inline is true")
}
