package mcp_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/protocol"
	sluicehttp "github.com/sluicegw/sluice/protocol/http"
	"github.com/sluicegw/sluice/protocol/http/mcp"
)

// probingSession is a protocol.Session with the Prober capability; the
// extension calls nothing else of it.
type probingSession struct {
	protocol.Session
	allowed map[string]bool
	asked   []*protocol.Command
}

func (s *probingSession) MayAllow(_ context.Context, cmd *protocol.Command) (bool, error) {
	s.asked = append(s.asked, cmd)
	return s.allowed[cmd.MCP.Tool], nil
}

func TestExtension(t *testing.T) {
	ext := &mcp.Extension{}
	httpCmd := func(attrs map[string]string) *protocol.Command {
		return &protocol.Command{Protocol: "http", Kind: protocol.KindRequest, Text: "POST /mcp", Attrs: attrs,
			HTTP: &protocol.HTTP{Method: "POST", Path: "/mcp"}}
	}
	post := func(body string) *http.Request {
		return httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
	}
	sess := &probingSession{allowed: map[string]bool{"run_query": true}}

	t.Run("a call", func(t *testing.T) {
		body := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"delete_user","arguments":{"id":7}}}`
		x, err := ext.Inspect(post(body), httpCmd(nil), []byte(body), sess)
		require.NoError(t, err)
		require.Len(t, x.Commands, 1)
		assert.Equal(t, "http", x.Commands[0].Protocol)
		assert.Equal(t, `tools/call delete_user {"id":7}`, x.Commands[0].Text)
		assert.Nil(t, x.Refuse)

		rec := httptest.NewRecorder()
		x.Deny(rec, 0, protocol.Decision{Action: protocol.Deny, Message: "no", Rules: []string{"r"}})
		assert.Equal(t, http.StatusOK, rec.Code)
		assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		assert.JSONEq(t, `{"jsonrpc":"2.0","id":5,"error":{"code":-32050,"message":"sluice: denied: no","data":{"action":"deny","rules":["r"]}}}`, rec.Body.String())
	})

	t.Run("tools/list through the response hook", func(t *testing.T) {
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
		x, err := ext.Inspect(post(body), httpCmd(nil), []byte(body), sess)
		require.NoError(t, err)
		var out bytes.Buffer
		w, err := x.Response(&out, http.Header{"Content-Type": {"text/event-stream"}}, masker(t, "email"))
		require.NoError(t, err)
		_, err = io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"run_query\",\"description\":\"owner a@example.com\"},{\"name\":\"delete_user\"}]}}\n\n")
		require.NoError(t, err)
		require.NoError(t, w.Close())
		assert.Equal(t, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"run_query\",\"description\":\"owner [REDACTED]\"}]}}\n\n", out.String())
		require.Len(t, sess.asked, 2)
		assert.Equal(t, &protocol.MCP{Method: "tools/call", Tool: "delete_user"}, sess.asked[1].MCP)
		assert.Equal(t, "http", sess.asked[1].Protocol)

		// A session that cannot probe policy lists nothing.
		var plain struct{ protocol.Session }
		x, err = ext.Inspect(post(body), httpCmd(nil), []byte(body), plain)
		require.NoError(t, err)
		out.Reset()
		w, err = x.Response(&out, http.Header{"Content-Type": {"application/json"}}, nil)
		require.NoError(t, err)
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"run_query"}]}}`)
		require.NoError(t, w.Close())
		assert.Equal(t, `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`, out.String())
	})

	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			body  []byte
			attrs map[string]string
			want  string
		}{
			{[]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}`), nil, "duplicate key"},
			{nil, map[string]string{"body_error": "larger than max_body (1048576 bytes)"}, "the body could not be read: larger than max_body"},
			{nil, nil, "needs a JSON-RPC body"},
		} {
			x, err := ext.Inspect(post(string(tc.body)), httpCmd(tc.attrs), tc.body, sess)
			require.NoError(t, err)
			require.NotNil(t, x.Refuse)
			assert.Empty(t, x.Commands)
			rec := httptest.NewRecorder()
			x.Refuse(rec)
			assert.Equal(t, http.StatusBadRequest, rec.Code)
			assert.Contains(t, rec.Body.String(), tc.want)
			assert.Contains(t, rec.Body.String(), `"id":null`)
		}
	})

	t.Run("GET and DELETE", func(t *testing.T) {
		x, err := ext.Inspect(httptest.NewRequest(http.MethodGet, "/mcp", nil), httpCmd(nil), nil, sess)
		require.NoError(t, err)
		assert.Empty(t, x.Commands, "the GET is checked as its HTTP command")
		require.NotNil(t, x.Response, "its stream is filtered")
		x, err = ext.Inspect(httptest.NewRequest(http.MethodDelete, "/mcp", nil), httpCmd(nil), nil, sess)
		require.NoError(t, err)
		assert.Nil(t, x)
	})
}

func TestExtensionOptions(t *testing.T) {
	// The plugin knows the extension by its name once this package is
	// imported: an http target with mcp: "true" is valid, and its own
	// option is read.
	_, err := sluicehttp.New(&protocol.Target{Name: "t", Protocol: "http", Address: "h:1",
		Options: map[string]string{"mcp": "true", mcp.OptMaxMessage: "1024"}})
	require.NoError(t, err)
	_, err = sluicehttp.New(&protocol.Target{Name: "t", Protocol: "http", Address: "h:1",
		Options: map[string]string{"mcp": "true", mcp.OptMaxMessage: "lots"}})
	require.ErrorContains(t, err, `mcp_max_message: "lots": want a positive number of bytes`)
}
