package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/sluicegw/sluice/protocol"
)

// JSON-RPC error codes the gateway answers with. CodeDenied and
// CodeWithheld are in the range JSON-RPC leaves to implementations
// (-32000 to -32099), clear of the codes MCP and its SDKs use there, some of
// which clients act on: -32000 connection closed and -32001 request timeout
// (TypeScript and Python SDKs), -32001 to -32005 in the Go SDK's JSON-RPC
// layer (-32003 and -32004 mean "closing": the Go client treats the
// connection as gone), -32002 resource not found, -32020 to -32022 and
// -32042 in the specification.
const (
	CodeParseError     = -32700 // the body is not JSON
	CodeInvalidRequest = -32600 // JSON, but not JSON-RPC the gateway reads
	// CodeDenied: policy denied the request (or another message of its
	// batch). The error's data holds {"action": "deny", "rules": [...]}.
	CodeDenied = -32050
	// CodeWithheld: the gateway withheld the server's response to this
	// request: it was larger than it can inspect, or could not be read or
	// masked.
	CodeWithheld = -32051
)

// ErrorData is the data member of a denial's error.
type ErrorData struct {
	Action protocol.Action `json:"action"`
	Rules  []string        `json:"rules,omitempty"`
	// Reason says why a message that policy allowed was not sent, or
	// why a response was withheld.
	Reason string `json:"reason,omitempty"`
}

// wireError is a JSON-RPC response with an error.
type wireError struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   struct {
		Code    int        `json:"code"`
		Message string     `json:"message"`
		Data    *ErrorData `json:"data,omitempty"`
	} `json:"error"`
}

// ErrorResponse is a JSON-RPC error response: id as sent (nil is null),
// code, message, and data when not nil.
func ErrorResponse(id json.RawMessage, code int, message string, data *ErrorData) []byte {
	var w wireError
	w.JSONRPC, w.ID = "2.0", id
	if w.ID == nil {
		w.ID = json.RawMessage("null")
	}
	w.Error.Code, w.Error.Message, w.Error.Data = code, message, data
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&w); err != nil {
		// Only an invalid id can fail, and ids come from ParseRequest.
		return []byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"sluice: internal error"}}`)
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// MalformedResponse answers a body ParseRequest refused: HTTP 400 with a
// JSON-RPC error whose id is null (the request's cannot be trusted), code
// CodeParseError or CodeInvalidRequest, as JSON-RPC over HTTP does.
func MalformedResponse(err error) (status int, body []byte) {
	code := CodeInvalidRequest
	var re *RequestError
	if errors.As(err, &re) {
		code = re.Code
	}
	return http.StatusBadRequest, ErrorResponse(nil, code, "sluice: "+err.Error(), nil)
}

// DenyResponse answers a request body of which policy denied some
// messages, without forwarding any of it: decisions[i] is the decision for
// Messages[i], nil for a message that was not checked (a response).
//
// Every request gets a JSON-RPC error response with its id: CodeDenied
// with "sluice: denied: " and the decision's message for a denied one;
// CodeDenied with the reason "another message of the batch was denied"
// for the others (a batch is all or nothing, so that no half of it runs).
// The HTTP status is 200 with a JSON body (one response, or an array for a
// batch), as for any JSON-RPC answer: MCP clients surface it as the call's
// error and the session goes on. A body of notifications and responses
// only has no id to answer: it gets 403 with a single error response whose
// id is null, which the Streamable HTTP transport allows for input the
// server does not accept.
func (r *Request) DenyResponse(decisions []*protocol.Decision) (status int, body []byte) {
	var (
		out       [][]byte
		firstDeny *protocol.Decision
	)
	for i := range r.Messages {
		var d *protocol.Decision
		if i < len(decisions) {
			d = decisions[i]
		}
		if d != nil && !d.Allowed() && firstDeny == nil {
			firstDeny = d
		}
	}
	if firstDeny == nil {
		firstDeny = &protocol.Decision{Action: protocol.Deny, Message: "denied"}
	}
	for i, m := range r.Messages {
		if m.ID == nil || m.IsResponse {
			continue
		}
		var d *protocol.Decision
		if i < len(decisions) {
			d = decisions[i]
		}
		if d != nil && !d.Allowed() {
			out = append(out, denial(m.ID, d, ""))
		} else {
			out = append(out, denial(m.ID, firstDeny, "not sent: another message of the batch was denied"))
		}
	}
	switch {
	case len(out) == 0:
		return http.StatusForbidden, denial(nil, firstDeny, "")
	case !r.Batch:
		return http.StatusOK, out[0]
	}
	return http.StatusOK, append(append([]byte{'['}, bytes.Join(out, []byte{','})...), ']')
}

func denial(id json.RawMessage, d *protocol.Decision, reason string) []byte {
	msg := d.Message
	if msg == "" {
		msg = "denied by policy"
	}
	action := d.Action
	if action == "" || action == protocol.Allow {
		action = protocol.Deny
	}
	if reason != "" {
		return ErrorResponse(id, CodeDenied, "sluice: "+reason, &ErrorData{Action: action, Reason: reason})
	}
	return ErrorResponse(id, CodeDenied, "sluice: denied: "+msg, &ErrorData{Action: action, Rules: d.Rules})
}
