package mcp_test

import (
	"fmt"
	"os"

	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/protocol/http/mcp"
)

// The plugin's side of a POST: parse, check each command, answer a denial
// with JSON-RPC errors.
func Example() {
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"delete_user","arguments":{"id":42}}}`)
	req, err := mcp.ParseRequest(body)
	if err != nil {
		status, answer := mcp.MalformedResponse(err)
		fmt.Println(status, string(answer))
		return
	}
	decisions := make([]*protocol.Decision, len(req.Messages))
	for i := range req.Messages {
		cmd := req.Messages[i].Command() // nil for a response
		if cmd == nil {
			continue
		}
		fmt.Println("check:", cmd.Text)
		// The plugin calls Session.Check(ctx, cmd) here.
		decisions[i] = &protocol.Decision{Action: protocol.Deny, Rules: []string{"deletes"}, Message: "deleting needs a human"}
	}
	status, answer := req.DenyResponse(decisions)
	fmt.Println(status, string(answer))
	// Output:
	// check: tools/call delete_user {"id":42}
	// 200 {"jsonrpc":"2.0","id":7,"error":{"code":-32050,"message":"sluice: denied: deleting needs a human","data":{"action":"deny","rules":["deletes"]}}}
}

// The server's answer on its way back: tools the caller may not call are
// dropped from tools/list, results are masked.
func ExampleNewResponseFilter() {
	req, _ := mcp.ParseRequest([]byte(`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`))
	m, _ := masking.Compile([]string{"email"}, masking.Options{})
	f := mcp.NewResponseFilter(os.Stdout, "text/event-stream", mcp.ResponseOptions{
		Request:     req,
		Masker:      m,
		ToolAllowed: func(name string) bool { return name != "delete_user" }, // policy's MayAllow(ToolCommand(name))
	})
	fmt.Fprint(f, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"run_query\"},{\"name\":\"delete_user\"}]}}\n\n")
	fmt.Fprint(f, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"bob@example.com logged in\"}}\n\n")
	_ = f.Close()
	fmt.Println(f.HiddenTools(), f.Counts())
	// Output:
	// event: message
	// data: {"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"run_query"}]}}
	//
	// data: {"jsonrpc":"2.0","method":"notifications/message","params":{"data":"[REDACTED] logged in"}}
	//
	// 1 map[email:1]
}
