package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
)

// Key is a signing key of the test issuer. Its ID is the "kid" a token
// signed with it carries.
type Key struct {
	ID     string
	Alg    string
	signer crypto.Signer
}

// NewKey generates a key for alg, one of RS256, PS256 (RSA 2048), ES256
// (P-256) or ES384 (P-384), with a random key id. The key is not published
// until passed to Issuer.Publish.
func NewKey(alg string) (*Key, error) {
	var (
		s   crypto.Signer
		err error
	)
	switch alg {
	case "RS256", "PS256":
		s, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		s, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	default:
		return nil, fmt.Errorf("oidctest: unsupported key algorithm %q", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("oidctest: generate %s key: %w", alg, err)
	}
	return &Key{ID: alg + "-" + randomString(6), Alg: alg, signer: s}, nil
}

func mustKey(alg string) *Key {
	k, err := NewKey(alg)
	if err != nil {
		panic(err)
	}
	return k
}

// Public returns the key's public half.
func (k *Key) Public() crypto.PublicKey { return k.signer.Public() }

// PublicPEM returns the public key as a PEM "PUBLIC KEY" block, the bytes an
// attacker would try as an HMAC secret in an algorithm-confusion attack.
func (k *Key) PublicPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		panic(fmt.Sprintf("oidctest: marshal public key: %v", err))
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// sign builds a compact JWS (RFC 7515 §7.1) over claims. The header starts
// as {"alg": k.Alg, "typ": "JWT", "kid": k.ID}; entries of extra override
// it, and an entry with a nil value removes that header field. The
// signature is always made with k's algorithm, so overriding "alg" yields a
// token whose header lies about how it was signed.
func (k *Key) sign(claims, extra map[string]any) string {
	h := map[string]any{"alg": k.Alg, "typ": "JWT", "kid": k.ID}
	mergeHeader(h, extra)
	input := signingInput(h, claims)
	digest, hash := digestFor(k.Alg, input)
	var sig []byte
	var err error
	switch key := k.signer.(type) {
	case *rsa.PrivateKey:
		if k.Alg[0] == 'P' {
			sig, err = rsa.SignPSS(rand.Reader, key, hash, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, key, hash, digest)
		}
	case *ecdsa.PrivateKey:
		// JWS ECDSA signatures are R||S, each left-padded to the curve
		// size (RFC 7518 §3.4), not the ASN.1 form crypto/ecdsa emits.
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, key, digest)
		if err == nil {
			size := (key.Curve.Params().BitSize + 7) / 8
			sig = make([]byte, 2*size)
			r.FillBytes(sig[:size])
			s.FillBytes(sig[size:])
		}
	}
	if err != nil {
		panic(fmt.Sprintf("oidctest: sign: %v", err))
	}
	return input + "." + b64(sig)
}

func digestFor(alg, input string) ([]byte, crypto.Hash) {
	switch alg[2:] {
	case "384":
		d := sha512.Sum384([]byte(input))
		return d[:], crypto.SHA384
	default:
		d := sha256.Sum256([]byte(input))
		return d[:], crypto.SHA256
	}
}

// MintHMAC returns an HS256 token over claims with the given secret and key
// id. The test issuer never issues such tokens; they exist to check that a
// verifier refuses them, in particular when secret is a published public
// key (Key.PublicPEM).
func MintHMAC(secret []byte, kid string, claims map[string]any) string {
	h := map[string]any{"alg": "HS256", "typ": "JWT"}
	if kid != "" {
		h["kid"] = kid
	}
	input := signingInput(h, claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + b64(m.Sum(nil))
}

// MintNone returns an unsigned token ({"alg":"none"}, empty signature).
func MintNone(claims map[string]any) string {
	return signingInput(map[string]any{"alg": "none", "typ": "JWT"}, claims) + "."
}

func mergeHeader(h, extra map[string]any) {
	maps.Copy(h, extra)
	for k, v := range h {
		if v == nil {
			delete(h, k)
		}
	}
}

func signingInput(header, claims map[string]any) string {
	return b64(mustJSON(header)) + "." + b64(mustJSON(claims))
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("oidctest: encode: %v", err))
	}
	return b
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b64(b)
}
