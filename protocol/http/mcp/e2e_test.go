package mcp_test

// The package against the official Go MCP SDK: its server (Streamable HTTP
// handler) behind a small reverse proxy that does what the gateway's HTTP
// plugin does with this package, its client in front. The proxy decides
// with the real policy engine (and PostgreSQL's classifier for sql()); it
// imports policy only here, in a test: the package itself never does.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/policy"
	_ "github.com/sluicegw/sluice/policy/pgclassify"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/protocol/http/mcp"

	sdkjsonrpc "github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

const e2ePolicy = `
rules:
  - name: mcp-housekeeping
    match: command.mcp.method in ["initialize", "notifications/initialized", "ping", "tools/list"]
    action: allow
  - name: read-only-queries
    match: >
      command.mcp.tool == "run_query" && has(command.mcp.arguments.query) &&
      !sql(command.mcp.arguments.query).writes
    action: allow
    mask: [email, credit_card]
  - name: profiles
    match: command.mcp.tool == "get_profile"
    action: allow
    mask: [email, credit_card, json:$.ssn]
  - name: deletes-need-a-human
    match: glob("delete_*", command.mcp.tool)
    action: deny
    message: deleting needs a human
default: deny
`

// Profile is get_profile's structured output.
type Profile struct {
	Name  string `json:"name"`
	Email string `json:"email"`
	Card  string `json:"card"`
	SSN   string `json:"ssn"`
}

const (
	aliceEmail = "alice@example.com"
	aliceCard  = "4111 1111 1111 1111"
	aliceSSN   = "123-45-6789"
)

// newMCPServer is an MCP server with four tools, of which the policy
// allows run_query (read-only statements), get_profile, and neither
// delete_user nor admin_reset.
func newMCPServer(ran *[]string, mu *sync.Mutex) *sdk.Server {
	s := sdk.NewServer(&sdk.Implementation{Name: "backend", Version: "v1"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "run_query", Description: "run SQL"},
		func(_ context.Context, _ *sdk.CallToolRequest, in struct {
			Query string `json:"query"`
		}) (*sdk.CallToolResult, any, error) {
			mu.Lock()
			*ran = append(*ran, "run_query "+in.Query)
			mu.Unlock()
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{
				Text: "ran " + in.Query + "; owner " + aliceEmail}}}, nil, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "delete_user", Description: "delete a user"},
		func(_ context.Context, _ *sdk.CallToolRequest, in struct {
			ID int `json:"id"`
		}) (*sdk.CallToolResult, any, error) {
			mu.Lock()
			*ran = append(*ran, fmt.Sprintf("delete_user %d", in.ID))
			mu.Unlock()
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "deleted"}}}, nil, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "get_profile", Description: "a user's profile"},
		func(_ context.Context, _ *sdk.CallToolRequest, in struct {
			User string `json:"user"`
		}) (*sdk.CallToolResult, Profile, error) {
			mu.Lock()
			*ran = append(*ran, "get_profile "+in.User)
			mu.Unlock()
			p := Profile{Name: in.User, Email: aliceEmail, Card: aliceCard, SSN: aliceSSN}
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{
				Text: "Alice <" + aliceEmail + ">, card " + aliceCard}}}, p, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "admin_reset", Description: "reset everything"},
		func(context.Context, *sdk.CallToolRequest, struct{}) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "reset"}}}, nil, nil
		})
	return s
}

// gatewayProxy does with the mcp package what the HTTP plugin does: parse,
// decide, deny with JSON-RPC errors, forward, filter and mask the answer.
type gatewayProxy struct {
	t       *testing.T
	backend string
	engine  *policy.Engine
	client  *http.Client

	mu        sync.Mutex
	commands  []string   // command texts decided, with the action
	exchanges []exchange // what the server answered, as it sent it
}

