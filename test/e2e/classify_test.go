package e2e

// The statement classifier judged end to end: statements that try to hide
// a write or a destructive act, and harmless statements that only mention
// dangerous words, sent by psql and pgx through an in-process gateway whose
// decider is a real CEL policy, to the machine's PostgreSQL. Each refusal
// is checked from outside the gateway: a fingerprint of a scratch database
// (catalog, row contents, server files, other sessions) must not change,
// and, where a transaction can hold the act, a control run of the same text
// directly against the server shows that the fingerprint would have seen
// it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/internal/pgtest"
	"github.com/sluicegw/sluice/policy"
)

// classifyPolicy is the gateway's policy. Targets labelled
// policy=read-only get the read-only policy of the issue: a command runs
// only when the classifier says it writes nothing and could parse it.
// The target labelled policy=lab lets everything but destruction through,
// so that the routes to standard_conforming_strings = off that the
// read-only policy refuses by themselves (set_config, UPDATE pg_settings)
// can be taken, and the smuggling after them tried.
const classifyPolicy = `
rules:
  - name: e2e-connect
    match: command.kind == "connect"
    action: allow

  - name: e2e-read-only
    match: >
      target.labels.policy == "read-only" && command.kind == "query" &&
      size(command.sql.statements) > 0 &&
      !command.sql.writes && command.sql.parse_error == ""
    action: allow

  - name: e2e-read-only-refuses
    match: >
      target.labels.policy == "read-only" && command.kind == "query" &&
      (command.sql.writes || command.sql.parse_error != "")
    action: deny
    message: read-only access; this statement may change data, or could not be checked

  - name: e2e-lab
    match: >
      target.labels.policy == "lab" && command.kind == "query" &&
      size(command.sql.statements) > 0
    action: allow

  - name: e2e-lab-refuses
    match: >
      target.labels.policy == "lab" && command.kind == "query" &&
      (command.sql.parse_error != "" ||
       command.sql.statements.exists(s, s.kind in ["DROP", "TRUNCATE", "DELETE"]))
    action: deny
    message: lab access; destructive statements are refused

default: deny
`

// clsFingerprintSQL describes everything in the scratch database (and the
// server around it) that a refused statement might have changed: every
// relation with its storage, owner, privileges, columns and, for tables,
// row count and content hash; routines and their bodies; schemas,
// triggers, rules, policies, default privileges, extensions, large
// objects, sequence positions; the scratch databases, roles, memberships
// and per-role/database settings; when the configuration was last loaded;
// whether the victim session is alive; strong locks other sessions hold;
// and whether marker files exist on the server. $1 is the scratch name
// prefix, $2 the victim's application_name, $3 the marker files.
const clsFingerprintSQL = `SELECT concat_ws(E'\n',
  'relations: ' || (SELECT string_agg(x, E'\n  ' ORDER BY x) FROM (
     SELECT concat_ws(' ', regexp_replace(n.nspname, '^pg_temp_[0-9]+$', 'pg_temp'), c.relname, c.relkind,
       c.relfilenode, c.relowner::regrole, c.relacl, c.relrowsecurity, c.reloptions,
       obj_description(c.oid, 'pg_class'),
       (SELECT string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
       CASE WHEN c.relkind IN ('r', 'm', 'p') AND c.relpersistence <> 't' THEN
         (xpath('/row/h/text()', query_to_xml(format(
           'SELECT count(*) || '':'' || md5(coalesce(string_agg(t::text, ''|'' ORDER BY t::text), '''')) AS h FROM %I.%I t',
           n.nspname, c.relname), false, true, '')))[1]::text END) AS x
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%') s),
  'routines: ' || (SELECT string_agg(x, '; ' ORDER BY x) FROM (
     SELECT concat_ws(' ', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind,
       md5(coalesce(p.prosrc, '')), p.proconfig, p.proacl, p.proowner::regrole) AS x
     FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')) s),
  'schemas: ' || (SELECT string_agg(x, ', ' ORDER BY x) FROM (
     SELECT nspname || ':' || coalesce(nspacl::text, '') AS x FROM pg_namespace
     WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname !~ '^pg_(toast|temp_|toast_temp_)') s),
  'triggers: ' || (SELECT string_agg(tgname, ', ' ORDER BY tgname) FROM pg_trigger WHERE NOT tgisinternal),
  'rules: ' || (SELECT string_agg(x, ', ' ORDER BY x) FROM (
     SELECT tablename || '.' || rulename AS x FROM pg_rules WHERE schemaname <> 'pg_catalog') s),
  'policies: ' || (SELECT string_agg(polname, ', ' ORDER BY polname) FROM pg_policy),
  'default acls: ' || (SELECT count(*) FROM pg_default_acl),
  'extensions: ' || (SELECT string_agg(extname, ', ' ORDER BY extname) FROM pg_extension),
  'large objects: ' || (SELECT count(*) FROM pg_largeobject_metadata),
  'sequences: ' || (SELECT string_agg(x, ', ' ORDER BY x) FROM (
     SELECT sequencename || '=' || coalesce(last_value::text, 'null') AS x FROM pg_sequences) s),
  'databases: ' || (SELECT string_agg(x, ', ' ORDER BY x) FROM (
     SELECT datname || ':' || coalesce(datacl::text, '') AS x FROM pg_database WHERE starts_with(datname, $1)) s),
  'roles: ' || (SELECT string_agg(x, ', ' ORDER BY x) FROM (
     SELECT concat_ws(':', rolname, rolsuper, rolcreaterole, rolcreatedb, rolcanlogin) AS x
     FROM pg_roles WHERE starts_with(rolname, $1)) s),
  'memberships: ' || (SELECT string_agg(x, ', ' ORDER BY x) FROM (
     SELECT r.rolname || '>' || m.rolname AS x FROM pg_auth_members am
     JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member WHERE starts_with(m.rolname, $1)) s),
  'role and database settings: ' || (SELECT string_agg(x, ', ' ORDER BY x) FROM (
     SELECT concat_ws('/', d.datname, ro.rolname, s.setconfig) AS x FROM pg_db_role_setting s
     LEFT JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles ro ON ro.oid = s.setrole
     WHERE starts_with(d.datname, $1) OR starts_with(ro.rolname, $1)) s),
  'configuration loaded: ' || pg_conf_load_time(),
  'victim sessions: ' || (SELECT count(*) FROM pg_stat_activity WHERE application_name = $2),
  'strong locks held by others: ' || (SELECT count(*) FROM pg_locks l WHERE l.locktype = 'relation'
     AND l.pid <> pg_backend_pid() AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
     AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')),
  'server files: ' || (SELECT string_agg(f || '=' || ((pg_stat_file(f, true)).size IS NOT NULL), ', ' ORDER BY f)
     FROM unnest($3::text[]) f)
)`

// hideCase is a text that tries to hide a write or a destructive act. The
// placeholders {db}, {scsdb}, {role}, {mallory}, {tmp}, {victim} and {ch}
// stand for the scratch names of one run.
type hideCase struct {
	sql string
	// setup runs first, through the gateway (it must be allowed) and in
	// the control.
	setup []string
	// noCtl, when set, says why the text cannot be run directly in a
	// rolled-back transaction to show that the fingerprint sees its act,
	// and what in the fingerprint covers it instead.
	noCtl string
	// copyIn is the data the control sends to a COPY ... FROM STDIN.
	copyIn string
	// psql and ext select the text for the psql and extended-protocol
	// samples.
	psql, ext bool
}

