package protocol

import (
	"time"

	"github.com/sluicegw/sluice/identity"
)

// Kind is what sort of operation a Command is.
type Kind string

// Command kinds.
const (
	KindConnect Kind = "connect" // a session opening, before the backend is dialled
	KindQuery   Kind = "query"   // SQL text (simple query, or a prepared statement's Parse)
	KindExec    Kind = "exec"    // a remote command (SSH exec, kubectl exec)
	KindShell   Kind = "shell"   // an interactive shell
	KindRequest Kind = "request" // an HTTP or API request
	KindOther   Kind = "other"   // anything a plugin cannot classify further
)

// Command is one operation the caller asks for. The protocol-neutral fields
// are always set; at most one of the protocol parts is non-nil.
type Command struct {
	Protocol string `json:"protocol"`
	Kind     Kind   `json:"kind"`
	// Text is what a person would read: the SQL, the shell command,
	// "GET /api/v1/pods".
	Text string `json:"text,omitempty"`

	SQL  *SQL  `json:"sql,omitempty"`
	HTTP *HTTP `json:"http,omitempty"`
	MCP  *MCP  `json:"mcp,omitempty"`
	K8s  *K8s  `json:"k8s,omitempty"`
	SSH  *SSH  `json:"ssh,omitempty"`

	// Attrs carries protocol details that are worth recording but have no
	// typed field (for PostgreSQL: "extended" for a Parse, the statement
	// name).
	Attrs map[string]string `json:"attrs,omitempty"`
}

// SQL is the parsed form of SQL text.
type SQL struct {
	Statements []Statement `json:"statements"`
	// Writes is true when any statement may change data.
	Writes bool `json:"writes"`
	// DDL is true when any statement changes schema or definitions.
	DDL bool `json:"ddl"`
	// ParseError is set when the text could not be parsed; policies must
	// treat such a command as unknown.
	ParseError string `json:"parse_error,omitempty"`
}

// Statement is one SQL statement.
type Statement struct {
	// Kind is the statement's type in upper case: SELECT, INSERT, UPDATE,
	// DELETE, DROP, TRUNCATE, ALTER, GRANT, COPY, CALL, DO, ...
	Kind      string   `json:"kind"`
	Tables    []string `json:"tables,omitempty"`
	HasWhere  bool     `json:"has_where"`
	Functions []string `json:"functions,omitempty"`
}

// HTTP describes an HTTP request.
type HTTP struct {
	Method  string            `json:"method"`
	Host    string            `json:"host"`
	Path    string            `json:"path"`
	Query   map[string]string `json:"query,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	// ContentType is the request's media type, without parameters.
	ContentType string `json:"content_type,omitempty"`
	// Body is a JSON request body, parsed (objects as map[string]any,
	// arrays as []any), when it is JSON and within the plugin's size
	// limit; nil otherwise.
	Body any `json:"body,omitempty"`
}

// MCP describes one Model Context Protocol JSON-RPC message sent to an MCP
// server (method "tools/call", "resources/read", "prompts/get", ...).
type MCP struct {
	Method string `json:"method"`
	// Tool is the tool a tools/call names.
	Tool string `json:"tool,omitempty"`
	// Arguments are a tools/call's or prompts/get's arguments.
	Arguments map[string]any `json:"arguments,omitempty"`
	// URI is the resource a resources/read names.
	URI string `json:"uri,omitempty"`
	// Prompt is the prompt a prompts/get names.
	Prompt string `json:"prompt,omitempty"`
}

// K8s describes a Kubernetes API request.
type K8s struct {
	Verb        string `json:"verb"`
	APIGroup    string `json:"api_group,omitempty"`
	Resource    string `json:"resource,omitempty"`
	Subresource string `json:"subresource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
}

// SSH describes an SSH channel request.
type SSH struct {
	ChannelType string `json:"channel_type"`
	Command     string `json:"command,omitempty"`
	Subsystem   string `json:"subsystem,omitempty"`
}

// Action is what policy decided.
type Action string

// Decision actions.
const (
	Allow           Action = "allow"
	Deny            Action = "deny"
	RequireApproval Action = "require_approval"
)

// Decision is the outcome of policy for one command.
type Decision struct {
	Action Action `json:"action"`
	// Rules names every rule that matched.
	Rules []string `json:"rules,omitempty"`
	// Message explains a deny or an approval requirement to the caller.
	Message   string   `json:"message,omitempty"`
	Approvers []string `json:"approvers,omitempty"`
	// Quorum is how many distinct approvers must approve; 0 means one.
	Quorum  int           `json:"quorum,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
	// GrantWindow, when positive, lets an approval of this command also
	// cover the same normalized command from the same identity on the same
	// target for that long. Zero means the approval covers this command
	// only.
	GrantWindow time.Duration `json:"grant_window,omitempty"`
	// Mask lists the masking to apply to the command's result.
	Mask []string `json:"mask,omitempty"`
	// PerExecution, on an allowed Parse-like command (Attrs "extended" =
	// "parse"), means the statement may be prepared but each execution
	// must be checked again, with its bound values, before it runs: the
	// gateway sets it instead of holding a prepare for approval, so that
	// approvers see and approve every execution with its parameters.
	PerExecution bool `json:"per_execution,omitempty"`
	// Seq is set by the gateway's Session.Check: the sequence number of the
	// recorded command event, to be echoed in Event.CommandSeq.
	Seq uint64 `json:"-"`
	// ApprovalID is set by Session.Check under WithAsyncApproval when
	// Action is RequireApproval: the pending approval request the client
	// must come back with (see WithApprovalIDs). The recording names it in
	// the command's approval entry.
	ApprovalID string `json:"-"`
}

// Allowed reports whether the command may go to the backend.
func (d Decision) Allowed() bool { return d.Action == Allow }

// Target is a named backend resource.
type Target struct {
	Name     string            `json:"name"`
	Protocol string            `json:"protocol"`
	Address  string            `json:"address"`
	Labels   map[string]string `json:"labels,omitempty"`
	// Options holds protocol options (for PostgreSQL: database, sslmode).
	Options map[string]string `json:"options,omitempty"`
}

// SessionInfo describes one client connection through the gateway.
type SessionInfo struct {
	ID         string             `json:"id"`
	Identity   *identity.Identity `json:"identity,omitempty"`
	Target     *Target            `json:"target"`
	ClientAddr string             `json:"client_addr"`
	Start      time.Time          `json:"start"`
}
