package credstore

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Defaults applied by New for zero durations and counts.
const (
	DefaultFileTTL        = 5 * time.Minute
	DefaultExecTimeout    = 10 * time.Second
	DefaultExecTTL        = time.Minute
	DefaultVaultTimeout   = 10 * time.Second
	DefaultVaultTTL       = time.Minute
	DefaultVaultRetries   = 2
	DefaultAppRoleMount   = "approle"
	maxExecStdout         = 64 << 10
	maxExecStderrInErrors = 120
)

// Config configures the store New builds: which schemes it resolves and
// how long it keeps what it resolved. The zero value resolves env: and
// file: references. In YAML:
//
//	allow_inline: false
//	file:
//	  ttl: 5m            # unchanged files are re-read after this; a change is seen at once
//	exec:
//	  timeout: 10s       # a command still running then is killed
//	  ttl: 1m            # reuse its output this long, unless it says expires_at
//	  hide_stderr: false # true: errors carry only the exit status
//	vault:               # absent: vault: references are refused
//	  address: https://vault.example:8200
//	  token: env:VAULT_TOKEN        # a reference; or approle below
//	  approle:
//	    mount: approle
//	    role_id: file:/run/secrets/vault-role-id
//	    secret_id: file:/run/secrets/vault-secret-id
//	  ttl: 1m
//	  timeout: 10s
//	  max_retries: 2
//	  tls:
//	    ca_cert: /etc/sluice/vault-ca.pem
//
// For every TTL and max_retries, zero means the default and a negative
// value turns the feature off (no caching, no retries).
type Config struct {
	// AllowInline permits inline: references (tests and demos: the secret
	// then lives in the configuration file).
	AllowInline bool         `yaml:"allow_inline" json:"allow_inline"`
	File        FileConfig   `yaml:"file" json:"file"`
	Exec        ExecConfig   `yaml:"exec" json:"exec"`
	Vault       *VaultConfig `yaml:"vault,omitempty" json:"vault,omitempty"`
}

// FileConfig configures file: references. A file's secret is kept with the
// file's identity (device and inode, size, modification time), which is
// checked on every Resolve: a rotated file, whether rewritten or replaced
// by a rename or a symlink swap (Kubernetes secret volumes), is read again
// at once.
type FileConfig struct {
	// TTL bounds how long a secret stays in memory between uses; default
	// DefaultFileTTL.
	TTL time.Duration `yaml:"ttl" json:"ttl"`
}

// ExecConfig configures exec: references, which run a command that prints
// the secret (see the package documentation for the output format).
type ExecConfig struct {
	// Timeout bounds one run; default DefaultExecTimeout.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
	// TTL is how long the output is reused when it carries no expires_at;
	// default DefaultExecTTL.
	TTL time.Duration `yaml:"ttl" json:"ttl"`
	// HideStderr leaves the command's standard error out of errors
	// entirely. By default an error carries its last line, cut to 120
	// bytes, since that is usually the command's own diagnosis; a command
	// that may echo the secret to standard error (set -x) should set it.
	HideStderr bool `yaml:"hide_stderr" json:"hide_stderr"`
}

// VaultConfig configures vault: references: a HashiCorp Vault server with a
// KV version 2 engine. Exactly one of Token and AppRole must be set.
// Vault's VAULT_* environment variables are not consulted: this is the
// whole configuration.
type VaultConfig struct {
	// Address is the server's URL, e.g. https://vault.example:8200.
	Address string `yaml:"address" json:"address"`
	// Namespace is the Vault Enterprise namespace, if any.
	Namespace string `yaml:"namespace" json:"namespace"`
	// Token references a Vault token (env:VAULT_TOKEN, file:PATH, exec:...).
	// It is resolved again whenever the token stops working, so a
	// rewritten token file (a Vault Agent sink) takes effect.
	Token string `yaml:"token" json:"token"`
	// AppRole logs in with a role ID and secret ID.
	AppRole *VaultAppRoleConfig `yaml:"approle,omitempty" json:"approle,omitempty"`
	// TTL is how long a secret read is reused; default DefaultVaultTTL. A
	// shorter lease_duration in Vault's answer wins.
	TTL time.Duration `yaml:"ttl" json:"ttl"`
	// Timeout bounds each request to Vault; default DefaultVaultTimeout.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
	// MaxRetries is how often a request that failed with a connection
	// error or a 5xx answer is retried; default DefaultVaultRetries.
	MaxRetries int `yaml:"max_retries" json:"max_retries"`
	// TLS configures how the server's certificate is checked.
	TLS VaultTLSConfig `yaml:"tls" json:"tls"`
}