const (
	noCtlTxn     = "has its own transaction control; the fingerprint covers the data"
	noCtlOutside = "cannot run inside a transaction block; the fingerprint covers the relation"
	noCtlFile    = "writes a server file outside any transaction; the fingerprint checks the marker file"
)

// hidingCases: every one must be refused with 42501 and change nothing.
var hidingCases = []hideCase{
	// comments, case, quoting, unicode escapes, several statements in one text
	{sql: `/* harmless */ DROP TABLE users`, psql: true, ext: true},
	{sql: "-- just a comment\nDROP TABLE orders", psql: true},
	{sql: `SELECT 1; DROP TABLE users`, psql: true, ext: true},
	{sql: `select 1;drop table users--`},
	{sql: `SeLeCt 1 ; dRoP tAbLe UsErS`, psql: true},
	{sql: `/* nested /* comment */ still comment */ DELETE FROM users`},
	{sql: `SELECT 1 /* ; */ ; TRUNCATE users`},
	{sql: `SELECT '--'; DELETE FROM users`, psql: true},
	{sql: `SELECT $$--$$; UPDATE users SET admin = true`},
	{sql: `SELECT name AS "--" FROM users; DROP TABLE orders`},
	{sql: `DROP TABLE "users"`},
	{sql: `DROP TABLE U&"\0075sers"`, psql: true},
	{sql: `DELETE FROM U&"!0075sers" UESCAPE '!'`, ext: true},
	{sql: `DELETE FROM public.users`},
	{sql: `DELETE FROM "public"."users" WHERE true`},
	{sql: "SELECT 1\n;\n\n/**/DROP/**/TABLE/**/orders"},
	{sql: `SELECT 1;;;DELETE FROM orders;;`},
	{sql: `SELECT E'\''; DROP TABLE users; --'`, psql: true},
	{sql: `SELECT 'a'';DROP'; DROP TABLE users`},
	{sql: `SELECT $x$;$x$; UPDATE users SET name = 'pwned'`},
	{sql: `SELECT U&'\0044ROP'; DROP TABLE orders`},
	{sql: "SELECT 1 -- ;\n; DELETE FROM audit"},
	{sql: "TABLE users;\nINSERT INTO audit (note) VALUES ('pwned')"},
	{sql: `VALUES (1); UPDATE orders SET amount = 0`},
	{sql: `SELECT E'\x27'; DELETE FROM users; -- '`},
	{sql: `SELECT 'it''s'; DROP TABLE users; --'`},
	{sql: `SELECT U&'d\0061ta'; TRUNCATE audit`},
	{sql: `DROP TABLE users, orders`},
	{sql: `DROP TABLE IF EXISTS "DROP TABLE users"`},
	{sql: `SELECT 1 UNION ALL SELECT 2; DELETE FROM audit`},
	{sql: `SET search_path = public; DELETE FROM users`},
	{sql: `RESET ALL; DROP TABLE users`},
	{sql: `SHOW search_path; TRUNCATE orders`},
	{sql: `SELECT * FROM users FOR UPDATE; DELETE FROM users WHERE admin`},
	// transaction wrapping
	{sql: `BEGIN; DELETE FROM users; COMMIT`, noCtl: noCtlTxn, psql: true},
	{sql: `START TRANSACTION; TRUNCATE orders; COMMIT`, noCtl: noCtlTxn},
	{sql: `BEGIN; SAVEPOINT a; DROP TABLE audit; RELEASE a; COMMIT;`, noCtl: noCtlTxn, psql: true},
	{sql: `BEGIN ISOLATION LEVEL SERIALIZABLE; UPDATE users SET admin = true; END`, noCtl: noCtlTxn},
	{sql: `BEGIN; DECLARE c CURSOR FOR SELECT * FROM users; DELETE FROM users; COMMIT`, noCtl: noCtlTxn},
	{sql: `BEGIN READ ONLY; COMMIT; DELETE FROM orders`, noCtl: noCtlTxn},
	{sql: `BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE`,
		noCtl: "the lock would end with the control's transaction; the fingerprint counts strong locks other sessions hold"},
	// data-modifying WITH queries
	{sql: `WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d`, psql: true, ext: true},
	{sql: `WITH u AS (UPDATE users SET admin = true RETURNING id) SELECT count(*) FROM u`, ext: true},
	{sql: `WITH i AS (INSERT INTO audit (note) VALUES ('x') RETURNING 1) SELECT 1`, ext: true},
	{sql: `WITH d AS (DELETE FROM users RETURNING *) INSERT INTO archive SELECT * FROM d`},
	{sql: `WITH a AS (SELECT 1), d AS (DELETE FROM orders RETURNING 1) SELECT * FROM a`, psql: true},
	{sql: `WITH x AS (DELETE FROM orders RETURNING uid) UPDATE users SET admin = true WHERE id IN (SELECT uid FROM x)`},
	{sql: `WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3), d AS (DELETE FROM audit RETURNING 1) SELECT count(*) FROM r`},
	{sql: `WITH "select" AS (DELETE FROM users RETURNING *) SELECT 1`},
	{sql: `/* read only */ WITH d AS (UPDATE orders SET amount = 0 RETURNING *) TABLE d`},
	// EXPLAIN ANALYZE runs its statement
	{sql: `EXPLAIN ANALYZE DELETE FROM users`, psql: true, ext: true},
	{sql: `EXPLAIN (ANALYZE) UPDATE users SET admin = true`},
	{sql: `EXPLAIN (ANALYZE true, BUFFERS) INSERT INTO audit (note) VALUES ('x')`},
	{sql: `EXPLAIN (ANALYZE on) DELETE FROM orders`},
	{sql: `EXPLAIN (ANALYZE 1) DELETE FROM orders`},
	// The same text but for a boolean given as a number, first allowed:
	// the classifier's cache must not hand the runnable one the harmless
	// one's classification (texts differing only in integer literals
	// share an entry, zero and non-zero apart).
	{sql: `EXPLAIN (ANALYZE 1, COSTS 1) DELETE FROM orders WHERE id > 1`, setup: []string{`EXPLAIN (ANALYZE 0, COSTS 1) DELETE FROM orders WHERE id > 1`}},
	{sql: `EXPLAIN (ANALYZE 'on') DELETE FROM orders`},
	{sql: `EXPLAIN (ANALYZE "true") DELETE FROM orders`},
	{sql: `EXPLAIN (ANALYZE off, ANALYZE on) DELETE FROM orders`},
	{sql: `EXPLAIN ANALYSE DELETE FROM users`},
	{sql: `explain analyze verbose create table stolen as select * from users`},
	{sql: `EXPLAIN ANALYZE WITH d AS (DELETE FROM users RETURNING 1) SELECT * FROM d`},
	{sql: `EXPLAIN (FORMAT JSON, ANALYZE) MERGE INTO users u USING src s ON u.id = s.id WHEN MATCHED THEN DELETE`, psql: true},
	{sql: `EXPLAIN ANALYZE SELECT * INTO stolen FROM users`},
	// PREPARE and EXECUTE
	{sql: `PREPARE p1 AS DELETE FROM users; EXECUTE p1`, psql: true},
	{sql: `PREPARE p2(int) AS UPDATE users SET admin = true WHERE id > $1; EXECUTE p2(0)`},
	{sql: `PREPARE p3 AS WITH d AS (DELETE FROM orders RETURNING 1) SELECT * FROM d; EXECUTE p3`},
	{sql: `CREATE TABLE stolen AS EXECUTE sel_users`, setup: []string{`PREPARE sel_users AS SELECT * FROM users`}, psql: true},
	{sql: `DEALLOCATE sel_orders; PREPARE sel_orders AS DELETE FROM orders; EXECUTE sel_orders`,
		setup: []string{`PREPARE sel_orders AS SELECT * FROM orders`}},
	// DO
	{sql: `DO $$ BEGIN DELETE FROM users; END $$`, psql: true, ext: true},
	{sql: `DO LANGUAGE plpgsql 'BEGIN EXECUTE ''DROP TABLE orders''; END'`},
	{sql: `do $body$ begin perform purge_orders(); end $body$`},
	{sql: `DO $x$ BEGIN EXECUTE format('TRUNCATE %I', 'audit'); END $x$`},
	{sql: `SELECT 1; DO $$BEGIN UPDATE users SET admin = true; END$$`},
	// CALL
	{sql: `CALL cleanup()`, psql: true, ext: true},
	{sql: `CALL public.purge_all(0)`},
	{sql: `SELECT 1; CALL cleanup()`},
	{sql: `call "cleanup"()`},
	// COPY
	{sql: `COPY (SELECT 1) TO PROGRAM 'touch {tmp}_prog'`, noCtl: noCtlFile, psql: true, ext: true},
	{sql: `COPY audit (note) FROM PROGRAM 'echo pwned'`},
	{sql: `copy audit (note) from program $$sh -c 'echo pwned'$$`},
	{sql: `COPY users TO '{tmp}_copy'`, noCtl: noCtlFile},
	{sql: `COPY (DELETE FROM users RETURNING *) TO STDOUT`, psql: true},
	{sql: `COPY (UPDATE users SET admin = true RETURNING *) TO STDOUT WITH (FORMAT csv)`},
	{sql: `COPY users (id, name) FROM STDIN`, copyIn: "99\tmallory\n"},
	{sql: `SELECT lo_export(lo_import('/etc/passwd'), '{tmp}_lo')`, noCtl: noCtlFile},
	// SELECT INTO, CREATE TABLE AS
	{sql: `SELECT * INTO stolen FROM users`, psql: true, ext: true},
	{sql: `SELECT * INTO TEMP stolen FROM users`},
	{sql: `CREATE TABLE stolen AS SELECT * FROM users`, ext: true},
	{sql: `CREATE UNLOGGED TABLE stolen AS TABLE users`},
	{sql: `CREATE MATERIALIZED VIEW stolen AS SELECT * FROM users`},
	{sql: `TABLE users; SELECT * INTO stolen FROM orders`},
	{sql: `SELECT name INTO "stolen" FROM users WHERE admin`},
	{sql: `CREATE TEMP TABLE stolen AS SELECT 1 AS x`},
	// MERGE
	{sql: `MERGE INTO users u USING src s ON u.id = s.id WHEN MATCHED THEN DELETE`, psql: true, ext: true},
	{sql: `MERGE INTO audit a USING (SELECT 99 AS id) s ON a.id = s.id WHEN NOT MATCHED THEN INSERT (note) VALUES ('merged')`},
	{sql: `merge into users using src on users.id = src.id when matched then update set admin = true`},
	{sql: `SELECT 1; MERGE INTO orders o USING src s ON o.uid = s.id WHEN MATCHED THEN DELETE`},
	// side-effecting functions in a SELECT
	{sql: `SELECT nextval('order_seq')`, ext: true},
	{sql: `SELECT setval('order_seq', 1000)`},
	{sql: `SELECT pg_catalog.setval('public.order_seq', 42, true)`},
	{sql: `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{victim}'`,
		noCtl: "would end the victim session for good; the fingerprint counts it", psql: true, ext: true},
	{sql: `SELECT pg_notify('{ch}', 'pwned')`, noCtl: "delivered only on commit; the listener must receive nothing"},
	{sql: `NOTIFY {ch}, 'pwned'`, noCtl: "delivered only on commit; the listener must receive nothing"},
	{sql: `SELECT pg_reload_conf()`, noCtl: "not transactional; the fingerprint has pg_conf_load_time()"},
	{sql: `VALUES (lo_import('/etc/passwd'))`},
	{sql: `SELECT lo_from_bytea(0, '\xdeadbeef')`},
	// privileges, roles, settings
	{sql: `GRANT ALL ON users TO public`},
	{sql: `GRANT SELECT ON orders TO {role}`},
	{sql: `CREATE ROLE {mallory} SUPERUSER LOGIN`, psql: true},
	{sql: `ALTER ROLE {role} SUPERUSER`},
	{sql: `GRANT pg_read_server_files TO {role}`},
	{sql: `ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO public`},
	{sql: `ALTER DATABASE {db} SET work_mem = '1MB'`},
	{sql: `ALTER ROLE {role} SET search_path = evil`},
	{sql: `REVOKE ALL ON users FROM {role}`},
	// definitions and other DDL
	{sql: `COMMENT ON TABLE users IS 'pwned'`},
	{sql: `ALTER TABLE users ENABLE ROW LEVEL SECURITY`},
	{sql: `ALTER TABLE users RENAME TO old_users`},
	{sql: `ALTER TABLE users DROP COLUMN name`},
	{sql: `ALTER TABLE orders ALTER COLUMN amount TYPE text`},
	{sql: `ALTER TABLE users OWNER TO postgres`},
	{sql: `CREATE INDEX users_name_idx ON users (name)`},
	{sql: `CREATE INDEX CONCURRENTLY users_name_idx ON users (name)`, noCtl: noCtlOutside},
	{sql: `VACUUM FULL users`, noCtl: noCtlOutside},
	{sql: `CLUSTER users USING users_pkey`},
	{sql: `REINDEX TABLE users`},
	{sql: `REFRESH MATERIALIZED VIEW src_count`},
	{sql: `TRUNCATE ONLY users RESTART IDENTITY CASCADE`},
	{sql: `CREATE RULE r AS ON INSERT TO audit DO INSTEAD NOTHING`},
	{sql: `CREATE TRIGGER tr BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION audit_noop()`},
	{sql: `CREATE FUNCTION evil() RETURNS void LANGUAGE sql AS 'DELETE FROM users'`},
	{sql: `CREATE PROCEDURE evil_proc() BEGIN ATOMIC DELETE FROM users; END`},
	{sql: `CREATE OR REPLACE FUNCTION purge_orders() RETURNS int LANGUAGE sql AS 'SELECT 0'`},
	{sql: `CREATE SCHEMA evil CREATE TABLE t (a int) CREATE VIEW v AS SELECT 1`},
	{sql: `CREATE VIEW v AS SELECT * FROM users`},
	{sql: `CREATE POLICY p ON users USING (true)`},
	{sql: `DROP FUNCTION purge_orders()`},
	{sql: `DROP PROCEDURE cleanup`},
	{sql: `DROP SCHEMA public CASCADE`, psql: true},
	{sql: `DROP DATABASE {scsdb}`, noCtl: noCtlOutside + " (the fingerprint lists the scratch databases)"},
	{sql: `DROP OWNED BY {role}`},
	{sql: `ALTER SEQUENCE order_seq RESTART WITH 500`},
	// plain writes
	{sql: `INSERT INTO users (id, name) VALUES (99, 'mallory') ON CONFLICT DO NOTHING`, ext: true},
	{sql: `UPDATE users SET admin = true`},
	{sql: `delete from orders where amount > 0`},
}

