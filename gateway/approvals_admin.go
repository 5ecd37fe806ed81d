package gateway

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/identity"
)

// The approvers' API and page. Approvers authenticate as themselves with
// their own identity token ("Authorization: Bearer <token>", checked by
// Config.Authenticator), not with the admin token: the broker decides who
// may vote from the identity's subject and groups, so a shared operator
// token would make every operator every approver and leave no record of
// who decided. These routes are therefore outside the admin-token wrapper,
// and every one of them (reading included) requires an identity.
//
// The page (GET /approvals, /approvals/{id}) is static: it holds no data.
// It either asks for the approver's token in the browser and calls the
// API with it as a bearer token (no cookie, so no cross-site request can
// vote), or, with Config.AdminLogin, offers single sign-on, after which
// the API is called with the session cookie and every vote carries the
// session's CSRF token (see adminlogin.go).

//go:embed approvalsui
var approvalsUI embed.FS

// approvalsCSP confines the page to its own script and style and to
// calls to this origin; no inline script, no framing.
const approvalsCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// ApprovalView is an approval request as the approvers' API shows it.
type ApprovalView struct {
	ID             string         `json:"id"`
	State          approval.State `json:"state"`
	SessionID      string         `json:"session_id"`
	GatewayID      string         `json:"gateway_id"`
	Requester      PersonView     `json:"requester"`
	Target         TargetView     `json:"target"`
	Command        CommandView    `json:"command"`
	Rules          []string       `json:"rules"`
	Reason         string         `json:"reason,omitempty"`
	Approvers      []string       `json:"approvers"`
	Quorum         int            `json:"quorum"`
	Approvals      int            `json:"approvals"`
	GrantWindow    string         `json:"grant_window,omitempty"` // Go duration
	CreatedAt      time.Time      `json:"created_at"`
	ExpiresAt      time.Time      `json:"expires_at"`
	ResolvedAt     time.Time      `json:"resolved_at,omitzero"`
	ResolvedReason string         `json:"resolved_reason,omitempty"`
	GrantUntil     time.Time      `json:"grant_until,omitzero"`
	Decisions      []DecisionView `json:"decisions"`
	// CanDecide reports whether the caller may still vote on it.
	CanDecide bool `json:"can_decide"`
	// URL is the request's approval page, when Config.ApproveURL is set.
	URL string `json:"url,omitempty"`
}

// PersonView is who requested or decided: no claims, no credential.
type PersonView struct {
	Subject string   `json:"subject"`
	Issuer  string   `json:"issuer,omitempty"`
	Name    string   `json:"name,omitempty"`
	Email   string   `json:"email,omitempty"`
	Groups  []string `json:"groups,omitempty"`
}

