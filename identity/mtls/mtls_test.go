package mtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/identity/mtls"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestAuthenticate(t *testing.T) {
	root := newCA("clients-root")
	inter := signCA("clients-intermediate", root)
	other := newCA("someone-else")
	now := time.Now()

	cnCfg := mtls.Config{GroupsFrom: []string{mtls.GroupsOrganization, mtls.GroupsOrganizationalUnit}}
	spiffeCfg := mtls.Config{SubjectFrom: mtls.SubjectSPIFFE, TrustDomains: []string{"prod.example"}}

	cases := []struct {
		name  string
		cfg   mtls.Config
		creds identity.Credentials
		// want is the expected subject; empty means refused with words.
		want  string
		words []string
		check func(t *testing.T, id *identity.Identity)
	}{
		{
			name:  "common name with O and OU as groups",
			cfg:   cnCfg,
			creds: identity.Credentials{TLS: state(root.issue(leafOpts{cn: "report-agent", o: "data", ou: "agents", emails: []string{"ra@example.test"}}).cert)},
			want:  "report-agent",
			check: func(t *testing.T, id *identity.Identity) {
				assert.Equal(t, []string{"agents", "data"}, id.Groups)
				assert.Equal(t, "ra@example.test", id.Email)
				assert.Equal(t, "CN=clients-root", id.Issuer)
				assert.Contains(t, id.Claims, "fingerprint_sha256")
			},
		},
		{
			name:  "groups are off by default",
			cfg:   mtls.Config{},
			creds: identity.Credentials{TLS: state(root.issue(leafOpts{cn: "report-agent", o: "data"}).cert)},
			want:  "report-agent",
			check: func(t *testing.T, id *identity.Identity) { assert.Empty(t, id.Groups) },
		},
		{
			name:  "chain through an intermediate",
			creds: identity.Credentials{TLS: state(inter.issue(leafOpts{cn: "via-inter"}).cert, inter.cert)},
			want:  "via-inter",
		},
		{
			name:  "intermediate missing from the chain",
			creds: identity.Credentials{TLS: state(inter.issue(leafOpts{cn: "via-inter"}).cert)},
			words: []string{"not signed by a trusted CA"},
		},
		{
			name:  "no TLS",
			creds: identity.Credentials{Token: "whatever"},
			words: []string{"no TLS connection"},
		},
		{
			name:  "TLS without a client certificate",
			creds: identity.Credentials{TLS: state()},
			words: []string{"no client certificate presented"},
		},
		{
			name:  "expired",
			creds: identity.Credentials{TLS: state(root.issue(leafOpts{cn: "old", notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)}).cert)},
			words: []string{`"old" expired at`},
		},
		{
			name:  "not yet valid",
			creds: identity.Credentials{TLS: state(root.issue(leafOpts{cn: "early", notBefore: now.Add(time.Hour), notAfter: now.Add(2 * time.Hour)}).cert)},
			words: []string{"not valid before"},
		},
		{
			name:  "another CA",
			creds: identity.Credentials{TLS: state(other.issue(leafOpts{cn: "intruder"}).cert)},
			words: []string{"not signed by a trusted CA", "someone-else"},
		},
		{
			name:  "server-only extended key usage",
			creds: identity.Credentials{TLS: state(root.issue(leafOpts{cn: "svc", usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}).cert)},
			words: []string{"not valid for client authentication"},
		},
		{
			name:  "CA certificate as client",
			creds: identity.Credentials{TLS: state(inter.cert)},
			words: []string{"is a CA certificate"},
		},
		{
			name:  "no common name",
			creds: identity.Credentials{TLS: state(root.issue(leafOpts{}).cert)},
			words: []string{"no subject common name"},
		},
		{
			name:  "SPIFFE ID",
			cfg:   spiffeCfg,
			creds: identity.Credentials{TLS: state(root.issue(leafOpts{cn: "ignored", uris: []string{"spiffe://prod.example/ns/reporting/sa/agent"}}).cert)},
			want:  "spiffe://prod.example/ns/reporting/sa/agent",
			check: func(t *testing.T, id *identity.Identity) {
				assert.Equal(t, "spiffe://prod.example", id.Issuer)
				assert.Equal(t, "ignored", id.Name)
			},
		},
		{
			name:  "SPIFFE ID from a disallowed trust domain",
			cfg:   spiffeCfg,
			creds: identity.Credentials{TLS: state(root.issue(leafOpts{uris: []string{"spiffe://dev.example/agent"}}).cert)},
			words: []string{`trust domain "dev.example", which is not allowed`},
		},
		{
			name:  "SPIFFE mode without URI SAN",
			cfg:   spiffeCfg,
			creds: identity.Credentials{TLS: state(root.issue(leafOpts{cn: "plain"}).cert)},
			words: []string{"no SPIFFE ID"},
		},
		{
			name:  "two URI SANs",
			cfg:   spiffeCfg,
			creds: identity.Credentials{TLS: state(root.issue(leafOpts{uris: []string{"spiffe://prod.example/a", "spiffe://prod.example/b"}}).cert)},
			words: []string{"exactly one"},
		},
		{
			name:  "not a spiffe URI",
			cfg:   spiffeCfg,
			creds: identity.Credentials{TLS: state(root.issue(leafOpts{uris: []string{"https://prod.example/agent"}}).cert)},
			words: []string{"scheme is not spiffe"},
		},
		{
			name:  "SPIFFE ID with a query",
			cfg:   spiffeCfg,
			creds: identity.Credentials{TLS: state(root.issue(leafOpts{uris: []string{"spiffe://prod.example/agent?admin=1"}}).cert)},
			words: []string{"query"},
		},
		{
			name:  "trust domain ID without a workload path",
			cfg:   spiffeCfg,
			creds: identity.Credentials{TLS: state(root.issue(leafOpts{uris: []string{"spiffe://prod.example"}}).cert)},
			words: []string{"no workload path"},
		},
		{
			name:  "SPIFFE ID from another CA",
			cfg:   spiffeCfg,
			creds: identity.Credentials{TLS: state(other.issue(leafOpts{uris: []string{"spiffe://prod.example/agent"}}).cert)},
			words: []string{"not signed by a trusted CA"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := mtls.New(c.cfg, mtls.WithRoots(root.pool()))
			require.NoError(t, err)
			id, err := a.Authenticate(context.Background(), c.creds)
			if c.want == "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, identity.ErrUnauthenticated)
				for _, w := range c.words {
					assert.Contains(t, err.Error(), w)
				}
				assert.Nil(t, id)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, id.Subject)
			assert.Equal(t, identity.MethodMTLS, id.Method)
			assert.Equal(t, c.creds.TLS.PeerCertificates[0].NotAfter, id.Expiry)
			if c.check != nil {
				c.check(t, id)
			}
		})
	}
}

