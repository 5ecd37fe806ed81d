// Package mtls authenticates callers by TLS client certificate. Its central
// type is Authenticator, an identity.Authenticator that reads
// identity.Credentials.TLS.
//
// The certificate is verified again here, against the configured CA pool
// and for client authentication (extended key usage clientAuth), even when
// the TLS stack has already verified it: the authenticator is safe on its
// own, also behind a listener configured with RequireAnyClientCert or none.
// The identity is the certificate's subject common name, or its SPIFFE ID
// (a spiffe://trust-domain/path URI SAN, X.509-SVID) from an allowed trust
// domain.
package mtls

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sluicegw/sluice/identity"
)

// Where the subject comes from.
const (
	SubjectCommonName = "common_name"
	SubjectSPIFFE     = "spiffe"
)

// Subject attributes that can become groups.
const (
	GroupsOrganization       = "organization"
	GroupsOrganizationalUnit = "organizational_unit"
)

// Config is the client-certificate authenticator's configuration.
type Config struct {
	// CAFile is a PEM bundle of the CAs that issue client certificates.
	// Required unless New is given WithRoots.
	CAFile string `yaml:"ca_file"`
	// SubjectFrom is SubjectCommonName (default: the subject CN) or
	// SubjectSPIFFE (the certificate's single spiffe:// URI SAN).
	SubjectFrom string `yaml:"subject_from,omitempty"`
	// TrustDomains are the SPIFFE trust domains accepted; required with
	// SubjectSPIFFE and not allowed otherwise.
	TrustDomains []string `yaml:"trust_domains,omitempty"`
	// GroupsFrom lists subject attributes whose values become groups:
	// GroupsOrganization (O) and/or GroupsOrganizationalUnit (OU). Empty
	// means no groups.
	GroupsFrom []string `yaml:"groups_from,omitempty"`
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch c.SubjectFrom {
	case "", SubjectCommonName:
		if len(c.TrustDomains) > 0 {
			return errors.New("mtls: trust_domains: only used with subject_from: spiffe")
		}
	case SubjectSPIFFE:
		if len(c.TrustDomains) == 0 {
			return errors.New("mtls: trust_domains: at least one trust domain is required with subject_from: spiffe")
		}
		for _, td := range c.TrustDomains {
			if !validTrustDomain(td) {
				return fmt.Errorf("mtls: trust_domains: %q is not a trust domain name (lowercase letters, digits, '.', '-', '_')", td)
			}
		}
	default:
		return fmt.Errorf("mtls: subject_from: %q must be %s or %s", c.SubjectFrom, SubjectCommonName, SubjectSPIFFE)
	}
	for _, g := range c.GroupsFrom {
		if g != GroupsOrganization && g != GroupsOrganizationalUnit {
			return fmt.Errorf("mtls: groups_from: %q must be %s or %s", g, GroupsOrganization, GroupsOrganizationalUnit)
		}
	}
	return nil
}

// Authenticator verifies client certificates. It is safe for concurrent use.
type Authenticator struct {
	cfg   Config
	roots *x509.CertPool
	now   func() time.Time
}

var _ identity.Authenticator = (*Authenticator)(nil)

// Option adjusts an Authenticator.
type Option func(*Authenticator)

// WithRoots uses pool as the trusted CAs instead of reading Config.CAFile.
func WithRoots(pool *x509.CertPool) Option { return func(a *Authenticator) { a.roots = pool } }

// WithClock sets the time certificates are checked at.
func WithClock(now func() time.Time) Option { return func(a *Authenticator) { a.now = now } }

// New validates cfg, loads the CA file and builds the authenticator.
func New(cfg Config, opts ...Option) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.SubjectFrom == "" {
		cfg.SubjectFrom = SubjectCommonName
	}
	a := &Authenticator{cfg: cfg, now: time.Now}
	for _, o := range opts {
		o(a)
	}
	if a.roots == nil {
		if cfg.CAFile == "" {
			return nil, errors.New("mtls: ca_file: required")
		}
		pool, err := LoadCAPool(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		a.roots = pool
	}
	return a, nil
}

// LoadCAPool reads a PEM bundle of CA certificates.
func LoadCAPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("mtls: ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("mtls: ca_file %s: no PEM certificates found", file)
	}
	return pool, nil
}