// VaultAppRoleConfig is AppRole authentication. RoleID and SecretID are
// references themselves (env:, file:, exec:, or inline: where allowed),
// resolved at every login, so a rotated secret ID is used at the next one.
type VaultAppRoleConfig struct {
	// Mount is where the AppRole auth method is enabled; default
	// DefaultAppRoleMount.
	Mount    string `yaml:"mount" json:"mount"`
	RoleID   string `yaml:"role_id" json:"role_id"`
	SecretID string `yaml:"secret_id" json:"secret_id"`
}

// VaultTLSConfig checks the Vault server's certificate.
type VaultTLSConfig struct {
	// CACert is a PEM file of CA certificates to trust instead of the
	// system's.
	CACert string `yaml:"ca_cert" json:"ca_cert"`
	// ServerName overrides the name the certificate must carry.
	ServerName string `yaml:"server_name" json:"server_name"`
}

// FieldError is one problem Validate found: Field is the YAML path inside
// Config (e.g. "vault.approle.role_id"), which a caller embedding Config
// prefixes with its own ("credentials.").
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate checks the configuration without contacting anything. The error
// joins one *FieldError per problem.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Exec.Timeout < 0 {
		bad("exec.timeout", "must not be negative")
	}
	if v := c.Vault; v != nil {
		if v.Address == "" {
			bad("vault.address", "is required (e.g. https://vault.example:8200)")
		} else if u, err := url.Parse(v.Address); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("vault.address", "%q is not an http:// or https:// URL with a host", v.Address)
		}
		if v.Timeout < 0 {
			bad("vault.timeout", "must not be negative")
		}
		switch {
		case v.Token != "" && v.AppRole != nil:
			bad("vault", "set token or approle, not both")
		case v.Token == "" && v.AppRole == nil:
			bad("vault", "set token (a reference such as env:VAULT_TOKEN) or approle")
		case v.Token != "":
			if err := c.validateAuthRef(v.Token); err != nil {
				bad("vault.token", "%v", err)
			}
		default:
			a := v.AppRole
			if strings.HasPrefix(a.Mount, "/") || strings.HasSuffix(a.Mount, "/") {
				bad("vault.approle.mount", "%q: no leading or trailing slash", a.Mount)
			}
			if a.RoleID == "" {
				bad("vault.approle.role_id", "is required (a reference such as file:/run/secrets/vault-role-id)")
			} else if err := c.validateAuthRef(a.RoleID); err != nil {
				bad("vault.approle.role_id", "%v", err)
			}
			if a.SecretID == "" {
				bad("vault.approle.secret_id", "is required (a reference such as file:/run/secrets/vault-secret-id)")
			} else if err := c.validateAuthRef(a.SecretID); err != nil {
				bad("vault.approle.secret_id", "%v", err)
			}
		}
	}
	return errors.Join(errs...)
}

// validateAuthRef checks a reference inside the vault section, which may
// not itself point into Vault.
func (c Config) validateAuthRef(ref string) error {
	if strings.HasPrefix(ref, "vault:") {
		return errors.New("must not be a vault: reference (Vault cannot hold its own login)")
	}
	return c.ValidateRef(Ref{Password: ref})
}

// ValidateRef checks a reference's syntax, as the package-level ValidateRef
// does, and that this configuration enables its scheme: inline: needs
// AllowInline and vault: a vault section.
func (c Config) ValidateRef(ref Ref) error {
	if err := ValidateRef(ref); err != nil {
		return err
	}
	switch scheme, _, _ := strings.Cut(ref.Password, ":"); scheme {
	case "inline":
		if !c.AllowInline {
			return errors.New("inline secrets are refused unless allow_inline is true; use an env, file, exec or vault reference")
		}
	case "vault":
		if c.Vault == nil {
			return errors.New("vault: references need a vault section in the credentials configuration")
		}
	}
	return nil
}

// withDefaults fills zero values; negative ones stay (they mean "off").
func (c Config) withDefaults() Config {
	if c.File.TTL == 0 {
		c.File.TTL = DefaultFileTTL
	}
	if c.Exec.Timeout == 0 {
		c.Exec.Timeout = DefaultExecTimeout
	}
	if c.Exec.TTL == 0 {
		c.Exec.TTL = DefaultExecTTL
	}
	if c.Vault != nil {
		v := *c.Vault
		v = v.WithDefaults()
		c.Vault = &v
	}
	return c
}

// WithDefaults returns the configuration with zero values replaced by the
// defaults (credstore/vault calls it; New does it for you).
func (v VaultConfig) WithDefaults() VaultConfig {
	if v.TTL == 0 {
		v.TTL = DefaultVaultTTL
	}
	if v.Timeout == 0 {
		v.Timeout = DefaultVaultTimeout
	}
	if v.MaxRetries == 0 {
		v.MaxRetries = DefaultVaultRetries
	}
	if v.AppRole != nil {
		a := *v.AppRole
		if a.Mount == "" {
			a.Mount = DefaultAppRoleMount
		}
		v.AppRole = &a
	}
	return v
}
