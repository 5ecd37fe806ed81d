package mcp_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/protocol/http/mcp"
)

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []mcp.Message
		batch      bool
	}{
		{
			name: "tools/call",
			body: `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"run_query","arguments":{"query":"SELECT 1","limit":100,"ratio":0.5,"big":1e300,"tags":["a"],"opt":null}}}`,
			want: []mcp.Message{{ID: json.RawMessage("4"), Method: "tools/call",
				Params: json.RawMessage(`{"name":"run_query","arguments":{"query":"SELECT 1","limit":100,"ratio":0.5,"big":1e300,"tags":["a"],"opt":null}}`),
				MCP: &protocol.MCP{Method: "tools/call", Tool: "run_query",
					Arguments: map[string]any{"query": "SELECT 1", "limit": int64(100), "ratio": 0.5, "big": 1e300, "tags": []any{"a"}, "opt": nil}}}},
		},
		{
			name: "tools/call without arguments, string id",
			body: `{"jsonrpc":"2.0","id":"abc","method":"tools/call","params":{"name":"admin_reset","arguments":null}}`,
			want: []mcp.Message{{ID: json.RawMessage(`"abc"`), Method: "tools/call", Params: json.RawMessage(`{"name":"admin_reset","arguments":null}`),
				MCP: &protocol.MCP{Method: "tools/call", Tool: "admin_reset"}}},
		},
		{
			name: "resources/read",
			body: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/motd"}}`,
			want: []mcp.Message{{ID: json.RawMessage("1"), Method: "resources/read", Params: json.RawMessage(`{"uri":"file:///etc/motd"}`),
				MCP: &protocol.MCP{Method: "resources/read", URI: "file:///etc/motd"}}},
		},
		{
			name: "prompts/get",
			body: `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greet","arguments":{"who":"bob"}}}`,
			want: []mcp.Message{{ID: json.RawMessage("1"), Method: "prompts/get", Params: json.RawMessage(`{"name":"greet","arguments":{"who":"bob"}}`),
				MCP: &protocol.MCP{Method: "prompts/get", Prompt: "greet", Arguments: map[string]any{"who": "bob"}}}},
		},
		{
			name: "a notification",
			body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			want: []mcp.Message{{Method: "notifications/initialized", IsNotification: true,
				MCP: &protocol.MCP{Method: "notifications/initialized"}}},
		},
		{
			name: "a response to the server",
			body: `{"jsonrpc":"2.0","id":0,"result":{"roots":[]}}`,
			want: []mcp.Message{{ID: json.RawMessage("0"), IsResponse: true, MCP: &protocol.MCP{Method: mcp.ResponseMethod}}},
		},
		{
			name:  "a batch",
			body:  ` [{"jsonrpc":"2.0","id":1,"method":"tools/list"}, {"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}]`,
			batch: true,
			want: []mcp.Message{
				{ID: json.RawMessage("1"), Method: "tools/list", MCP: &protocol.MCP{Method: "tools/list"}},
				{Method: "notifications/cancelled", Params: json.RawMessage(`{"requestId":1}`), IsNotification: true, MCP: &protocol.MCP{Method: "notifications/cancelled"}},
			},
		},
		{
			name: "escaped names are the same names",
			body: `{"jsonrpc":"2\u002e0","id":1,"method":"tools\/call","params":{"n\u0061me":"run_query"}}`,
			want: []mcp.Message{{ID: json.RawMessage("1"), Method: "tools/call", Params: json.RawMessage(`{"n\u0061me":"run_query"}`),
				MCP: &protocol.MCP{Method: "tools/call", Tool: "run_query"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := mcp.ParseRequest([]byte(tc.body))
			require.NoError(t, err)
			assert.Equal(t, tc.batch, r.Batch)
			assert.Equal(t, tc.want, r.Messages)
		})
	}
}

func TestParseRequestRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		code       int
		msg        string
	}{
		{"not JSON", `{"jsonrpc":"2.0",`, mcp.CodeParseError, "invalid JSON"},
		{"empty", ``, mcp.CodeParseError, "empty"},
		{"two values", `{"jsonrpc":"2.0","method":"ping","id":1} {}`, mcp.CodeParseError, "after top-level value"},
		{"not UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"run\xffquery\"}}", mcp.CodeParseError, "UTF-8"},
		{"a duplicate tool name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_profile","name":"delete_user"}}`, mcp.CodeInvalidRequest, `duplicate key "name"`},
		{"a duplicate method", `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}`, mcp.CodeInvalidRequest, "duplicate key"},
		{"arguments that differ only in case", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"run_query","arguments":{"query":"SELECT 1","QUERY":"DROP TABLE t"}}}`, mcp.CodeInvalidRequest, `duplicate key "QUERY"`},
		{"keys equal under Unicode folding (Kelvin sign)", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"x\",\"arguments\":{\"k\":1,\"\u212a\":2}}}", mcp.CodeInvalidRequest, "duplicate key"},
		{"nested duplicates", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":[{"b":1,"b":2}]}}}`, mcp.CodeInvalidRequest, "duplicate key"},
		{"a tool name in another case", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"delete_user"}}`, mcp.CodeInvalidRequest, `"Name": JSON-RPC and MCP names are case-sensitive`},
		{"a method in another case", `{"jsonrpc":"2.0","id":1,"Method":"tools/call"}`, mcp.CodeInvalidRequest, "case-sensitive"},
		{"no jsonrpc", `{"id":1,"method":"ping"}`, mcp.CodeInvalidRequest, `"jsonrpc" must be "2.0"`},
		{"jsonrpc 1.0", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, mcp.CodeInvalidRequest, `"jsonrpc" must be "2.0"`},
		{"a null id", `{"jsonrpc":"2.0","id":null,"method":"ping"}`, mcp.CodeInvalidRequest, "want a string or an integer"},
		{"a fractional id", `{"jsonrpc":"2.0","id":1.5,"method":"ping"}`, mcp.CodeInvalidRequest, "want a string or an integer"},
		{"an object id", `{"jsonrpc":"2.0","id":{},"method":"ping"}`, mcp.CodeInvalidRequest, "want a string or an integer"},
		{"a numeric method", `{"jsonrpc":"2.0","id":1,"method":7}`, mcp.CodeInvalidRequest, `"method" must be a non-empty string`},
		{"a reserved method", `{"jsonrpc":"2.0","id":1,"method":"rpc.response"}`, mcp.CodeInvalidRequest, `names beginning with rpc. are reserved`},
		{"array params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["run_query"]}`, mcp.CodeInvalidRequest, "params must be an object"},
		{"no tool name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}`, mcp.CodeInvalidRequest, "params.name must be a non-empty string"},
		{"no params for tools/call", `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, mcp.CodeInvalidRequest, "params.name must be a non-empty string"},
		{"a numeric tool name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}`, mcp.CodeInvalidRequest, "params.name"},
		{"array arguments", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":["DROP TABLE t"]}}`, mcp.CodeInvalidRequest, "params.arguments must be an object"},
		{"no uri", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{}}`, mcp.CodeInvalidRequest, "params.uri"},
		{"a huge number", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":1e999}}}`, mcp.CodeInvalidRequest, "out of range"},
		{"a method with a result", `{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`, mcp.CodeInvalidRequest, "no result or error"},
		{"a response without an id", `{"jsonrpc":"2.0","result":{}}`, mcp.CodeInvalidRequest, "needs an id"},
		{"neither", `{"jsonrpc":"2.0","id":1}`, mcp.CodeInvalidRequest, "needs a method"},
		{"not an object", `"ping"`, mcp.CodeInvalidRequest, "must be a JSON object"},
		{"an empty batch", `[]`, mcp.CodeInvalidRequest, "empty batch"},
		{"a bad message in a batch", `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"Name":"x"}}]`, mcp.CodeInvalidRequest, "batch message #2"},
		{"too deep", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `}}}`, mcp.CodeInvalidRequest, "nested deeper than 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mcp.ParseRequest([]byte(tc.body))
			require.Error(t, err)
			assert.True(t, errors.Is(err, mcp.ErrMalformed))
			var re *mcp.RequestError
			require.True(t, errors.As(err, &re))
			assert.Equal(t, tc.code, re.Code)
			assert.Contains(t, err.Error(), tc.msg)

			status, body := mcp.MalformedResponse(err)
			assert.Equal(t, http.StatusBadRequest, status)
			var resp struct {
				JSONRPC string          `json:"jsonrpc"`
				ID      json.RawMessage `json:"id"`
				Error   struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal(body, &resp))
			assert.Equal(t, "2.0", resp.JSONRPC)
			assert.Equal(t, "null", string(resp.ID))
			assert.Equal(t, tc.code, resp.Error.Code)
			assert.True(t, strings.HasPrefix(resp.Error.Message, "sluice: mcp: "), resp.Error.Message)
		})
	}
}