// ServerTLSConfig returns a copy of base (or a new config if nil) that asks
// clients for a certificate issued by the CAs in caFile and verifies it if
// one is given (tls.VerifyClientCertIfGiven), so that callers who
// authenticate by token instead can use the same listener. Whether a
// certificate was required is then up to the authenticator chain.
func ServerTLSConfig(base *tls.Config, caFile string) (*tls.Config, error) {
	pool, err := LoadCAPool(caFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		cfg = base.Clone()
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	return cfg, nil
}

func unauthenticated(format string, args ...any) error {
	return fmt.Errorf("mtls: "+format+": %w", append(args, identity.ErrUnauthenticated)...)
}

// Authenticate implements identity.Authenticator. The identity's Expiry is
// the certificate's NotAfter.
func (a *Authenticator) Authenticate(_ context.Context, c identity.Credentials) (*identity.Identity, error) {
	if c.TLS == nil {
		return nil, unauthenticated("no TLS connection, so no client certificate; connect with TLS and present a client certificate")
	}
	if len(c.TLS.PeerCertificates) == 0 {
		return nil, unauthenticated("no client certificate presented")
	}
	leaf := c.TLS.PeerCertificates[0]
	now := a.now()
	switch {
	case now.After(leaf.NotAfter):
		return nil, unauthenticated("client certificate %q expired at %s", leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return nil, unauthenticated("client certificate %q is not valid before %s", leaf.Subject.CommonName, leaf.NotBefore.UTC().Format(time.RFC3339))
	case leaf.IsCA:
		return nil, unauthenticated("client certificate %q is a CA certificate", leaf.Subject.CommonName)
	}
	inter := x509.NewCertPool()
	for _, c := range c.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         a.roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, verifyError(leaf, err)
	}

	id := &identity.Identity{
		Method: identity.MethodMTLS,
		Name:   leaf.Subject.CommonName,
		Groups: a.groups(leaf),
		Expiry: leaf.NotAfter,
		Claims: claims(leaf),
	}
	if len(leaf.EmailAddresses) > 0 {
		id.Email = leaf.EmailAddresses[0]
	}
	if a.cfg.SubjectFrom == SubjectSPIFFE {
		u, td, err := a.spiffeID(leaf)
		if err != nil {
			return nil, err
		}
		id.Subject, id.Issuer = u, "spiffe://"+td
		id.Claims["spiffe_id"] = u
	} else {
		if leaf.Subject.CommonName == "" {
			return nil, unauthenticated("client certificate has no subject common name")
		}
		id.Subject, id.Issuer = leaf.Subject.CommonName, leaf.Issuer.String()
	}
	return id, nil
}

func verifyError(leaf *x509.Certificate, err error) error {
	cn := leaf.Subject.CommonName
	var ua x509.UnknownAuthorityError
	var inv x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return unauthenticated("client certificate %q is not signed by a trusted CA (issuer %q)", cn, leaf.Issuer.String())
	case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
		return unauthenticated("client certificate %q (or its chain) is not valid for client authentication (extended key usage)", cn)
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return unauthenticated("client certificate chain of %q has an expired or not yet valid certificate", cn)
	default:
		return unauthenticated("client certificate %q rejected: %v", cn, err)
	}
}

func (a *Authenticator) groups(leaf *x509.Certificate) []string {
	var out []string
	for _, g := range a.cfg.GroupsFrom {
		switch g {
		case GroupsOrganization:
			out = append(out, leaf.Subject.Organization...)
		case GroupsOrganizationalUnit:
			out = append(out, leaf.Subject.OrganizationalUnit...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func claims(leaf *x509.Certificate) map[string]any {
	fp := sha256.Sum256(leaf.Raw)
	c := map[string]any{
		"subject":            leaf.Subject.String(),
		"issuer":             leaf.Issuer.String(),
		"serial":             leaf.SerialNumber.String(),
		"fingerprint_sha256": hex.EncodeToString(fp[:]),
	}
	if len(leaf.DNSNames) > 0 {
		c["dns_names"] = slices.Clone(leaf.DNSNames)
	}
	if len(leaf.EmailAddresses) > 0 {
		c["email_addresses"] = slices.Clone(leaf.EmailAddresses)
	}
	if len(leaf.URIs) > 0 {
		uris := make([]string, len(leaf.URIs))
		for i, u := range leaf.URIs {
			uris[i] = u.String()
		}
		c["uris"] = uris
	}
	return c
}

// spiffeID returns the certificate's SPIFFE ID and trust domain. An
// X.509-SVID has exactly one URI SAN (X.509-SVID §2), a SPIFFE ID of the
// form spiffe://trust-domain/path with no port, user info, query or
// fragment (SPIFFE ID §2), and here its trust domain must be allowed.
func (a *Authenticator) spiffeID(leaf *x509.Certificate) (id, trustDomain string, err error) {
	switch len(leaf.URIs) {
	case 0:
		return "", "", unauthenticated("client certificate %q has no SPIFFE ID (URI SAN)", leaf.Subject.CommonName)
	case 1:
	default:
		return "", "", unauthenticated("client certificate %q has %d URI SANs; an X.509-SVID has exactly one", leaf.Subject.CommonName, len(leaf.URIs))
	}
	u := leaf.URIs[0]
	s := u.String()
	if why := spiffeProblem(u); why != "" {
		return "", "", unauthenticated("client certificate URI SAN %q is not a SPIFFE ID: %s", s, why)
	}
	if !slices.Contains(a.cfg.TrustDomains, u.Host) {
		return "", "", unauthenticated("SPIFFE ID %q is from trust domain %q, which is not allowed (allowed: %s)", s, u.Host, strings.Join(a.cfg.TrustDomains, ", "))
	}
	return s, u.Host, nil
}

func spiffeProblem(u *url.URL) string {
	switch {
	case u.Scheme != "spiffe":
		return "scheme is not spiffe"
	case u.Opaque != "" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.RawFragment != "":
		return "it may not have user info, a port, a query or a fragment"
	case !validTrustDomain(u.Host):
		return "bad trust domain"
	case u.RawPath != "":
		return "percent-encoded path"
	case u.Path == "" || u.Path == "/":
		return "no workload path"
	}
	for _, seg := range strings.Split(u.Path[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "empty, '.' or '..' path segment"
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
				return "path character outside letters, digits, '.', '-', '_'"
			}
		}
	}
	return ""
}

func validTrustDomain(td string) bool {
	if td == "" || len(td) > 255 {
		return false
	}
	for _, r := range td {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
