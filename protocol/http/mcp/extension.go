package mcp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/protocol"
	sluicehttp "github.com/sluicegw/sluice/protocol/http"
)

// The HTTP plugin's extension: importing this package registers "mcp", so
// that an http target with the option mcp: "true" speaks MCP through the
// plugin (sluicehttp.RegisterExtension).

// OptMaxMessage is the target option bounding one server message the
// response filter holds (bytes); default DefaultMaxMessage.
const OptMaxMessage = "mcp_max_message"

// Prober is the optional capability of a protocol.Session that filters
// tools/list: whether policy could allow a command whatever its payload,
// without deciding it (no approval, no record). The gateway's session
// implements it with policy.Prober. Without it, tools/list results are
// emptied (fail closed); calls are checked either way.
type Prober interface {
	MayAllow(ctx context.Context, cmd *protocol.Command) (bool, error)
}

func init() {
	sluicehttp.RegisterExtension("mcp", newExtension)
}

func newExtension(t *protocol.Target) (sluicehttp.Extension, error) {
	e := &Extension{}
	if v := t.Options[OptMaxMessage]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%s: %q: want a positive number of bytes", OptMaxMessage, v)
		}
		e.MaxMessage = n
	}
	return e, nil
}

// Extension is MCP for the HTTP plugin (sluicehttp.Extension). For a POST
// it turns each JSON-RPC message into a command (Message.Command), answers
// denials with JSON-RPC errors (Request.DenyResponse) and bodies it cannot
// read with MalformedResponse, and passes the server's answer through a
// ResponseFilter. A GET (the server's stream) is checked as the HTTP
// command it is, and its stream filtered too; other methods (DELETE of a
// session) are plain HTTP.
type Extension struct {
	// MaxMessage: see ResponseOptions.MaxMessage.
	MaxMessage int
}

var _ sluicehttp.Extension = (*Extension)(nil)

// Inspect implements sluicehttp.Extension.
func (e *Extension) Inspect(r *http.Request, req *protocol.Command, body []byte, s protocol.Session) (*sluicehttp.Exchange, error) {
	switch r.Method {
	case http.MethodPost:
	case http.MethodGet:
		return &sluicehttp.Exchange{Response: e.response(r.Context(), nil, s, req.Protocol)}, nil
	default:
		return nil, nil
	}
	if body == nil {
		why := "a POST to an MCP server needs a JSON-RPC body"
		if msg := req.Attrs["body_error"]; msg != "" {
			why = "the body could not be read: " + msg
		}
		return refuse(&RequestError{Code: CodeInvalidRequest, Msg: why}), nil
	}
	parsed, err := ParseRequest(body)
	if err != nil {
		return refuse(err), nil
	}
	idx, cmds := parsed.Commands()
	for _, c := range cmds {
		c.Protocol = req.Protocol
	}
	return &sluicehttp.Exchange{
		Commands: cmds,
		Deny: func(w http.ResponseWriter, i int, d protocol.Decision) {
			decisions := make([]*protocol.Decision, len(parsed.Messages))
			if i >= 0 && i < len(idx) {
				decisions[idx[i]] = &d
			}
			status, answer := parsed.DenyResponse(decisions)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write(answer)
		},
		Response: e.response(r.Context(), parsed, s, req.Protocol),
	}, nil
}

func refuse(err error) *sluicehttp.Exchange {
	return &sluicehttp.Exchange{Refuse: func(w http.ResponseWriter) {
		status, answer := MalformedResponse(err)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(answer)
	}}
}

func (e *Extension) response(ctx context.Context, req *Request, s protocol.Session, proto string) func(io.Writer, http.Header, *masking.Masker) (io.WriteCloser, error) {
	return func(w io.Writer, h http.Header, m *masking.Masker) (io.WriteCloser, error) {
		p, _ := s.(Prober)
		return NewResponseFilter(w, h.Get("Content-Type"), ResponseOptions{
			Request:    req,
			Masker:     m,
			MaxMessage: e.MaxMessage,
			ToolAllowed: func(name string) bool {
				if p == nil {
					return false // the session cannot probe policy: fail closed
				}
				cmd := ToolCommand(name)
				cmd.Protocol = proto
				ok, err := p.MayAllow(ctx, cmd)
				return err == nil && ok
			},
		}), nil
	}
}
