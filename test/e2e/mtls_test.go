package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/identity/mtls"
	"github.com/sluicegw/sluice/internal/pgtest"
)

// testCA is a throwaway certificate authority for client certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	file := filepath.Join(dir, name+".pem")
	require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	return &testCA{cert: cert, key: key, file: file}
}

// client issues a client certificate and writes it and its key as files
// libpq reads (the key with 0600, as libpq insists).
func (ca *testCA) client(t *testing.T, dir, cn string, orgs ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	kd, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600))
	return certFile, keyFile
}

// TestMTLSThroughGateway: psql with a client certificate from the
// configured CA gets in without a password, as that certificate's
// subject; without a certificate it is asked for a token as usual; a
// certificate from another CA is refused in the TLS handshake.
func TestMTLSThroughGateway(t *testing.T) {
	pgtest.Require(t)
	requireTool(t, "psql")
	dir := t.TempDir()
	ca := newTestCA(t, dir, "agents-ca")
	rogue := newTestCA(t, dir, "rogue-ca")
	certFile, keyFile := ca.client(t, dir, "build-bot", "ci")
	rogueCert, rogueKey := rogue.client(t, dir, "intruder")

	base, err := gateway.SelfSignedTLS(filepath.Join(dir, "tls"), []string{"127.0.0.1", "localhost"})
	require.NoError(t, err)
	serverTLS, err := mtls.ServerTLSConfig(base, ca.file)
	require.NoError(t, err)
	certAuth, err := mtls.New(mtls.Config{CAFile: ca.file, GroupsFrom: []string{"organization"}})
	require.NoError(t, err)
	static, err := identity.NewStaticTokens([]identity.StaticToken{{SHA256: identity.HashToken("static-token-e2e"), Subject: subject}})
	require.NoError(t, err)

	target := pgTarget("pg")
	target.TLS = serverTLS
	e := startGatewayWith(t, gatewayOptions{grace: 2 * time.Second, auth: identity.Chain{static, certAuth}}, target)
	host, port := e.hostPort(t, "pg")

	psql := func(password string, extra ...string) cmdResult {
		cmd := exec.Command("psql", "-X", "-At", "-c", "select 1")
		env := psqlEnv(t, host, port, "test", password, "require")
		if password == "" {
			env = slicesWithout(env, "PGPASSWORD=")
		}
		cmd.Env = append(env, extra...)
		return run(t, cmd, opTimeout)
	}

	r := psql("", "PGSSLCERT="+certFile, "PGSSLKEY="+keyFile)
	require.Equal(t, 0, r.code, "a client certificate needs no password: %s", r.stderr)
	assert.Equal(t, "1", strings.TrimSpace(r.stdout))
	assert.Contains(t, e.logs.String(), "subject=build-bot method=mtls groups=[ci]")

	r = psql("static-token-e2e", "PGSSLCERT="+filepath.Join(dir, "none.crt"), "PGSSLKEY="+filepath.Join(dir, "none.key"))
	require.Equal(t, 0, r.code, "without a certificate the token still works: %s", r.stderr)

	r = psql("", "PGSSLCERT="+rogueCert, "PGSSLKEY="+rogueKey)
	require.NotEqual(t, 0, r.code, "a certificate from another CA is refused")
	assert.NotContains(t, e.logs.String(), "subject=intruder")
}

// slicesWithout drops the entries starting with prefix.
func slicesWithout(env []string, prefix string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}
