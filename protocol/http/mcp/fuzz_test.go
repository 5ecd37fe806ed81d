package mcp_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/protocol/http/mcp"
)

// FuzzParseRequest: ParseRequest never panics; what it accepts is JSON
// whose every request names its method, and whose tools/call names a tool.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"run_query","arguments":{"query":"SELECT 1"}}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`,
		`{"jsonrpc":"2.0","id":"a","result":{}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","Name":"y"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := mcp.ParseRequest(body)
		if err != nil {
			require.True(t, errors.Is(err, mcp.ErrMalformed))
			return
		}
		require.True(t, json.Valid(body))
		require.NotEmpty(t, r.Messages)
		for _, m := range r.Messages {
			c := m.Command()
			if m.IsResponse {
				require.Equal(t, mcp.ResponseMethod, c.MCP.Method)
				continue
			}
			require.False(t, strings.HasPrefix(c.MCP.Method, "rpc."))
			require.NotNil(t, c)
			require.NotEmpty(t, c.MCP.Method)
			if c.MCP.Method == "tools/call" {
				require.NotEmpty(t, c.MCP.Tool)
			}
		}
	})
}

// FuzzResponseFilter: the filter never panics, and its output does not
// depend on how the stream is cut into writes.
func FuzzResponseFilter(f *testing.F) {
	f.Add("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"a@example.com\"}]}}\r\n\r\n", 3, true)
	f.Add("id: 1\rdata:\r\r: c\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"x\"},{\"name\":\"y\"}]}}\n\n", 7, true)
	f.Add(`{"jsonrpc":"2.0","id":2,"result":{"structuredContent":{"card":"4111 1111 1111 1111"}}}`, 5, false)
	m := masker(f, "email", "credit_card", "json:$.ssn")
	f.Fuzz(func(t *testing.T, body string, n int, sse bool) {
		ct := "application/json"
		if sse {
			ct = "text/event-stream"
		}
		opts := mcp.ResponseOptions{Masker: m, ToolAllowed: func(s string) bool { return s == "x" }, MaxMessage: 4096}
		whole := run(t, ct, body, 0, opts)
		if n < 1 {
			n = 1
		}
		require.Equal(t, whole, run(t, ct, body, n%64+1, opts))
	})
}

func run(t *testing.T, ct, body string, n int, opts mcp.ResponseOptions) string {
	var out bytes.Buffer
	f := mcp.NewResponseFilter(&out, ct, opts)
	b := []byte(body)
	if n == 0 {
		n = max(len(b), 1)
	}
	for len(b) > 0 {
		k := min(n, len(b))
		_, err := f.Write(b[:k])
		require.NoError(t, err)
		b = b[k:]
	}
	require.NoError(t, f.Close())
	return out.String()
}
