package pgsql

import (
	"strings"
	"unicode"
)

// detailFunc refines a statement's classification from the fields of its
// node, object o on the tape.
type detailFunc func(t *tape, o int32, s *stmt)

// stmtSpec says how one statement node type is classified.
type stmtSpec struct {
	// kind is the statement's Kind: PostgreSQL's command tag for it, upper
	// case ("CREATE TABLE", "ALTER INDEX"), except that every DROP is "DROP"
	// and every GRANT/REVOKE (privileges or roles) is "GRANT"/"REVOKE", the
	// words rules are written with (design.md, Policy).
	kind string
	// writes: the statement changes data, schema, privileges, server state
	// outside the session, or runs arbitrary code.
	writes bool
	// ddl: the statement changes definitions (schema, privileges, roles,
	// configuration) or reaches outside the database (COPY with a server
	// file or PROGRAM, LOAD, DO).
	ddl bool
	// detail refines the kind and flags from the statement's fields.
	detail detailFunc
	// part: when met inside another statement, the node is part of it
	// (SET options of CREATE FUNCTION, ALTER SYSTEM ...), not a statement
	// of its own.
	part bool
	// absorb: statement nodes nested in this one are parts of it (the
	// GRANT of ALTER DEFAULT PRIVILEGES, the CREATE TABLE inside CREATE
	// FOREIGN TABLE).
	absorb bool
}

// JSON keys read by name (see schema.go).
var (
	fParseResultStmts, fRawStmtStmt                                 string
	fRangeVarCatalog, fRangeVarSchema, fRangeVarRel                 string
	fFuncCallName, fStringSval, fListItems                          string
	fSelectInto, fSelectWhere, fSelectLarg, fSelectRarg             string
	fUpdateWhere, fDeleteWhere                                      string
	fExplainQuery, fExplainOptions, fDefElemName, fDefElemArg       string
	fBooleanVal, fIntegerVal                                        string
	fPrepareName, fPrepareQuery, fExecuteName                       string
	fDeallocateName, fDeallocateIsAll, fDiscardTarget               string
	fRuleActions, fSchemaElts                                       string
	fCTASInto, fCTASObjtype, fCTASIsSelectInto                      string
	fCopyIsFrom, fCopyIsProgram, fCopyFilename                      string
	fDropObjects, fDropRemoveType, fCommentObjtype, fCommentObject  string
	fLockMode, fTransactionKind, fVariableSetKind                   string
	fCreateRoleType, fDefineKind, fAlterTableObjtype                string
	fRenameType, fAlterSchemaObjtype, fAlterOwnerObjtype            string
	fAlterDependsObjtype, fMoveAllObjtype, fAlterFunctionObjtype    string
	fGrantIsGrant, fGrantRoleIsGrant, fVacuumIsVacuum, fFetchIsMove string
	fCreateFunctionIsProcedure                                      string
)

var (
	stringType, listType, defElemType, booleanType, integerType *msgType
	explainType, prepareType, executeType, deallocateType       *msgType
	discardType, ruleType, createSchemaType, ctasType           *msgType
	dropType, commentType, grantType                            *msgType
	updateStmtType, deleteStmtType, mergeStmtType               *msgType
)

