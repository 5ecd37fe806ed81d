package pgsql

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/protocol"
)

func kinds(s *protocol.SQL) []string {
	var k []string
	for _, st := range s.Statements {
		k = append(k, st.Kind)
	}
	return k
}

func hasKind(s *protocol.SQL, kind string) bool {
	return slices.ContainsFunc(s.Statements, func(st protocol.Statement) bool { return st.Kind == kind })
}

func hasFunction(s *protocol.SQL, fn string) bool {
	return slices.ContainsFunc(s.Statements, func(st protocol.Statement) bool { return slices.Contains(st.Functions, fn) })
}

func hasTable(s *protocol.SQL, table string) bool {
	return slices.ContainsFunc(s.Statements, func(st protocol.Statement) bool { return slices.Contains(st.Tables, table) })
}

// hiddenCases try to hide a write or a destructive act. Each must be
// visible: the kind among the statements, the function or table where
// given, and Writes set (except for sensitive reads, marked read).
var hiddenCases = []struct {
	sql   string
	kind  string
	fn    string
	table string
	read  bool // the act is a sensitive read, visible by its function
}{
	// comments, case, quoting, multi-statement strings
	{sql: "/* harmless */ DROP TABLE users", kind: "DROP", table: "users"},
	{sql: "-- just a comment\nDROP TABLE users", kind: "DROP"},
	{sql: "SELECT 1; DROP TABLE users", kind: "DROP", table: "users"},
	{sql: "select 1;drop table users--", kind: "DROP"},
	{sql: "SeLeCt 1 ; dRoP tAbLe UsErS", kind: "DROP", table: "users"},
	{sql: "/* nested /* comment */ still comment */ DELETE FROM users", kind: "DELETE", table: "users"},
	{sql: "SELECT 1 /* ; */ ; TRUNCATE users", kind: "TRUNCATE", table: "users"},
	{sql: "SELECT '--'; DELETE FROM users", kind: "DELETE"},
	{sql: "SELECT $$--$$; UPDATE users SET a = 1", kind: "UPDATE", table: "users"},
	{sql: `SELECT "--" FROM x; DROP TABLE t`, kind: "DROP", table: "t"},
	{sql: `DROP TABLE "Users"`, kind: "DROP", table: "Users"},
	{sql: `DROP TABLE U&"\0075sers"`, kind: "DROP", table: "users"},
	{sql: `DELETE FROM U&"d!0061ta" UESCAPE '!'`, kind: "DELETE", table: "data"},
	{sql: "DELETE FROM public.users", kind: "DELETE", table: "users"},
	{sql: `DELETE FROM "public"."users" WHERE true`, kind: "DELETE", table: "public.users"},
	{sql: "SELECT 1\n;\n\n/**/DROP/**/TABLE/**/t", kind: "DROP"},
	{sql: "SELECT 1;;;DELETE FROM t;;", kind: "DELETE"},
	{sql: "BEGIN; DELETE FROM users; COMMIT", kind: "DELETE"},
	{sql: "START TRANSACTION; TRUNCATE users; ROLLBACK", kind: "TRUNCATE"},
	{sql: "BEGIN; SAVEPOINT a; DROP TABLE t; RELEASE a; COMMIT;", kind: "DROP"},
	{sql: "SET ROLE admin; DELETE FROM t", kind: "DELETE"},
	{sql: "DECLARE c CURSOR FOR SELECT * FROM t; DELETE FROM t", kind: "DELETE"},
	{sql: "DISCARD ALL; DROP TABLE t", kind: "DROP"},
	{sql: "SELECT E'\\''; DROP TABLE t; --'", kind: "DROP"},
	// data-modifying CTEs, anywhere
	{sql: "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d", kind: "DELETE", table: "users"},
	{sql: "WITH u AS (UPDATE users SET admin = true RETURNING id) SELECT count(*) FROM u", kind: "UPDATE", table: "users"},
	{sql: "WITH i AS (INSERT INTO audit VALUES (1) RETURNING 1) SELECT 1", kind: "INSERT", table: "audit"},
	{sql: "SELECT * FROM (WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d) s", kind: "DELETE"},
	{sql: "WITH d AS (DELETE FROM t RETURNING *) INSERT INTO archive SELECT * FROM d", kind: "DELETE", table: "t"},
	{sql: "WITH m AS (MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING *) SELECT * FROM m", kind: "MERGE"},
	{sql: "WITH a AS (SELECT 1), b AS (WITH c AS (DELETE FROM t RETURNING 1) SELECT * FROM c) SELECT * FROM b", kind: "DELETE"},
	{sql: "SELECT (WITH d AS (DELETE FROM t RETURNING 1) SELECT 1)", kind: "DELETE"},
	{sql: "UPDATE t SET a = 1 WHERE id IN (WITH x AS (DELETE FROM u RETURNING id) SELECT id FROM x)", kind: "DELETE", table: "u"},
	{sql: "SELECT 1 UNION ALL (WITH d AS (DELETE FROM t RETURNING 1) SELECT 1)", kind: "DELETE"},
	{sql: "SELECT * FROM t WHERE EXISTS (WITH w AS (UPDATE t SET a = 2 RETURNING 1) SELECT 1 FROM w)", kind: "UPDATE"},
	// EXPLAIN ANALYZE executes
	{sql: "EXPLAIN ANALYZE DELETE FROM users", kind: "DELETE", table: "users"},
	{sql: "EXPLAIN (ANALYZE) UPDATE users SET a = 1", kind: "UPDATE"},
	{sql: "EXPLAIN (ANALYZE true, BUFFERS) INSERT INTO t VALUES (1)", kind: "INSERT"},
	{sql: "EXPLAIN (ANALYZE on) DELETE FROM t", kind: "DELETE"},
	{sql: "EXPLAIN (ANALYZE 1) DELETE FROM t", kind: "DELETE"},
	{sql: "EXPLAIN (ANALYZE yes) DELETE FROM t", kind: "DELETE"},
	{sql: "EXPLAIN (ANALYZE off, ANALYZE on) DELETE FROM t", kind: "DELETE"},
	{sql: "EXPLAIN ANALYSE DELETE FROM t", kind: "DELETE"},
	{sql: "explain analyze verbose create table x as select 1", kind: "CREATE TABLE AS"},
	{sql: "EXPLAIN ANALYZE WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d", kind: "DELETE"},
	{sql: "EXPLAIN (FORMAT JSON, ANALYZE) MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE", kind: "MERGE"},
	// PREPARE bodies
	{sql: "PREPARE p AS DELETE FROM users", kind: "DELETE", table: "users"},
	{sql: "PREPARE p(int) AS UPDATE users SET a = $1", kind: "UPDATE"},
	{sql: "PREPARE p AS WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d", kind: "DELETE"},
	{sql: "PREPARE p AS INSERT INTO t VALUES (1); EXECUTE p", kind: "INSERT"},
	{sql: "CREATE TABLE x AS EXECUTE p", kind: "CREATE TABLE AS"},
	// procedural code
	{sql: "DO $$ BEGIN DELETE FROM users; END $$", kind: "DO"},
	{sql: "DO LANGUAGE plpgsql 'BEGIN EXECUTE ''DROP TABLE t''; END'", kind: "DO"},
	{sql: "do $body$ begin perform 1; end $body$", kind: "DO"},
	{sql: "CALL cleanup()", kind: "CALL", fn: "cleanup"},
	{sql: "CALL public.purge_all(1)", kind: "CALL", fn: "public.purge_all"},
	{sql: "SELECT 1; CALL p()", kind: "CALL", fn: "p"},
	// COPY
	{sql: "COPY users FROM STDIN", kind: "COPY FROM", table: "users"},
	{sql: "COPY users FROM '/etc/passwd'", kind: "COPY FROM FILE"},
	{sql: "COPY users TO '/tmp/out.csv'", kind: "COPY TO FILE"},
	{sql: "COPY (SELECT 1) TO PROGRAM 'curl http://example.invalid'", kind: "COPY TO PROGRAM"},
	{sql: "COPY t FROM PROGRAM 'id'", kind: "COPY FROM PROGRAM"},
	{sql: "copy t (a, b) from program $$sh -c 'x'$$", kind: "COPY FROM PROGRAM"},
	{sql: "COPY (DELETE FROM t RETURNING *) TO STDOUT", kind: "DELETE", table: "t"},
	{sql: "COPY (UPDATE t SET a = 1 RETURNING *) TO STDOUT WITH (FORMAT csv)", kind: "UPDATE"},
	// SELECT INTO, CREATE TABLE AS
	{sql: "SELECT * INTO stolen FROM users", kind: "SELECT INTO", table: "stolen"},
	{sql: "SELECT * INTO TEMP t2 FROM users", kind: "SELECT INTO"},
	{sql: "CREATE TABLE copy AS SELECT * FROM users", kind: "CREATE TABLE AS", table: "copy"},
	{sql: "CREATE UNLOGGED TABLE x AS TABLE users", kind: "CREATE TABLE AS"},
	{sql: "CREATE MATERIALIZED VIEW mv AS SELECT * FROM users", kind: "CREATE MATERIALIZED VIEW"},
	{sql: "TABLE users; SELECT * INTO x FROM y", kind: "SELECT INTO"},
	// MERGE
	{sql: "MERGE INTO users u USING src s ON u.id = s.id WHEN MATCHED THEN DELETE", kind: "MERGE", table: "users"},
	{sql: "MERGE INTO t USING (SELECT 1 AS id) s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)", kind: "MERGE"},
	// side-effecting and sensitive functions
	{sql: "SELECT set_config('role', 'admin', false)", kind: "SELECT", fn: "set_config"},
	{sql: "SELECT pg_catalog.set_config('search_path', 'evil', false)", kind: "SELECT", fn: "set_config"},
	{sql: `SELECT "SET_CONFIG"('a', 'b', false)`, kind: "SELECT", fn: "SET_CONFIG"},
	{sql: "SELECT lo_import('/etc/passwd')", kind: "SELECT", fn: "lo_import"},
	{sql: "SELECT * FROM dblink('host=x', 'DELETE FROM t RETURNING 1') AS t(a int)", kind: "SELECT", fn: "dblink"},
	{sql: "SELECT dblink_exec('dbname=x', 'DROP TABLE t')", kind: "SELECT", fn: "dblink_exec"},
	{sql: "SELECT nextval('s')", kind: "SELECT", fn: "nextval"},
	{sql: "SELECT pg_terminate_backend(pid) FROM pg_stat_activity", kind: "SELECT", fn: "pg_terminate_backend"},
	{sql: "SELECT a FROM t WHERE b = (SELECT setval('s', 1))", kind: "SELECT", fn: "setval"},
	{sql: "SELECT pg_notify('ch', 'x')", kind: "SELECT", fn: "pg_notify"},
	{sql: "VALUES (lo_export(1, '/tmp/x'))", kind: "SELECT", fn: "lo_export"},
	{sql: "SELECT pg_reload_conf()", kind: "SELECT", fn: "pg_reload_conf"},
	{sql: "SELECT pg_read_file('/etc/passwd')", kind: "SELECT", fn: "pg_read_file", read: true},
	{sql: "SELECT pg_catalog.pg_read_binary_file('/etc/shadow')", kind: "SELECT", fn: "pg_read_binary_file", read: true},
	{sql: "SELECT * FROM t ORDER BY pg_sleep(10)", kind: "SELECT", fn: "pg_sleep", read: true},
	{sql: "SELECT x FROM pg_ls_dir('.') x", kind: "SELECT", fn: "pg_ls_dir", read: true},
	// privileges, roles, server
	{sql: "GRANT ALL ON users TO public", kind: "GRANT", table: "users"},
	{sql: "REVOKE SELECT ON users FROM app", kind: "REVOKE"},
	{sql: "GRANT admin TO mallory", kind: "GRANT"},
	{sql: "ALTER ROLE mallory SUPERUSER", kind: "ALTER ROLE"},
	{sql: "CREATE ROLE x SUPERUSER LOGIN", kind: "CREATE ROLE"},
	{sql: "ALTER SYSTEM SET ssl = off", kind: "ALTER SYSTEM"},
	{sql: "ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO public", kind: "ALTER DEFAULT PRIVILEGES"},
	{sql: "DROP OWNED BY app", kind: "DROP"},
	{sql: "REASSIGN OWNED BY a TO b", kind: "REASSIGN OWNED"},
	{sql: "LOAD '/tmp/evil.so'", kind: "LOAD"},
	{sql: "CREATE EXTENSION dblink", kind: "CREATE EXTENSION"},
	{sql: "COMMIT PREPARED 'x'", kind: "COMMIT PREPARED"},
	// definitions that run code later
	{sql: "CREATE RULE r AS ON SELECT TO t DO INSTEAD DELETE FROM u", kind: "DELETE", table: "u"},
	{sql: "CREATE RULE r AS ON INSERT TO t DO ALSO (DELETE FROM u; NOTIFY ch)", kind: "NOTIFY"},
	{sql: "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", kind: "CREATE TRIGGER", table: "t"},
	{sql: "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM t'", kind: "CREATE FUNCTION"},
	{sql: "CREATE PROCEDURE p() BEGIN ATOMIC DELETE FROM t; END", kind: "DELETE"},
	{sql: "CREATE SCHEMA s CREATE TABLE t (a int) CREATE VIEW v AS SELECT 1", kind: "CREATE TABLE"},
	// other destructive or writing statements
	{sql: "VACUUM FULL users", kind: "VACUUM", table: "users"},
	{sql: "LOCK TABLE users IN ACCESS EXCLUSIVE MODE", kind: "LOCK", table: "users"},
	{sql: "REFRESH MATERIALIZED VIEW mv", kind: "REFRESH MATERIALIZED VIEW"},
	{sql: "SECURITY LABEL ON TABLE t IS 'x'", kind: "SECURITY LABEL"},
	{sql: "COMMENT ON TABLE users IS 'x'", kind: "COMMENT", table: "users"},
	{sql: "ALTER TABLE users DISABLE ROW LEVEL SECURITY", kind: "ALTER TABLE", table: "users"},
	{sql: "NOTIFY ch, 'x'", kind: "NOTIFY"},
	{sql: "TRUNCATE ONLY users RESTART IDENTITY CASCADE", kind: "TRUNCATE", table: "users"},
	{sql: "IMPORT FOREIGN SCHEMA s FROM SERVER srv INTO public", kind: "IMPORT FOREIGN SCHEMA"},
	{sql: "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p", kind: "CREATE SUBSCRIPTION"},
	{sql: "UPDATE users SET admin = true WHERE CURRENT OF c", kind: "UPDATE"},
	{sql: "INSERT INTO users DEFAULT VALUES ON CONFLICT DO NOTHING", kind: "INSERT"},
	{sql: "CLUSTER users USING idx", kind: "CLUSTER"},
	{sql: "REINDEX TABLE users", kind: "REINDEX"},
	{sql: "CREATE INDEX CONCURRENTLY i ON users (a)", kind: "CREATE INDEX", table: "users"},
	{sql: "DROP DATABASE prod", kind: "DROP"},
	{sql: "ALTER TABLE users RENAME TO old_users", kind: "ALTER TABLE"},
}

