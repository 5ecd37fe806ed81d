package http

import (
	"encoding/json"
	"errors"
	"fmt"
	nethttp "net/http"
	"strings"

	"github.com/sluicegw/sluice/protocol"
)

// Problem types (RFC 9457, 3.1.1), URNs since they name kinds of refusal
// rather than pages.
const (
	problemDenied          = "urn:sluice:problem:denied"
	problemUnauthenticated = "urn:sluice:problem:unauthenticated"
	problemApproval        = "urn:sluice:problem:approval-pending"
	problemBadRequest      = "urn:sluice:problem:bad-request"
	problemUnmaskable      = "urn:sluice:problem:unmaskable"
	problemBackend         = "urn:sluice:problem:backend"
	problemUnavailable     = "urn:sluice:problem:unavailable"
)

// problem is an RFC 9457 problem details object, with extension members
// naming the rules that decided, the approval request and the session.
type problem struct {
	Type     string   `json:"type"`
	Title    string   `json:"title"`
	Status   int      `json:"status"`
	Detail   string   `json:"detail,omitempty"`
	Rules    []string `json:"rules,omitempty"`
	Approval string   `json:"approval_id,omitempty"`
	Session  string   `json:"session,omitempty"`
}

// writeProblem answers with status and p as application/problem+json.
func writeProblem(w nethttp.ResponseWriter, status int, p problem) {
	writeJSON(w, status, "application/problem+json", p)
}

// writeJSON answers with status and p as JSON of the given media type.
func writeJSON(w nethttp.ResponseWriter, status int, contentType string, p problem) {
	p.Status = status
	if p.Title == "" {
		p.Title = nethttp.StatusText(status)
	}
	body, err := json.Marshal(p)
	if err != nil { // cannot happen: strings and ints
		body = []byte(`{"type":"about:blank","status":500}`)
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// deniedProblem is the 403 body of a denied command: the policy's message,
// naming the rules that matched.
func deniedProblem(d protocol.Decision) problem {
	return problem{Type: problemDenied, Title: "Denied by policy", Detail: denialMessage(d), Rules: d.Rules}
}

// statusForCheckError is the status of a request whose check failed: the
// recording is unavailable (503, fail closed) or the session cannot take
// commands.
func statusForCheckError(err error) int {
	switch {
	case errors.Is(err, protocol.ErrNotAuthorized):
		return nethttp.StatusForbidden
	default:
		return nethttp.StatusServiceUnavailable
	}
}

// clientText prefixes a message for the client with "sluice: " unless the
// gateway already did.
func clientText(msg string) string {
	if strings.HasPrefix(msg, "sluice: ") {
		return msg
	}
	return "sluice: " + msg
}

// denialMessage is the text a caller reads for a denied command: the
// decision's message and the rules that decided it.
func denialMessage(d protocol.Decision) string {
	msg := d.Message
	if msg == "" {
		msg = "request denied by policy"
	}
	msg = clientText(msg)
	if len(d.Rules) > 0 && !strings.Contains(msg, "(rule ") {
		msg += fmt.Sprintf(" (rule %s)", strings.Join(d.Rules, ", "))
	}
	return msg
}