func initFields() {
	fParseResultStmts = jsonName("ParseResult", "stmts")
	fRawStmtStmt = jsonName("RawStmt", "stmt")
	fRangeVarCatalog = jsonName("RangeVar", "catalogname")
	fRangeVarSchema = jsonName("RangeVar", "schemaname")
	fRangeVarRel = jsonName("RangeVar", "relname")
	fFuncCallName = jsonName("FuncCall", "funcname")
	fStringSval = jsonName("String", "sval")
	fListItems = jsonName("List", "items")
	fSelectInto = jsonName("SelectStmt", "into_clause")
	fSelectWhere = jsonName("SelectStmt", "where_clause")
	fSelectLarg = jsonName("SelectStmt", "larg")
	fSelectRarg = jsonName("SelectStmt", "rarg")
	fUpdateWhere = jsonName("UpdateStmt", "where_clause")
	fDeleteWhere = jsonName("DeleteStmt", "where_clause")
	fExplainQuery = jsonName("ExplainStmt", "query")
	fExplainOptions = jsonName("ExplainStmt", "options")
	fDefElemName = jsonName("DefElem", "defname")
	fDefElemArg = jsonName("DefElem", "arg")
	fBooleanVal = jsonName("Boolean", "boolval")
	fIntegerVal = jsonName("Integer", "ival")
	fPrepareName = jsonName("PrepareStmt", "name")
	fPrepareQuery = jsonName("PrepareStmt", "query")
	fExecuteName = jsonName("ExecuteStmt", "name")
	fDeallocateName = jsonName("DeallocateStmt", "name")
	fDeallocateIsAll = jsonName("DeallocateStmt", "isall")
	fDiscardTarget = jsonName("DiscardStmt", "target")
	fRuleActions = jsonName("RuleStmt", "actions")
	fSchemaElts = jsonName("CreateSchemaStmt", "schema_elts")
	fCTASInto = jsonName("CreateTableAsStmt", "into")
	fCTASObjtype = jsonName("CreateTableAsStmt", "objtype")
	fCTASIsSelectInto = jsonName("CreateTableAsStmt", "is_select_into")
	fCopyIsFrom = jsonName("CopyStmt", "is_from")
	fCopyIsProgram = jsonName("CopyStmt", "is_program")
	fCopyFilename = jsonName("CopyStmt", "filename")
	fDropObjects = jsonName("DropStmt", "objects")
	fDropRemoveType = jsonName("DropStmt", "remove_type")
	fCommentObjtype = jsonName("CommentStmt", "objtype")
	fCommentObject = jsonName("CommentStmt", "object")
	fLockMode = jsonName("LockStmt", "mode")
	fTransactionKind = jsonName("TransactionStmt", "kind")
	fVariableSetKind = jsonName("VariableSetStmt", "kind")
	fCreateRoleType = jsonName("CreateRoleStmt", "stmt_type")
	fDefineKind = jsonName("DefineStmt", "kind")
	fAlterTableObjtype = jsonName("AlterTableStmt", "objtype")
	fRenameType = jsonName("RenameStmt", "rename_type")
	fAlterSchemaObjtype = jsonName("AlterObjectSchemaStmt", "object_type")
	fAlterOwnerObjtype = jsonName("AlterOwnerStmt", "object_type")
	fAlterDependsObjtype = jsonName("AlterObjectDependsStmt", "object_type")
	fMoveAllObjtype = jsonName("AlterTableMoveAllStmt", "objtype")
	fAlterFunctionObjtype = jsonName("AlterFunctionStmt", "objtype")
	fGrantIsGrant = jsonName("GrantStmt", "is_grant")
	fGrantRoleIsGrant = jsonName("GrantRoleStmt", "is_grant")
	fVacuumIsVacuum = jsonName("VacuumStmt", "is_vacuumcmd")
	fFetchIsMove = jsonName("FetchStmt", "ismove")
	fCreateFunctionIsProcedure = jsonName("CreateFunctionStmt", "is_procedure")

	stringType = typeByName("String")
	listType = typeByName("List")
	defElemType = typeByName("DefElem")
	booleanType = typeByName("Boolean")
	integerType = typeByName("Integer")
	explainType = typeByName("ExplainStmt")
	prepareType = typeByName("PrepareStmt")
	executeType = typeByName("ExecuteStmt")
	deallocateType = typeByName("DeallocateStmt")
	discardType = typeByName("DiscardStmt")
	ruleType = typeByName("RuleStmt")
	createSchemaType = typeByName("CreateSchemaStmt")
	ctasType = typeByName("CreateTableAsStmt")
	dropType = typeByName("DropStmt")
	commentType = typeByName("CommentStmt")
	updateStmtType = typeByName("UpdateStmt")
	deleteStmtType = typeByName("DeleteStmt")
	mergeStmtType = typeByName("MergeStmt")

	for name := range objectWords {
		enumValue("ObjectType", name)
	}
	for name := range relationObjects {
		enumValue("ObjectType", name)
	}
	for _, name := range []string{"TRANS_STMT_BEGIN", "TRANS_STMT_START", "TRANS_STMT_COMMIT",
		"TRANS_STMT_ROLLBACK", "TRANS_STMT_SAVEPOINT", "TRANS_STMT_RELEASE", "TRANS_STMT_ROLLBACK_TO",
		"TRANS_STMT_PREPARE", "TRANS_STMT_COMMIT_PREPARED", "TRANS_STMT_ROLLBACK_PREPARED"} {
		enumValue("TransactionStmtKind", name)
	}
	enumValue("VariableSetKind", "VAR_RESET")
	enumValue("VariableSetKind", "VAR_RESET_ALL")
	enumValue("DiscardMode", "DISCARD_ALL")
	enumValue("ObjectType", "OBJECT_MATVIEW")
	enumValue("RoleStmtType", "ROLESTMT_ROLE")
}