// harmlessCase is a read that mentions dangerous words; want, when set, is
// the first column of the first row of its last result.
type harmlessCase struct {
	sql       string
	want      string
	psql, ext bool
}

var harmlessCases = []harmlessCase{
	{sql: `SELECT 'DROP TABLE users'`, want: "DROP TABLE users", psql: true, ext: true},
	{sql: `SELECT "delete" FROM users WHERE id = 2`, want: "x", psql: true, ext: true},
	{sql: "-- DROP TABLE users\nSELECT 1", want: "1", psql: true},
	{sql: `SELECT $$; DROP TABLE users; $$`, want: "; DROP TABLE users; ", psql: true},
	{sql: `SELECT $tag$ $$; DELETE FROM users; $$ $tag$`, want: " $$; DELETE FROM users; $$ "},
	{sql: `/* DELETE FROM users; */ SELECT count(*) FROM users`, want: "3", ext: true},
	{sql: `SELECT 1 -- ; DROP TABLE users`, want: "1", psql: true},
	{sql: `SELECT E'\'; DROP TABLE users; --'`, want: `'; DROP TABLE users; --`, psql: true, ext: true},
	{sql: `SELECT 'a'';DROP TABLE users;--'`, want: `a';DROP TABLE users;--`},
	{sql: `SELECT * FROM "DROP TABLE users"`, want: "42", ext: true},
	{sql: `SELECT "update", "insert", "truncate" FROM users WHERE id = 1`, want: "u1"},
	{sql: `SELECT "select", "from" FROM "grant"`, want: "1"},
	{sql: `SELECT count(*) FROM users WHERE name = 'x''; DELETE FROM users; --'`, want: "0", psql: true},
	{sql: `SELECT U&'\0044ROP TABLE users'`, want: "DROP TABLE users", psql: true, ext: true},
	{sql: `SELECT U&"d!0065lete" UESCAPE '!' FROM users WHERE id = 2`, want: "x"},
	{sql: `SELECT 1 /* nested /* ; DROP TABLE users; */ still */`, want: "1"},
	{sql: `EXPLAIN DELETE FROM users`, psql: true, ext: true},
	{sql: `EXPLAIN (ANALYZE false) DELETE FROM users`, ext: true},
	{sql: `EXPLAIN (ANALYZE off, COSTS) UPDATE users SET admin = true`},
	{sql: `EXPLAIN WITH d AS (DELETE FROM users RETURNING 1) SELECT * FROM d`},
	{sql: `SELECT id FROM users ORDER BY id FOR UPDATE`, want: "1"},
	{sql: `BEGIN; SELECT 'TRUNCATE users'; COMMIT`, psql: true},
	{sql: `SELECT 'COPY users FROM PROGRAM ''rm -rf /'''`, want: "COPY users FROM PROGRAM 'rm -rf /'"},
	{sql: `SELECT $a$DO $$ BEGIN DELETE FROM users; END $$$a$`, want: "DO $$ BEGIN DELETE FROM users; END $$"},
	{sql: `SELECT n'DROP'`, want: "DROP"},
	{sql: `SELECT 'insert' AS "delete", "drop"."truncate" FROM "drop"`, want: "insert"},
	{sql: `VALUES ('DROP TABLE users'), ('DELETE FROM orders')`, want: "DROP TABLE users"},
	{sql: `TABLE "DROP TABLE users"`, want: "42"},
	{sql: `SELECT u.name FROM users u JOIN orders o ON o.uid = u.id WHERE u."delete" IS NULL ORDER BY o.amount`, want: "carol"},
	{sql: `SET application_name = 'DROP TABLE users'`},
	{sql: `LISTEN "drop table users"`},
	{sql: `BEGIN; DECLARE "delete" CURSOR FOR SELECT 'delete' FROM users; FETCH 1 FROM "delete"; CLOSE "delete"; COMMIT`, psql: true},
	{sql: `SELECT format('DELETE FROM %I', 'users')`, want: "DELETE FROM users"},
	{sql: `SELECT 1 AS "; DROP TABLE users; --"`, want: "1"},
	{sql: "SELECT 'a'\n'; DROP TABLE users; --'", want: "a; DROP TABLE users; --", psql: true},
	{sql: `SELECT $x$ '; DROP TABLE users; -- $x$ FROM users LIMIT 1`, want: " '; DROP TABLE users; -- "},
	{sql: `SELECT 'x\'' ; -- '`, want: `x\' ; -- `, psql: true},
	{sql: `SHOW standard_conforming_strings`, want: "on"},
	{sql: `SELECT 'MERGE INTO users USING src ON true WHEN MATCHED THEN DELETE'`, want: "MERGE INTO users USING src ON true WHEN MATCHED THEN DELETE"},
	{sql: `SELECT '; CALL cleanup(); --' AS "CALL"`, want: "; CALL cleanup(); --"},
	{sql: `SELECT 'EXPLAIN ANALYZE DELETE FROM users' AS "explain analyze"`, want: "EXPLAIN ANALYZE DELETE FROM users"},
	{sql: `PREPARE "drop"(int) AS SELECT name FROM users WHERE id = $1; EXECUTE "drop"(1); DEALLOCATE "drop"`, psql: true},
	{sql: `SELECT name FROM users WHERE name LIKE '%DROP%' OR name ~* 'delete|truncate' OR "truncate" = 't3'`, want: "carol"},
	{sql: `SELECT "users"."name" FROM "users" WHERE "users"."drop" = 'y'`, want: "carol"},
	{sql: `SELECT * FROM users WHERE id = 1 UNION ALL SELECT * FROM archive`, want: "1"},
}

