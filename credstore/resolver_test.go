package credstore

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeVault is a vault: Source standing in for credstore/vault, to test
// how New wires one in.
type fakeVault struct {
	refs   Store
	purged int
	closed bool
}

func (f *fakeVault) Lookup(_ context.Context, rest string) (Secret, error) {
	if rest == "secret/pg" {
		return NewSecret("vault-Rs11"), nil
	}
	return Secret{}, errors.New("vault " + rest + ": no such secret")
}
func (f *fakeVault) Purge()       { f.purged++ }
func (f *fakeVault) Close() error { f.closed = true; return nil }

func TestResolverSchemes(t *testing.T) {
	t.Setenv("SLUICE_RS_PW", "env-Rs22")
	path := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(path, []byte("file-Rs33\n"), 0o600))
	h := newHarness(t, Config{})

	c, err := h.r.Resolve(context.Background(), Ref{Username: "app", Password: "env:SLUICE_RS_PW"})
	require.NoError(t, err)
	assert.Equal(t, "app", c.Username)
	assert.Equal(t, "env-Rs22", c.Password.Reveal())
	assert.Equal(t, "file-Rs33", h.must("file:"+path))
	assert.Equal(t, "exec-Rs44", h.must("exec:/bin/echo exec-Rs44"))
	c, err = h.r.Resolve(context.Background(), Ref{Username: "trust"})
	require.NoError(t, err)
	assert.True(t, c.Password.IsZero(), "no reference, no secret")

	err = h.fail("env:SLUICE_RS_UNSET", "credstore: environment variable SLUICE_RS_UNSET: credential not found")
	assert.ErrorIs(t, err, ErrNotFound)
	h.fail("env:", "env: reference without a variable name")
	h.fail("inline:inline-Rs55", "credstore: inline secrets are disabled (allow_inline)")
	h.fail("vault:secret/pg", "credstore: vault: references need a vault section")
	h.fail("bogus:x", `credstore: unknown reference scheme "bogus"`)
	h.fail("no-scheme-Rs66", "credstore: password reference must be env:NAME, file:PATH, exec:COMMAND, vault:MOUNT/PATH#FIELD or inline:VALUE")
	h.assertClean("env-Rs22", "file-Rs33", "inline-Rs55", "Rs66")

	inline := newHarness(t, Config{AllowInline: true})
	assert.Equal(t, "lit", inline.must("inline:lit"))
}

func TestResolverWiresVault(t *testing.T) {
	t.Setenv("SLUICE_RS_TOKEN", "token-Rs77")
	var fv *fakeVault
	var gotCfg VaultConfig
	open := func(cfg VaultConfig, refs Store, logger *slog.Logger) (Source, error) {
		require.NotNil(t, logger)
		gotCfg = cfg
		fv = &fakeVault{refs: refs}
		return fv, nil
	}
	cfg := Config{Vault: &VaultConfig{Address: "https://vault.example:8200", Token: "env:SLUICE_RS_TOKEN"}}

	_, err := New(cfg, Options{})
	assert.ErrorContains(t, err, "Options.OpenVault is nil (pass credstore/vault.Open)")

	r, err := New(cfg, Options{OpenVault: open})
	require.NoError(t, err)
	assert.Equal(t, DefaultVaultTTL, gotCfg.TTL, "the opener gets the configuration with defaults")
	assert.Equal(t, DefaultVaultTimeout, gotCfg.Timeout)
	assert.Equal(t, DefaultVaultRetries, gotCfg.MaxRetries)

	c, err := r.Resolve(context.Background(), Ref{Username: "app", Password: "vault:secret/pg"})
	require.NoError(t, err)
	assert.Equal(t, "vault-Rs11", c.Password.Reveal())
	_, err = r.Resolve(context.Background(), Ref{Password: "vault:secret/other"})
	assert.EqualError(t, err, "credstore: vault secret/other: no such secret")

	// The opener's store resolves the login's references, not vault:.
	tok, err := fv.refs.Resolve(context.Background(), Ref{Password: "env:SLUICE_RS_TOKEN"})
	require.NoError(t, err)
	assert.Equal(t, "token-Rs77", tok.Password.Reveal())
	_, err = fv.refs.Resolve(context.Background(), Ref{Password: "vault:secret/pg"})
	assert.ErrorContains(t, err, "vault: references need a vault section")

	r.Purge()
	assert.Equal(t, 1, fv.purged)
	require.NoError(t, r.Close())
	require.NoError(t, r.Close(), "Close twice is fine")
	assert.True(t, fv.closed)
	assert.Equal(t, 2, fv.purged)
	_, err = r.Resolve(context.Background(), Ref{Password: "vault:secret/pg"})
	assert.ErrorIs(t, err, ErrClosed)

	failing := func(VaultConfig, Store, *slog.Logger) (Source, error) { return nil, errors.New("boom") }
	_, err = New(cfg, Options{OpenVault: failing})
	assert.EqualError(t, err, "credstore: vault: boom")
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := New(Config{Exec: ExecConfig{Timeout: -1}}, Options{})
	assert.EqualError(t, err, "credstore: exec.timeout: must not be negative")
}

func TestResolverIsAStore(t *testing.T) {
	var s Store
	r, err := New(Config{}, Options{})
	require.NoError(t, err)
	s = r
	_, err = s.Resolve(context.Background(), Ref{})
	assert.NoError(t, err)
	assert.NoError(t, r.Close())
}
