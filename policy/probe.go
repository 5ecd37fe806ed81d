package policy

import (
	"context"
	"fmt"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"

	"github.com/sluicegw/sluice/protocol"
)

// Prober is implemented by a Decider that can tell, without deciding (no
// approval, no record), whether a command could be allowed whatever its
// payload. The gateway uses it to filter an MCP server's tools/list down to
// the tools the caller may call. Engine and Live implement it.
type Prober interface {
	MayAllow(ctx context.Context, in *Input) (bool, error)
}

var (
	_ Prober = (*Engine)(nil)
	_ Prober = (*Live)(nil)
)

// payloadAttributes are the parts of a command that carry its payload
// rather than its shape: what MayAllow treats as unknown.
var payloadAttributes = []*cel.AttributePatternType{
	cel.AttributePattern("command").QualString("text"),
	cel.AttributePattern("command").QualString("mcp").QualString("arguments"),
	cel.AttributePattern("command").QualString("http").QualString("body"),
}

// MayAllow reports whether some payload could make the command allowed or
// sent for approval, the rest of the input being as given. The payload —
// command.text, command.mcp.arguments and command.http.body — is unknown:
// each rule is evaluated with CEL's partial evaluation, and a rule whose
// value depends on the payload is "maybe". The answer is false when a deny
// rule matches whatever the payload (or fails, as in Decide), or when no
// allow or approval rule can match and the default is deny; otherwise true.
//
// So for an MCP tools/call command without arguments, MayAllow answers
// "may this caller call this tool at all?": a rule
// `command.mcp.tool == "run_query" && !sql(command.mcp.arguments.query).writes`
// lets run_query be listed, a deny rule on `glob("delete_*",
// command.mcp.tool)` hides delete_user, and a deny rule on the arguments
// alone hides nothing. MayAllow never errs towards hiding a callable
// command; a listed one can still be denied when called.
func (e *Engine) MayAllow(ctx context.Context, in *Input) (bool, error) {
	if in == nil || in.Command == nil {
		return false, ErrNoCommand
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("policy: %w", err)
	}
	skip := e.skipFor(shapeOf(in.Command))
	a := newActivation(in)
	defer a.release()
	vars, err := cel.PartialVars(a, payloadAttributes...)
	if err != nil {
		return false, fmt.Errorf("policy: %w", err)
	}
	maybe := false
	for i, r := range e.rules {
		if skip != nil && skip[i] {
			continue
		}
		out, _, err := r.partial.Eval(vars)
		switch {
		case err != nil || types.IsError(out):
			return false, nil // a failing rule denies, as in Decide
		case types.IsUnknown(out):
			if r.action != protocol.Deny {
				maybe = true
			}
		case out == types.True:
			if r.action == protocol.Deny {
				return false, nil
			}
			maybe = true
		case out != types.False:
			return false, nil // not a bool: denies, as in Decide
		}
	}
	return maybe || e.def == protocol.Allow, nil
}

// MayAllow implements Prober with the current engine.
func (l *Live) MayAllow(ctx context.Context, in *Input) (bool, error) {
	return l.cur.Load().MayAllow(ctx, in)
}