// smuggles are texts that PostgreSQL reads as a harmless SELECT under
// standard_conforming_strings = on and as a SELECT and a destructive
// statement under off (the first with a DROP hidden in what a default
// lexer takes for a string literal).
var smuggles = []string{
	`SELECT 'x\'' ; DROP TABLE users; -- '`,
	`SELECT N'x\''; DELETE FROM users; --'`,
	`/* \' */ SELECT 'x\''; TRUNCATE users; --'`,
	`SELECT 'a\'-- '; DROP TABLE users; SELECT 1`,
}

// clsEnv is one run's scratch database, roles, marker files and the
// connections that watch them, and the gateway in front.
type clsEnv struct {
	*env
	base, db, scsDB, role, mallory, tmp, victim, ch string
	markers                                         []string
	repl                                            *strings.Replacer

	direct    *pgx.Conn // the scratch database, as postgres: fingerprints and controls
	directSCS *pgx.Conn // the database whose default is standard_conforming_strings = off
	listener  *pgx.Conn // LISTENs on ch

	mu       sync.Mutex
	payloads []string // notifications the listener received
}

// TestClassificationThroughGateway sends statements that hide writes,
// harmless statements with dangerous words, and backslash-quote smuggling
// after every route to standard_conforming_strings = off, through the
// gateway to the real server with pgx and psql.
func TestClassificationThroughGateway(t *testing.T) {
	pgtest.Require(t)
	requireTool(t, "psql")
	started := time.Now()
	c := newClsEnv(t)

	var psqlHides, extHides, ctlHides, psqlHarmless, extHarmless int
	for _, h := range hidingCases {
		psqlHides += clsB2I(h.psql)
		extHides += clsB2I(h.ext)
		ctlHides += clsB2I(h.noCtl == "")
	}
	for _, h := range harmlessCases {
		psqlHarmless += clsB2I(h.psql)
		extHarmless += clsB2I(h.ext)
	}
	require.GreaterOrEqual(t, len(hidingCases), 80, "statements that hide a write")
	require.GreaterOrEqual(t, psqlHides, 20, "of them through psql")
	require.GreaterOrEqual(t, extHides, 10, "of them through the extended protocol")
	require.GreaterOrEqual(t, len(harmlessCases), 30, "harmless statements")
	t.Logf("hiding statements: %d (pgx simple protocol: all; psql: %d; extended protocol: %d; control run directly: %d)",
		len(hidingCases), psqlHides, extHides, ctlHides)
	t.Logf("harmless statements: %d (pgx simple protocol: all; psql: %d; extended protocol: %d)",
		len(harmlessCases), psqlHarmless, extHarmless)

	gw := c.pgx(t, "ro", c.db).PgConn()

	t.Run("hiding/pgx", func(t *testing.T) {
		for i, h := range hidingCases {
			t.Run(clsName(i, h.sql), func(t *testing.T) {
				sql := c.repl.Replace(h.sql)
				before := c.fingerprint(t, c.direct)
				for _, s := range h.setup {
					_, err := gw.Exec(clsCtx(t), c.repl.Replace(s)).ReadAll()
					require.NoError(t, err, "setup %q must be allowed", s)
				}
				_, err := gw.Exec(clsCtx(t), sql).ReadAll()
				c.assertRefused(t, err, sql)
				require.Equal(t, before, c.fingerprint(t, c.direct), "the server must not have performed %q", sql)
				if h.noCtl == "" {
					c.control(t, h, before)
				}
			})
		}
	})

	t.Run("hiding/extended protocol", func(t *testing.T) {
		n := 0
		for i, h := range hidingCases {
			if !h.ext {
				continue
			}
			n++
			t.Run(clsName(i, h.sql), func(t *testing.T) {
				sql := c.repl.Replace(h.sql)
				before := c.fingerprint(t, c.direct)
				// Parse, Describe, Sync: the refusal must come at the Parse.
				_, err := gw.Prepare(clsCtx(t), fmt.Sprintf("sluice_e2e_%d", i), sql, nil)
				c.assertRefused(t, err, sql)
				// Parse, Bind, Describe, Execute, Sync.
				res := gw.ExecParams(clsCtx(t), sql, nil, nil, nil, nil).Read()
				c.assertRefused(t, res.Err, sql)
				require.Equal(t, before, c.fingerprint(t, c.direct), "the server must not have performed %q", sql)
			})
		}
		assert.Equal(t, extHides, n)
	})

	t.Run("hiding/pgx default mode with arguments", func(t *testing.T) {
		conn := c.pgx(t, "ro", c.db)
		before := c.fingerprint(t, c.direct)
		writes := []struct {
			sql  string
			args []any
		}{
			{"DELETE FROM users WHERE id = $1", []any{1}},
			{"UPDATE users SET admin = $1", []any{true}},
			{"INSERT INTO audit (note) VALUES ($1)", []any{"pwned"}},
			{"WITH d AS (DELETE FROM orders WHERE uid = $1 RETURNING id) SELECT count(*) FROM d", []any{1}},
			{"CALL purge_all($1)", []any{0}},
			{"SELECT setval('order_seq', $1)", []any{77}},
		}
		for _, w := range writes {
			_, err := conn.Exec(clsCtx(t), w.sql, w.args...)
			c.assertRefused(t, err, w.sql)
		}
		var n int
		require.NoError(t, conn.QueryRow(clsCtx(t), "SELECT count(*) FROM users WHERE id > $1", 0).Scan(&n),
			"the connection goes on after the refusals")
		assert.Equal(t, 3, n)
		require.Equal(t, before, c.fingerprint(t, c.direct))
	})

	t.Run("hiding/transaction across messages", func(t *testing.T) {
		pc := c.pgx(t, "ro", c.db).PgConn()
		before := c.fingerprint(t, c.direct)

		// A refusal inside a transaction aborts it: nothing after it
		// runs, and COMMIT rolls back.
		c.mustExec(t, pc, "BEGIN")
		c.mustExec(t, pc, "SELECT count(*) FROM users")
		_, err := pc.Exec(clsCtx(t), "DELETE FROM users").ReadAll()
		c.assertRefused(t, err, "DELETE FROM users")
		_, err = pc.Exec(clsCtx(t), "SELECT 1").ReadAll()
		assert.Equal(t, "25P02", clsErrCode(err), "the refusal must abort the transaction: %v", err)
		res := c.mustExec(t, pc, "COMMIT")
		assert.Equal(t, "ROLLBACK", res[0].CommandTag.String())

		// The same through the extended protocol.
		c.mustExec(t, pc, "BEGIN")
		c.assertRefused(t, pc.ExecParams(clsCtx(t), "DELETE FROM orders", nil, nil, nil, nil).Read().Err, "DELETE FROM orders")
		res = c.mustExec(t, pc, "COMMIT")
		assert.Equal(t, "ROLLBACK", res[0].CommandTag.String())

		// A savepoint recovers from the refusal and the reads commit.
		c.mustExec(t, pc, "BEGIN")
		c.mustExec(t, pc, "SAVEPOINT s")
		_, err = pc.Exec(clsCtx(t), "UPDATE users SET admin = true").ReadAll()
		c.assertRefused(t, err, "UPDATE users SET admin = true")
		c.mustExec(t, pc, "ROLLBACK TO SAVEPOINT s")
		c.mustExec(t, pc, "SELECT 1")
		res = c.mustExec(t, pc, "COMMIT")
		assert.Equal(t, "COMMIT", res[0].CommandTag.String())
		require.Equal(t, before, c.fingerprint(t, c.direct))
	})

	t.Run("hiding/psql", func(t *testing.T) {
		for i, h := range hidingCases {
			if !h.psql {
				continue
			}
			t.Run(clsName(i, h.sql), func(t *testing.T) {
				sql := c.repl.Replace(h.sql)
				before := c.fingerprint(t, c.direct)
				args := []string{"-qAt", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose"}
				for _, s := range h.setup {
					args = append(args, "-c", c.repl.Replace(s))
				}
				r := c.psql(t, "ro", c.db, "require", append(args, "-c", sql)...)
				c.assertPsqlRefused(t, r, sql)
				require.Equal(t, before, c.fingerprint(t, c.direct), "the server must not have performed %q", sql)
			})
		}
	})

	t.Run("hiding/nothing escaped", func(t *testing.T) {
		// NOTIFY is delivered in commit order: once a sentinel sent
		// directly has arrived, any notification a refused statement
		// had committed would have arrived before it.
		_, err := c.direct.Exec(clsCtx(t), "SELECT pg_notify($1, 'sentinel')", pgx.QueryExecModeExec, c.ch)
		require.NoError(t, err)
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := c.listener.Exec(clsCtx(t), "SELECT 1")
			require.NoError(t, err)
			c.mu.Lock()
			got := append([]string(nil), c.payloads...)
			c.mu.Unlock()
			if len(got) > 0 {
				assert.Equal(t, []string{"sentinel"}, got, "the listener must have received only the sentinel")
				break
			}
			require.True(t, time.Now().Before(deadline), "the sentinel notification did not arrive")
			time.Sleep(20 * time.Millisecond)
		}
		fp := c.fingerprint(t, c.direct)
		assert.Contains(t, fp, "victim sessions: 1")
		for _, m := range c.markers {
			assert.Contains(t, fp, m+"=false", "no refused statement may have written %s", m)
		}
	})

	t.Run("harmless/pgx", func(t *testing.T) {
		for i, h := range harmlessCases {
			t.Run(clsName(i, h.sql), func(t *testing.T) {
				before := c.fingerprint(t, c.direct)
				res, err := gw.Exec(clsCtx(t), h.sql).ReadAll()
				require.NoError(t, err, "a harmless statement must run: %q", h.sql)
				require.NotEmpty(t, res)
				if h.want != "" {
					assert.Equal(t, h.want, clsFirstValue(t, res[len(res)-1]))
				}
				require.Equal(t, before, c.fingerprint(t, c.direct), "a read must change nothing")
			})
		}
	})

	t.Run("harmless/extended protocol", func(t *testing.T) {
		for i, h := range harmlessCases {
			if !h.ext {
				continue
			}
			t.Run(clsName(i, h.sql), func(t *testing.T) {
				res := gw.ExecParams(clsCtx(t), h.sql, nil, nil, nil, nil).Read()
				require.NoError(t, res.Err, "a harmless statement must run: %q", h.sql)
				if h.want != "" {
					assert.Equal(t, h.want, clsFirstValue(t, res))
				} else {
					assert.NotEmpty(t, res.Rows)
				}
			})
		}
	})

	t.Run("harmless/psql", func(t *testing.T) {
		for i, h := range harmlessCases {
			if !h.psql {
				continue
			}
			t.Run(clsName(i, h.sql), func(t *testing.T) {
				r := c.psql(t, "ro", c.db, "require", "-qAt", "-v", "ON_ERROR_STOP=1", "-c", h.sql)
				require.Equal(t, 0, r.code, "a harmless statement must run: %q\nstderr: %s", h.sql, r.stderr)
				assert.NotContains(t, r.stderr, "sluice:")
				if h.want != "" {
					assert.Equal(t, h.want, clsLastLine(r.stdout))
				}
			})
		}
	})

	psqlRoutes, roRoutes := 0, 0
	for _, rt := range scsRoutes {
		psqlRoutes += clsB2I(rt.dsn == "" || rt.env != nil)
		roRoutes += clsB2I(rt.roRefuses)
	}
	t.Logf("routes to standard_conforming_strings = off: %d (pgx: all, with %d smuggling texts each and a Parse; psql: %d; "+
		"refused by the read-only policy itself: %d)", len(scsRoutes), len(smuggles), psqlRoutes, roRoutes)
	c.testSCSRoutes(t)

	// The gateway learns the session's lexing settings from the
	// backend's ParameterStatus messages; those of the startup all arrive
	// before the backend's first ReadyForQuery, so the session's first
	// command can be lexed as surely as any later one. It must not be
	// judged under both lexings, as a text in an unsynced extended batch
	// is: that refuses harmless first commands. Each text runs as the
	// second command of a session, and must run as the first too.
	t.Run("scs/first command of a session", func(t *testing.T) {
		firsts := []struct{ name, sql, want string }{
			{"backslash and non-ASCII", `SELECT 'naïve\d'`, `naïve\d`},
			{"SET and a literal in one query",
				`SET standard_conforming_strings = off; SELECT 'x\'' ; DROP TABLE users; -- '`, `x\' ; DROP TABLE users; -- `},
		}
		for _, f := range firsts {
			for _, first := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/pgx/first=%v", f.name, first), func(t *testing.T) {
					before := c.fingerprint(t, c.direct)
					pc := c.pgx(t, "ro", c.db).PgConn()
					if !first {
						c.mustExec(t, pc, "SELECT 1")
					}
					res, err := pc.Exec(clsCtx(t), f.sql).ReadAll()
					require.NoError(t, err, "%q is harmless in a fresh session and must run", f.sql)
					assert.Equal(t, f.want, clsFirstValue(t, res[len(res)-1]))
					require.Equal(t, before, c.fingerprint(t, c.direct))
				})
				t.Run(fmt.Sprintf("%s/psql/first=%v", f.name, first), func(t *testing.T) {
					before := c.fingerprint(t, c.direct)
					args := []string{"-qAt", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose"}
					if !first {
						args = append(args, "-c", "SELECT 1")
					}
					r := c.psql(t, "ro", c.db, "require", append(args, "-c", f.sql)...)
					require.Equal(t, 0, r.code, "%q is harmless in a fresh session and must run\nstderr: %s", f.sql, r.stderr)
					assert.Equal(t, f.want, clsLastLine(r.stdout))
					require.Equal(t, before, c.fingerprint(t, c.direct))
				})
			}
		}
	})

	t.Logf("classification suite: %d hiding statements (%d via psql, %d via the extended protocol, %d with a direct control), "+
		"%d harmless statements (%d via psql, %d via the extended protocol), in %s",
		len(hidingCases), psqlHides, extHides, ctlHides, len(harmlessCases), psqlHarmless, extHarmless,
		time.Since(started).Round(time.Millisecond))
}