func TestHiddenActsAreVisible(t *testing.T) {
	require.GreaterOrEqual(t, len(hiddenCases), 80)
	for _, tc := range hiddenCases {
		t.Run(tc.sql, func(t *testing.T) {
			s := Classify(tc.sql, DefaultOptions())
			require.Empty(t, s.ParseError)
			assert.True(t, hasKind(s, tc.kind), "kind %s not in %v", tc.kind, kinds(s))
			if tc.fn != "" {
				assert.True(t, hasFunction(s, tc.fn), "function %s not in %+v", tc.fn, s.Statements)
			}
			if tc.table != "" {
				assert.True(t, hasTable(s, tc.table), "table %s not in %+v", tc.table, s.Statements)
			}
			if !tc.read {
				assert.True(t, s.Writes, "writes")
			}
		})
	}
}

// harmlessCases carry dangerous words in literals, identifiers or comments;
// they must classify as read-only.
var harmlessCases = []string{
	`SELECT 'DROP TABLE users'`,
	`SELECT "delete" FROM t`,
	"-- DROP TABLE x\nSELECT 1",
	`SELECT $$; DROP TABLE t; $$`,
	`SELECT $tag$ $$; DELETE FROM t; $$ $tag$`,
	`/* DELETE FROM users; */ SELECT 1`,
	`SELECT 1 -- ; DROP TABLE t`,
	`SELECT E'\'; DROP TABLE t; --'`,
	`SELECT 'a'';DROP TABLE t;--'`,
	`SELECT * FROM "DROP TABLE users"`,
	`SELECT "update", "insert", "truncate" FROM "grant"`,
	`SELECT * FROM users WHERE name = 'x''; DELETE FROM users; --'`,
	`SELECT U&'\0044ROP TABLE t'`,
	`SELECT U&"d!0061ta" UESCAPE '!' FROM t`,
	`SELECT 1 /* nested /* ; DROP TABLE t; */ still */`,
	`SELECT B'1010', X'FF'`,
	`SELECT $1::text`,
	`SHOW search_path`,
	`EXPLAIN DELETE FROM users`,
	`EXPLAIN (ANALYZE false) DELETE FROM users`,
	`EXPLAIN (ANALYZE off, COSTS) UPDATE t SET a = 1`,
	`EXPLAIN (ANALYZE 0) WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d`,
	`SELECT * FROM t FOR UPDATE`,
	`BEGIN; SELECT 1; COMMIT`,
	`SELECT count(*) FROM pg_stat_activity`,
	`WITH x AS (SELECT 1) SELECT * FROM x`,
	`SELECT 'COPY t FROM PROGRAM ''rm -rf /'''`,
	`SELECT $a$DO $$ BEGIN END $$$a$`,
	`SELECT n'DROP'`,
	`SELECT 'insert' AS "delete", "drop"."truncate" FROM "drop"`,
	`VALUES ('DROP TABLE t')`,
	`TABLE users`,
	`SELECT * FROM users u JOIN orders o ON o.uid = u.id WHERE u.id = 1`,
	`SET application_name = 'DROP TABLE x'`,
	`LISTEN "drop table"`,
	`DECLARE c CURSOR FOR SELECT 'delete'`,
	`SELECT format('DELETE FROM %I', 'users')`,
	`SELECT 1 AS "; DROP TABLE t; --"`,
	"SELECT 'a'\n'; DROP TABLE t; --'",
	`SELECT $x$ '; DROP TABLE t; -- $x$ FROM t`,
}

