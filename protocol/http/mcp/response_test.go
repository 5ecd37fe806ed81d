package mcp_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/protocol/http/mcp"
)

func masker(t testing.TB, entries ...string) *masking.Masker {
	t.Helper()
	m, err := masking.Compile(entries, masking.Options{})
	require.NoError(t, err)
	return m
}

func allowTools(names ...string) func(string) bool {
	return func(n string) bool { return slices.Contains(names, n) }
}

// filter runs body through a ResponseFilter, written in chunks of size n
// (0: in one write).
func filter(t testing.TB, contentType, body string, n int, opts mcp.ResponseOptions) (string, *mcp.ResponseFilter) {
	t.Helper()
	var out bytes.Buffer
	f := mcp.NewResponseFilter(&out, contentType, opts)
	b := []byte(body)
	if n == 0 {
		n = max(len(b), 1)
	}
	for len(b) > 0 {
		k := min(n, len(b))
		w, err := f.Write(b[:k])
		require.NoError(t, err)
		require.Equal(t, k, w)
		b = b[k:]
	}
	require.NoError(t, f.Close())
	return out.String(), f
}

// sseMessages returns the data of each SSE event of a stream.
func sseMessages(t testing.TB, stream string) []string {
	t.Helper()
	var (
		out  []string
		data []string
	)
	sc := bufio.NewScanner(strings.NewReader(stream))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if data != nil {
				out = append(out, strings.Join(data, "\n"))
			}
			data = nil
			continue
		}
		if v, ok := strings.CutPrefix(line, "data:"); ok {
			data = append(data, strings.TrimPrefix(v, " "))
		}
	}
	return out
}

// TestRecordedTraffic replays what the Go SDK's server sent in
// TestSDKThroughTheProxy (testdata/sdk-*.jsonl, refreshed with -record)
// through the filter, whole and in every chunk size up to 64 bytes, as a
// POST's answer and as if replayed on a GET stream.
func TestRecordedTraffic(t *testing.T) {
	files, err := filepath.Glob("testdata/sdk-*.jsonl")
	require.NoError(t, err)
	require.Len(t, files, 4)
	m := masker(t, "email", "credit_card", "json:$.ssn")
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			require.NoError(t, err)
			sawList, sawProfile := false, false
			for line := range bytes.Lines(data) {
				var x struct {
					Method      string `json:"method"`
					Request     string `json:"request"`
					ContentType string `json:"content_type"`
					Response    string `json:"response"`
				}
				require.NoError(t, json.Unmarshal(line, &x))
				if x.Response == "" {
					continue
				}
				var req *mcp.Request
				if x.Request != "" {
					req, err = mcp.ParseRequest([]byte(x.Request))
					require.NoError(t, err)
				}
				for _, r := range []*mcp.Request{req, nil} {
					opts := mcp.ResponseOptions{Request: r, Masker: m, ToolAllowed: allowTools("run_query", "get_profile")}
					want, f := filter(t, x.ContentType, x.Response, 0, opts)
					assert.Zero(t, f.Withheld())
					for n := 1; n <= 64; n++ {
						got, _ := filter(t, x.ContentType, x.Response, n, opts)
						require.Equal(t, want, got, "written in chunks of %d", n)
					}
					for _, secret := range []string{aliceEmail, aliceCard, aliceSSN, "delete_user", "admin_reset"} {
						assert.NotContains(t, want, secret)
					}
					var msgs []string
					switch {
					case strings.HasPrefix(x.ContentType, "text/event-stream"):
						msgs = sseMessages(t, want)
					case strings.HasPrefix(x.ContentType, "application/json"):
						msgs = []string{want}
					}
					for _, msg := range msgs {
						assert.True(t, json.Valid([]byte(msg)), "%s", msg)
						if strings.Contains(msg, `"tools":[`) {
							sawList = true
							assert.Contains(t, msg, `"name":"run_query"`)
							assert.Contains(t, msg, `"name":"get_profile"`)
							assert.Equal(t, 2, f.HiddenTools())
						}
						if strings.Contains(msg, "structuredContent") {
							sawProfile = true
							assert.Contains(t, msg, `"text":"Alice <[REDACTED]>, card [REDACTED]"`)
							assert.Contains(t, msg, `"structuredContent":{"card":"[REDACTED]","email":"[REDACTED]","name":"alice","ssn":"[REDACTED]"}`)
							assert.Equal(t, map[string]int{"email": 2, "credit_card": 2, "json:$.ssn": 1}, f.Counts())
						}
					}
				}
			}
			assert.True(t, sawList && sawProfile, "the recording has a tools/list and a get_profile")
		})
	}
}