// scsRoute is one way to turn standard_conforming_strings off.
type scsRoute struct {
	name   string
	target string // ro, lab (a policy that lets writes other than destruction through) or ro-role
	scsDB  bool   // connect to the database whose default is off
	dsn    string // additions to pgx's connection string
	// env is what psql needs in its environment for the route; with dsn
	// set and env nil, psql cannot take the route.
	env   []string
	setup []string // statements sent through the gateway first
	// roRefuses: the read-only policy refuses the route's own statement.
	roRefuses bool
}

var scsRoutes = []scsRoute{
	{name: "SET", target: "ro", setup: []string{"SET standard_conforming_strings = off"}},
	{name: "SET SESSION TO", target: "ro", setup: []string{"SET SESSION standard_conforming_strings TO off"}},
	{name: "SET quoted mixed case", target: "ro", setup: []string{`sEt "standard_conforming_strings" = 'OFF'`}},
	{name: "SET false", target: "ro", setup: []string{"SET standard_conforming_strings = false"}},
	{name: "SET LOCAL in a transaction", target: "ro", setup: []string{"BEGIN", "SET LOCAL standard_conforming_strings = off"}},
	{name: "SET and a literal in one query", target: "ro",
		setup: []string{`SET standard_conforming_strings = off; SELECT 'x\'' ; DROP TABLE users; -- '`}},
	{name: "set_config session", target: "lab", roRefuses: true,
		setup: []string{"SELECT set_config('standard_conforming_strings', 'off', false)"}},
	{name: "set_config local in a transaction", target: "lab", roRefuses: true,
		setup: []string{"BEGIN", "SELECT pg_catalog.set_config('standard_conforming_strings', 'off', true)"}},
	{name: "UPDATE pg_settings", target: "lab", roRefuses: true,
		setup: []string{"UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'"}},
	{name: "startup options", target: "ro", dsn: "options='-c standard_conforming_strings=off'",
		env: []string{"PGOPTIONS=-c standard_conforming_strings=off"}},
	{name: "startup parameter", target: "ro", dsn: "standard_conforming_strings=off"},
	{name: "role default", target: "ro-role"},
	{name: "database default", target: "ro", scsDB: true},
	{name: "function calling set_config", target: "ro", setup: []string{"SELECT scs_off()"}},
}

