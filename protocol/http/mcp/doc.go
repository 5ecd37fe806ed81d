// Package mcp inspects Model Context Protocol traffic for the HTTP plugin:
// the JSON-RPC 2.0 messages of MCP's Streamable HTTP transport
// (https://modelcontextprotocol.io/specification/2025-06-18/basic/transports#streamable-http),
// as a client POSTs them and as a server answers, in a JSON body or an
// SSE stream. It does no I/O of its own and never imports the gateway or
// policy: the plugin calls it around its proxying.
//
// Its central types are Request, a parsed POST body whose messages become
// protocol.Commands with a command.mcp part (ParseRequest, Message.Command),
// and ResponseFilter, which streams the server's answer back through the
// caller's masker and drops the tools the caller may not call from
// tools/list results (NewResponseFilter).
//
// # With the HTTP plugin
//
// Importing the package registers Extension with the HTTP plugin
// (protocol/http) under the name "mcp": an http target with the option
// mcp: "true" then speaks MCP. For each POST the extension does what the
// functions below allow any proxy to do:
//
//  1. ParseRequest reads the body; an error means the body is not JSON-RPC
//     the gateway can read, and it is answered with MalformedResponse
//     instead of being forwarded (fail closed);
//  2. every message becomes a command (Message.Command, with the target's
//     protocol), which the plugin checks with Session.Check;
//  3. if one is denied nothing is forwarded and Request.DenyResponse
//     answers — a JSON-RPC error per request, HTTP 200, so that an MCP
//     client sees an error for its call and the session stays usable; a
//     batch is all or nothing;
//  4. otherwise the body goes to the server unchanged and its answer
//     comes back through NewResponseFilter, with the masker of the
//     decisions and a ToolAllowed callback that asks policy whether the
//     caller may call a tool at all: the session's Prober capability
//     (MayAllow) on ToolCommand(name). A session without it gets empty
//     tool lists (fail closed).
//
// A GET (the server's stream of notifications and requests, and resumed
// streams, which may replay responses) is checked as its HTTP command and
// goes through NewResponseFilter too, with a nil Request: results in it
// are masked, and tools/list results are recognised by shape and
// filtered.
//
// # Commands
//
// Every message is a command of kind request with command.mcp set: method
// (tools/call, tools/list, resources/read, prompts/get, initialize,
// notifications/initialized, ping, ..., and ResponseMethod for the
// client's responses to the server's requests), tool and arguments for
// tools/call, uri for resources/read, prompt and arguments for
// prompts/get. A policy for an MCP target therefore also allows the
// protocol's housekeeping (initialize, notifications/initialized, ping,
// tools/list) explicitly; see examples/policies/mcp.yaml.
//
// # Fail closed
//
// ParseRequest refuses what two JSON readers could read differently: bodies
// that are not UTF-8, objects with two keys equal without regard to case
// (a server decoding with Go's encoding/json would read "QUERY" as query),
// JSON-RPC and MCP member names in another case ("Name"), non-object
// params, ids that are not strings or integers, and anything that is not a
// request, notification or response. The response side withholds (replaces
// with a JSON-RPC error, CodeWithheld) any message it cannot read or mask,
// and any message larger than ResponseOptions.MaxMessage.
package mcp