func TestHarmlessIsReadOnly(t *testing.T) {
	require.GreaterOrEqual(t, len(harmlessCases), 30)
	readOnly := []string{"SELECT", "SHOW", "EXPLAIN", "BEGIN", "COMMIT", "SET", "LISTEN", "DECLARE CURSOR"}
	for _, sql := range harmlessCases {
		t.Run(sql, func(t *testing.T) {
			s := Classify(sql, DefaultOptions())
			require.Empty(t, s.ParseError)
			require.NotEmpty(t, s.Statements)
			assert.False(t, s.Writes, "writes")
			assert.False(t, s.DDL, "ddl")
			for _, st := range s.Statements {
				assert.Contains(t, readOnly, st.Kind)
			}
		})
	}
}

// TestKinds pins the kind and rollups of each statement type.
func TestKinds(t *testing.T) {
	const R, W, D = 0, 1, 3 // read, writes, writes+DDL
	cases := []struct {
		sql   string
		kinds string // the statements' kinds, joined by "|"
		flags int
	}{
		{"SELECT 1", "SELECT", R},
		{"INSERT INTO t VALUES (1)", "INSERT", W},
		{"UPDATE t SET a = 1", "UPDATE", W},
		{"DELETE FROM t", "DELETE", W},
		{"MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN UPDATE SET a = 1", "MERGE", W},
		{"CREATE TABLE t (a int)", "CREATE TABLE", D},
		{"CREATE TEMP TABLE t (a int)", "CREATE TABLE", D},
		{"CREATE TABLE t AS SELECT 1", "CREATE TABLE AS", D},
		{"SELECT 1 INTO t", "SELECT INTO", D},
		{"CREATE MATERIALIZED VIEW v AS SELECT 1", "CREATE MATERIALIZED VIEW", D},
		{"DROP TABLE t", "DROP", D},
		{"DROP INDEX i", "DROP", D},
		{"DROP FUNCTION f(int)", "DROP", D},
		{"DROP ROLE r", "DROP", D},
		{"DROP SCHEMA s CASCADE", "DROP", D},
		{"TRUNCATE t", "TRUNCATE", W},
		{"ALTER TABLE t ADD COLUMN b int", "ALTER TABLE", D},
		{"ALTER INDEX i SET TABLESPACE x", "ALTER INDEX", D},
		{"ALTER SEQUENCE s RESTART", "ALTER SEQUENCE", D},
		{"ALTER VIEW v RENAME TO w", "ALTER VIEW", D},
		{"ALTER TABLE t RENAME COLUMN a TO b", "ALTER TABLE", D},
		{"ALTER FUNCTION f() OWNER TO x", "ALTER FUNCTION", D},
		{"ALTER FUNCTION f() SET search_path = x", "ALTER FUNCTION", D},
		{"ALTER PROCEDURE p() RENAME TO q", "ALTER PROCEDURE", D},
		{"ALTER TABLE t SET SCHEMA s", "ALTER TABLE", D},
		{"ALTER TYPE e ADD VALUE 'x'", "ALTER TYPE", D},
		{"ALTER DATABASE d SET x = 1", "ALTER DATABASE", D},
		{"ALTER MATERIALIZED VIEW v OWNER TO x", "ALTER MATERIALIZED VIEW", D},
		{"GRANT SELECT ON t TO r", "GRANT", D},
		{"REVOKE SELECT ON t FROM r", "REVOKE", D},
		{"REVOKE r FROM u", "REVOKE", D},
		{"COPY t FROM STDIN", "COPY FROM", W},
		{"COPY t TO STDOUT", "COPY TO", R},
		{"COPY t TO '/tmp/x'", "COPY TO FILE", D},
		{"COPY t FROM PROGRAM 'x'", "COPY FROM PROGRAM", D},
		{"COPY t TO PROGRAM 'x'", "COPY TO PROGRAM", D},
		{"CALL p()", "CALL", W},
		{"DO $$ BEGIN END $$", "DO", D},
		{"EXPLAIN SELECT 1", "EXPLAIN", R},
		{"EXPLAIN ANALYZE SELECT 1", "EXPLAIN|SELECT", R},
		{"EXPLAIN ANALYZE DELETE FROM t", "EXPLAIN|DELETE", W},
		{"PREPARE p AS SELECT 1", "PREPARE|SELECT", R},
		{"EXECUTE p", "EXECUTE", R},
		{"DEALLOCATE p", "DEALLOCATE", R},
		{"DEALLOCATE ALL", "DEALLOCATE", R},
		{"BEGIN", "BEGIN", R},
		{"START TRANSACTION READ ONLY", "START TRANSACTION", R},
		{"COMMIT", "COMMIT", R},
		{"END", "COMMIT", R},
		{"ROLLBACK", "ROLLBACK", R},
		{"ABORT", "ROLLBACK", R},
		{"SAVEPOINT s", "SAVEPOINT", R},
		{"RELEASE SAVEPOINT s", "RELEASE", R},
		{"ROLLBACK TO SAVEPOINT s", "ROLLBACK TO SAVEPOINT", R},
		{"PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION", W},
		{"COMMIT PREPARED 'x'", "COMMIT PREPARED", W},
		{"ROLLBACK PREPARED 'x'", "ROLLBACK PREPARED", W},
		{"SET x = 1", "SET", R},
		{"SET LOCAL x TO DEFAULT", "SET", R},
		{"SET SESSION AUTHORIZATION u", "SET", R},
		{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SET", R},
		{"RESET x", "RESET", R},
		{"RESET ALL", "RESET", R},
		{"SHOW x", "SHOW", R},
		{"SHOW ALL", "SHOW", R},
		{"SET CONSTRAINTS ALL DEFERRED", "SET CONSTRAINTS", R},
		{"VACUUM t", "VACUUM", W},
		{"VACUUM (ANALYZE) t", "VACUUM", W},
		{"ANALYZE t", "ANALYZE", W},
		{"LOCK TABLE t", "LOCK", W},
		{"LOCK TABLE t IN ACCESS SHARE MODE", "LOCK", R},
		{"LOCK TABLE t IN ROW EXCLUSIVE MODE", "LOCK", R},
		{"LOCK TABLE t IN SHARE MODE", "LOCK", W},
		{"LISTEN c", "LISTEN", R},
		{"UNLISTEN *", "UNLISTEN", R},
		{"NOTIFY c", "NOTIFY", W},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "CREATE FUNCTION", D},
		{"CREATE OR REPLACE PROCEDURE p() LANGUAGE sql AS ''", "CREATE PROCEDURE", D},
		{"CREATE RULE r AS ON INSERT TO t DO NOTHING", "CREATE RULE", D},
		{"CREATE TRIGGER g AFTER INSERT ON t EXECUTE FUNCTION f()", "CREATE TRIGGER", D},
		{"CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()", "CREATE EVENT TRIGGER", D},
		{"CREATE VIEW v AS SELECT 1", "CREATE VIEW", D},
		{"CREATE INDEX i ON t (a)", "CREATE INDEX", D},
		{"CREATE ROLE r", "CREATE ROLE", D},
		{"CREATE USER u", "CREATE USER", D},
		{"CREATE GROUP g", "CREATE GROUP", D},
		{"CREATE SEQUENCE s", "CREATE SEQUENCE", D},
		{"CREATE SCHEMA s", "CREATE SCHEMA", D},
		{"CREATE DATABASE d", "CREATE DATABASE", D},
		{"CREATE TYPE c AS (a int)", "CREATE TYPE", D},
		{"CREATE TYPE e AS ENUM ('a')", "CREATE TYPE", D},
		{"CREATE AGGREGATE a (int) (sfunc = f, stype = int)", "CREATE AGGREGATE", D},
		{"CREATE OPERATOR === (function = f, leftarg = int, rightarg = int)", "CREATE OPERATOR", D},
		{"CREATE TEXT SEARCH DICTIONARY d (template = simple)", "CREATE TEXT SEARCH DICTIONARY", D},
		{"CREATE DOMAIN d AS int", "CREATE DOMAIN", D},
		{"CREATE EXTENSION e", "CREATE EXTENSION", D},
		{"CREATE SERVER s FOREIGN DATA WRAPPER w", "CREATE SERVER", D},
		{"CREATE FOREIGN TABLE f (a int) SERVER s", "CREATE FOREIGN TABLE", D},
		{"CREATE POLICY p ON t USING (true)", "CREATE POLICY", D},
		{"CREATE PUBLICATION p FOR ALL TABLES", "CREATE PUBLICATION", D},
		{"CREATE STATISTICS s ON a, b FROM t", "CREATE STATISTICS", D},
		{"CREATE CAST (int AS text) WITH INOUT", "CREATE CAST", D},
		{"CREATE LANGUAGE plperl", "CREATE EXTENSION", D}, // the parser's own rewrite
		{"CREATE LANGUAGE plsample HANDLER h", "CREATE LANGUAGE", D},
		{"CREATE ACCESS METHOD m TYPE TABLE HANDLER h", "CREATE ACCESS METHOD", D},
		{"CREATE TABLESPACE ts LOCATION '/x'", "CREATE TABLESPACE", D},
		{"COMMENT ON TABLE t IS 'x'", "COMMENT", D},
		{"SECURITY LABEL ON TABLE t IS 'x'", "SECURITY LABEL", D},
		{"REFRESH MATERIALIZED VIEW CONCURRENTLY v", "REFRESH MATERIALIZED VIEW", W},
		{"CLUSTER t", "CLUSTER", W},
		{"REINDEX INDEX i", "REINDEX", W},
		{"CHECKPOINT", "CHECKPOINT", W},
		{"DISCARD ALL", "DISCARD ALL", R},
		{"DISCARD TEMP", "DISCARD TEMP", R},
		{"LOAD 'x'", "LOAD", D},
		{"IMPORT FOREIGN SCHEMA s FROM SERVER v INTO p", "IMPORT FOREIGN SCHEMA", D},
		{"ALTER SYSTEM SET x = 1", "ALTER SYSTEM", D},
		{"ALTER SYSTEM RESET ALL", "ALTER SYSTEM", D},
		{"ALTER ROLE r SET x = 1", "ALTER ROLE", D},
		{"ALTER DEFAULT PRIVILEGES REVOKE ALL ON TABLES FROM public", "ALTER DEFAULT PRIVILEGES", D},
		{"DROP OWNED BY r", "DROP", D},
		{"REASSIGN OWNED BY a TO b", "REASSIGN OWNED", D},
		{"DECLARE c CURSOR FOR SELECT 1", "DECLARE CURSOR", R},
		{"FETCH 10 FROM c", "FETCH", R},
		{"MOVE 10 IN c", "MOVE", R},
		{"CLOSE c", "CLOSE CURSOR", R},
		{"VALUES (1)", "SELECT", R},
		{"TABLE t", "SELECT", R},
		{"SELECT 1 UNION SELECT 2", "SELECT", R},
		{"ALTER EXTENSION e UPDATE", "ALTER EXTENSION", D},
		{"ALTER SUBSCRIPTION s DISABLE", "ALTER SUBSCRIPTION", D},
		{"DROP SUBSCRIPTION s", "DROP", D},
		{"ALTER TEXT SEARCH CONFIGURATION c OWNER TO r", "ALTER TEXT SEARCH CONFIGURATION", D},
		{"CREATE CONVERSION c FOR 'LATIN1' TO 'UTF8' FROM f", "CREATE CONVERSION", D},
	}
	for _, tc := range cases {
		t.Run(tc.sql, func(t *testing.T) {
			s := Classify(tc.sql, DefaultOptions())
			require.Empty(t, s.ParseError)
			assert.Equal(t, tc.kinds, strings.Join(kinds(s), "|"))
			assert.Equal(t, tc.flags&1 != 0, s.Writes, "writes")
			assert.Equal(t, tc.flags&2 != 0, s.DDL, "ddl")
		})
	}
}

