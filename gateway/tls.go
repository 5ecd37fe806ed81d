package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Self-signed certificate lifetime; a certificate within renewBefore of
// its expiry is replaced on the next start.
const (
	selfSignedValidity = 365 * 24 * time.Hour
	renewBefore        = 7 * 24 * time.Hour
)

// SelfSignedTLS returns a server TLS configuration with an ECDSA P-256
// self-signed certificate kept in dir as cert.pem and key.pem (mode 0600).
// An existing pair is reused while it is valid for another week and covers
// every host; otherwise a new one is generated. hosts are DNS names or IP
// addresses; empty means localhost, 127.0.0.1 and ::1. A pair that exists
// but cannot be loaded is an error, not silently replaced.
func SelfSignedTLS(dir string, hosts []string) (*tls.Config, error) {
	if dir == "" {
		return nil, errors.New("gateway: tls: a directory is required")
	}
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		cert, err = generateSelfSigned(dir, certPath, keyPath, hosts)
	case err != nil:
		return nil, fmt.Errorf("gateway: tls: loading %s and %s: %w (remove both to generate a new pair)", certPath, keyPath, err)
	case !reusable(cert.Leaf, hosts):
		cert, err = generateSelfSigned(dir, certPath, keyPath, hosts)
	}
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func reusable(leaf *x509.Certificate, hosts []string) bool {
	if leaf == nil || time.Now().Add(renewBefore).After(leaf.NotAfter) {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func generateSelfSigned(dir, certPath, keyPath string, hosts []string) (tls.Certificate, error) {
	fail := func(err error) (tls.Certificate, error) {
		return tls.Certificate{}, fmt.Errorf("gateway: tls: generating a self-signed certificate in %s: %w", dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fail(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return fail(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "sluice gateway (self-signed)", Organization: []string{"sluice"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fail(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fail(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	// Key first: a crash between the two leaves a pair that fails to load
	// loudly rather than a certificate without its key.
	if err := writeFileAtomic(keyPath, keyPEM); err != nil {
		return fail(err)
	}
	if err := writeFileAtomic(certPath, certPEM); err != nil {
		return fail(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fail(err)
	}
	return cert, nil
}

// writeFileAtomic writes data to path with mode 0600 through a temporary
// file and a rename.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
