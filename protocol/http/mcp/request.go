package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sluicegw/sluice/protocol"
)

// ErrMalformed is wrapped by every error of ParseRequest: the body is not
// JSON-RPC the gateway can read, and must not be forwarded.
var ErrMalformed = errors.New("mcp: malformed JSON-RPC")

// RequestError is a ParseRequest error with the JSON-RPC error code that
// answers it (CodeParseError or CodeInvalidRequest).
type RequestError struct {
	Code int
	Msg  string
}

func (e *RequestError) Error() string { return "mcp: " + e.Msg }

// Unwrap makes errors.Is(err, ErrMalformed) true.
func (e *RequestError) Unwrap() error { return ErrMalformed }

func invalid(format string, args ...any) error {
	return &RequestError{Code: CodeInvalidRequest, Msg: fmt.Sprintf(format, args...)}
}

// MaxDepth bounds the nesting of a request body, as MCP SDKs do (the Go
// SDK refuses deeper bodies too).
const MaxDepth = 1000

// Request is a parsed POST body: one JSON-RPC message, or a batch (protocol
// versions before 2025-06-18).
type Request struct {
	Messages []Message
	Batch    bool
}

// Message is one JSON-RPC 2.0 message of a request body.
type Message struct {
	// ID is the id as sent (a JSON string or integer); nil for a
	// notification.
	ID json.RawMessage
	// Method is the request's or notification's method; empty for a
	// response.
	Method string
	// Params are the request's params as sent (a JSON object), or nil.
	Params json.RawMessage
	// IsNotification: a method without an id; no response is expected.
	IsNotification bool
	// IsResponse: the client's answer (result or error) to a request the
	// server made (sampling, elicitation, roots).
	IsResponse bool
	// MCP is the command.mcp part of the message; for a response its
	// method is ResponseMethod.
	MCP *protocol.MCP
}

// ResponseMethod is command.mcp.method for a response the client sends to
// the server's own request (roots/list, sampling/createMessage,
// elicitation/create), which has no method of its own. Names beginning
// with "rpc." are reserved by JSON-RPC 2.0 (section 4), so no request can
// take it: ParseRequest refuses such methods.
const ResponseMethod = "rpc.response"

// ParseRequest parses a POST body. An error wraps ErrMalformed (and is a
// *RequestError); the body must then not be forwarded.
func ParseRequest(body []byte) (*Request, error) {
	if !utf8.Valid(body) {
		return nil, &RequestError{Code: CodeParseError, Msg: "the body is not valid UTF-8"}
	}
	if err := checkJSON(body); err != nil {
		return nil, err
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	r := &Request{}
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(body, &items); err != nil {
			return nil, &RequestError{Code: CodeParseError, Msg: err.Error()}
		}
		if len(items) == 0 {
			return nil, invalid("an empty batch")
		}
		r.Batch = true
		for i, it := range items {
			m, err := parseMessage(it)
			if err != nil {
				return nil, invalid("batch message #%d: %s", i+1, err.(*RequestError).Msg)
			}
			r.Messages = append(r.Messages, m)
		}
		return r, nil
	}
	m, err := parseMessage(body)
	if err != nil {
		return nil, err
	}
	r.Messages = []Message{m}
	return r, nil
}

// Commands returns the command of every message, in order, with the
// index of its message.
func (r *Request) Commands() (idx []int, cmds []*protocol.Command) {
	for i := range r.Messages {
		if c := r.Messages[i].Command(); c != nil {
			idx = append(idx, i)
			cmds = append(cmds, c)
		}
	}
	return idx, cmds
}

// envelopeKeys are JSON-RPC's member names; paramKeys the MCP params this
// package reads. Another case of one of them is refused: a reader that
// ignores case would see what this one does not.
var (
	envelopeKeys = []string{"jsonrpc", "id", "method", "params", "result", "error"}
	paramKeys    = []string{"name", "arguments", "uri"}
)

func checkCase(members map[string]json.RawMessage, known []string, where string) error {
	for k := range members {
		for _, want := range known {
			if k != want && strings.EqualFold(k, want) {
				return invalid("%smember %q: JSON-RPC and MCP names are case-sensitive (want %q)", where, k, want)
			}
		}
	}
	return nil
}