// TargetView names the target a command waits to run on.
type TargetView struct {
	Name     string            `json:"name"`
	Protocol string            `json:"protocol"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// CommandView is the command waiting: its exact text.
type CommandView struct {
	Protocol string `json:"protocol"`
	Kind     string `json:"kind"`
	Text     string `json:"text"`
}

// DecisionView is one approver's vote.
type DecisionView struct {
	Approver PersonView `json:"approver"`
	Approve  bool       `json:"approve"`
	Reason   string     `json:"reason,omitempty"`
	At       time.Time  `json:"at"`
}

func personView(id identity.Identity) PersonView {
	return PersonView{Subject: id.Subject, Issuer: id.Issuer, Name: id.Name, Email: id.Email, Groups: id.Groups}
}

func (g *Gateway) approvalView(r *approval.Request, who *identity.Identity) ApprovalView {
	v := ApprovalView{
		ID: r.ID, State: r.State, SessionID: r.SessionID, GatewayID: r.GatewayID,
		Requester: personView(r.Requester),
		Target:    TargetView{Name: r.Target.Name, Protocol: r.Target.Protocol, Labels: r.Target.Labels},
		Command:   CommandView{Protocol: r.Command.Protocol, Kind: string(r.Command.Kind), Text: r.Command.Text},
		Rules:     nonNil(r.Rules), Reason: r.Reason, Approvers: nonNil(r.Approvers),
		Quorum: max(r.Quorum, 1), Approvals: r.Approvals(),
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, ResolvedAt: r.ResolvedAt,
		ResolvedReason: r.ResolvedReason, GrantUntil: r.GrantUntil,
		Decisions: make([]DecisionView, 0, len(r.Decisions)),
		URL:       g.cfg.Approvals.URL(r.ID),
	}
	if r.GrantWindow > 0 {
		v.GrantWindow = r.GrantWindow.String()
	}
	voted := false
	for _, d := range r.Decisions {
		v.Decisions = append(v.Decisions, DecisionView{Approver: personView(d.Approver), Approve: d.Approve, Reason: d.Reason, At: d.At})
		if d.Approver.Subject == who.Subject && d.Approver.Issuer == who.Issuer {
			voted = true
		}
	}
	v.CanDecide = r.State == approval.StatePending && time.Now().Before(r.ExpiresAt) && !voted && r.CanDecide(who) == nil
	return v
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// maxDecisionBody bounds the JSON body of an approve or deny.
const maxDecisionBody = 64 << 10

// listLimit bounds GET /api/approvals?state=all unless limit says less.
const (
	defaultListLimit = 500
	maxListLimit     = 5000
)

// routeApprovals adds the approvers' API and page to mux.
func (g *Gateway) routeApprovals(mux *http.ServeMux) {
	page := func(w http.ResponseWriter, r *http.Request) {
		serveUI(w, r, "approvalsui/index.html", "text/html; charset=utf-8")
	}
	mux.HandleFunc("GET /approvals", page)
	mux.HandleFunc("GET /approvals/{id}", page)
	mux.HandleFunc("GET /approvals/ui/app.js", func(w http.ResponseWriter, r *http.Request) {
		serveUI(w, r, "approvalsui/app.js", "text/javascript; charset=utf-8")
	})
	mux.HandleFunc("GET /approvals/ui/app.css", func(w http.ResponseWriter, r *http.Request) {
		serveUI(w, r, "approvalsui/app.css", "text/css; charset=utf-8")
	})

	mux.HandleFunc("GET /api/approvals", g.approverOnly(func(w http.ResponseWriter, r *http.Request, who *identity.Identity) {
		f, err := listFilter(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		rs, err := g.cfg.Approvals.List(r.Context(), f)
		if err != nil {
			g.approvalFailed(w, r, "list approval requests", err)
			return
		}
		out := make([]ApprovalView, 0, len(rs))
		for _, req := range rs {
			out = append(out, g.approvalView(req, who))
		}
		writeJSON(w, http.StatusOK, out)
	}))
	mux.HandleFunc("GET /api/approvals/{id}", g.approverOnly(func(w http.ResponseWriter, r *http.Request, who *identity.Identity) {
		req, err := g.cfg.Approvals.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			g.approvalFailed(w, r, "get approval request", err)
			return
		}
		writeJSON(w, http.StatusOK, g.approvalView(req, who))
	}))
	decide := func(approve bool) http.HandlerFunc {
		return g.approverOnly(func(w http.ResponseWriter, r *http.Request, who *identity.Identity) {
			var body struct {
				Reason string `json:"reason"`
			}
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxDecisionBody))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
				writeError(w, http.StatusBadRequest, `the body must be JSON such as {"reason": "..."}: `+err.Error())
				return
			}
			vote := g.cfg.Approvals.Approve
			if !approve {
				vote = g.cfg.Approvals.Deny
			}
			req, err := vote(r.Context(), r.PathValue("id"), who, strings.TrimSpace(body.Reason))
			if err != nil {
				g.approvalFailed(w, r, "record approval decision", err)
				return
			}
			writeJSON(w, http.StatusOK, g.approvalView(req, who))
		})
	}
	mux.HandleFunc("POST /api/approvals/{id}/approve", decide(true))
	mux.HandleFunc("POST /api/approvals/{id}/deny", decide(false))
}

// listFilter reads ?state=pending (default), all, or one state name, and
// for more than the pending ones ?after=ID and ?limit=N.
func listFilter(r *http.Request) (approval.Filter, error) {
	q := r.URL.Query()
	f := approval.Filter{AfterID: q.Get("after")}
	switch s := approval.State(q.Get("state")); s {
	case "", approval.StatePending:
		f.States = []approval.State{approval.StatePending}
	case "all":
		f.Limit = defaultListLimit
	case approval.StateApproved, approval.StateDenied, approval.StateExpired, approval.StateWithdrawn, approval.StateAbandoned:
		f.States = []approval.State{s}
		f.Limit = defaultListLimit
	default:
		return f, errors.New("state: want pending, all, approved, denied, expired, withdrawn or abandoned")
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxListLimit {
			return f, errors.New("limit: want a number from 1 to " + strconv.Itoa(maxListLimit))
		}
		f.Limit = n
	}
	return f, nil
}

// approverOnly authenticates the caller's own bearer token with
// Config.Authenticator, or else the session cookie of a signed-in
// approver (Config.AdminLogin), and passes the identity on. Without
// approvals configured every route answers 404.
func (g *Gateway) approverOnly(h func(http.ResponseWriter, *http.Request, *identity.Identity)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if g.cfg.Approvals == nil {
			writeError(w, http.StatusNotFound, "approvals are not enabled on this gateway")
			return
		}
		tok, ok := bearer(r)
		if !ok {
			// Without a bearer token, a signed-in approver's session
			// cookie (CSRF-checked for votes; see adminlogin.go).
			who, answered := g.cookieCaller(w, r)
			switch {
			case answered:
				return
			case who != nil:
				h(w, r, who)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice approvals"`)
			if g.login != nil {
				writeJSON(w, http.StatusUnauthorized, map[string]string{
					"error": "sign in at " + adminLoginPath + ", or give your own identity token as Authorization: Bearer <token>",
					"login": adminLoginPath})
				return
			}
			writeError(w, http.StatusUnauthorized, "give your own identity token as Authorization: Bearer <token>")
			return
		}
		who, err := g.cfg.Authenticator.Authenticate(r.Context(), identity.Credentials{Token: tok, TLS: r.TLS})
		switch {
		case errors.Is(err, identity.ErrUnauthenticated):
			g.cfg.Logger.Info("approvals API: authentication refused", "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice approvals", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "token not recognised")
			return
		case err != nil || who == nil:
			g.cfg.Logger.Error("approvals API: authenticator failed", "remote", r.RemoteAddr, "err", err)
			writeError(w, http.StatusServiceUnavailable, "the identity provider could not be reached; try again")
			return
		}
		h(w, r, who)
	}
}

// approvalFailed maps a broker error to its HTTP status. The broker's
// sentinel messages are safe to show; anything else is logged and
// answered with a generic message.
func (g *Gateway) approvalFailed(w http.ResponseWriter, r *http.Request, what string, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, approval.ErrSelfApproval), errors.Is(err, approval.ErrNotApprover):
		code = http.StatusForbidden
	case errors.Is(err, approval.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, approval.ErrResolved), errors.Is(err, approval.ErrAlreadyVoted), errors.Is(err, approval.ErrExpired):
		code = http.StatusConflict
	case errors.Is(err, approval.ErrClosed):
		code = http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		return // the caller left
	}
	if code == http.StatusInternalServerError || code == http.StatusServiceUnavailable {
		g.cfg.Logger.Error("approvals API: "+what+" failed", "request", r.PathValue("id"), "err", err)
		writeError(w, code, what+" failed; see the gateway log")
		return
	}
	writeError(w, code, strings.TrimPrefix(err.Error(), "approval: "))
}

func serveUI(w http.ResponseWriter, _ *http.Request, name, ctype string) {
	b, err := approvalsUI.ReadFile(name)
	if err != nil {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Security-Policy", approvalsCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}
