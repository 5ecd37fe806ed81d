package credstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"
)

// Source resolves the references of one scheme. rest is the reference
// after "SCHEME:". Errors name where the secret lives, never the secret,
// and need no "credstore:" prefix (the Resolver adds it).
//
// A Source may also implement Purger, to drop what it caches, and
// io.Closer, to release what it holds when the Resolver closes.
type Source interface {
	Lookup(ctx context.Context, rest string) (Secret, error)
}

// Purger is a Source that caches secrets (or credentials to its own
// backend, such as a Vault token) and can drop them.
type Purger interface {
	Purge()
}

// VaultOpener builds the Source of vault: references. credstore does not
// link a Vault client itself; package credstore/vault provides one
// (vault.Open). refs resolves the references inside cfg (token, role ID,
// secret ID) with every scheme but vault:; logger is the Resolver's.
type VaultOpener func(cfg VaultConfig, refs Store, logger *slog.Logger) (Source, error)

// Options are what New needs besides the configuration.
type Options struct {
	// Logger receives debug lines about reads, runs and logins (never a
	// secret); default slog.Default().
	Logger *slog.Logger
	// OpenVault builds the vault: source; required when Config.Vault is
	// set. Pass credstore/vault.Open.
	OpenVault VaultOpener

	// now is the clock caches judge expiry by (tests).
	now func() time.Time
}

// Resolver is the Store New builds: it dispatches each reference to the
// Source of its scheme and is safe for concurrent use.
type Resolver struct {
	sources map[string]Source

	mu     sync.RWMutex
	closed bool
}

var _ Store = (*Resolver)(nil)

// New validates cfg and builds a Resolver for env:, file:, exec:, inline:
// (when cfg.AllowInline) and vault: (when cfg.Vault is set) references. It
// contacts nothing: a Vault login happens at the first vault: Resolve.
func New(cfg Config, opts Options) (*Resolver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("credstore: %w", err)
	}
	cfg = cfg.withDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	now := opts.now
	if now == nil {
		now = time.Now
	}
	r := &Resolver{sources: map[string]Source{
		"env":  envSource{},
		"file": newFileSource(cfg.File, now, log),
		"exec": newExecSource(cfg.Exec, now, log),
	}}
	if cfg.AllowInline {
		r.sources["inline"] = inlineSource{}
	}
	if cfg.Vault != nil {
		if opts.OpenVault == nil {
			return nil, errors.New("credstore: a vault section is configured but Options.OpenVault is nil (pass credstore/vault.Open)")
		}
		// The Vault login's own references resolve through the same
		// sources (and caches), without vault: itself.
		base := &Resolver{sources: maps.Clone(r.sources)}
		vs, err := opts.OpenVault(*cfg.Vault, base, log)
		if err != nil {
			_ = r.Close()
			return nil, fmt.Errorf("credstore: vault: %w", err)
		}
		r.sources["vault"] = vs
	}
	return r, nil
}

// Resolve implements Store.
func (r *Resolver) Resolve(ctx context.Context, ref Ref) (Credential, error) {
	c := Credential{Username: ref.Username}
	if ref.Password == "" {
		return c, nil
	}
	r.mu.RLock()
	closed := r.closed
	r.mu.RUnlock()
	if closed {
		return Credential{}, fmt.Errorf("credstore: %w", ErrClosed)
	}
	scheme, rest, ok := strings.Cut(ref.Password, ":")
	if !ok {
		return Credential{}, errors.New("credstore: password reference must be " + refForms)
	}
	src, ok := r.sources[scheme]
	if !ok {
		switch scheme {
		case "inline":
			return Credential{}, errors.New("credstore: inline secrets are disabled (allow_inline); use an env, file, exec or vault reference")
		case "vault":
			return Credential{}, errors.New("credstore: vault: references need a vault section in the credentials configuration")
		}
		return Credential{}, fmt.Errorf("credstore: %w", unknownScheme(scheme))
	}
	s, err := src.Lookup(ctx, rest)
	if err != nil {
		return Credential{}, fmt.Errorf("credstore: %w", err)
	}
	c.Password = s
	return c, nil
}

// Purge drops every cached secret, and a Vault token, so that the next
// Resolve of each reference reads it afresh.
func (r *Resolver) Purge() {
	for _, s := range r.sources {
		if p, ok := s.(Purger); ok {
			p.Purge()
		}
	}
}

// Close purges and releases the sources; Resolve then fails with
// ErrClosed. It is safe to call more than once.
func (r *Resolver) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.Purge()
	var errs []error
	for _, s := range r.sources {
		if c, ok := s.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

type envSource struct{}

func (envSource) Lookup(_ context.Context, name string) (Secret, error) {
	if name == "" {
		return Secret{}, errors.New("env: reference without a variable name")
	}
	return lookupEnv(name)
}

type inlineSource struct{}

func (inlineSource) Lookup(_ context.Context, v string) (Secret, error) { return NewSecret(v), nil }