func parseMessage(raw []byte) (Message, error) {
	var m Message
	var env map[string]json.RawMessage
	if err := json.Unmarshal(raw, &env); err != nil || env == nil {
		return m, invalid("a message must be a JSON object")
	}
	if err := checkCase(env, envelopeKeys, ""); err != nil {
		return m, err
	}
	if v, ok := env["jsonrpc"]; !ok || string(v) != `"2.0"` {
		var s string
		if ok && json.Unmarshal(v, &s) == nil && s == "2.0" {
			// "2.0" written with escapes: equal, accept.
		} else {
			return m, invalid(`"jsonrpc" must be "2.0"`)
		}
	}
	idRaw, hasID := env["id"]
	if hasID {
		if err := checkID(idRaw); err != nil {
			return m, err
		}
		m.ID = idRaw
	}
	methodRaw, hasMethod := env["method"]
	_, hasResult := env["result"]
	_, hasError := env["error"]
	switch {
	case hasMethod:
		if hasResult || hasError {
			return m, invalid("a message with a method has no result or error")
		}
		if err := json.Unmarshal(methodRaw, &m.Method); err != nil || m.Method == "" {
			return m, invalid(`"method" must be a non-empty string`)
		}
		if strings.HasPrefix(m.Method, "rpc.") {
			// JSON-RPC 2.0 section 4: reserved, "MUST NOT be used for
			// anything else"; ResponseMethod is one of them.
			return m, invalid("method %q: names beginning with rpc. are reserved by JSON-RPC", m.Method)
		}
		m.IsNotification = !hasID
		if p, ok := env["params"]; ok && string(p) != "null" {
			if !isObject(p) {
				return m, invalid("%s: params must be an object", m.Method)
			}
			m.Params = p
		}
		mcp, err := mcpFields(m.Method, m.Params)
		if err != nil {
			return m, err
		}
		m.MCP = mcp
	case hasResult != hasError:
		if !hasID {
			return m, invalid("a response needs an id")
		}
		m.IsResponse = true
		m.MCP = &protocol.MCP{Method: ResponseMethod}
	default:
		return m, invalid("a message needs a method (request, notification) or exactly one of result and error (response)")
	}
	return m, nil
}

// checkID accepts what MCP allows as an id: a string or an integer (not
// null).
func checkID(raw json.RawMessage) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return invalid("bad id")
	}
	switch x := v.(type) {
	case string:
		return nil
	case json.Number:
		if _, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return nil
		}
		return invalid("id %s: want a string or an integer", raw)
	}
	return invalid("id %s: want a string or an integer", raw)
}

func isObject(raw json.RawMessage) bool {
	t := bytes.TrimLeft(raw, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}

// mcpFields reads the command.mcp part of a request: tool and arguments of
// tools/call, uri of resources/read, prompt and arguments of prompts/get.
func mcpFields(method string, params json.RawMessage) (*protocol.MCP, error) {
	out := &protocol.MCP{Method: method}
	switch method {
	case "tools/call", "prompts/get", "resources/read":
	default:
		return out, nil
	}
	var p map[string]json.RawMessage
	if params != nil {
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, invalid("%s: params must be an object", method)
		}
	}
	if err := checkCase(p, paramKeys, method+": params: "); err != nil {
		return nil, err
	}
	str := func(key string) (string, error) {
		var s string
		if err := json.Unmarshal(p[key], &s); err != nil || s == "" {
			return "", invalid("%s: params.%s must be a non-empty string", method, key)
		}
		return s, nil
	}
	var err error
	switch method {
	case "tools/call":
		if out.Tool, err = str("name"); err != nil {
			return nil, err
		}
	case "prompts/get":
		if out.Prompt, err = str("name"); err != nil {
			return nil, err
		}
	case "resources/read":
		out.URI, err = str("uri")
		return out, err
	}
	if a, ok := p["arguments"]; ok && string(a) != "null" {
		if !isObject(a) {
			return nil, invalid("%s: params.arguments must be an object", method)
		}
		args, err := DecodeValue(a)
		if err != nil {
			return nil, invalid("%s: params.arguments: %v", method, err)
		}
		out.Arguments = args.(map[string]any)
	}
	return out, nil
}

// DecodeValue decodes JSON as a policy sees it: objects as map[string]any,
// arrays as []any, integers that fit as int64, other numbers as float64
// (CEL compares int and double by value, and `limit > 100` reads as
// written), strings, bools and nil.
func DecodeValue(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the value")
	}
	return numbers(v)
}