func TestSSEFraming(t *testing.T) {
	m := masker(t, "email")
	stream := ": keep-alive\r\n\r\n" +
		"id: 0_0\r\ndata:\r\n\r\n" + // a priming event: an id and empty data
		"retry: 1000\n\n" +
		"event: message\rid: 0_1\rdata: {\"jsonrpc\":\"2.0\",\"id\":1,\r" +
		"data: \"result\":{\"content\":[{\"type\":\"text\",\"text\":\"mail bob@example.com\"}]}}\r\r" +
		"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"no secrets\"}}\n\n" +
		"data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[]}}\n" // cut off: no blank line
	want := ": keep-alive\n\n" +
		"id: 0_0\ndata:\n\n" +
		"retry: 1000\n\n" +
		"event: message\nid: 0_1\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"mail [REDACTED]\"}]}}\n\n" +
		"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"no secrets\"}}\n\n"
	for n := 0; n <= len(stream); n++ {
		got, f := filter(t, "text/event-stream", stream, n, mcp.ResponseOptions{Masker: m})
		require.Equal(t, want, got, "chunks of %d", n)
		assert.Equal(t, map[string]int{"email": 1}, f.Counts())
	}
}

func TestSSEFieldsAsClientsReadThem(t *testing.T) {
	// "data" alone is a data field with an empty value; "data:x" has no
	// space; "Data:" is another field, which clients ignore.
	m := masker(t, "email")
	stream := "Data: a@example.com\ndata\ndata:{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"x\":\"b@example.com\"}}\n\n"
	got, _ := filter(t, "text/event-stream", stream, 0, mcp.ResponseOptions{Masker: m})
	// The data is "\n{...}": JSON with leading white space; masked, it
	// is written again without it.
	assert.Equal(t, "Data: a@example.com\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"x\":\"[REDACTED]\"}}\n\n", got)
}

func TestWithheld(t *testing.T) {
	m := masker(t, "email")
	big := `{"jsonrpc":"2.0","id":"call-9","result":{"content":[{"type":"text","text":"` + strings.Repeat("a@example.com ", 100) + `"}]}}`
	opts := mcp.ResponseOptions{Masker: m, MaxMessage: 200}
	wantErr := `{"jsonrpc":"2.0","id":"call-9","error":{"code":-32051,"message":"sluice: the gateway withheld the server's response: the server's message is larger than 200 bytes, more than the gateway inspects","data":{"action":"withheld","reason":"the server's message is larger than 200 bytes, more than the gateway inspects"}}}`

	got, f := filter(t, "application/json", big, 7, opts)
	assert.Equal(t, wantErr, got)
	assert.Equal(t, 1, f.Withheld())

	stream := "event: message\nid: 5\ndata: " + big + "\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":10,\"result\":{}}\n\n"
	got, f = filter(t, "text/event-stream", stream, 5, opts)
	assert.Equal(t, "data: "+wantErr+"\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":10,\"result\":{}}\n\n", got)
	assert.Equal(t, 1, f.Withheld())
	assert.NotContains(t, got, "a@example.com")

	// What is not JSON-RPC is withheld too, with the id when it can be read.
	for _, tc := range []struct{ body, id string }{
		{`not json`, "null"},
		{`{"jsonrpc":"2.0","id":3,"result":{"text":"a@example.com"}`, "3"},
		{`[1,2]`, "null"},
		{`{"jsonrpc":"2.0","id":4,"result":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`, "4"},
	} {
		got, f := filter(t, "application/json", tc.body, 0, mcp.ResponseOptions{Masker: m})
		var resp struct {
			ID    json.RawMessage `json:"id"`
			Error struct{ Code int }
		}
		if strings.HasPrefix(tc.body, "[") {
			var arr []json.RawMessage
			require.NoError(t, json.Unmarshal([]byte(got), &arr), got)
			require.Len(t, arr, 2)
			require.NoError(t, json.Unmarshal(arr[0], &resp))
		} else {
			require.NoError(t, json.Unmarshal([]byte(got), &resp), got)
		}
		assert.Equal(t, tc.id, string(resp.ID), tc.body)
		assert.Equal(t, mcp.CodeWithheld, resp.Error.Code)
		assert.GreaterOrEqual(t, f.Withheld(), 1)
		assert.NotContains(t, got, "a@example.com")
	}
}

