package identity

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// StaticToken is one configured token: the SHA-256 of the token (hex), or
// the name of an environment variable holding the token itself, and the
// identity it proves.
type StaticToken struct {
	// SHA256 is the hex SHA-256 digest of the token. Exactly one of SHA256
	// and Env is set.
	SHA256 string
	// Env names an environment variable whose value is the token.
	Env     string
	Subject string
	Name    string
	Email   string
	Groups  []string
}

// StaticTokens authenticates callers by comparing the SHA-256 of the
// presented token with configured digests. Plain tokens are never kept.
type StaticTokens struct {
	entries []staticEntry
}

type staticEntry struct {
	digest [sha256.Size]byte
	id     Identity
}

// HashToken returns the hex SHA-256 digest of a token, the form the
// configuration stores.
func HashToken(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

// NewStaticTokens validates the tokens and builds the authenticator. An
// error names the entry by index and subject, never the token.
func NewStaticTokens(tokens []StaticToken) (*StaticTokens, error) {
	st := &StaticTokens{}
	for i, t := range tokens {
		if t.Subject == "" {
			return nil, fmt.Errorf("identity: token %d: subject is required", i)
		}
		var digest [sha256.Size]byte
		switch {
		case t.SHA256 != "" && t.Env != "":
			return nil, fmt.Errorf("identity: token %d (%s): set sha256 or env, not both", i, t.Subject)
		case t.SHA256 != "":
			b, err := hex.DecodeString(strings.TrimSpace(t.SHA256))
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("identity: token %d (%s): sha256 must be 64 hex digits", i, t.Subject)
			}
			copy(digest[:], b)
		case t.Env != "":
			v, ok := os.LookupEnv(t.Env)
			if !ok || v == "" {
				return nil, fmt.Errorf("identity: token %d (%s): environment variable %s is not set", i, t.Subject, t.Env)
			}
			digest = sha256.Sum256([]byte(v))
		default:
			return nil, fmt.Errorf("identity: token %d (%s): one of sha256 or env is required", i, t.Subject)
		}
		st.entries = append(st.entries, staticEntry{digest: digest, id: Identity{
			Subject: t.Subject,
			Name:    t.Name,
			Email:   t.Email,
			Groups:  append([]string(nil), t.Groups...),
			Method:  MethodToken,
		}})
	}
	return st, nil
}

// Authenticate implements Authenticator. The comparison is constant-time
// over every configured digest.
func (s *StaticTokens) Authenticate(_ context.Context, c Credentials) (*Identity, error) {
	if c.Token == "" {
		return nil, fmt.Errorf("identity: no token presented: %w", ErrUnauthenticated)
	}
	d := sha256.Sum256([]byte(c.Token))
	found := -1
	for i := range s.entries {
		if subtle.ConstantTimeCompare(d[:], s.entries[i].digest[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil, fmt.Errorf("identity: token not recognised: %w", ErrUnauthenticated)
	}
	id := s.entries[found].id
	id.Groups = append([]string(nil), id.Groups...)
	return &id, nil
}