// objectWords names an ObjectType the way PostgreSQL's command tags do
// (AlterObjectTypeCommandTag in src/backend/tcop/utility.c).
var objectWords = map[string]string{
	"OBJECT_ACCESS_METHOD":         "ACCESS METHOD",
	"OBJECT_AMOP":                  "OPERATOR FAMILY",
	"OBJECT_AMPROC":                "OPERATOR FAMILY",
	"OBJECT_ATTRIBUTE":             "TYPE",
	"OBJECT_COLUMN":                "TABLE",
	"OBJECT_DEFACL":                "DEFAULT PRIVILEGES",
	"OBJECT_DEFAULT":               "TABLE",
	"OBJECT_DOMCONSTRAINT":         "DOMAIN",
	"OBJECT_EVENT_TRIGGER":         "EVENT TRIGGER",
	"OBJECT_FDW":                   "FOREIGN DATA WRAPPER",
	"OBJECT_FOREIGN_SERVER":        "SERVER",
	"OBJECT_FOREIGN_TABLE":         "FOREIGN TABLE",
	"OBJECT_LARGEOBJECT":           "LARGE OBJECT",
	"OBJECT_MATVIEW":               "MATERIALIZED VIEW",
	"OBJECT_OPCLASS":               "OPERATOR CLASS",
	"OBJECT_OPFAMILY":              "OPERATOR FAMILY",
	"OBJECT_PARAMETER_ACL":         "PARAMETER",
	"OBJECT_PUBLICATION_NAMESPACE": "PUBLICATION",
	"OBJECT_PUBLICATION_REL":       "PUBLICATION",
	"OBJECT_STATISTIC_EXT":         "STATISTICS",
	"OBJECT_TABCONSTRAINT":         "TABLE",
	"OBJECT_TSCONFIGURATION":       "TEXT SEARCH CONFIGURATION",
	"OBJECT_TSDICTIONARY":          "TEXT SEARCH DICTIONARY",
	"OBJECT_TSPARSER":              "TEXT SEARCH PARSER",
	"OBJECT_TSTEMPLATE":            "TEXT SEARCH TEMPLATE",
	"OBJECT_USER_MAPPING":          "USER MAPPING",
}

// objectName returns the command-tag words for an ObjectType value name.
func objectName(n string) string {
	if w, ok := objectWords[n]; ok {
		return w
	}
	n = strings.TrimPrefix(n, "OBJECT_")
	if n == "" || n == "TYPE_UNDEFINED" {
		return "OBJECT"
	}
	return strings.ReplaceAll(n, "_", " ")
}