// exchange is one request through the proxy and the server's answer, as
// recorded in testdata/*.jsonl (see -record).
type exchange struct {
	Method      string `json:"method"`
	Request     string `json:"request,omitempty"`
	Status      int    `json:"status"`
	ContentType string `json:"content_type,omitempty"`
	Response    string `json:"response"`
}

func (p *gatewayProxy) input(cmd *protocol.Command) *policy.Input {
	id := &identity.Identity{Subject: "agent-7", Groups: []string{"agents"}}
	target := &protocol.Target{Name: "tools", Protocol: "http", Options: map[string]string{"mcp": "true"}}
	return &policy.Input{Identity: id, Target: target, Command: cmd}
}

func (p *gatewayProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var (
		body []byte
		req  *mcp.Request
		mask []string
	)
	if r.Method == http.MethodPost {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req, err = mcp.ParseRequest(body)
		if err != nil {
			status, b := mcp.MalformedResponse(err)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write(b)
			return
		}
		decisions := make([]*protocol.Decision, len(req.Messages))
		denied := false
		for i := range req.Messages {
			cmd := req.Messages[i].Command()
			if cmd == nil {
				continue
			}
			d, err := p.engine.Decide(ctx, p.input(cmd))
			require.NoError(p.t, err)
			decisions[i] = &d
			p.mu.Lock()
			p.commands = append(p.commands, fmt.Sprintf("%s: %s", d.Action, cmd.Text))
			p.mu.Unlock()
			if !d.Allowed() {
				denied = true
			}
			mask = append(mask, d.Mask...)
		}
		if denied {
			status, b := req.DenyResponse(decisions)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write(b)
			return
		}
	}

	out, err := http.NewRequestWithContext(ctx, r.Method, p.backend, bytes.NewReader(body))
	require.NoError(p.t, err)
	out.Header = r.Header.Clone()
	resp, err := p.client.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)

	opts := mcp.ResponseOptions{
		Request: req,
		ToolAllowed: func(name string) bool {
			ok, err := p.engine.MayAllow(ctx, p.input(mcp.ToolCommand(name)))
			return err == nil && ok
		},
	}
	if len(mask) > 0 {
		opts.Masker, err = masking.Compile(mask, masking.Options{})
		require.NoError(p.t, err)
	}
	f := mcp.NewResponseFilter(w, resp.Header.Get("Content-Type"), opts)
	var raw bytes.Buffer
	_, _ = io.Copy(f, io.TeeReader(resp.Body, &raw))
	_ = f.Close()
	p.mu.Lock()
	p.exchanges = append(p.exchanges, exchange{Method: r.Method, Request: string(body), Status: resp.StatusCode,
		ContentType: resp.Header.Get("Content-Type"), Response: raw.String()})
	p.mu.Unlock()
}

func TestSDKThroughTheProxy(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts sdk.StreamableHTTPOptions
	}{
		{"sse", sdk.StreamableHTTPOptions{}},
		{"json", sdk.StreamableHTTPOptions{JSONResponse: true}},
		{"stateless sse", sdk.StreamableHTTPOptions{Stateless: true}},
		{"stateless json", sdk.StreamableHTTPOptions{Stateless: true, JSONResponse: true}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			exchanges := testSDKThroughTheProxy(t, mode.opts)
			var types []string
			for _, x := range exchanges {
				types = append(types, x.ContentType)
			}
			want := "text/event-stream"
			if mode.opts.JSONResponse {
				want = "application/json"
			}
			assert.Contains(t, types, want, "the server answered in %s", want)
			if *record {
				var b bytes.Buffer
				enc := json.NewEncoder(&b)
				enc.SetIndent("", "")
				for _, x := range exchanges {
					require.NoError(t, enc.Encode(x))
				}
				name := filepath.Join("testdata", "sdk-"+strings.ReplaceAll(mode.name, " ", "-")+".jsonl")
				require.NoError(t, os.WriteFile(name, b.Bytes(), 0o644))
			}
		})
	}
}

var record = flag.Bool("record", false, "record the SDK server's answers of TestSDKThroughTheProxy in testdata/sdk-*.jsonl")

