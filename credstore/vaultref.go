package credstore

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// DefaultVaultField is the field of a Vault secret a reference selects when
// it names none.
const DefaultVaultField = "password"

// VaultRef is a parsed vault: reference to a field of a KV version 2 secret:
//
//	vault:MOUNT/PATH[?version=N][#FIELD]
//	vault:MOUNT/data/PATH[?version=N][#FIELD]
//
// The second form is the secret's API path, as Vault's documentation
// writes it. The first "/data/" separates mount and path; without one, the
// first segment is the mount. So vault:secret/data/pg#password and
// vault:secret/pg (FIELD defaults to password) name the same field, and a
// mount with a slash in its name needs the /data/ form
// (vault:team/kv/data/pg). Without ?version the latest version is read.
type VaultRef struct {
	Mount   string
	Path    string
	Field   string
	Version int // 0: the latest
}

// String is the reference in its canonical form, without the scheme. It
// names where a secret lives, never the secret, so errors may carry it.
func (r VaultRef) String() string {
	s := r.Mount + "/data/" + r.Path
	if r.Version > 0 {
		s += "?version=" + strconv.Itoa(r.Version)
	}
	return s + "#" + r.Field
}

// ParseVaultRef parses the part of a vault: reference after "vault:".
func ParseVaultRef(s string) (VaultRef, error) {
	const form = "want MOUNT/PATH[?version=N][#FIELD], e.g. vault:secret/data/pg#password"
	r := VaultRef{Field: DefaultVaultField}
	rest, field, hasField := strings.Cut(s, "#")
	if hasField {
		if field == "" {
			return VaultRef{}, fmt.Errorf("vault reference %q: empty field after #; %s", s, form)
		}
		r.Field = field
	}
	p, query, hasQuery := strings.Cut(rest, "?")
	if hasQuery {
		q, err := url.ParseQuery(query)
		if err != nil {
			return VaultRef{}, fmt.Errorf("vault reference %q: bad query; %s", s, form)
		}
		for k, vs := range q {
			if k != "version" || len(vs) != 1 {
				return VaultRef{}, fmt.Errorf("vault reference %q: only one ?version=N is understood; %s", s, form)
			}
			n, err := strconv.Atoi(vs[0])
			if err != nil || n < 1 {
				return VaultRef{}, fmt.Errorf("vault reference %q: version must be a whole number from 1; %s", s, form)
			}
			r.Version = n
		}
	}
	if strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return VaultRef{}, fmt.Errorf("vault reference %q: no leading or trailing slash; %s", s, form)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return VaultRef{}, fmt.Errorf("vault reference %q: empty, . or .. path segment; %s", s, form)
		}
	}
	if mount, path, ok := strings.Cut(p, "/data/"); ok {
		r.Mount, r.Path = mount, path
	} else {
		r.Mount, r.Path, _ = strings.Cut(p, "/")
	}
	if r.Mount == "" || r.Path == "" {
		return VaultRef{}, fmt.Errorf("vault reference %q: needs a mount and a path; %s", s, form)
	}
	return r, nil
}