func TestDetails(t *testing.T) {
	o := DefaultOptions()

	s := Classify("UPDATE public.accounts a SET x = 1 FROM other o, s.third WHERE a.id = o.id", o)
	require.Len(t, s.Statements, 1)
	assert.Equal(t, []string{"public.accounts", "accounts", "other", "s.third", "third"}, s.Statements[0].Tables, "target first, qualified and bare")
	assert.True(t, s.Statements[0].HasWhere)

	s = Classify("DELETE FROM t", o)
	assert.False(t, s.Statements[0].HasWhere)
	s = Classify("DELETE FROM t WHERE CURRENT OF c", o)
	assert.True(t, s.Statements[0].HasWhere)
	s = Classify("TRUNCATE t", o)
	assert.False(t, s.Statements[0].HasWhere)
	s = Classify("MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE", o)
	assert.True(t, s.Statements[0].HasWhere)
	s = Classify("SELECT 1 FROM a WHERE x UNION SELECT 1 FROM b", o)
	assert.False(t, s.Statements[0].HasWhere, "one branch without WHERE")
	s = Classify("SELECT 1 FROM a WHERE x UNION SELECT 1 FROM b WHERE y", o)
	assert.True(t, s.Statements[0].HasWhere)

	s = Classify("SELECT * INTO new_t FROM a JOIN b USING (id) WHERE a.x IN (SELECT x FROM c)", o)
	assert.Equal(t, []string{"new_t", "a", "b", "c"}, s.Statements[0].Tables)
	s = Classify("CREATE TABLE n AS SELECT * FROM a", o)
	assert.Equal(t, []string{"n", "a"}, s.Statements[0].Tables)

	s = Classify(`SELECT "a.b".c FROM "a.b", x."y""z", db.s.t`, o)
	assert.Equal(t, []string{`"a.b"`, `x."y""z"`, `"y""z"`, "db.s.t", "t"}, s.Statements[0].Tables, "names that could be misread are quoted")

	s = Classify("SELECT lower(upper(x)), LOWER(y), pg_catalog.now(), public.f() FROM t", o)
	assert.Equal(t, []string{"lower", "upper", "pg_catalog.now", "now", "public.f", "f"}, s.Statements[0].Functions)

	s = Classify("DROP TABLE a, s.b, c CASCADE", o)
	assert.Equal(t, []string{"a", "s.b", "b", "c"}, s.Statements[0].Tables)

	s = Classify("EXPLAIN SELECT pg_sleep(1) FROM t", o)
	assert.Equal(t, []string{"EXPLAIN"}, kinds(s))
	assert.Equal(t, []string{"t"}, s.Statements[0].Tables, "plain EXPLAIN reports what it explains")
	assert.Equal(t, []string{"pg_sleep"}, s.Statements[0].Functions)

	s = Classify("SELECT 1 FROM t WHERE a IN (SELECT b FROM u WHERE c = (SELECT max(d) FROM v))", o)
	assert.Equal(t, []string{"t", "u", "v"}, s.Statements[0].Tables, "subqueries are part of their statement")
	assert.Equal(t, []string{"max"}, s.Statements[0].Functions)
}

