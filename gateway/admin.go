package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminHandler serves the operator API:
//
//	GET    /healthz            200 while the process runs
//	GET    /readyz             200 when serving, 503 before Start and during Shutdown
//	GET    /metrics            Prometheus metrics
//	GET    /api/sessions       JSON array of SessionView
//	GET    /api/sessions/{id}  one SessionView; 404 if not live
//	DELETE /api/sessions/{id}  terminate it (?reason=...); 202, 404 if not live
//
// and, for approvers (see Config.Approvals; 404 when it is not set):
//
//	GET  /api/approvals                 JSON array of ApprovalView (?state=pending|all|STATE, ?after=ID, ?limit=N)
//	GET  /api/approvals/{id}            one ApprovalView
//	POST /api/approvals/{id}/approve    vote, body {"reason": "..."}; 200 with the ApprovalView
//	POST /api/approvals/{id}/deny       likewise
//	GET  /approvals, /approvals/{id}    the approval web page
//
// and for approvers' single sign-on (see Config.AdminLogin and
// adminlogin.go; 404 when it is not set):
//
//	GET  /auth/login     redirect to the identity provider
//	GET  /auth/callback  its redirect back; sets the session cookie
//	POST /auth/logout    end the session (needs X-CSRF-Token)
//	GET  /api/session    who is signed in and the CSRF token
//
// When Config.AdminTokenSHA256 is set, every endpoint but /healthz,
// /readyz and the approvers' requires "Authorization: Bearer <token>" (see
// WithAdminToken). The approvers' endpoints take the approver's own
// identity token instead, checked by Config.Authenticator (the broker
// decides from that identity who may vote), or the session cookie of an
// approver signed in with single sign-on, whose votes must carry the
// session's CSRF token; the page itself is static and open. A session
// cookie never opens the rest of the admin API. API errors are JSON
// objects {"error": "..."}: 401 without a recognised identity, 403 for a
// requester, a non-approver or a failed CSRF check, 404 for an unknown
// request, 409 for one already decided, expired or voted on by the
// caller.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !g.Ready() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if g.gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g.gatherer, promhttp.HandlerOpts{}))
	} else {
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusNotFound, "metrics are registered with a Registerer that is not a Gatherer; set Config.Gatherer")
		})
	}
	mux.HandleFunc("GET /api/sessions", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, g.Sessions())
	})
	mux.HandleFunc("GET /api/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		s := g.session(r.PathValue("id"))
		if s == nil {
			writeError(w, http.StatusNotFound, "no live session "+r.PathValue("id"))
			return
		}
		writeJSON(w, http.StatusOK, s.view())
	})
	mux.HandleFunc("DELETE /api/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		err := g.Terminate(id, r.URL.Query().Get("reason"))
		switch {
		case errors.Is(err, ErrSessionNotFound):
			writeError(w, http.StatusNotFound, "no live session "+id)
		case err != nil:
			writeError(w, http.StatusInternalServerError, err.Error())
		default:
			writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "status": "terminating"})
		}
	})
	// Profiles for operators chasing latency or memory; behind the admin
	// token like everything but the probes.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	var admin http.Handler = mux
	if g.adminKey != nil {
		admin = withAdminKey(mux, g.adminKey)
	}
	// The approvers' routes are more specific than "/", so they bypass
	// the admin token; they authenticate each approver themselves.
	root := http.NewServeMux()
	root.Handle("/", admin)
	g.routeApprovals(root)
	g.routeAdminLogin(root)
	return root
}

// WithAdminToken wraps h so that every request except GET /healthz and
// GET /readyz (left open for probes) must carry "Authorization: Bearer
// <token>" where the token's SHA-256 is sha256hex (identity.HashToken
// computes it). Without it the answer is 401. An invalid sha256hex fails
// closed: every protected request is refused.
func WithAdminToken(h http.Handler, sha256hex string) http.Handler {
	key, err := parseDigest(sha256hex)
	if err != nil {
		key = nil
	}
	return withAdminKey(h, key)
}

func withAdminKey(h http.Handler, key []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz") {
			h.ServeHTTP(w, r)
			return
		}
		tok, ok := bearer(r)
		if !ok || key == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice admin"`)
			writeError(w, http.StatusUnauthorized, "a bearer token is required")
			return
		}
		sum := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(sum[:], key) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice admin", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "token not recognised")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