func TestToolsListFiltering(t *testing.T) {
	req, err := mcp.ParseRequest([]byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"custom/thing"}]`))
	require.NoError(t, err)
	list := func(id string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"result":{"tools":[` +
			`{"name":"run_query","inputSchema":{"type":"object"}},` +
			`{"name":"delete_user"},` +
			`{"description":"no name"},` +
			`{"name":"run_query","Name":"delete_user"},` +
			`{"name":7},` +
			`"not an object"` +
			`],"nextCursor":"c2"}}`
	}
	kept := `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"run_query","inputSchema":{"type":"object"}}],"nextCursor":"c2"}}`
	opts := mcp.ResponseOptions{Request: req, ToolAllowed: allowTools("run_query")}

	got, f := filter(t, "application/json", list("1"), 0, opts)
	assert.Equal(t, strings.Replace(kept, "%s", "1", 1), got)
	assert.Equal(t, 5, f.HiddenTools())
	// The answer to another known call is left alone, whatever its shape.
	got, _ = filter(t, "application/json", list("2"), 0, opts)
	assert.Equal(t, list("2"), got)
	// An id the request did not send (a replay on a GET stream): by shape.
	got, _ = filter(t, "application/json", list("1.0e0"), 0, mcp.ResponseOptions{ToolAllowed: allowTools("run_query")})
	assert.Equal(t, strings.Replace(kept, "%s", "1.0e0", 1), got)
	got, _ = filter(t, "text/event-stream", "data: "+list(`"zz"`)+"\n\n", 0, opts)
	assert.Equal(t, "data: "+strings.Replace(kept, "%s", `"zz"`, 1)+"\n\n", got)
	// 1.0 is the id 1.
	got, _ = filter(t, "application/json", list("1.0"), 0, opts)
	assert.Equal(t, strings.Replace(kept, "%s", "1.0", 1), got)
}

