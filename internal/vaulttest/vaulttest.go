// Package vaulttest is an HTTP fixture that stands in for a HashiCorp Vault
// server in tests, since no Vault server can be installed where they run.
// Its central type is Server. It speaks the small part of Vault's HTTP API
// that credstore/vault uses, shaped as Vault answers it:
//
//	GET  /v1/{mount}/data/{path}[?version=N]   KV version 2 read
//	POST /v1/auth/{approle mount}/login        AppRole login (PUT too)
//	GET  /v1/auth/token/lookup-self
//	POST /v1/auth/token/renew-self             (PUT too)
//
// Every request but a login must carry a live token in X-Vault-Token. The
// test controls the server: it adds secrets, versions, tokens and roles,
// expires or revokes tokens, denies paths, injects failures and stalls, and
// reads how many requests of each kind arrived.
package vaulttest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Op is a kind of request, for Count.
type Op string

// The operations the server counts.
const (
	OpRead       Op = "read"
	OpLogin      Op = "login"
	OpLookupSelf Op = "lookup-self"
	OpRenewSelf  Op = "renew-self"
	OpOther      Op = "other"
)

// TokenOptions describe a token the server issues or accepts.
type TokenOptions struct {
	// TTL is the token's lifetime; zero means it never expires (a root
	// token).
	TTL time.Duration
	// Renewable lets renew-self extend it.
	Renewable bool
	// MaxTTL caps renewals from issue; zero means no cap.
	MaxTTL time.Duration
}

// Server is the fixture. Its methods are safe for concurrent use.
type Server struct {
	// URL is the server's base address, for VaultConfig.Address.
	URL string

	ts *httptest.Server

	mu       sync.Mutex
	kv       map[string][]version // "mount/path" -> versions, 1-based
	lease    map[string]int       // "mount/path" -> lease_duration seconds
	tokens   map[string]*token
	roles    map[string]role // "mount/role_id"
	denied   map[string]bool // "mount/path"
	counts   map[Op]int
	failures []failure
	stall    chan struct{} // non-nil: requests wait until it closes
	seq      int
}

type version struct {
	data    map[string]any
	created time.Time
	deleted bool
}

type token struct {
	opts    TokenOptions
	issued  time.Time
	expires time.Time // zero: never
	revoked bool
}

type role struct {
	secretID string
	opts     TokenOptions
}

type failure struct {
	op      Op
	status  int
	message string
}

// New starts a server; Close stops it.
func New() *Server {
	s := &Server{
		kv:     make(map[string][]version),
		lease:  make(map[string]int),
		tokens: make(map[string]*token),
		roles:  make(map[string]role),
		denied: make(map[string]bool),
		counts: make(map[Op]int),
	}
	s.ts = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.ts.URL
	return s
}

// Close releases stalled requests and stops the server.
func (s *Server) Close() {
	s.Unstall()
	s.ts.CloseClientConnections()
	s.ts.Close()
}

// Put writes a new version of the secret at mount/path and returns its
// number.
func (s *Server) Put(mount, path string, data map[string]any) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := mount + "/" + path
	s.kv[k] = append(s.kv[k], version{data: data, created: time.Now()})
	return len(s.kv[k])
}

// DeleteVersion soft-deletes version n of mount/path, as `vault kv delete
// -versions=n` does.
func (s *Server) DeleteVersion(mount, path string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if vs := s.kv[mount+"/"+path]; n >= 1 && n <= len(vs) {
		vs[n-1].deleted = true
	}
}

// SetLeaseDuration makes reads of mount/path answer with this
// lease_duration (KV v2 normally answers 0).
func (s *Server) SetLeaseDuration(mount, path string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lease[mount+"/"+path] = int(d / time.Second)
}

// Deny makes reads of mount/path answer 403 permission denied to every
// token.
func (s *Server) Deny(mount, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied[mount+"/"+path] = true
}

// AddToken makes the server accept tok.
func (s *Server) AddToken(tok string, o TokenOptions) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[tok] = s.newTokenLocked(o)
}