// relationObjects are the object types whose names are relations: their
// DROP and COMMENT name lists are reported as tables.
var relationObjects = map[string]bool{
	"OBJECT_TABLE": true, "OBJECT_VIEW": true, "OBJECT_MATVIEW": true,
	"OBJECT_SEQUENCE": true, "OBJECT_INDEX": true, "OBJECT_FOREIGN_TABLE": true,
}

// objKind returns a detail func that sets kind to prefix + the object type
// held in field key.
func objKind(prefix string, key *string) detailFunc {
	return func(t *tape, o int32, s *stmt) { s.kind = prefix + objectName(t.fieldStr(o, *key)) }
}

// boolKind returns a detail func choosing between two kinds by a bool field.
func boolKind(key *string, yes, no string) detailFunc {
	return func(t *tape, o int32, s *stmt) {
		if t.fieldTrue(o, *key) {
			s.kind = yes
		} else {
			s.kind = no
		}
	}
}

// Flag shorthands for the table below.
const (
	read  = 0
	write = 1
	ddl   = 3 // ddl implies write
)

func spec(kind string, flags int, detail detailFunc) *stmtSpec {
	return &stmtSpec{kind: kind, writes: flags&write != 0, ddl: flags&2 != 0, detail: detail}
}

func absorbing(s *stmtSpec) *stmtSpec {
	s.absorb = true
	return s
}

// specs classifies every statement node type of PostgreSQL 17's raw parse
// tree. A node type missing here (a newer parser) is classified by
// genericSpec: a kind derived from its name, writes and DDL (fail closed).
var specs map[string]*stmtSpec

