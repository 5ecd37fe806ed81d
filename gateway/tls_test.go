package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSelfSignedTLSIsGeneratedThenReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	cfg, err := SelfSignedTLS(dir, nil)
	require.NoError(t, err)
	require.Len(t, cfg.Certificates, 1)
	leaf := cfg.Certificates[0].Leaf
	require.NotNil(t, leaf)
	assert.Equal(t, x509.ECDSA, leaf.PublicKeyAlgorithm)
	assert.Equal(t, elliptic.P256(), leaf.PublicKey.(*ecdsa.PublicKey).Curve)
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		assert.NoError(t, leaf.VerifyHostname(h))
	}
	for _, f := range []string{"cert.pem", "key.pem"} {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
	}

	again, err := SelfSignedTLS(dir, []string{"localhost", "127.0.0.1"})
	require.NoError(t, err)
	assert.Equal(t, cfg.Certificates[0].Certificate[0], again.Certificates[0].Certificate[0], "the same certificate on the second call")

	other, err := SelfSignedTLS(dir, []string{"db.example.internal"})
	require.NoError(t, err)
	assert.NotEqual(t, cfg.Certificates[0].Certificate[0], other.Certificates[0].Certificate[0], "a host the old certificate does not cover")
	assert.NoError(t, other.Certificates[0].Leaf.VerifyHostname("db.example.internal"))

	require.NoError(t, os.WriteFile(filepath.Join(dir, "key.pem"), []byte("garbage"), 0o600))
	_, err = SelfSignedTLS(dir, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "remove both to generate a new pair")

	_, err = SelfSignedTLS("", nil)
	assert.Error(t, err)
}

func TestGatewayReusesItsCertificateAcrossRestarts(t *testing.T) {
	dataDir := t.TempDir()
	certOf := func() []byte {
		e := &env{sink: &memSink{}, logs: &syncBuffer{}}
		cfg := baseConfig(t, e, protoLine)
		cfg.DataDir = dataDir
		cfg.Targets[0].DisableTLS = false
		g, err := New(cfg)
		require.NoError(t, err)
		require.NoError(t, g.Start(context.Background()))
		defer func() { require.NoError(t, g.Shutdown(context.Background())) }()
		require.NotNil(t, g.targets[0].tls)
		return g.targets[0].tls.Certificates[0].Certificate[0]
	}
	first := certOf()
	assert.Equal(t, first, certOf())
	assert.FileExists(t, filepath.Join(dataDir, "tls", "cert.pem"))
}