func (s *Server) newTokenLocked(o TokenOptions) *token {
	t := &token{opts: o, issued: time.Now()}
	if o.TTL > 0 {
		t.expires = t.issued.Add(o.TTL)
	}
	return t
}

// ExpireToken makes the server treat tok as expired from now on.
func (s *Server) ExpireToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[tok]; ok {
		t.revoked = true
	}
}

// ExpireAllTokens expires every token issued or added so far.
func (s *Server) ExpireAllTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		t.revoked = true
	}
}

// AddAppRole lets an AppRole login at mount succeed with roleID and
// secretID; it issues tokens with o.
func (s *Server) AddAppRole(mount, roleID, secretID string, o TokenOptions) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roles[mount+"/"+roleID] = role{secretID: secretID, opts: o}
}

// Tokens lists the tokens the server issued by AppRole login, oldest
// first.
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, s.seq)
	for i := 1; i <= s.seq; i++ {
		out = append(out, issuedToken(i))
	}
	return out
}

func issuedToken(n int) string { return fmt.Sprintf("hvs.fixture-issued-%04d", n) }

// FailNext makes the next n requests of kind op (OpOther: any kind) answer
// status with message as Vault's error text.
func (s *Server) FailNext(op Op, n, status int, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures = append(s.failures, failure{op: op, status: status, message: message})
	}
}

// Stall makes requests hang until Unstall or Close, as a server that
// accepts connections but never answers.
func (s *Server) Stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stall == nil {
		s.stall = make(chan struct{})
	}
}

// Unstall releases stalled requests and stops stalling.
func (s *Server) Unstall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stall != nil {
		close(s.stall)
		s.stall = nil
	}
}

// Count is how many requests of kind op arrived; OpOther counts the ones
// the fixture does not know.
func (s *Server) Count(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[op]
}

// ResetCounts sets every count to zero.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.counts)
}

func classify(r *http.Request) (Op, string) {
	p := strings.TrimPrefix(r.URL.Path, "/v1/")
	switch {
	case r.Method == http.MethodGet && p == "auth/token/lookup-self":
		return OpLookupSelf, ""
	case (r.Method == http.MethodPost || r.Method == http.MethodPut) && p == "auth/token/renew-self":
		return OpRenewSelf, ""
	case (r.Method == http.MethodPost || r.Method == http.MethodPut) && strings.HasPrefix(p, "auth/") && strings.HasSuffix(p, "/login"):
		return OpLogin, strings.TrimSuffix(strings.TrimPrefix(p, "auth/"), "/login")
	case r.Method == http.MethodGet && strings.Contains(p, "/data/"):
		return OpRead, p
	}
	return OpOther, p
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	op, arg := classify(r)
	s.mu.Lock()
	s.counts[op]++
	stall := s.stall
	var fail *failure
	for i, f := range s.failures {
		if f.op == op || f.op == OpOther {
			fail = &f
			s.failures = append(s.failures[:i], s.failures[i+1:]...)
			break
		}
	}
	s.mu.Unlock()

	if stall != nil {
		select {
		case <-stall:
		case <-r.Context().Done():
			return
		}
	}
	if fail != nil {
		writeErrors(w, fail.status, fail.message)
		return
	}
	switch op {
	case OpLogin:
		s.login(w, r, arg)
	case OpLookupSelf:
		s.lookupSelf(w, r)
	case OpRenewSelf:
		s.renewSelf(w, r)
	case OpRead:
		s.read(w, r, arg)
	default:
		writeErrors(w, http.StatusNotFound, "no handler for route")
	}
}