func (c *clsEnv) testSCSRoutes(t *testing.T) {
	for _, rt := range scsRoutes {
		db, direct := c.db, c.direct
		if rt.scsDB {
			db, direct = c.scsDB, c.directSCS
		}
		t.Run("scs/"+rt.name+"/pgx", func(t *testing.T) {
			before := c.fingerprint(t, direct)
			ctx := clsCtx(t)
			conn, err := pgx.Connect(ctx, c.dsn(t, rt.target, db, "require")+" "+rt.dsn)
			require.NoError(t, err)
			defer conn.Close(context.Background())
			// pgx refuses its simple protocol once the setting is off;
			// pgconn sends the text as it is, as an attacker would.
			pc := conn.PgConn()
			// Not the session's first command: see "first command of a
			// session" for why that matters.
			c.mustExec(t, pc, "SELECT 1")
			// Before each attempt: end the transaction a refusal aborted
			// (SET LOCAL), go back to the session's default and take the
			// route again.
			again := func() {
				c.mustExec(t, pc, "ROLLBACK")
				c.mustExec(t, pc, "RESET standard_conforming_strings")
				for _, st := range rt.setup {
					c.mustExec(t, pc, st)
				}
				require.Equal(t, "off", c.show(t, pc), "the route must really turn it off")
			}
			for _, s := range smuggles {
				again()
				_, err := pc.Exec(ctx, s).ReadAll()
				c.assertRefusedBy(t, err, s, refusingRule(rt.target))
				require.Equal(t, before, c.fingerprint(t, direct), "the server must not have run %q", s)
			}
			// The extended protocol too (the server itself would refuse
			// a Parse of two statements, but only after the gateway).
			again()
			_, err = pc.Prepare(ctx, "", smuggles[0], nil)
			c.assertRefusedBy(t, err, smuggles[0], refusingRule(rt.target))
			// A backslash-quote in a harmless literal reads as the
			// server reads it, and runs.
			again()
			res := c.mustExec(t, pc, `SELECT 'it\'s'`)
			assert.Equal(t, "it's", clsFirstValue(t, res[len(res)-1]))
			require.Equal(t, before, c.fingerprint(t, direct))
		})

		if rt.dsn == "" || rt.env != nil {
			t.Run("scs/"+rt.name+"/psql", func(t *testing.T) {
				before := c.fingerprint(t, direct)
				args := []string{"-qAt", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-c", "SELECT 1"}
				for _, st := range rt.setup {
					args = append(args, "-c", st)
				}
				args = append(args, "-c", "SHOW standard_conforming_strings", "-c", smuggles[0], "-c", "SELECT 'not reached'")
				r := c.psqlEnv(t, rt.target, db, rt.env, args...)
				assert.Equal(t, "off", clsLastLine(r.stdout), "the route must really turn it off\nstderr: %s", r.stderr)
				assert.NotContains(t, r.stdout, "not reached")
				c.assertPsqlRefusedBy(t, r, smuggles[0], refusingRule(rt.target))
				require.Equal(t, before, c.fingerprint(t, direct), "the server must not have run %q", smuggles[0])
			})
		}

		if rt.roRefuses {
			// Under the read-only policy the route is itself a write:
			// refused, the setting stays on, and the same text is one
			// harmless SELECT of a string, which runs.
			t.Run("scs/"+rt.name+"/read-only refuses the route", func(t *testing.T) {
				before := c.fingerprint(t, direct)
				pc := c.pgx(t, "ro", db).PgConn()
				st := rt.setup[len(rt.setup)-1]
				_, err := pc.Exec(clsCtx(t), st).ReadAll()
				c.assertRefused(t, err, st)
				assert.Equal(t, "on", c.show(t, pc))
				res := c.mustExec(t, pc, smuggles[0])
				assert.Equal(t, `x\' ; DROP TABLE users; -- `, clsFirstValue(t, res[0]))
				require.Equal(t, before, c.fingerprint(t, direct))
			})
		}
	}
}

// refusingRule is the policy rule that refuses destruction on a target.
func refusingRule(target string) string {
	if target == "lab" {
		return "e2e-lab-refuses"
	}
	return "e2e-read-only-refuses"
}

// newClsEnv creates the scratch role and databases with their fixtures
// (directly, as postgres), the victim and listener sessions, and starts a
// gateway with the policy and three targets: ro and lab log in to the
// backend as postgres, ro-role as the scratch role.
func newClsEnv(t *testing.T) *clsEnv {
	t.Helper()
	base := "sluice_e2e_classify_" + pgtest.RandomSecret(4)
	c := &clsEnv{
		base: base, db: base, scsDB: base + "_scs", role: base + "_role", mallory: base + "_mallory",
		tmp: "/tmp/" + base, victim: base + "_victim", ch: base + "_ch",
	}
	c.markers = []string{c.tmp + "_prog", c.tmp + "_copy", c.tmp + "_lo"}
	c.repl = strings.NewReplacer("{db}", c.db, "{scsdb}", c.scsDB, "{role}", c.role, "{mallory}", c.mallory,
		"{tmp}", c.tmp, "{victim}", c.victim, "{ch}", c.ch)

	admin := pgtest.AdminConn(t, "postgres")
	ctx := clsCtx(t)
	t.Cleanup(func() { c.dropScratch(t, admin) })
	for _, s := range []string{
		"CREATE ROLE " + c.role + " LOGIN",
		"ALTER ROLE " + c.role + " SET standard_conforming_strings = off",
		"CREATE DATABASE " + c.db,
		"CREATE DATABASE " + c.scsDB,
		"ALTER DATABASE " + c.scsDB + " SET standard_conforming_strings = off",
	} {
		_, err := admin.Exec(ctx, s)
		require.NoError(t, err, s)
	}

	c.direct = c.connect(t, c.db, "")
	fixture, err := os.ReadFile(filepath.Join("testdata", "classify_fixture.sql"))
	require.NoError(t, err)
	_, err = c.direct.PgConn().Exec(ctx, strings.ReplaceAll(string(fixture), "{role}", c.role)).ReadAll()
	require.NoError(t, err, "fixture")

	c.directSCS = c.connect(t, c.scsDB, "")
	_, err = c.directSCS.PgConn().Exec(ctx, `CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL);
		INSERT INTO users VALUES (1, 'alice'), (2, 'bob'), (3, 'carol')`).ReadAll()
	require.NoError(t, err, "fixture of the scs database")

	// A session that a refused pg_terminate_backend would have ended.
	c.connect(t, c.db, "application_name="+c.victim)
	// A session that a refused NOTIFY would have notified.
	cfg, err := pgx.ParseConfig(clsDirectDSN(c.db))
	require.NoError(t, err)
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) {
		c.mu.Lock()
		c.payloads = append(c.payloads, n.Payload)
		c.mu.Unlock()
	}
	c.listener, err = pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.listener.Close(context.Background()) })
	_, err = c.listener.Exec(ctx, "LISTEN "+c.ch)
	require.NoError(t, err)

	decider, err := policy.Parse("classify-e2e.yaml", []byte(classifyPolicy))
	require.NoError(t, err)
	ro, lab, roRole := pgTarget("ro"), pgTarget("lab"), pgTarget("ro-role")
	ro.Target.Labels = map[string]string{"env": "e2e", "policy": "read-only"}
	lab.Target.Labels = map[string]string{"env": "e2e", "policy": "lab"}
	roRole.Target.Labels = map[string]string{"env": "e2e", "policy": "read-only"}
	roRole.Credential = credstore.Ref{Username: c.role}
	c.env = clsStartGateway(t, decider, ro, lab, roRole)
	return c
}

