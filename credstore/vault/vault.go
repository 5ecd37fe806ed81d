// Package vault resolves credstore's vault: references against a HashiCorp
// Vault server's KV version 2 engine. Its central type is Source; Open
// plugs it into credstore.New:
//
//	store, err := credstore.New(cfg, credstore.Options{OpenVault: vault.Open})
//
// Authentication is a token or an AppRole login (credstore.VaultConfig),
// done at the first read, not at Open. A token with a TTL is renewed with
// renew-self once two thirds of its lifetime have passed when it is
// renewable, and replaced by a new login (or, for a configured token, by
// resolving its reference again) when it is not, when renewal fails, or
// when renewal no longer extends it (its max TTL is near). A read refused
// with 403 is checked with lookup-self: a token Vault no longer accepts is
// replaced and the read tried once more; a valid token that is refused
// means the policy denies the path (credstore.ErrDenied).
//
// Secrets read are cached for VaultConfig.TTL, or the answer's
// lease_duration when shorter; concurrent reads of one secret share one
// request. Errors name the reference (mount, path, version, field), never
// a secret value or a token; what Vault says is kept short and any token,
// role ID or secret ID in it is masked.
package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/vault/api"
	"golang.org/x/sync/singleflight"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/credstore/internal/secretcache"
)

// Source is the credstore.Source of vault: references. It is safe for
// concurrent use.
type Source struct {
	cfg   credstore.VaultConfig
	refs  credstore.Store
	log   *slog.Logger
	now   func() time.Time
	tr    *http.Transport
	hc    *http.Client
	cache *secretcache.Cache[kvSecret]

	auth singleflight.Group
	mu   sync.Mutex
	tok  *token // nil until the first login, and after Purge
}

var (
	_ credstore.Source      = (*Source)(nil)
	_ credstore.Purger      = (*Source)(nil)
	_ credstore.VaultOpener = Open
)

// token is a Vault token and what Vault said of its lifetime.
type token struct {
	client    *api.Client // sends value as X-Vault-Token
	value     credstore.Secret
	obtained  time.Time     // when ttl was granted
	ttl       time.Duration // remaining at obtained; 0: never expires
	initial   time.Duration // ttl at login, to notice renewals capped by max TTL
	renewable bool
}

func (t *token) expires() time.Time { return t.obtained.Add(t.ttl) }

// fresh reports whether t needs no renewal or replacement at now.
func (t *token) fresh(now time.Time) bool {
	return t.ttl == 0 || now.Before(t.obtained.Add(t.ttl*2/3))
}

// kvSecret is one version of a KV secret: its scalar fields as secrets,
// and the names of fields that are not scalars.
type kvSecret struct {
	fields    map[string]credstore.Secret
	nonScalar []string
}

