// Package pgsql classifies PostgreSQL statements for policy. It parses SQL
// text with PostgreSQL's own parser (libpg_query, PostgreSQL 17's raw
// parser, through github.com/pganalyze/pg_query_go/v6), reads the whole
// parse tree, and describes every statement the text makes the server run
// as a protocol.SQL. Classify does one text; Classifier does the same behind
// a bounded LRU cache for the hot path; PreparedSet remembers what a session
// prepared so that EXECUTE is judged by what it runs.
//
// # Statements
//
// Every top-level statement is a Statement, and so is every statement
// nested in another where it runs (or, in a definition, will run):
// data-modifying WITH queries at any depth (WITH d AS (DELETE ...) SELECT ...
// reports SELECT and DELETE), COPY (DELETE ... RETURNING) TO, the statement
// under EXPLAIN ANALYZE, the body of PREPARE, a rule's actions, the
// statements of a BEGIN ATOMIC function body, CREATE SCHEMA's elements,
// EXECUTE under CREATE TABLE AS. A nested SELECT is a subquery, part of its
// statement. EXPLAIN without ANALYZE runs nothing: what it explains is
// reported on the EXPLAIN statement (tables, functions) and does not count
// as a write.
//
// # Kinds
//
// Kind is PostgreSQL's command tag in upper case ("CREATE TABLE",
// "ALTER INDEX", "REFRESH MATERIALIZED VIEW", "START TRANSACTION"), with
// these choices:
//   - every DROP is "DROP" (DROP TABLE, DROP ROLE, DROP DATABASE, DROP
//     OWNED ...), and GRANT/REVOKE of privileges or roles is "GRANT" or
//     "REVOKE": the words policies are written with;
//   - SELECT ... INTO is "SELECT INTO" (it creates a table, like CREATE
//     TABLE AS, which keeps its own kind);
//   - COPY carries its direction and endpoint: "COPY FROM", "COPY TO",
//     "COPY FROM FILE", "COPY TO FILE" (a server-side file),
//     "COPY FROM PROGRAM", "COPY TO PROGRAM" (a shell command on the server);
//   - ANALYZE is "ANALYZE", VACUUM (ANALYZE) is "VACUUM"; DISCARD is
//     "DISCARD ALL", "DISCARD TEMP", ...; FETCH/MOVE, CLOSE CURSOR, SET and
//     RESET as PostgreSQL names them;
//   - EXECUTE is "EXECUTE"; PreparedSet.Resolve replaces it by the
//     statements prepared under that name;
//   - a statement node type this package does not know (a newer parser)
//     gets a kind derived from its node name and counts as writes and DDL.
//
// # Tables, functions, WHERE
//
// Tables lists every relation named (FROM, JOIN, subqueries, CTEs, targets,
// DROP/COMMENT/TRUNCATE/LOCK/GRANT/VACUUM objects), deduplicated, target
// first for DML and for SELECT INTO / CREATE TABLE AS. Names are as written
// (the parser folds unquoted identifiers to lower case); a qualified name
// is listed whole and also bare ("public.users" and "users"), so a rule on
// "users" cannot be dodged by qualifying it. A name part containing '.' or
// '"' is double-quoted, so "a.b" cannot pass for a.b. The names of CTEs
// referenced are listed too (over-reporting fails closed). Functions lists
// the function calls the same way (pg_catalog.pg_read_file and
// pg_read_file); CALL's procedure is one of them.
//
// HasWhere is true for SELECT, UPDATE and DELETE with a WHERE clause
// (WHERE CURRENT OF counts), for a set operation when every branch has one,
// and always for MERGE (its ON condition); false for everything else.
//
// # Writes and DDL
//
// Writes: the statement changes data, schema, privileges or state outside
// the session, or runs code: DML, COPY FROM, any COPY with a file or
// PROGRAM, CREATE TABLE AS / SELECT INTO, DO, CALL, TRUNCATE, REFRESH,
// VACUUM/ANALYZE/CLUSTER/REINDEX/CHECKPOINT, NOTIFY, LOCK in a mode above
// ROW EXCLUSIVE, PREPARE TRANSACTION/COMMIT PREPARED/ROLLBACK PREPARED,
// every definition, and a call of a known side-effecting function
// (set_config, nextval, lo_import, dblink_exec, pg_terminate_backend, ...;
// see sideEffectFunctions). Not writes: SELECT (also FOR UPDATE), EXPLAIN
// without ANALYZE, SHOW, SET/RESET (session state, visible by kind),
// transaction control, cursors, PREPARE/EXECUTE/DEALLOCATE themselves,
// LISTEN.
//
// DDL: CREATE/ALTER/DROP of anything, COMMENT, SECURITY LABEL, GRANT,
// REVOKE, ALTER DEFAULT PRIVILEGES, REASSIGN OWNED, IMPORT FOREIGN SCHEMA,
// CREATE TABLE AS / SELECT INTO, ALTER SYSTEM, LOAD, DO (arbitrary code)
// and COPY with a server file or PROGRAM. TRUNCATE is a write, not DDL.
// DDL implies Writes.
//
// # Session settings
//
// PostgreSQL's lexer depends on standard_conforming_strings and
// backslash_quote, and the server converts a query from client_encoding
// before lexing it. The caller passes the session's current values in
// Options (PostgreSQL reports standard_conforming_strings and
// client_encoding in ParameterStatus whenever they change, however they
// were changed). The text is then parsed by the real PostgreSQL lexer with
// those settings, through libpg_query's parser options: there is no
// rewriting of the text and no second lexer. backslash_quote only ever
// makes the server refuse more (\' in a literal); with "off" Classify
// refuses the same texts. Client encodings whose multibyte characters can
// contain a quote or backslash byte (SJIS, BIG5, GBK, UHC, GB18030, JOHAB)
// are refused.
//
// # Limits
//
// The parser is PostgreSQL 17's. Where a server of another version lexes
// differently the result must fail closed, and the known cases do: for
// example PostgreSQL 15 continues a string literal across a -- comment
// ('a' -- c <newline> 'b'), which the 17 parser rejects. What a statement
// does through objects it names is not visible: a view's or function's
// body, triggers and rules already defined, a function reached through an
// operator, a cast or a default. A user-defined function can write; only
// the built-ins named in sideEffectFunctions set Writes.
package pgsql
