package credstore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func TestConfigYAML(t *testing.T) {
	const doc = `
allow_inline: true
file:
  ttl: 2m
exec:
  timeout: 3s
  ttl: -1s
  hide_stderr: true
vault:
  address: https://vault.example:8200
  namespace: team
  approle:
    role_id: file:/run/secrets/role-id
    secret_id: exec:/usr/local/bin/secret-id
  ttl: 30s
  timeout: 5s
  max_retries: -1
  tls:
    ca_cert: /etc/sluice/vault-ca.pem
    server_name: vault.internal
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&c))
	require.NoError(t, c.Validate())
	assert.Equal(t, Config{
		AllowInline: true,
		File:        FileConfig{TTL: 2 * time.Minute},
		Exec:        ExecConfig{Timeout: 3 * time.Second, TTL: -time.Second, HideStderr: true},
		Vault: &VaultConfig{
			Address:    "https://vault.example:8200",
			Namespace:  "team",
			AppRole:    &VaultAppRoleConfig{RoleID: "file:/run/secrets/role-id", SecretID: "exec:/usr/local/bin/secret-id"},
			TTL:        30 * time.Second,
			Timeout:    5 * time.Second,
			MaxRetries: -1,
			TLS:        VaultTLSConfig{CACert: "/etc/sluice/vault-ca.pem", ServerName: "vault.internal"},
		},
	}, c)

	d := c.withDefaults()
	assert.Equal(t, DefaultAppRoleMount, d.Vault.AppRole.Mount)
	assert.Equal(t, -1, d.Vault.MaxRetries, "negative stays: retries off")
	assert.Equal(t, -time.Second, d.Exec.TTL, "negative stays: caching off")
	assert.Empty(t, c.Vault.AppRole.Mount, "withDefaults does not change the original")

	z := Config{}.withDefaults()
	assert.Equal(t, DefaultExecTimeout, z.Exec.Timeout)
	assert.Equal(t, DefaultExecTTL, z.Exec.TTL)
	assert.Equal(t, DefaultFileTTL, z.File.TTL)
	assert.Nil(t, z.Vault)
}

func TestConfigValidate(t *testing.T) {
	approle := func(mut func(*VaultAppRoleConfig)) *VaultConfig {
		a := &VaultAppRoleConfig{RoleID: "file:/r", SecretID: "file:/s"}
		mut(a)
		return &VaultConfig{Address: "https://v:8200", AppRole: a}
	}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"zero", Config{}, nil},
		{"token", Config{Vault: &VaultConfig{Address: "http://127.0.0.1:8200", Token: "env:VAULT_TOKEN"}}, nil},
		{"exec timeout", Config{Exec: ExecConfig{Timeout: -time.Second}}, []string{"exec.timeout: must not be negative"}},
		{"no address", Config{Vault: &VaultConfig{Token: "env:T"}}, []string{"vault.address: is required"}},
		{"bad address", Config{Vault: &VaultConfig{Address: "vault.example:8200", Token: "env:T"}}, []string{`vault.address: "vault.example:8200" is not an http:// or https:// URL`}},
		{"no auth", Config{Vault: &VaultConfig{Address: "https://v"}}, []string{"vault: set token (a reference such as env:VAULT_TOKEN) or approle"}},
		{"both auth", Config{Vault: &VaultConfig{Address: "https://v", Token: "env:T", AppRole: &VaultAppRoleConfig{RoleID: "env:R", SecretID: "env:S"}}}, []string{"vault: set token or approle, not both"}},
		{"token literal", Config{Vault: &VaultConfig{Address: "https://v", Token: "hvs.abcdef"}}, []string{"vault.token: password reference must be"}},
		{"token inline", Config{Vault: &VaultConfig{Address: "https://v", Token: "inline:hvs.abc"}}, []string{"vault.token: inline secrets are refused unless allow_inline is true"}},
		{"token inline allowed", Config{AllowInline: true, Vault: &VaultConfig{Address: "https://v", Token: "inline:hvs.abc"}}, nil},
		{"role_id missing", Config{Vault: approle(func(a *VaultAppRoleConfig) { a.RoleID = "" })}, []string{"vault.approle.role_id: is required"}},
		{"secret_id bad", Config{Vault: approle(func(a *VaultAppRoleConfig) { a.SecretID = "exec:'x" })}, []string{"vault.approle.secret_id: exec reference: unterminated single quote"}},
		{"role_id vault", Config{Vault: approle(func(a *VaultAppRoleConfig) { a.RoleID = "vault:secret/role" })}, []string{"vault.approle.role_id: must not be a vault: reference"}},
		{"mount slash", Config{Vault: approle(func(a *VaultAppRoleConfig) { a.Mount = "/approle" })}, []string{`vault.approle.mount: "/approle": no leading or trailing slash`}},
		{"several", Config{Exec: ExecConfig{Timeout: -1}, Vault: &VaultConfig{Timeout: -1, Token: "env:T"}}, []string{"exec.timeout", "vault.address", "vault.timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, err.Error(), "hvs.abc", "a literal token is not echoed")
			var fe *FieldError
			require.True(t, errors.As(err, &fe), "each problem is a *FieldError")
			assert.True(t, strings.HasPrefix(tt.want[0], fe.Field), "%q names field %q", tt.want[0], fe.Field)
		})
	}
}

func TestConfigValidateRef(t *testing.T) {
	plain := Config{}
	assert.NoError(t, plain.ValidateRef(Ref{Password: "exec:/bin/get-pw"}))
	assert.ErrorContains(t, plain.ValidateRef(Ref{Password: "inline:x"}), "inline secrets are refused unless allow_inline is true")
	assert.ErrorContains(t, plain.ValidateRef(Ref{Password: "vault:secret/pg"}), "vault: references need a vault section")
	assert.ErrorContains(t, plain.ValidateRef(Ref{Password: "vault:pg"}), "needs a mount and a path")

	withVault := Config{AllowInline: true, Vault: &VaultConfig{Address: "https://v", Token: "env:T"}}
	assert.NoError(t, withVault.ValidateRef(Ref{Password: "vault:secret/pg#password"}))
	assert.NoError(t, withVault.ValidateRef(Ref{Password: "inline:x"}))
}
