package mcp_test

// The official Go MCP SDK's client and server with the real gateway and
// HTTP plugin between them: this package registered as the plugin's "mcp"
// extension, the policy engine deciding, a file recording.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdkjsonrpc "github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	sluicehttp "github.com/sluicegw/sluice/protocol/http"
	"github.com/sluicegw/sluice/protocol/http/mcp"
	"github.com/sluicegw/sluice/recording"
)

// bearer adds the agent's token to every request of the SDK's client.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

func TestSDKThroughTheGateway(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts sdk.StreamableHTTPOptions
	}{
		{"sse", sdk.StreamableHTTPOptions{}},
		{"json", sdk.StreamableHTTPOptions{JSONResponse: true}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			testSDKThroughTheGateway(t, mode.opts)
		})
	}
}

func testSDKThroughTheGateway(t *testing.T, opts sdk.StreamableHTTPOptions) {
	var (
		mu  sync.Mutex
		ran []string
	)
	server := newMCPServer(&ran, &mu)
	opts.DisableLocalhostProtection = true // the gateway sends its own Host
	backend := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return server }, &opts))
	defer backend.Close()

	dir := t.TempDir()
	const token = "tok-mcp-gateway-test"
	auth, err := identity.NewStaticTokens([]identity.StaticToken{{SHA256: identity.HashToken(token), Subject: "agent-7", Groups: []string{"agents"}}})
	require.NoError(t, err)
	sink, err := recording.NewFileSink(filepath.Join(dir, "rec"), recording.FileOptions{})
	require.NoError(t, err)
	// The session opening is a connect command; the GET of the server's
	// stream and the DELETE of the session are plain HTTP commands.
	engine, err := policy.Parse("e2e.yaml", []byte(strings.Replace(e2ePolicy, "default: deny", `  - name: agents-connect
    match: command.kind == "connect" && "agents" in identity.groups
    action: allow
  - name: the-mcp-endpoint
    match: command.http.method in ["GET", "DELETE"] && command.http.path == "/mcp"
    action: allow
default: deny`, 1)))
	require.NoError(t, err)
	g, err := gateway.New(gateway.Config{
		DataDir: dir,
		Targets: []gateway.TargetConfig{{
			Target: protocol.Target{Name: "tools", Protocol: sluicehttp.Name, Address: backend.URL,
				Options: map[string]string{"mcp": "true"}},
			Listen: "127.0.0.1:0", Credential: credstore.Ref{Password: "inline:backend-credential-1"},
		}},
		Authenticator: auth, Decider: engine,
		Credentials: credstore.Default{AllowInline: true}, Recording: sink,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, g.Start(ctx))
	defer func() { _ = g.Shutdown(context.Background()) }()

	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "cert.pem"))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caPEM))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer tr.CloseIdleConnections()

	client := sdk.NewClient(&sdk.Implementation{Name: "agent", Version: "v1"}, nil)
	cs, err := client.Connect(ctx, &sdk.StreamableClientTransport{
		Endpoint:   "https://" + g.Addr("tools").String() + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{token: token, next: tr}}, MaxRetries: -1}, nil)
	require.NoError(t, err)
	defer cs.Close()

	list, err := cs.ListTools(ctx, nil)
	require.NoError(t, err)
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	// Tools the agent may not call are never listed: the list is exactly
	// the tools policy may allow (the gateway's session probes policy).
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
		var werr *sdkjsonrpc.Error
		require.True(t, errors.As(err, &werr), "a JSON-RPC error, got %T: %v", err, err)
		assert.Equal(t, int64(mcp.CodeDenied), werr.Code)
		assert.Contains(t, werr.Message, contains)
	}

	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "run_query", Arguments: map[string]any{"query": "SELECT name FROM users"}})
	require.NoError(t, err)
	assert.Equal(t, "ran SELECT name FROM users; owner [REDACTED]", text(res))

	_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "run_query", Arguments: map[string]any{"query": "DELETE FROM users"}})
	denied(err, "sluice: denied: no rule allows this command")
	_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "delete_user", Arguments: map[string]any{"id": 7}})
	denied(err, "sluice: denied: deleting needs a human")

	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "get_profile", Arguments: map[string]any{"user": "alice"}})
	require.NoError(t, err)
	assert.Equal(t, "Alice <[REDACTED]>, card [REDACTED]", text(res))
	assert.Equal(t, map[string]any{"name": "alice", "email": "[REDACTED]", "card": "[REDACTED]", "ssn": "[REDACTED]"}, res.StructuredContent)

	mu.Lock()
	assert.Equal(t, []string{"run_query SELECT name FROM users", "get_profile alice"}, ran, "denied calls never reach the server")
	mu.Unlock()

	require.NoError(t, cs.Close())
	tr.CloseIdleConnections()
	require.Eventually(t, func() bool { return len(g.Sessions()) == 0 }, 10*time.Second, 10*time.Millisecond)

	// The recording has the MCP commands with their decisions.
	sums, err := recording.List(filepath.Join(dir, "rec"))
	require.NoError(t, err)
	var texts []string
	for _, s := range sums {
		f, err := recording.FindFile(filepath.Join(dir, "rec"), s.ID)
		require.NoError(t, err)
		fh, err := os.Open(f)
		require.NoError(t, err)
		rd := recording.NewReader(fh)
		for {
			e, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			// (The recording keeps command.mcp only once recording's fast
			// encoder knows that part; the text names method, tool and
			// arguments either way.)
			if e.Type == recording.TypeCommand && e.Command.Kind == protocol.KindRequest {
				texts = append(texts, string(e.Decision.Action)+": "+e.Command.Text)
			}
		}
		fh.Close()
	}
	assert.Contains(t, texts, `deny: tools/call delete_user {"id":7}`)
	assert.Contains(t, texts, `allow: tools/call run_query {"query":"SELECT name FROM users"}`)
	assert.Contains(t, texts, "allow: initialize")
}