func TestMaskingToolResults(t *testing.T) {
	m := masker(t, "email", "credit_card", "json:$.card", "json:secret")
	png := base64.StdEncoding.EncodeToString([]byte("\x89PNG a@example.com"))
	csv := base64.StdEncoding.EncodeToString([]byte("name,email\nbob,bob@example.com\n"))
	csvMasked := base64.StdEncoding.EncodeToString([]byte("name,email\nbob,[REDACTED]\n"))
	for _, tc := range []struct{ name, in, want string }{
		{
			"text content and structured content",
			`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"bob@example.com 4111111111111111"}],"structuredContent":{"card":4111111111111111,"nested":{"card":"x"},"note":"c@example.com"},"isError":false}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"[REDACTED] [REDACTED]"}],"structuredContent":{"card":"[REDACTED]","nested":{"card":"x"},"note":"[REDACTED]"},"isError":false}}`,
		},
		{
			"JSON text content is masked as JSON: it stays JSON, $ is the text's root",
			`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"{\"card\":\"4111 1111 1111 1111\",\"n\":4111111111111111,\"mail\":\"bob@example.com\"}"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"{\"card\":\"[REDACTED]\",\"n\":\"[REDACTED]\",\"mail\":\"[REDACTED]\"}"}]}}`,
		},
		{
			"images pass, textual blobs are masked, binary blobs pass",
			`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"image","data":"` + png + `","mimeType":"image/png"},` +
				`{"type":"resource","resource":{"uri":"file:///u.csv","mimeType":"text/csv","blob":"` + csv + `"}},` +
				`{"type":"resource","resource":{"uri":"file:///p.png","mimeType":"image/png","blob":"` + png + `"}},` +
				`{"type":"resource","resource":{"uri":"file:///n.txt","mimeType":"text/plain","text":"bob@example.com"}},` +
				`{"type":"resource_link","uri":"mailto:bob@example.com","name":"bob"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"image","data":"` + png + `","mimeType":"image/png"},` +
				`{"type":"resource","resource":{"uri":"file:///u.csv","mimeType":"text/csv","blob":"` + csvMasked + `"}},` +
				`{"type":"resource","resource":{"uri":"file:///p.png","mimeType":"image/png","blob":"` + png + `"}},` +
				`{"type":"resource","resource":{"uri":"file:///n.txt","mimeType":"text/plain","text":"[REDACTED]"}},` +
				`{"type":"resource_link","uri":"mailto:[REDACTED]","name":"bob"}]}}`,
		},
		{
			"resources/read",
			`{"jsonrpc":"2.0","id":1,"result":{"contents":[{"uri":"file:///a","text":"bob@example.com"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"contents":[{"uri":"file:///a","text":"[REDACTED]"}]}}`,
		},
		{
			"prompts/get",
			`{"jsonrpc":"2.0","id":1,"result":{"description":"d","messages":[{"role":"user","content":{"type":"text","text":"bob@example.com"}}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"description":"d","messages":[{"role":"user","content":{"type":"text","text":"[REDACTED]"}}]}}`,
		},
		{
			"errors",
			`{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"duplicate key (email)=(bob@example.com)","data":{"secret":"s3cr3t"}}}`,
			`{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"duplicate key (email)=([REDACTED])","data":{"secret":"[REDACTED]"}}}`,
		},
		{
			"the server's notifications and requests",
			`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{"user":"bob@example.com"}}}`,
			`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{"user":"[REDACTED]"}}}`,
		},
		{
			"members in another case are masked as JSON",
			`{"jsonrpc":"2.0","id":1,"result":{"Content":[{"type":"text","Text":"bob@example.com"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"Content":[{"type":"text","Text":"[REDACTED]"}]}}`,
		},
		{
			"nothing to mask: byte for byte",
			`{ "jsonrpc" : "2.0", "id" : 1, "result" : {"content": [ {"type":"text","text":"hello \u00e9"} ] } }`,
			`{ "jsonrpc" : "2.0", "id" : 1, "result" : {"content": [ {"type":"text","text":"hello \u00e9"} ] } }`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, f := filter(t, "application/json; charset=utf-8", tc.in, 0, mcp.ResponseOptions{Masker: m})
			assert.Equal(t, tc.want, got)
			assert.Zero(t, f.Withheld())
			assert.True(t, json.Valid([]byte(got)))
		})
	}
}

func TestOtherBodies(t *testing.T) {
	m := masker(t, "email")
	// Not JSON-RPC (a server's 400 in text/plain): masked as text.
	got, f := filter(t, "text/plain", "bad request from bob@example.com\n", 3, mcp.ResponseOptions{Masker: m})
	assert.Equal(t, "bad request from [REDACTED]\n", got)
	assert.Equal(t, map[string]int{"email": 1}, f.Counts())
	// Nothing to do: bytes pass, even invalid ones.
	body := "data: not json\n\ndata: {\"a\":\"bob@example.com\"}\n"
	got, _ = filter(t, "text/event-stream", body, 1, mcp.ResponseOptions{})
	assert.Equal(t, body, got)
	// An empty JSON body (202 with a content type) stays empty.
	got, _ = filter(t, "application/json", "", 0, mcp.ResponseOptions{Masker: m})
	assert.Empty(t, got)
}

func TestWriteAfterClose(t *testing.T) {
	f := mcp.NewResponseFilter(&bytes.Buffer{}, "application/json", mcp.ResponseOptions{Masker: masker(t, "email")})
	require.NoError(t, f.Close())
	_, err := f.Write([]byte("{}"))
	assert.ErrorIs(t, err, masking.ErrClosed)
}