func TestCommand(t *testing.T) {
	r, err := mcp.ParseRequest([]byte(`[
		{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"run_query","arguments":{"query":"SELECT '<b>' & 1","limit":5}}},
		{"jsonrpc":"2.0","id":"x","method":"resources/read","params":{"uri":"file:///etc/motd"}},
		{"jsonrpc":"2.0","id":9,"method":"prompts/get","params":{"name":"greet"}},
		{"jsonrpc":"2.0","method":"notifications/initialized"},
		{"jsonrpc":"2.0","id":3,"result":{}}
	]`))
	require.NoError(t, err)
	idx, cmds := r.Commands()
	assert.Equal(t, []int{0, 1, 2, 3, 4}, idx)
	var texts []string
	for _, c := range cmds {
		assert.Equal(t, "http", c.Protocol)
		assert.Equal(t, protocol.KindRequest, c.Kind)
		require.NotNil(t, c.MCP)
		texts = append(texts, c.Text)
	}
	assert.Equal(t, []string{
		`tools/call run_query {"limit":5,"query":"SELECT '<b>' & 1"}`,
		"resources/read file:///etc/motd",
		"prompts/get greet",
		"notifications/initialized",
		"rpc.response",
	}, texts)
	assert.Equal(t, map[string]string{"jsonrpc_id": "7"}, cmds[0].Attrs)
	assert.Equal(t, map[string]string{"jsonrpc_id": `"x"`}, cmds[1].Attrs)
	assert.Nil(t, cmds[3].Attrs)
	assert.Equal(t, map[string]string{"jsonrpc_id": "3"}, cmds[4].Attrs)

	c := mcp.ToolCommand("delete_user")
	assert.Equal(t, &protocol.MCP{Method: "tools/call", Tool: "delete_user"}, c.MCP)
	assert.Equal(t, "tools/call delete_user", c.Text)
}