func initKinds() {
	specs = map[string]*stmtSpec{
		// Queries and DML.
		"SelectStmt":   spec("SELECT", read, nil), // SELECT INTO: see walk.go
		"InsertStmt":   spec("INSERT", write, nil),
		"UpdateStmt":   spec("UPDATE", write, nil),
		"DeleteStmt":   spec("DELETE", write, nil),
		"MergeStmt":    spec("MERGE", write, nil),
		"CopyStmt":     spec("COPY", write, copyDetail),
		"TruncateStmt": spec("TRUNCATE", write, nil),
		"CallStmt":     spec("CALL", write, nil),
		"DoStmt":       spec("DO", ddl, nil),
		"ExplainStmt":  spec("EXPLAIN", read, nil),
		"CreateTableAsStmt": spec("CREATE TABLE AS", ddl, func(t *tape, o int32, s *stmt) {
			switch {
			case t.fieldTrue(o, fCTASIsSelectInto):
				s.kind = "SELECT INTO"
			case t.fieldStr(o, fCTASObjtype) == "OBJECT_MATVIEW":
				s.kind = "CREATE MATERIALIZED VIEW"
			}
		}),
		"RefreshMatViewStmt": spec("REFRESH MATERIALIZED VIEW", write, nil),
		"LockStmt": spec("LOCK", read, func(t *tape, o int32, s *stmt) {
			// As PostgreSQL's read-only transactions: modes above
			// ROW EXCLUSIVE (3) block other writers or readers.
			s.writes = t.fieldInt(o, fLockMode) > 3
		}),

		// Session, transaction and cursor control: no writes.
		"TransactionStmt": spec("BEGIN", read, transactionDetail),
		"VariableSetStmt": {kind: "SET", part: true, detail: func(t *tape, o int32, s *stmt) {
			switch t.fieldStr(o, fVariableSetKind) {
			case "VAR_RESET", "VAR_RESET_ALL":
				s.kind = "RESET"
			}
		}},
		"VariableShowStmt":   spec("SHOW", read, nil),
		"ConstraintsSetStmt": spec("SET CONSTRAINTS", read, nil),
		"DiscardStmt": spec("DISCARD", read, func(t *tape, o int32, s *stmt) {
			s.kind = "DISCARD " + strings.TrimPrefix(t.fieldStr(o, fDiscardTarget), "DISCARD_")
		}),
		"PrepareStmt":       spec("PREPARE", read, nil),
		"ExecuteStmt":       spec("EXECUTE", read, nil), // replaced by what was prepared: PreparedSet
		"DeallocateStmt":    spec("DEALLOCATE", read, nil),
		"DeclareCursorStmt": spec("DECLARE CURSOR", read, nil),
		"FetchStmt":         spec("FETCH", read, boolKind(&fFetchIsMove, "MOVE", "FETCH")),
		"ClosePortalStmt":   spec("CLOSE CURSOR", read, nil),
		"ListenStmt":        spec("LISTEN", read, nil),
		"UnlistenStmt":      spec("UNLISTEN", read, nil),
		"NotifyStmt":        spec("NOTIFY", write, nil),

		// Maintenance: writes (they rewrite storage or statistics).
		"VacuumStmt":     spec("VACUUM", write, boolKind(&fVacuumIsVacuum, "VACUUM", "ANALYZE")),
		"ClusterStmt":    spec("CLUSTER", write, nil),
		"ReindexStmt":    spec("REINDEX", write, nil),
		"CheckPointStmt": spec("CHECKPOINT", write, nil),

		// Privileges.
		"GrantStmt":                  spec("GRANT", ddl, boolKind(&fGrantIsGrant, "GRANT", "REVOKE")),
		"GrantRoleStmt":              spec("GRANT", ddl, boolKind(&fGrantRoleIsGrant, "GRANT", "REVOKE")),
		"AlterDefaultPrivilegesStmt": absorbing(spec("ALTER DEFAULT PRIVILEGES", ddl, nil)),
		"ReassignOwnedStmt":          spec("REASSIGN OWNED", ddl, nil),
		"DropOwnedStmt":              spec("DROP", ddl, nil),
		"CreateRoleStmt": spec("CREATE ROLE", ddl, func(t *tape, o int32, s *stmt) {
			s.kind = "CREATE " + strings.TrimPrefix(t.fieldStr(o, fCreateRoleType), "ROLESTMT_")
		}),
		"AlterRoleStmt":    spec("ALTER ROLE", ddl, nil),
		"AlterRoleSetStmt": spec("ALTER ROLE", ddl, nil),
		"DropRoleStmt":     spec("DROP", ddl, nil),

		// Server-level and code-loading statements.
		"AlterSystemStmt": spec("ALTER SYSTEM", ddl, nil),
		"LoadStmt":        spec("LOAD", ddl, nil),

		// DROP of any kind.
		"DropStmt":             spec("DROP", ddl, nil),
		"DropTableSpaceStmt":   spec("DROP", ddl, nil),
		"DropUserMappingStmt":  spec("DROP", ddl, nil),
		"DropdbStmt":           spec("DROP", ddl, nil),
		"DropSubscriptionStmt": spec("DROP", ddl, nil),

		// Definitions.
		"CreateStmt":                   spec("CREATE TABLE", ddl, nil),
		"CreateForeignTableStmt":       absorbing(spec("CREATE FOREIGN TABLE", ddl, nil)),
		"CreateSchemaStmt":             spec("CREATE SCHEMA", ddl, nil),
		"CreateTableSpaceStmt":         spec("CREATE TABLESPACE", ddl, nil),
		"CreateExtensionStmt":          spec("CREATE EXTENSION", ddl, nil),
		"CreateFdwStmt":                spec("CREATE FOREIGN DATA WRAPPER", ddl, nil),
		"CreateForeignServerStmt":      spec("CREATE SERVER", ddl, nil),
		"CreateUserMappingStmt":        spec("CREATE USER MAPPING", ddl, nil),
		"ImportForeignSchemaStmt":      spec("IMPORT FOREIGN SCHEMA", ddl, nil),
		"CreatePolicyStmt":             spec("CREATE POLICY", ddl, nil),
		"CreateAmStmt":                 spec("CREATE ACCESS METHOD", ddl, nil),
		"CreateTrigStmt":               spec("CREATE TRIGGER", ddl, nil),
		"CreateEventTrigStmt":          spec("CREATE EVENT TRIGGER", ddl, nil),
		"CreatePLangStmt":              spec("CREATE LANGUAGE", ddl, nil),
		"CreateSeqStmt":                spec("CREATE SEQUENCE", ddl, nil),
		"DefineStmt":                   spec("CREATE", ddl, objKind("CREATE ", &fDefineKind)),
		"CreateDomainStmt":             spec("CREATE DOMAIN", ddl, nil),
		"CreateOpClassStmt":            spec("CREATE OPERATOR CLASS", ddl, nil),
		"CreateOpFamilyStmt":           spec("CREATE OPERATOR FAMILY", ddl, nil),
		"CommentStmt":                  spec("COMMENT", ddl, nil),
		"SecLabelStmt":                 spec("SECURITY LABEL", ddl, nil),
		"IndexStmt":                    spec("CREATE INDEX", ddl, nil),
		"CreateStatsStmt":              spec("CREATE STATISTICS", ddl, nil),
		"CreateFunctionStmt":           spec("CREATE FUNCTION", ddl, boolKind(&fCreateFunctionIsProcedure, "CREATE PROCEDURE", "CREATE FUNCTION")),
		"RuleStmt":                     spec("CREATE RULE", ddl, nil),
		"CompositeTypeStmt":            spec("CREATE TYPE", ddl, nil),
		"CreateEnumStmt":               spec("CREATE TYPE", ddl, nil),
		"CreateRangeStmt":              spec("CREATE TYPE", ddl, nil),
		"ViewStmt":                     spec("CREATE VIEW", ddl, nil),
		"CreatedbStmt":                 spec("CREATE DATABASE", ddl, nil),
		"CreateConversionStmt":         spec("CREATE CONVERSION", ddl, nil),
		"CreateCastStmt":               spec("CREATE CAST", ddl, nil),
		"CreateTransformStmt":          spec("CREATE TRANSFORM", ddl, nil),
		"CreatePublicationStmt":        spec("CREATE PUBLICATION", ddl, nil),
		"CreateSubscriptionStmt":       spec("CREATE SUBSCRIPTION", ddl, nil),
		"AlterTableStmt":               spec("ALTER TABLE", ddl, objKind("ALTER ", &fAlterTableObjtype)),
		"AlterTableSpaceOptionsStmt":   spec("ALTER TABLESPACE", ddl, nil),
		"AlterTableMoveAllStmt":        spec("ALTER TABLE", ddl, objKind("ALTER ", &fMoveAllObjtype)),
		"AlterExtensionStmt":           spec("ALTER EXTENSION", ddl, nil),
		"AlterExtensionContentsStmt":   spec("ALTER EXTENSION", ddl, nil),
		"AlterFdwStmt":                 spec("ALTER FOREIGN DATA WRAPPER", ddl, nil),
		"AlterForeignServerStmt":       spec("ALTER SERVER", ddl, nil),
		"AlterUserMappingStmt":         spec("ALTER USER MAPPING", ddl, nil),
		"AlterPolicyStmt":              spec("ALTER POLICY", ddl, nil),
		"AlterEventTrigStmt":           spec("ALTER EVENT TRIGGER", ddl, nil),
		"AlterSeqStmt":                 spec("ALTER SEQUENCE", ddl, nil),
		"AlterDomainStmt":              spec("ALTER DOMAIN", ddl, nil),
		"AlterOpFamilyStmt":            spec("ALTER OPERATOR FAMILY", ddl, nil),
		"AlterStatsStmt":               spec("ALTER STATISTICS", ddl, nil),
		"AlterFunctionStmt":            spec("ALTER FUNCTION", ddl, objKind("ALTER ", &fAlterFunctionObjtype)),
		"RenameStmt":                   spec("ALTER", ddl, objKind("ALTER ", &fRenameType)),
		"AlterObjectDependsStmt":       spec("ALTER", ddl, objKind("ALTER ", &fAlterDependsObjtype)),
		"AlterObjectSchemaStmt":        spec("ALTER", ddl, objKind("ALTER ", &fAlterSchemaObjtype)),
		"AlterOwnerStmt":               spec("ALTER", ddl, objKind("ALTER ", &fAlterOwnerObjtype)),
		"AlterOperatorStmt":            spec("ALTER OPERATOR", ddl, nil),
		"AlterTypeStmt":                spec("ALTER TYPE", ddl, nil),
		"AlterEnumStmt":                spec("ALTER TYPE", ddl, nil),
		"AlterCollationStmt":           spec("ALTER COLLATION", ddl, nil),
		"AlterDatabaseStmt":            spec("ALTER DATABASE", ddl, nil),
		"AlterDatabaseSetStmt":         spec("ALTER DATABASE", ddl, nil),
		"AlterDatabaseRefreshCollStmt": spec("ALTER DATABASE", ddl, nil),
		"AlterTSDictionaryStmt":        spec("ALTER TEXT SEARCH DICTIONARY", ddl, nil),
		"AlterTSConfigurationStmt":     spec("ALTER TEXT SEARCH CONFIGURATION", ddl, nil),
		"AlterPublicationStmt":         spec("ALTER PUBLICATION", ddl, nil),
		"AlterSubscriptionStmt":        spec("ALTER SUBSCRIPTION", ddl, nil),
	}
	// Node types whose names end in "Stmt" but that are parts of other
	// statements, never statements of their own in a raw parse tree.
	notStatements := map[string]bool{
		"RawStmt": true, "ReturnStmt": true, "PLAssignStmt": true,
		"SetOperationStmt": true, "ReplicaIdentityStmt": true,
	}
	for _, t := range msgTypes {
		if s, ok := specs[t.name]; ok {
			t.stmt = s
		} else if strings.HasSuffix(t.name, "Stmt") && !notStatements[t.name] {
			t.stmt = genericSpec(t.name)
		} else {
			t.fallback = genericSpec(t.name)
		}
	}
}