func numbers(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			n, err := numbers(e)
			if err != nil {
				return nil, err
			}
			x[k] = n
		}
	case []any:
		for i, e := range x {
			n, err := numbers(e)
			if err != nil {
				return nil, err
			}
			x[i] = n
		}
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("number %s is out of range", x)
		}
		return f, nil
	}
	return v, nil
}

// frame is an open container of checkJSON.
type frame struct {
	obj      bool
	keys     map[string]bool // the keys seen in an object, case-folded (foldKey)
	wantsKey bool            // in an object, the next string is a key
}

// foldKey maps s to a canonical form under Unicode simple case folding,
// the equivalence strings.EqualFold tests (and encoding/json's
// case-insensitive field matching follows): every rune becomes the
// smallest rune of its folding orbit, so "K", "k" and the Kelvin sign are
// one key.
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToUpper(s)
	}
	var b strings.Builder
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(m)
	}
	return b.String()
}

// checkJSON validates body as one JSON value, refusing duplicate keys
// (without regard to case) and nesting deeper than MaxDepth. Once
// json.Valid has vouched for the syntax, one pass over the bytes finds the
// containers and keys.
func checkJSON(body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return &RequestError{Code: CodeParseError, Msg: "an empty body"}
	}
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		msg := "invalid JSON"
		if err != nil {
			msg += ": " + strings.TrimPrefix(err.Error(), "json: ")
		}
		return &RequestError{Code: CodeParseError, Msg: msg}
	}
	var stack []frame
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case '{', '[':
			if len(stack) >= MaxDepth {
				return invalid("nested deeper than %d", MaxDepth)
			}
			stack = append(stack, frame{obj: c == '{', wantsKey: c == '{'})
		case '}', ']':
			stack = stack[:len(stack)-1]
		case ',':
			if n := len(stack); stack[n-1].obj {
				stack[n-1].wantsKey = true
			}
		case '"':
			j := i + 1
			escaped := false
			for ; body[j] != '"'; j++ {
				if body[j] == '\\' {
					escaped = true
					j++
				}
			}
			if n := len(stack); n > 0 && stack[n-1].wantsKey {
				k := string(body[i+1 : j])
				if escaped {
					if err := json.Unmarshal(body[i:j+1], &k); err != nil {
						return &RequestError{Code: CodeParseError, Msg: "invalid JSON: " + err.Error()}
					}
				}
				f := foldKey(k)
				if stack[n-1].keys[f] {
					return invalid("duplicate key %q in an object (keys are compared without regard to case)", k)
				}
				if stack[n-1].keys == nil {
					stack[n-1].keys = map[string]bool{}
				}
				stack[n-1].keys[f] = true
				stack[n-1].wantsKey = false
			}
			i = j
		}
	}
	return nil
}

// Command is the command policy decides for the message. Its protocol is
// "http" (the plugin sets the target's), its kind request, its text the
// method and what it names — "tools/call run_query {"query":"SELECT 1"}",
// "resources/read file:///etc/motd", "prompts/get greet", "tools/list",
// "rpc.response" — and its attrs hold the JSON-RPC id ("jsonrpc_id") of a
// request or response.
func (m *Message) Command() *protocol.Command {
	if m.MCP == nil {
		return nil
	}
	c := Command(*m.MCP)
	if m.ID != nil {
		c.Attrs = map[string]string{"jsonrpc_id": string(m.ID)}
	}
	return c
}

// Command is the command for an MCP message with fields m, as
// Message.Command builds it (without the id).
func Command(m protocol.MCP) *protocol.Command {
	mm := m
	return &protocol.Command{Protocol: "http", Kind: protocol.KindRequest, Text: text(&mm), MCP: &mm}
}

// ToolCommand is the command for calling tool with unknown arguments: what
// the ToolAllowed callback of ResponseOptions asks policy about
// (policy.Prober.MayAllow treats command.mcp.arguments as unknown).
func ToolCommand(tool string) *protocol.Command {
	return Command(protocol.MCP{Method: "tools/call", Tool: tool})
}

func text(m *protocol.MCP) string {
	var b strings.Builder
	b.WriteString(m.Method)
	for _, s := range []string{m.Tool, m.Prompt, m.URI} {
		if s != "" {
			b.WriteByte(' ')
			b.WriteString(s)
		}
	}
	if len(m.Arguments) > 0 {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if enc.Encode(m.Arguments) == nil {
			b.WriteByte(' ')
			b.Write(bytes.TrimRight(buf.Bytes(), "\n"))
		}
	}
	return b.String()
}