func writeErrors(w http.ResponseWriter, status int, msgs ...string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": msgs})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// authedLocked returns the live token r carries, or answers 403 as Vault does
// for a missing, unknown, expired or revoked token.
func (s *Server) authedLocked(w http.ResponseWriter, r *http.Request) (*token, bool) {
	t, ok := s.tokens[r.Header.Get("X-Vault-Token")]
	if !ok || t.revoked || (!t.expires.IsZero() && !time.Now().Before(t.expires)) {
		writeErrors(w, http.StatusForbidden, "permission denied")
		return nil, false
	}
	return t, true
}

func (s *Server) login(w http.ResponseWriter, r *http.Request, mount string) {
	var body struct {
		RoleID   string `json:"role_id"`
		SecretID string `json:"secret_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeErrors(w, http.StatusBadRequest, "failed to parse JSON input")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ro, ok := s.roles[mount+"/"+body.RoleID]
	if !ok || ro.secretID != body.SecretID {
		writeErrors(w, http.StatusBadRequest, "invalid role or secret ID")
		return
	}
	s.seq++
	tok := issuedToken(s.seq)
	s.tokens[tok] = s.newTokenLocked(ro.opts)
	writeJSON(w, http.StatusOK, map[string]any{
		"auth": map[string]any{
			"client_token":   tok,
			"accessor":       fmt.Sprintf("accessor-%d", s.seq),
			"policies":       []string{"default"},
			"lease_duration": int(ro.opts.TTL / time.Second),
			"renewable":      ro.opts.Renewable,
		},
	})
}

func (s *Server) lookupSelf(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.authedLocked(w, r)
	if !ok {
		return
	}
	ttl := 0
	if !t.expires.IsZero() {
		ttl = int(time.Until(t.expires) / time.Second)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"data": map[string]any{
			"ttl":          ttl,
			"creation_ttl": int(t.opts.TTL / time.Second),
			"renewable":    t.opts.Renewable,
			"policies":     []string{"default"},
		},
	})
}

func (s *Server) renewSelf(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.authedLocked(w, r)
	if !ok {
		return
	}
	if !t.opts.Renewable {
		writeErrors(w, http.StatusBadRequest, "lease is not renewable")
		return
	}
	ttl := t.opts.TTL
	if t.opts.MaxTTL > 0 {
		ttl = min(ttl, time.Until(t.issued.Add(t.opts.MaxTTL)))
	}
	t.expires = time.Now().Add(ttl)
	writeJSON(w, http.StatusOK, map[string]any{
		"auth": map[string]any{
			"client_token":   r.Header.Get("X-Vault-Token"),
			"lease_duration": int(ttl / time.Second),
			"renewable":      t.opts.Renewable,
		},
	})
}

func (s *Server) read(w http.ResponseWriter, r *http.Request, p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.authedLocked(w, r); !ok {
		return
	}
	mount, path, _ := strings.Cut(p, "/data/")
	k := mount + "/" + path
	if s.denied[k] {
		writeErrors(w, http.StatusForbidden, "permission denied")
		return
	}
	vs := s.kv[k]
	if len(vs) == 0 {
		writeErrors(w, http.StatusNotFound)
		return
	}
	n := len(vs)
	if q := r.URL.Query().Get("version"); q != "" && q != "0" {
		v, err := strconv.Atoi(q)
		if err != nil || v < 1 {
			writeErrors(w, http.StatusBadRequest, "invalid version")
			return
		}
		if v > len(vs) {
			writeErrors(w, http.StatusNotFound)
			return
		}
		n = v
	}
	v := vs[n-1]
	meta := map[string]any{
		"created_time":    v.created.UTC().Format(time.RFC3339Nano),
		"custom_metadata": nil,
		"deletion_time":   "",
		"destroyed":       false,
		"version":         n,
	}
	if v.deleted {
		// Vault answers 404 with the metadata and null data.
		meta["deletion_time"] = v.created.UTC().Format(time.RFC3339Nano)
		writeJSON(w, http.StatusNotFound, map[string]any{
			"data": map[string]any{"data": nil, "metadata": meta},
		})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"request_id":     "fixture",
		"lease_id":       "",
		"renewable":      false,
		"lease_duration": s.lease[k],
		"data":           map[string]any{"data": v.data, "metadata": meta},
	})
}