func testSDKThroughTheProxy(t *testing.T, opts sdk.StreamableHTTPOptions) []exchange {
	var (
		mu  sync.Mutex
		ran []string
	)
	server := newMCPServer(&ran, &mu)
	backend := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return server }, &opts))
	defer backend.Close()

	engine, err := policy.Parse("e2e.yaml", []byte(e2ePolicy))
	require.NoError(t, err)
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	p := &gatewayProxy{t: t, backend: backend.URL, engine: engine, client: &http.Client{Transport: transport}}
	front := httptest.NewServer(p)
	defer front.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clientTransport := &http.Transport{}
	defer clientTransport.CloseIdleConnections()
	client := sdk.NewClient(&sdk.Implementation{Name: "agent", Version: "v1"}, nil)
	cs, err := client.Connect(ctx, &sdk.StreamableClientTransport{
		Endpoint: front.URL, HTTPClient: &http.Client{Transport: clientTransport}, MaxRetries: -1}, nil)
	require.NoError(t, err)
	defer cs.Close()

	// tools/list is filtered to what the agent may call.
	list, err := cs.ListTools(ctx, nil)
	require.NoError(t, err)
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	assert.Equal(t, []string{"get_profile", "run_query"}, names)

	text := func(res *sdk.CallToolResult) string {
		var b strings.Builder
		for _, c := range res.Content {
			if tc, ok := c.(*sdk.TextContent); ok {
				b.WriteString(tc.Text)
			}
		}
		return b.String()
	}
	denied := func(err error, contains string) {
		t.Helper()
		require.Error(t, err)
		var werr *sdkjsonrpc.Error
		require.True(t, errors.As(err, &werr), "a JSON-RPC error, got %T: %v", err, err)
		assert.Equal(t, int64(mcp.CodeDenied), werr.Code)
		assert.Contains(t, werr.Message, contains)
	}

	// An allowed call works, and its result is masked.
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "run_query", Arguments: map[string]any{"query": "SELECT name FROM users"}})
	require.NoError(t, err)
	assert.Equal(t, "ran SELECT name FROM users; owner [REDACTED]", text(res))

	// The argument decides: a write is not a read-only query.
	_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "run_query", Arguments: map[string]any{"query": "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d"}})
	denied(err, "sluice: denied: no rule allows this command")
	// Nor is SQL the gateway cannot parse.
	_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "run_query", Arguments: map[string]any{"query": "SELEC 1"}})
	denied(err, "sluice: denied")

	// A denied tool gets a JSON-RPC error with the rule's message.
	_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "delete_user", Arguments: map[string]any{"id": 7}})
	denied(err, "sluice: denied: deleting needs a human")
	// A tool no rule allows, even though the client was never told of it.
	_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "admin_reset"})
	denied(err, "sluice: denied")

	// The session goes on after denials: an email and a card number come
	// back masked, in the text and in the structured output.
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "get_profile", Arguments: map[string]any{"user": "alice"}})
	require.NoError(t, err)
	assert.Equal(t, "Alice <[REDACTED]>, card [REDACTED]", text(res))
	sc, ok := res.StructuredContent.(map[string]any)
	require.True(t, ok, "structured content: %#v", res.StructuredContent)
	assert.Equal(t, map[string]any{"name": "alice", "email": "[REDACTED]", "card": "[REDACTED]", "ssn": "[REDACTED]"}, sc)

	mu.Lock()
	assert.Equal(t, []string{"run_query SELECT name FROM users", "get_profile alice"}, ran, "denied calls never reach the server")
	mu.Unlock()
	p.mu.Lock()
	assert.Contains(t, p.commands, `deny: tools/call delete_user {"id":7}`)
	assert.Contains(t, p.commands, `allow: tools/call run_query {"query":"SELECT name FROM users"}`)
	p.mu.Unlock()

	require.NoError(t, cs.Close())
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.exchanges)
}
