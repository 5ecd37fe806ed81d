package pgsql

import (
	"fmt"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The walker needs, for every message type of the parse tree, which JSON
// keys hold messages and of which type (a Node, a RangeVar, ...). That table
// is built once from pg_query's protobuf descriptors, whose JSON names are
// the keys libpg_query's JSON output uses. Field and enum names that the
// classifier reads are checked against the descriptors at init, so a rename
// in a future pg_query fails loudly rather than silently.

// msgType describes one message type of the parse tree.
type msgType struct {
	name string
	desc protoreflect.MessageDescriptor
	// byJSON maps each JSON key to its field.
	byJSON map[string]*fieldType
	// stmt is set for statement node types (see kinds.go).
	stmt *stmtSpec
	// fallback classifies a non-statement type found in statement
	// position (genericSpec).
	fallback *stmtSpec
}

// fieldType is one field of a message type.
type fieldType struct {
	child *msgType // the message type of a message field, nil for scalars
}

var (
	msgTypes = map[protoreflect.FullName]*msgType{}

	parseResultType *msgType
	nodeType        *msgType
	rangeVarType    *msgType
	funcCallType    *msgType
	selectStmtType  *msgType
)

func buildType(d protoreflect.MessageDescriptor) *msgType {
	if t, ok := msgTypes[d.FullName()]; ok {
		return t
	}
	t := &msgType{name: string(d.Name()), desc: d, byJSON: map[string]*fieldType{}}
	msgTypes[d.FullName()] = t
	fields := d.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		ft := &fieldType{}
		if f.Kind() == protoreflect.MessageKind || f.Kind() == protoreflect.GroupKind {
			ft.child = buildType(f.Message())
		}
		t.byJSON[f.JSONName()] = ft
	}
	return t
}

// typeByName returns the message type with the given short name.
func typeByName(name string) *msgType {
	t, ok := msgTypes[protoreflect.FullName("pg_query."+name)]
	if !ok {
		panic("pgsql: pg_query has no message " + name)
	}
	return t
}

// jsonName returns the JSON key of a field of a message type, by its
// protobuf name.
func jsonName(msg, field string) string {
	f := typeByName(msg).desc.Fields().ByName(protoreflect.Name(field))
	if f == nil {
		panic(fmt.Sprintf("pgsql: pg_query.%s has no field %s", msg, field))
	}
	return f.JSONName()
}

// enumValue checks that a pg_query enum has the named value and returns
// the name (libpg_query's JSON writes enums by name).
func enumValue(enum, value string) string {
	d := pg_query.File_pg_query_proto.Enums().ByName(protoreflect.Name(enum))
	if d == nil || d.Values().ByName(protoreflect.Name(value)) == nil {
		panic(fmt.Sprintf("pgsql: pg_query has no enum value %s.%s", enum, value))
	}
	return value
}

func init() {
	parseResultType = buildType((&pg_query.ParseResult{}).ProtoReflect().Descriptor())
	nodeType = buildType((&pg_query.Node{}).ProtoReflect().Descriptor())
	rangeVarType = typeByName("RangeVar")
	funcCallType = typeByName("FuncCall")
	selectStmtType = typeByName("SelectStmt")
	initFields()
	initKinds()
}
