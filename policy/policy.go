// Package policy decides, per command, what may run. Its central type is
// Decider, which turns an Input (who, which target, which session, what
// command, when) into a protocol.Decision. Engine is the Decider built from
// CEL rule files; Live reloads one while the gateway runs.
//
// # Rule files
//
// A policy is one or more YAML files:
//
//	rules:
//	  - name: no-destructive-sql          # required, unique across all files
//	    match: >                          # required: a CEL expression of type bool
//	      command.sql.statements.exists(s, s.kind in ["DROP", "TRUNCATE"] ||
//	        (s.kind in ["DELETE", "UPDATE"] && !s.has_where))
//	    action: deny                      # required: allow | deny | require_approval
//	    message: destructive statements are not allowed
//	  - name: prod-writes-need-a-dba
//	    match: target.labels.env == "prod" && command.sql.writes
//	    action: require_approval
//	    approvers: [group:dba]            # require_approval only
//	    timeout: 10m                      # require_approval only; a Go duration
//	    grant_window: 15m                 # require_approval only; repeats run without asking
//	  - name: agents-read
//	    match: '"agents" in identity.groups'
//	    action: allow
//	    mask: [email, credit_card, column:users.phone]   # allow and require_approval only
//	default: deny                         # allow | deny; deny when absent
//
// Unknown keys are errors. With several files the rules concatenate in the
// order the files are given (a directory's files in name order) and
// default may be given in one file only (or identically in several).
// Approver entries are opaque here, checked only to be non-empty and free
// of spaces; the approval package interprets them. Mask entries are checked
// at load with masking.ParseEntry: a detector name (email, credit_card,
// ssn, phone, iban, ip, aws_key, jwt, private_key, secret),
// column:NAME, column:TABLE.COLUMN or column:SCHEMA.TABLE.COLUMN (globs
// allowed, column:*password*), or json:PATH, each optionally followed by
// =STRATEGY or :STRATEGY (redact, partial[:N], hash, null).
//
// # Variables
//
// Every match expression is type-checked at load against these variables;
// an unknown field (command.sql.wrtes) or a non-bool result refuses the
// load with the file, rule and line:column. Field names are the json names
// of the protocol and identity types:
//
//	identity  subject, issuer, name, email, method: string; groups: list(string);
//	          claims: map(string, dyn); expiry: timestamp
//	target    name, protocol, address: string; labels, options: map(string, string)
//	session   id, client_addr: string; start: timestamp
//	command   protocol, kind, text: string; attrs: map(string, string);
//	          sql   {statements: list({kind: string, tables: list(string),
//	                 has_where: bool, functions: list(string)}),
//	                 writes, ddl: bool, parse_error: string}
//	          http  {method, host, path, content_type: string;
//	                 query, headers: map(string, string); body: dyn (a JSON body)}
//	          mcp   {method, tool, uri, prompt: string; arguments: map(string, dyn)}
//	          k8s   {verb, api_group, resource, subresource, namespace, name: string}
//	          ssh   {channel_type, command, subsystem: string}
//	now       timestamp (Input.Now, or the time of the call when zero)
//
// Absent parts read as zero values, never as errors: for an HTTP command
// command.sql.writes is false and command.sql.statements is empty; with no
// identity, identity.groups is empty; a zero timestamp (identity.expiry
// when the credential does not expire) reads as timestamp(0). Keys missing
// from a map are errors in CEL (identity.claims.dept when there is no dept
// claim); write "dept" in identity.claims && ..., or
// identity.claims.?dept.orValue("") (optional types are enabled).
//
// Besides the CEL standard library, the strings and lists extensions are
// enabled (lowerAscii, split, join, sort, distinct, ...),
// glob(pattern, name) matches names and paths (see Glob), and sql(text)
// (or sql(text, dialect)) classifies SQL found elsewhere — an MCP tool's
// argument, a field of an HTTP body — into the type of command.sql:
//
//	command.mcp.tool == "run_query" && has(command.mcp.arguments.query) &&
//	  !sql(command.mcp.arguments.query).writes
//
// sql() uses the classifier registered for the dialect
// (RegisterSQLClassifier; import policy/pgclassify for PostgreSQL's) and
// fails closed: text that does not parse, or a dialect without a
// classifier, gives parse_error set and writes and ddl true, so that a rule
// resting on !writes cannot be satisfied by text the gateway does not
// understand. A non-string argument is a run-time error (the rule denies).
//
// # MCP
//
// An MCP message is a command of kind request (protocol http) with
// command.mcp set; see protocol/http/mcp. A tools/list answer is filtered
// to the tools the caller may call: those for which MayAllow (Prober)
// finds that some arguments could make a tools/call allowed or sent for
// approval.
//
// # Decisions
//
// Every rule is evaluated and every matching rule counts, Cedar style: a
// matching deny wins over require_approval, which wins over allow; if no
// allow or approval rule matches, the file's default applies. A rule whose
// expression fails at run time (a missing map key, a bad glob pattern)
// counts as a matching deny: the policy fails closed, and the error is in
// Decision.Message. In the Decision:
//
//   - Rules names every matching rule, in file order;
//   - Message is the first matching deny's message for a deny, the first
//     matching approval rule's message for require_approval (a rule without
//     a message gets a generated one naming it), the first matching allow
//     rule's message (usually none) for an allow, and DefaultDenyMessage
//     when nothing matched under default deny;
//   - Approvers is the union of the matching approval rules' approvers and
//     Timeout the smallest of their timeouts (0 when none gives one);
//   - Mask accumulates the masks of matching allow and approval rules,
//     deduplicated in order (empty on deny).
package policy

import (
	"context"
	"time"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// Input is everything a policy may look at for one command.
type Input struct {
	Identity *identity.Identity // nil: an unauthenticated caller (every field zero)
	Target   *protocol.Target   // nil: Session.Target
	Session  protocol.SessionInfo
	Command  *protocol.Command // required
	Now      time.Time         // zero: the time of the call
	// Memo, when set, is the session's memo of rule verdicts (NewMemo):
	// rules that a SQL command's parsed form, the identity and the target
	// already decide are not evaluated again for statements of the same
	// form (see memo.go). One per session: the identity and target must
	// not change under it.
	Memo *Memo
}

// Decider decides what happens to a command. An error means no decision
// could be made; the caller must deny.
type Decider interface {
	Decide(ctx context.Context, in *Input) (protocol.Decision, error)
}

// Versioned is implemented by a Decider whose decisions can change over
// time, such as Live after a reload. Version changes whenever they may;
// whoever keeps a decision for later (a prepared statement's) decides
// again when the version it decided under is no longer current.
type Versioned interface {
	Version() uint64
}

// DeciderFunc adapts a function to Decider.
type DeciderFunc func(ctx context.Context, in *Input) (protocol.Decision, error)

// Decide calls f.
func (f DeciderFunc) Decide(ctx context.Context, in *Input) (protocol.Decision, error) {
	return f(ctx, in)
}