// dropScratch removes what the test created, whatever state it is in.
func (c *clsEnv) dropScratch(t *testing.T, admin *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for _, m := range c.markers {
		var exists bool
		if admin.QueryRow(ctx, "SELECT (pg_stat_file($1, true)).size IS NOT NULL", m).Scan(&exists) == nil && exists {
			t.Errorf("marker file %s exists on the server: a refused statement ran; removing it", m)
			_, _ = admin.Exec(ctx, fmt.Sprintf("COPY (SELECT 1) TO PROGRAM 'rm -f %s'", m))
		}
	}
	for _, s := range []string{
		"DROP DATABASE IF EXISTS " + c.db + " WITH (FORCE)",
		"DROP DATABASE IF EXISTS " + c.scsDB + " WITH (FORCE)",
		"DROP ROLE IF EXISTS " + c.mallory,
		"DROP ROLE IF EXISTS " + c.role,
	} {
		if _, err := admin.Exec(ctx, s); err != nil {
			t.Errorf("cleanup: %s: %v", s, err)
		}
	}
}

// clsDirectDSN is a connection string to the server itself, as postgres.
func clsDirectDSN(database string) string {
	host, port, _ := net.SplitHostPort(pgtest.Addr())
	return fmt.Sprintf("host=%s port=%s user=postgres dbname=%s sslmode=disable", host, port, database)
}