// handshake runs one real TLS handshake over loopback and returns the
// server's view of it, or the server's handshake error.
func handshake(t *testing.T, server *tls.Config, client *tls.Config) (*tls.ConnectionState, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	require.NoError(t, err)
	defer ln.Close()

	var (
		wg    sync.WaitGroup
		st    tls.ConnectionState
		srvEr error
	)
	wg.Go(func() {
		conn, err := ln.Accept()
		if err != nil {
			srvEr = err
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		if srvEr = tc.Handshake(); srvEr == nil {
			st = tc.ConnectionState()
			_, srvEr = tc.Write([]byte{1})
		}
	})
	conn, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err == nil {
		// With TLS 1.3 the client learns of a refused certificate only
		// when it reads.
		_, _ = conn.Read(make([]byte, 1))
		conn.Close()
	}
	wg.Wait()
	if srvEr != nil {
		return nil, srvEr
	}
	return &st, nil
}

func TestOverTLS(t *testing.T) {
	clients := newCA("clients")
	servers := newCA("servers")
	other := newCA("other")
	caFile := clients.writePEM(t)

	base := &tls.Config{Certificates: []tls.Certificate{servers.serverCert()}, MinVersion: tls.VersionTLS12}
	srvCfg, err := mtls.ServerTLSConfig(base, caFile)
	require.NoError(t, err)
	assert.Equal(t, tls.VerifyClientCertIfGiven, srvCfg.ClientAuth)
	assert.Nil(t, base.ClientCAs, "base is not modified")

	a, err := mtls.New(mtls.Config{CAFile: caFile, SubjectFrom: mtls.SubjectSPIFFE, TrustDomains: []string{"prod.example"}})
	require.NoError(t, err)
	client := func(l *leaf) *tls.Config {
		c := &tls.Config{RootCAs: servers.pool(), ServerName: "127.0.0.1"}
		if l != nil {
			// Send the certificate even when its issuer is not among the
			// CAs the server asks for, as a hostile client would.
			cert := l.tlsCert()
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		}
		return c
	}

	good := clients.issue(leafOpts{uris: []string{"spiffe://prod.example/agent"}})
	st, err := handshake(t, srvCfg, client(&good))
	require.NoError(t, err)
	id, err := a.Authenticate(context.Background(), identity.Credentials{TLS: st})
	require.NoError(t, err)
	assert.Equal(t, "spiffe://prod.example/agent", id.Subject)

	// No certificate: the handshake succeeds (a token may follow), the
	// authenticator refuses.
	st, err = handshake(t, srvCfg, client(nil))
	require.NoError(t, err)
	_, err = a.Authenticate(context.Background(), identity.Credentials{TLS: st})
	require.ErrorIs(t, err, identity.ErrUnauthenticated)
	assert.Contains(t, err.Error(), "no client certificate presented")

	// A certificate from another CA is refused by the TLS stack...
	stranger := other.issue(leafOpts{uris: []string{"spiffe://prod.example/agent"}})
	_, err = handshake(t, srvCfg, client(&stranger))
	require.Error(t, err)

	// ...and by the authenticator on its own, behind a listener that
	// accepts any certificate.
	lax := base.Clone()
	lax.ClientAuth = tls.RequireAnyClientCert
	st, err = handshake(t, lax, client(&stranger))
	require.NoError(t, err)
	_, err = a.Authenticate(context.Background(), identity.Credentials{TLS: st})
	require.ErrorIs(t, err, identity.ErrUnauthenticated)
	assert.Contains(t, err.Error(), "not signed by a trusted CA")
}

func TestClock(t *testing.T) {
	root := newCA("root")
	cert := root.issue(leafOpts{cn: "agent"}).cert
	a, err := mtls.New(mtls.Config{}, mtls.WithRoots(root.pool()), mtls.WithClock(func() time.Time { return cert.NotAfter.Add(time.Second) }))
	require.NoError(t, err)
	_, err = a.Authenticate(context.Background(), identity.Credentials{TLS: state(cert)})
	require.ErrorIs(t, err, identity.ErrUnauthenticated)
	assert.Contains(t, err.Error(), "expired at "+cert.NotAfter.UTC().Format(time.RFC3339))
}

func TestConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  mtls.Config
		want string
	}{
		{"defaults", mtls.Config{}, ""},
		{"spiffe", mtls.Config{SubjectFrom: mtls.SubjectSPIFFE, TrustDomains: []string{"prod.example"}}, ""},
		{"spiffe without trust domains", mtls.Config{SubjectFrom: mtls.SubjectSPIFFE}, "trust_domains: at least one"},
		{"trust domains without spiffe", mtls.Config{TrustDomains: []string{"prod.example"}}, "only used with subject_from: spiffe"},
		{"bad trust domain", mtls.Config{SubjectFrom: mtls.SubjectSPIFFE, TrustDomains: []string{"Prod.Example"}}, "not a trust domain name"},
		{"bad subject_from", mtls.Config{SubjectFrom: "email"}, "subject_from"},
		{"bad groups_from", mtls.Config{GroupsFrom: []string{"country"}}, "groups_from"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.want == "" {
				require.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, c.want)
		})
	}

	_, err := mtls.New(mtls.Config{})
	assert.ErrorContains(t, err, "ca_file: required")
	_, err = mtls.New(mtls.Config{CAFile: filepath.Join(t.TempDir(), "missing.pem")})
	assert.ErrorContains(t, err, "ca_file")
	empty := filepath.Join(t.TempDir(), "empty.pem")
	require.NoError(t, os.WriteFile(empty, []byte("not pem"), 0o600))
	_, err = mtls.ServerTLSConfig(nil, empty)
	assert.ErrorContains(t, err, "no PEM certificates")
}