func TestDenyResponse(t *testing.T) {
	deny := &protocol.Decision{Action: protocol.Deny, Rules: []string{"profiles", "deletes-need-a-human"}, Message: "deleting needs a human"}
	allow := &protocol.Decision{Action: protocol.Allow, Rules: []string{"mcp-housekeeping"}}

	r, err := mcp.ParseRequest([]byte(`{"jsonrpc":"2.0","id":"q-1","method":"tools/call","params":{"name":"delete_user","arguments":{"id":7}}}`))
	require.NoError(t, err)
	status, body := r.DenyResponse([]*protocol.Decision{deny})
	assert.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":"q-1","error":{"code":-32050,"message":"sluice: denied: deleting needs a human",
		"data":{"action":"deny","rules":["profiles","deletes-need-a-human"]}}}`, string(body))

	r, err = mcp.ParseRequest([]byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},
		{"jsonrpc":"2.0","method":"notifications/progress","params":{}},
		{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_user"}},
		{"jsonrpc":"2.0","id":5,"result":{}}]`))
	require.NoError(t, err)
	status, body = r.DenyResponse([]*protocol.Decision{allow, allow, deny, nil})
	assert.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `[
		{"jsonrpc":"2.0","id":1,"error":{"code":-32050,"message":"sluice: not sent: another message of the batch was denied",
			"data":{"action":"deny","reason":"not sent: another message of the batch was denied"}}},
		{"jsonrpc":"2.0","id":2,"error":{"code":-32050,"message":"sluice: denied: deleting needs a human",
			"data":{"action":"deny","rules":["profiles","deletes-need-a-human"]}}}]`, string(body))

	r, err = mcp.ParseRequest([]byte(`{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`))
	require.NoError(t, err)
	status, body = r.DenyResponse([]*protocol.Decision{{Action: protocol.Deny, Message: "no rule allows this command (default deny)"}})
	assert.Equal(t, http.StatusForbidden, status)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":null,"error":{"code":-32050,
		"message":"sluice: denied: no rule allows this command (default deny)","data":{"action":"deny"}}}`, string(body))
}