// connect opens a direct session (not through the gateway) as postgres,
// closed when the test ends.
func (c *clsEnv) connect(t *testing.T, database, extra string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(clsCtx(t), clsDirectDSN(database)+" "+extra)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	// A fingerprint must fail, not hang, on a lock a leaked statement
	// holds.
	_, err = conn.PgConn().Exec(clsCtx(t), "SET lock_timeout = '5s'").ReadAll()
	require.NoError(t, err)
	return conn
}

// fingerprint describes the database conn is connected to (see
// clsFingerprintSQL). It uses unnamed statements only, so that a control's
// DEALLOCATE ALL cannot break it.
func (c *clsEnv) fingerprint(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var fp string
	require.NoError(t, conn.QueryRow(clsCtx(t), clsFingerprintSQL, pgx.QueryExecModeExec,
		c.base, c.victim, c.markers).Scan(&fp), "fingerprint")
	return fp
}

// control runs a hiding text directly against the server in a transaction
// that is rolled back, and requires that the fingerprint sees what it did:
// the refusal's unchanged fingerprint then proves the act did not happen.
func (c *clsEnv) control(t *testing.T, h hideCase, before string) {
	t.Helper()
	sql := c.repl.Replace(h.sql)
	pc := c.direct.PgConn()
	c.mustExec(t, pc, "BEGIN")
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		_, err := pc.Exec(ctx, "ROLLBACK").ReadAll()
		assert.NoError(t, err)
		_, err = pc.Exec(ctx, "DEALLOCATE ALL").ReadAll()
		assert.NoError(t, err)
	}()
	for _, s := range h.setup {
		c.mustExec(t, pc, c.repl.Replace(s))
	}
	var err error
	switch {
	case h.copyIn != "":
		_, err = pc.CopyFrom(clsCtx(t), strings.NewReader(h.copyIn), sql)
	case strings.Contains(sql, "TO STDOUT"):
		_, err = pc.CopyTo(clsCtx(t), io.Discard, sql)
	default:
		_, err = pc.Exec(clsCtx(t), sql).ReadAll()
	}
	require.NoError(t, err, "control: run directly, %q must work (else it hides nothing)", sql)
	assert.NotEqual(t, before, c.fingerprint(t, c.direct), "control: the fingerprint must see what %q does", sql)
}

func (c *clsEnv) mustExec(t *testing.T, pc *pgconn.PgConn, sql string) []*pgconn.Result {
	t.Helper()
	res, err := pc.Exec(clsCtx(t), sql).ReadAll()
	require.NoError(t, err, "%q must run", sql)
	return res
}

func (c *clsEnv) show(t *testing.T, pc *pgconn.PgConn) string {
	t.Helper()
	res := c.mustExec(t, pc, "SHOW standard_conforming_strings")
	return clsFirstValue(t, res[0])
}

func (c *clsEnv) assertRefused(t *testing.T, err error, sql string) {
	t.Helper()
	c.assertRefusedBy(t, err, sql, "e2e-read-only-refuses")
}

// assertRefusedBy requires the gateway's refusal: SQLSTATE 42501 with the
// policy's message and rule.
func (c *clsEnv) assertRefusedBy(t *testing.T, err error, sql, rule string) {
	t.Helper()
	var pe *pgconn.PgError
	require.True(t, errors.As(err, &pe), "%q must be refused by the gateway, got %v", sql, err)
	assert.Equal(t, "42501", pe.Code, "%q: %s", sql, pe.Message)
	assert.True(t, strings.HasPrefix(pe.Message, "sluice: "), "%q: %s", sql, pe.Message)
	assert.Contains(t, pe.Message, " (rule ", "%q", sql)
	assert.Contains(t, pe.Message, rule, "%q", sql)
}

func (c *clsEnv) assertPsqlRefused(t *testing.T, r cmdResult, sql string) {
	t.Helper()
	c.assertPsqlRefusedBy(t, r, sql, "e2e-read-only-refuses")
}

// assertPsqlRefusedBy: psql stops with status 1 and prints the refusal
// with its SQLSTATE (VERBOSITY=verbose).
func (c *clsEnv) assertPsqlRefusedBy(t *testing.T, r cmdResult, sql, rule string) {
	t.Helper()
	assert.Equal(t, 1, r.code, "psql must fail on %q\nstdout: %s\nstderr: %s", sql, r.stdout, r.stderr)
	assert.Contains(t, r.stderr, "ERROR:  42501: sluice: ", "%q", sql)
	assert.Contains(t, r.stderr, " (rule ", "%q", sql)
	assert.Contains(t, r.stderr, rule, "%q", sql)
}

// psqlEnv runs psql against a target with extra environment variables.
func (c *clsEnv) psqlEnv(t *testing.T, target, database string, extra []string, args ...string) cmdResult {
	t.Helper()
	host, port := c.hostPort(t, target)
	cmd := exec.Command("psql", append([]string{"-X", "-P", "pager=off"}, args...)...)
	cmd.Env = append(psqlEnv(t, host, port, database, c.token, "require"), extra...)
	return run(t, cmd, opTimeout)
}

// clsStartGateway is startGateway with a given decider.
func clsStartGateway(t *testing.T, decider policy.Decider, targets ...gateway.TargetConfig) *env {
	t.Helper()
	return startGatewayWith(t, gatewayOptions{grace: 2 * time.Second, decider: decider, groups: []string{"agents"}}, targets...)
}

func clsCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

func clsErrCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// clsFirstValue is the first column of a result's first row.
func clsFirstValue(t *testing.T, r *pgconn.Result) string {
	t.Helper()
	require.NoError(t, r.Err)
	require.NotEmpty(t, r.Rows, "no rows in result %s", r.CommandTag)
	return string(r.Rows[0][0])
}

func clsLastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// clsName is a subtest name: the case's index and the start of its text.
func clsName(i int, sql string) string {
	s := strings.Join(strings.Fields(sql), " ")
	if len(s) > 60 {
		s = s[:60]
	}
	return fmt.Sprintf("%03d %s", i, s)
}

func clsB2I(b bool) int {
	if b {
		return 1
	}
	return 0
}
