package policy

import (
	"fmt"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"

	"github.com/sluicegw/sluice/protocol"
)

// The CEL function sql(text) and sql(text, dialect): SQL that arrives
// inside another protocol (an MCP tool's argument, an HTTP body) classified
// the way command.sql is, so that a rule can say
//
//	command.mcp.tool == "run_query" && !sql(command.mcp.arguments.query).writes
//
// The policy package does not parse SQL itself: the classifiers live with
// their protocols (protocol/postgres/pgsql is cgo, and policy must not
// import a protocol implementation), and are registered by name, as
// database/sql drivers are. Importing policy/pgclassify registers
// PostgreSQL's; refserver and policytest do.

// DefaultSQLDialect is the dialect of sql(text).
const DefaultSQLDialect = "postgres"

// SQLClassifier classifies SQL text for the CEL function sql(). It must be
// safe for concurrent use, must not panic, and must not modify or keep a
// result it returned (the engine reads it after the call). Text it cannot
// parse gives a SQL with ParseError set.
type SQLClassifier func(text string) *protocol.SQL

var (
	sqlMu          sync.RWMutex
	sqlClassifiers = map[string]SQLClassifier{}
)

// RegisterSQLClassifier makes c the classifier of sql(text, dialect), and
// for DefaultSQLDialect of sql(text). Like database/sql.Register it panics
// if c is nil or the dialect is already registered; call it from an init
// function.
func RegisterSQLClassifier(dialect string, c SQLClassifier) {
	if c == nil {
		panic("policy: RegisterSQLClassifier: nil classifier for " + dialect)
	}
	sqlMu.Lock()
	defer sqlMu.Unlock()
	if _, dup := sqlClassifiers[dialect]; dup {
		panic("policy: RegisterSQLClassifier called twice for dialect " + dialect)
	}
	sqlClassifiers[dialect] = c
}

// SQLDialects lists the registered dialects.
func SQLDialects() []string {
	sqlMu.RLock()
	defer sqlMu.RUnlock()
	out := make([]string, 0, len(sqlClassifiers))
	for d := range sqlClassifiers {
		out = append(out, d)
	}
	return out
}

// ClassifySQL is what the CEL function sql(text, dialect) returns, as Go:
// the registered classifier's result, made fail-closed. Text that cannot be
// classified — it does not parse, or no classifier is registered for the
// dialect — gives ParseError set, no statements, and Writes and DDL true,
// so that neither !sql(x).writes nor !sql(x).ddl can be satisfied by text
// the gateway does not understand. The result is the caller's.
func ClassifySQL(dialect, text string) *protocol.SQL {
	sqlMu.RLock()
	c := sqlClassifiers[dialect]
	sqlMu.RUnlock()
	if c == nil {
		return unknownSQL(fmt.Sprintf("no SQL classifier is registered for dialect %q (import policy/pgclassify for postgres)", dialect))
	}
	s := c(text)
	if s == nil {
		return unknownSQL("the " + dialect + " classifier returned nothing")
	}
	out := *s
	if out.ParseError != "" {
		out.Writes, out.DDL = true, true
	}
	if out.Statements == nil {
		out.Statements = []protocol.Statement{}
	}
	return &out
}

func unknownSQL(msg string) *protocol.SQL {
	return &protocol.SQL{Statements: []protocol.Statement{}, ParseError: msg, Writes: true, DDL: true}
}

// typeSQL is the CEL name ext.NativeTypes gives protocol.SQL (the type of
// command.sql).
const typeSQL = "protocol.SQL"

// sqlFunction declares sql(string) and sql(string, string). adapter is
// filled in once the environment exists: the result is a native
// protocol.SQL, which only the environment's type provider can wrap.
func sqlFunction(adapter *types.Adapter) cel.EnvOption {
	wrap := func(dialect, text ref.Val) ref.Val {
		t, ok := text.(types.String)
		if !ok {
			return types.NewErr("sql: want a string, got %s", text.Type().TypeName())
		}
		d, ok := dialect.(types.String)
		if !ok {
			return types.NewErr("sql: want a dialect string, got %s", dialect.Type().TypeName())
		}
		return (*adapter).NativeToValue(ClassifySQL(string(d), string(t)))
	}
	return cel.Function("sql",
		cel.Overload("sql_string", []*cel.Type{cel.StringType}, cel.ObjectType(typeSQL),
			cel.UnaryBinding(func(text ref.Val) ref.Val { return wrap(types.String(DefaultSQLDialect), text) })),
		cel.Overload("sql_string_string", []*cel.Type{cel.StringType, cel.StringType}, cel.ObjectType(typeSQL),
			cel.BinaryBinding(func(text, dialect ref.Val) ref.Val { return wrap(dialect, text) })),
	)
}