// genericSpec classifies a statement node type this package does not know:
// its kind is derived from the node name (AlterFooStmt -> "ALTER FOO") and
// it counts as writes and DDL, so that rules fail closed.
func genericSpec(name string) *stmtSpec {
	name = strings.ReplaceAll(strings.TrimSuffix(name, "Stmt"), "_", "")
	var words []string
	start := 0
	for i, r := range name {
		if i > 0 && unicode.IsUpper(r) && !unicode.IsUpper(rune(name[i-1])) {
			words = append(words, name[start:i])
			start = i
		}
	}
	words = append(words, name[start:])
	return &stmtSpec{kind: strings.ToUpper(strings.Join(words, " ")), writes: true, ddl: true}
}

// copyDetail names the direction and endpoint of a COPY. COPY FROM writes
// a table. A server-side file or program (COPY ... 'file', COPY ...
// PROGRAM) is outside the database altogether: a file read or written with
// the server's rights, or a shell command run as the server's OS user; both
// count as writes and DDL.
func copyDetail(t *tape, o int32, s *stmt) {
	from := t.fieldTrue(o, fCopyIsFrom)
	program := t.fieldTrue(o, fCopyIsProgram)
	file := t.has(o, fCopyFilename)
	s.kind = "COPY TO"
	s.writes = false
	if from {
		s.kind = "COPY FROM"
		s.writes = true
	}
	switch {
	case program:
		s.kind += " PROGRAM"
		s.writes, s.ddl = true, true
	case file:
		s.kind += " FILE"
		s.writes, s.ddl = true, true
	}
}