// Open is New as a credstore.VaultOpener.
func Open(cfg credstore.VaultConfig, refs credstore.Store, logger *slog.Logger) (credstore.Source, error) {
	s, err := New(cfg, refs, logger)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// New returns a Source for cfg. refs resolves the references in cfg.Token
// and cfg.AppRole and must not resolve vault: references itself; logger
// receives debug lines (nil: slog.Default()). New checks the
// configuration and loads the CA file but contacts nothing.
func New(cfg credstore.VaultConfig, refs credstore.Store, logger *slog.Logger) (*Source, error) {
	if err := (credstore.Config{AllowInline: true, Vault: &cfg}).Validate(); err != nil {
		return nil, err
	}
	if refs == nil {
		return nil, errors.New("vault: New needs a credstore.Store for the token or AppRole references")
	}
	cfg = cfg.WithDefaults()
	if logger == nil {
		logger = slog.Default()
	}
	tr, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return nil, errors.New("vault: http.DefaultTransport is not an *http.Transport")
	}
	tr = tr.Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.TLS.ServerName}
	if cfg.TLS.CACert != "" {
		pem, err := os.ReadFile(cfg.TLS.CACert)
		if err != nil {
			return nil, fmt.Errorf("vault.tls.ca_cert: cannot read %s", cfg.TLS.CACert)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("vault.tls.ca_cert: no PEM certificate in %s", cfg.TLS.CACert)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	s := &Source{
		cfg:  cfg,
		refs: refs,
		log:  logger,
		now:  time.Now,
		tr:   tr,
		// The Vault client follows one redirect itself; net/http must not.
		hc: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
	s.cache = secretcache.New[kvSecret](func() time.Time { return s.now() })
	// Build one client now so that a bad address fails here.
	if _, err := s.client(""); err != nil {
		return nil, err
	}
	return s, nil
}

// client returns a Vault API client that sends tok (none if empty). It
// ignores the VAULT_TOKEN, VAULT_NAMESPACE and VAULT_WRAP_TTL environment
// variables the library would otherwise apply: the configuration is the
// whole truth.
func (s *Source) client(tok string) (*api.Client, error) {
	c, err := api.NewClient(&api.Config{
		Address:    s.cfg.Address,
		HttpClient: s.hc,
		Timeout:    s.cfg.Timeout,
		MaxRetries: max(s.cfg.MaxRetries, 0),
	})
	if err != nil {
		return nil, fmt.Errorf("vault: client for %s: %v", s.cfg.Address, err)
	}
	c.SetWrappingLookupFunc(func(string, string) string { return "" })
	if tok == "" {
		c.ClearToken()
	} else {
		c.SetToken(tok)
	}
	if s.cfg.Namespace != "" {
		c.SetNamespace(s.cfg.Namespace)
	} else {
		c.ClearNamespace()
	}
	return c, nil
}

// Lookup implements credstore.Source: rest is a reference as
// credstore.ParseVaultRef reads it.
func (s *Source) Lookup(ctx context.Context, rest string) (credstore.Secret, error) {
	ref, err := credstore.ParseVaultRef(rest)
	if err != nil {
		return credstore.Secret{}, err
	}
	key := ref.Mount + "/data/" + ref.Path + "?version=" + strconv.Itoa(ref.Version)
	kv, err := s.cache.Get(ctx, key, func(ctx context.Context) (kvSecret, time.Duration, error) {
		return s.read(ctx, ref)
	})
	if err != nil {
		return credstore.Secret{}, fmt.Errorf("vault %s: %w", ref, err)
	}
	if v, ok := kv.fields[ref.Field]; ok {
		return v, nil
	}
	if slices.Contains(kv.nonScalar, ref.Field) {
		return credstore.Secret{}, fmt.Errorf("vault %s: field %q is not a string", ref, ref.Field)
	}
	names := make([]string, 0, len(kv.fields))
	for k := range kv.fields {
		names = append(names, k)
	}
	slices.Sort(names)
	return credstore.Secret{}, fmt.Errorf("vault %s: the secret has no field %q (it has %s): %w",
		ref, ref.Field, strings.Join(quoteAll(names), ", "), credstore.ErrNotFound)
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

// Purge implements credstore.Purger: it drops the cached secrets and the
// token, so the next read logs in again.
func (s *Source) Purge() {
	s.cache.Purge()
	s.mu.Lock()
	s.tok = nil
	s.mu.Unlock()
}

// Close cancels reads in flight and waits for them, drops the cached
// secrets and the token, and closes idle connections to Vault. The token
// is not revoked: it expires by its TTL.
func (s *Source) Close() error {
	s.cache.Close()
	s.Purge()
	s.tr.CloseIdleConnections()
	return nil
}

// read fetches one version of a secret with a working token.
func (s *Source) read(ctx context.Context, ref credstore.VaultRef) (kvSecret, time.Duration, error) {
	tok, err := s.token(ctx)
	if err != nil {
		return kvSecret{}, 0, err
	}
	sec, err := s.readWith(ctx, tok, ref)
	if isForbidden(err) {
		// A 403 is Vault's answer both to a token it no longer accepts
		// and to a policy that denies the path: ask which.
		if s.tokenValid(ctx, tok) {
			return kvSecret{}, 0, s.describe(err, tok.value)
		}
		s.log.Info("vault: the token was refused; authenticating again", "address", s.cfg.Address)
		s.dropToken(tok)
		if tok, err = s.token(ctx); err != nil {
			return kvSecret{}, 0, err
		}
		sec, err = s.readWith(ctx, tok, ref)
	}
	if err != nil {
		return kvSecret{}, 0, s.describe(err, tok.value)
	}
	if sec == nil {
		if ref.Version > 0 {
			return kvSecret{}, 0, fmt.Errorf("no version %d: %w", ref.Version, credstore.ErrNotFound)
		}
		return kvSecret{}, 0, fmt.Errorf("no such secret: %w", credstore.ErrNotFound)
	}
	data, _ := sec.Data["data"].(map[string]any)
	if data == nil {
		meta, _ := sec.Data["metadata"].(map[string]any)
		if meta != nil {
			if d, _ := meta["deletion_time"].(string); d != "" || meta["destroyed"] == true {
				return kvSecret{}, 0, fmt.Errorf("that version was deleted: %w", credstore.ErrNotFound)
			}
		}
		return kvSecret{}, 0, errors.New("the answer has no data.data: is the mount a KV version 2 engine?")
	}
	kv := kvSecret{fields: make(map[string]credstore.Secret, len(data))}
	for k, v := range data {
		switch v := v.(type) {
		case string:
			kv.fields[k] = credstore.NewSecret(v)
		case json.Number:
			kv.fields[k] = credstore.NewSecret(v.String())
		case bool:
			kv.fields[k] = credstore.NewSecret(strconv.FormatBool(v))
		default:
			kv.nonScalar = append(kv.nonScalar, k)
		}
	}
	ttl := s.cfg.TTL
	if lease := time.Duration(sec.LeaseDuration) * time.Second; lease > 0 && ttl > 0 {
		ttl = min(ttl, lease)
	}
	s.log.Debug("vault: read secret", "mount", ref.Mount, "path", ref.Path, "version", ref.Version, "cached_for", max(ttl, 0))
	return kv, ttl, nil
}

func (s *Source) readWith(ctx context.Context, tok *token, ref credstore.VaultRef) (*api.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var params map[string][]string
	if ref.Version > 0 {
		params = map[string][]string{"version": {strconv.Itoa(ref.Version)}}
	}
	return tok.client.Logical().ReadWithDataWithContext(ctx, ref.Mount+"/data/"+ref.Path, params)
}

// tokenValid asks Vault whether it still accepts tok. Only a 403 counts as
// "no": if Vault cannot be asked, the earlier refusal stands as a denial.
func (s *Source) tokenValid(ctx context.Context, tok *token) bool {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	_, err := tok.client.Auth().Token().LookupSelfWithContext(ctx)
	return !isForbidden(err)
}

func (s *Source) dropToken(tok *token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == tok {
		s.tok = nil
	}
}

// token returns a token that needs no renewal now, renewing or replacing
// the current one if need be. Concurrent callers share one renewal or
// login.
func (s *Source) token(ctx context.Context) (*token, error) {
	s.mu.Lock()
	t := s.tok
	s.mu.Unlock()
	if t != nil && t.fresh(s.now()) {
		return t, nil
	}
	v, err, _ := s.auth.Do("auth", func() (any, error) { return s.refresh(ctx) })
	if err != nil {
		return nil, err
	}
	return v.(*token), nil
}

func (s *Source) refresh(ctx context.Context) (*token, error) {
	s.mu.Lock()
	t := s.tok
	s.mu.Unlock()
	now := s.now()
	if t != nil && t.fresh(now) {
		return t, nil // renewed by a flight that ended just before this one
	}
	if t != nil && t.renewable && now.Before(t.expires()) {
		nt, err := s.renew(ctx, t)
		switch {
		case err != nil:
			s.log.Warn("vault: renewing the token failed; authenticating again", "error", err)
		case s.cfg.AppRole != nil && nt.ttl < t.initial/3:
			s.log.Info("vault: the token is near its max TTL; logging in again", "ttl", nt.ttl)
		default:
			s.setToken(nt)
			s.log.Debug("vault: renewed the token", "ttl", nt.ttl)
			return nt, nil
		}
	}
	nt, err := s.authenticate(ctx, t)
	if err != nil {
		return nil, err
	}
	s.setToken(nt)
	return nt, nil
}

func (s *Source) setToken(t *token) {
	s.mu.Lock()
	s.tok = t
	s.mu.Unlock()
}

func (s *Source) renew(ctx context.Context, t *token) (*token, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	sec, err := t.client.Auth().Token().RenewSelfWithContext(ctx, int(t.initial/time.Second))
	if err != nil {
		return nil, s.describe(err, t.value)
	}
	ttl, err := sec.TokenTTL()
	if err != nil || sec.Auth == nil {
		return nil, errors.New("renew-self answered without a lease")
	}
	nt := *t
	nt.obtained, nt.ttl, nt.renewable = s.now(), ttl, sec.Auth.Renewable
	return &nt, nil
}

// authenticate obtains a new token: an AppRole login, or the configured
// token's reference resolved again. old is the token being replaced, if
// any.
func (s *Source) authenticate(ctx context.Context, old *token) (*token, error) {
	if s.cfg.AppRole != nil {
		return s.loginAppRole(ctx)
	}
	return s.loadToken(ctx, old)
}

// resolveRef resolves a reference from the configuration. The store's
// error starts "credstore: "; what it wraps is kept, without the prefix.
func (s *Source) resolveRef(ctx context.Context, field, ref string) (credstore.Secret, error) {
	c, err := s.refs.Resolve(ctx, credstore.Ref{Password: ref})
	if err != nil {
		if inner := errors.Unwrap(err); inner != nil && strings.HasPrefix(err.Error(), "credstore: ") {
			err = inner
		}
		return credstore.Secret{}, fmt.Errorf("%s: %w", field, err)
	}
	if c.Password.IsZero() {
		return credstore.Secret{}, fmt.Errorf("%s: %s resolved to an empty value", field, ref)
	}
	return c.Password, nil
}

func (s *Source) loginAppRole(ctx context.Context) (*token, error) {
	a := s.cfg.AppRole
	roleID, err := s.resolveRef(ctx, "vault.approle.role_id", a.RoleID)
	if err != nil {
		return nil, err
	}
	secretID, err := s.resolveRef(ctx, "vault.approle.secret_id", a.SecretID)
	if err != nil {
		return nil, err
	}
	login, err := s.client("")
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	path := "auth/" + a.Mount + "/login"
	sec, err := login.Logical().WriteWithContext(lctx, path, map[string]any{
		"role_id":   roleID.Reveal(),
		"secret_id": secretID.Reveal(),
	})
	if err != nil {
		return nil, fmt.Errorf("approle login at %s: %w", path, s.describe(err, roleID, secretID))
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, fmt.Errorf("approle login at %s: the answer carries no token", path)
	}
	value := credstore.NewSecret(sec.Auth.ClientToken)
	c, err := s.client(value.Reveal())
	if err != nil {
		return nil, err
	}
	ttl := time.Duration(sec.Auth.LeaseDuration) * time.Second
	s.log.Debug("vault: logged in", "method", "approle", "mount", a.Mount, "ttl", ttl, "renewable", sec.Auth.Renewable)
	return &token{client: c, value: value, obtained: s.now(), ttl: ttl, initial: ttl, renewable: sec.Auth.Renewable}, nil
}

// loadToken resolves the configured token's reference and asks Vault about
// it with lookup-self, which also tells its remaining TTL.
func (s *Source) loadToken(ctx context.Context, old *token) (*token, error) {
	value, err := s.resolveRef(ctx, "vault.token", s.cfg.Token)
	if err != nil {
		return nil, err
	}
	c, err := s.client(value.Reveal())
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	sec, err := c.Auth().Token().LookupSelfWithContext(lctx)
	switch {
	case isForbidden(err):
		return nil, fmt.Errorf("vault.token: Vault refuses the token from %s (invalid, expired or revoked): %w", s.cfg.Token, credstore.ErrDenied)
	case err != nil:
		return nil, fmt.Errorf("vault.token: lookup-self: %w", s.describe(err, value))
	}
	ttl, err := sec.TokenTTL()
	if err != nil {
		return nil, errors.New("vault.token: lookup-self answered without a usable ttl")
	}
	renewable, _ := sec.TokenIsRenewable()
	same := old != nil && old.value.Reveal() == value.Reveal()
	s.log.Debug("vault: loaded the token", "from", s.cfg.Token, "ttl", ttl, "renewable", renewable, "changed", old != nil && !same)
	initial := ttl
	if same {
		initial = old.initial
	}
	return &token{client: c, value: value, obtained: s.now(), ttl: ttl, initial: initial, renewable: renewable}, nil
}

func isForbidden(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

// maxVaultMessage bounds how much of Vault's error text an error carries.
const maxVaultMessage = 200

// describe turns an error from the Vault client into a short one: the
// status and Vault's own messages, or what went wrong on the way. Any of
// secrets that shows up is masked, and a body that is not Vault's JSON
// (a proxy's page) is left out.
func (s *Source) describe(err error, secrets ...credstore.Secret) error {
	var (
		re  *api.ResponseError
		msg string
	)
	switch {
	case errors.As(err, &re):
		msg = fmt.Sprintf("Vault answered %d %s", re.StatusCode, http.StatusText(re.StatusCode))
		if !re.RawError && len(re.Errors) > 0 {
			msg += ": " + strings.Join(re.Errors, "; ")
		}
	case errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("no answer from Vault at %s within %s (vault.timeout)", s.cfg.Address, s.cfg.Timeout)
	case errors.Is(err, context.Canceled):
		msg = "cancelled"
	default:
		msg = "cannot reach Vault: " + err.Error()
	}
	for _, sec := range secrets {
		if v := sec.Reveal(); len(v) >= 4 {
			msg = strings.ReplaceAll(msg, v, "[redacted]")
		}
	}
	if len(msg) > maxVaultMessage {
		cut := maxVaultMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	switch {
	case re != nil && re.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s: %w", msg, credstore.ErrNotFound)
	case re != nil && re.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%s: %w", msg, credstore.ErrDenied)
	}
	return errors.New(msg)
}