func TestEmptyAndBadInput(t *testing.T) {
	o := DefaultOptions()
	for _, sql := range []string{"", ";", " ; ; ", "-- only a comment", "/* c */"} {
		s := Classify(sql, o)
		assert.Empty(t, s.ParseError, "%q", sql)
		assert.Empty(t, s.Statements, "%q", sql)
	}
	for _, sql := range []string{"SELEC 1", "SELECT 'unterminated", "SELECT $$x", "/* open", "DROP TABLE", "SELECT 1\x00; DROP TABLE t", `SELECT E'\xZZ\u00zz'`} {
		s := Classify(sql, o)
		assert.NotEmpty(t, s.ParseError, "%q", sql)
		assert.Empty(t, s.Statements, "%q", sql)
		assert.NotNil(t, s.Statements, "%q: an empty list, not null, in JSON", sql)
	}
	s := Classify("SELECT 1\x00; DROP TABLE t", o)
	assert.Contains(t, s.ParseError, "NUL")

	deep := strings.Repeat("(", 10000) + "1" + strings.Repeat(")", 10000)
	s = Classify("SELECT "+deep, o)
	assert.NotEmpty(t, s.ParseError, "too deep")
}

func TestClientEncoding(t *testing.T) {
	o := DefaultOptions()
	for _, enc := range []string{"SJIS", "sjis", "Shift_JIS", "BIG5", "GBK", "UHC", "GB18030", "JOHAB", "SHIFT_JIS_2004", "win932"} {
		o.ClientEncoding = enc
		assert.Contains(t, Classify("SELECT 1", o).ParseError, "client_encoding", enc)
	}
	for _, enc := range []string{"", "UTF8", "utf-8", "LATIN1", "EUC_JP", "SQL_ASCII", "WIN1252"} {
		o.ClientEncoding = enc
		assert.Empty(t, Classify("SELECT 1", o).ParseError, enc)
	}
}

// TestEveryStatementTypeIsKnown: every statement node type of the parser
// has its own entry in specs; none falls back to genericSpec by accident.
func TestEveryStatementTypeIsKnown(t *testing.T) {
	notStatements := map[string]bool{"RawStmt": true, "ReturnStmt": true, "PLAssignStmt": true,
		"SetOperationStmt": true, "ReplicaIdentityStmt": true}
	n := 0
	for _, mt := range msgTypes {
		if !strings.HasSuffix(mt.name, "Stmt") || notStatements[mt.name] {
			continue
		}
		n++
		assert.Contains(t, specs, mt.name)
	}
	assert.Greater(t, n, 100)
}

func TestGenericSpecFailsClosed(t *testing.T) {
	s := genericSpec("AlterFooBarStmt")
	assert.Equal(t, "ALTER FOO BAR", s.kind)
	assert.True(t, s.writes)
	assert.True(t, s.ddl)
	assert.Equal(t, "CREATE PLANG", genericSpec("CreatePLangStmt").kind)
	assert.Equal(t, "AEXPR", typeByName("A_Expr").fallback.kind)
}