// transactionDetail names a transaction statement by PostgreSQL's command
// tag. Two-phase commit finishes (or parks) a transaction's writes, possibly
// another session's, so PREPARE TRANSACTION, COMMIT PREPARED and ROLLBACK
// PREPARED count as writes.
func transactionDetail(t *tape, o int32, s *stmt) {
	switch t.fieldStr(o, fTransactionKind) {
	case "TRANS_STMT_BEGIN":
		s.kind = "BEGIN"
	case "TRANS_STMT_START":
		s.kind = "START TRANSACTION"
	case "TRANS_STMT_COMMIT":
		s.kind = "COMMIT"
	case "TRANS_STMT_ROLLBACK":
		s.kind = "ROLLBACK"
	case "TRANS_STMT_SAVEPOINT":
		s.kind = "SAVEPOINT"
	case "TRANS_STMT_RELEASE":
		s.kind = "RELEASE"
	case "TRANS_STMT_ROLLBACK_TO":
		s.kind = "ROLLBACK TO SAVEPOINT"
	case "TRANS_STMT_PREPARE":
		s.kind, s.writes = "PREPARE TRANSACTION", true
	case "TRANS_STMT_COMMIT_PREPARED":
		s.kind, s.writes = "COMMIT PREPARED", true
	case "TRANS_STMT_ROLLBACK_PREPARED":
		s.kind, s.writes = "ROLLBACK PREPARED", true
	default:
		s.kind, s.writes, s.ddl = "TRANSACTION", true, true
	}
}

