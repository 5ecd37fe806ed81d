package http

import (
	"context"
	"fmt"
	"io"
	nethttp "net/http"
	"slices"
	"strings"
	"sync"

	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/protocol"
)

// Extension adapts the plugin to an application protocol carried over
// HTTP, such as MCP (package protocol/http/mcp). A target enables one
// with an option named after it ("mcp": "true"); options whose names
// start with its name and "_" are its own, for the factory to read.
//
// With an extension enabled, every request body is read whole before
// anything else happens, up to the target's max_body (a larger body is
// passed as nil, with command attribute body_error saying so), and the
// plugin calls Inspect for each request. The plugin keeps doing
// everything else: authentication, the checks, approval, the backend
// credential, recording and the credential scrubbing of responses.
type Extension interface {
	// Inspect says what one request means to the application protocol.
	// req is the HTTP command the plugin built (command.http set; its
	// Body parsed when the request body is JSON within max_body); body is
	// the request body read whole, or nil when there is none or it was too
	// large; s is the request's session, for optional capabilities a
	// Session may have. Inspect must not call s.Check: the plugin checks
	// the Exchange's commands. An error is a bug or an unavailable
	// dependency: the request is answered 502 and not forwarded.
	Inspect(r *nethttp.Request, req *protocol.Command, body []byte, s protocol.Session) (*Exchange, error)
}

// Exchange is what an Extension makes of one request. Every field is
// optional; the zero Exchange leaves the request to plain HTTP handling.
type Exchange struct {
	// Commands are checked in order instead of the HTTP command, each
	// recorded; the request goes to the backend only when all of them are
	// allowed, and the response is masked with the masking of all their
	// decisions. Empty: the HTTP command is checked.
	Commands []*protocol.Command
	// Refuse, when set, answers the request instead of forwarding it: the
	// body is not something the extension can read, so it must not reach
	// the backend unchecked (fail closed). The HTTP command is checked
	// and recorded first (with attribute refused="true"), so that the
	// refusal is in the recording; Refuse is called whatever its decision.
	Refuse func(w nethttp.ResponseWriter)
	// Deny, when set, answers a request that Commands[i] was denied for
	// with decision d, in the protocol's own form (a JSON-RPC error);
	// when nil the plugin answers 403 with a problem body.
	Deny func(w nethttp.ResponseWriter, i int, d protocol.Decision)
	// Response, when set, takes the response body over: it returns the
	// writer the backend's body (decoded from gzip if need be) is copied
	// into; it writes what the client receives to w, masking with m (nil
	// when the decisions carry no masking). header is the response's
	// header, already copied for the client, which Response may change
	// (it is sent on the first write to w). Close is called at the end of
	// the body. An error from Response, Write or Close fails the response
	// closed: 502 when nothing was sent yet, else the response is cut
	// off. The plugin still scrubs the backend credential from what is
	// written to w, flushes it to the client after every backend read,
	// and records it.
	Response func(w io.Writer, header nethttp.Header, m *masking.Masker) (io.WriteCloser, error)
}

// ExtensionFactory builds an extension for one target.
type ExtensionFactory func(t *protocol.Target) (Extension, error)

var (
	extMu      sync.RWMutex
	extensions = map[string]ExtensionFactory{}
)

// RegisterExtension makes an extension available to targets under name,
// the option that enables it. It panics if name is empty, not a plain
// lower-case word, taken by a plugin option, or registered twice, like
// protocol.Register. Call it from an init function.
func RegisterExtension(name string, f ExtensionFactory) {
	extMu.Lock()
	defer extMu.Unlock()
	switch {
	case name == "" || f == nil || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789") != "":
		panic("http: RegisterExtension with an invalid name or nil factory")
	case extensions[name] != nil:
		panic("http: RegisterExtension called twice for " + name)
	}
	for _, k := range []string{OptScheme, OptCAFile, OptServerName, OptH2C, OptCredentialScheme, OptCredentialHeader,
		OptApproval, OptMaxBody, OptRecordBodyBytes, OptHeaders, OptIdleTimeout} {
		if k == name || strings.HasPrefix(k, name+"_") {
			panic("http: RegisterExtension: " + name + " clashes with option " + k)
		}
	}
	extensions[name] = f
}

func extensionNames() []string {
	extMu.RLock()
	defer extMu.RUnlock()
	out := make([]string, 0, len(extensions))
	for k := range extensions {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func isExtensionOption(key string) bool {
	extMu.RLock()
	defer extMu.RUnlock()
	for name := range extensions {
		if key == name || strings.HasPrefix(key, name+"_") {
			return true
		}
	}
	return false
}

func newExtension(name string, t *protocol.Target) (Extension, error) {
	extMu.RLock()
	f := extensions[name]
	extMu.RUnlock()
	ext, err := f(t)
	if err != nil {
		return nil, err
	}
	if ext == nil {
		return nil, fmt.Errorf("extension %s returned nothing", name)
	}
	return ext, nil
}

type sessionKey struct{}

// SessionFrom returns the session serving a request, from the request's
// context (r.Context()), or nil outside the plugin.
func SessionFrom(ctx context.Context) protocol.Session {
	s, _ := ctx.Value(sessionKey{}).(protocol.Session)
	return s
}