// sideEffectFunctions are built-in (or common extension) functions that
// change data or server state when called from an otherwise read-only
// statement; a call of any of them sets Writes. Matched by unqualified name,
// case-insensitively, so that a schema-qualified or quoted spelling still
// counts (a same-named user function counts too: fail closed).
// Functions that only read sensitive things (pg_read_file, pg_ls_dir, ...)
// are not here: they are reported in Functions for rules to match.
// Advisory locks are deliberately absent: they block, but change nothing.
var sideEffectFunctions = map[string]bool{
	// configuration and other sessions
	"set_config": true, "pg_terminate_backend": true, "pg_cancel_backend": true,
	"pg_reload_conf": true, "pg_rotate_logfile": true, "pg_promote": true,
	"pg_log_backend_memory_contexts": true,
	// WAL, backup and recovery control
	"pg_switch_wal": true, "pg_create_restore_point": true, "pg_backup_start": true,
	"pg_backup_stop": true, "pg_start_backup": true, "pg_stop_backup": true,
	"pg_wal_replay_pause": true, "pg_wal_replay_resume": true,
	// large objects (lo_import/lo_export also touch server files)
	"lo_import": true, "lo_export": true, "lo_unlink": true, "lo_create": true,
	"lo_creat": true, "lo_from_bytea": true, "lo_put": true, "lo_truncate": true,
	"lo_truncate64": true, "lowrite": true,
	// sequences
	"nextval": true, "setval": true,
	// remote or background SQL
	"dblink": true, "dblink_exec": true, "dblink_send_query": true,
	"pg_background_launch": true,
	// notifications
	"pg_notify": true,
	// adminpack file writes
	"pg_file_write": true, "pg_file_unlink": true, "pg_file_rename": true,
	"pg_file_sync": true,
	// replication slots and origins, logical messages
	"pg_create_physical_replication_slot": true, "pg_create_logical_replication_slot": true,
	"pg_drop_replication_slot": true, "pg_copy_physical_replication_slot": true,
	"pg_copy_logical_replication_slot": true, "pg_replication_slot_advance": true,
	"pg_logical_slot_get_changes": true, "pg_logical_slot_get_binary_changes": true,
	"pg_logical_emit_message": true, "pg_replication_origin_create": true,
	"pg_replication_origin_drop": true, "pg_replication_origin_advance": true,
	"pg_replication_origin_session_setup": true,
	// statistics resets and catalog imports
	"pg_stat_reset": true, "pg_stat_reset_shared": true,
	"pg_stat_reset_single_table_counters": true, "pg_stat_reset_single_function_counters": true,
	"pg_stat_reset_slru": true, "pg_stat_reset_replication_slot": true,
	"pg_stat_reset_subscription_stats": true, "pg_stat_statements_reset": true,
	"pg_import_system_collations": true,
}
