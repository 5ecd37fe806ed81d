-- Fixture of TestClassificationThroughGateway (classify_test.go), created
-- directly in a scratch database, never through the gateway. {role} is a
-- scratch login role that owns "users", so that a smuggled DROP TABLE users
-- could succeed on a session that logs in as it.

CREATE TABLE users (
    id         int PRIMARY KEY,
    name       text NOT NULL,
    admin      boolean NOT NULL DEFAULT false,
    "delete"   text,
    "drop"     text,
    "update"   text,
    "insert"   text,
    "truncate" text
);
INSERT INTO users VALUES
    (1, 'alice', true, NULL, NULL, 'u1', 'i1', NULL),
    (2, 'bob', false, 'x', NULL, NULL, NULL, NULL),
    (3, 'carol', false, NULL, 'y', NULL, NULL, 't3');
ALTER TABLE users OWNER TO {role};

CREATE TABLE orders (id int PRIMARY KEY, uid int NOT NULL, amount numeric NOT NULL);
INSERT INTO orders VALUES (10, 1, 9.5), (11, 2, 20), (12, 3, 0.5);

CREATE TABLE audit (id serial PRIMARY KEY, note text NOT NULL);
INSERT INTO audit (note) VALUES ('created'), ('seeded');

CREATE TABLE src (id int PRIMARY KEY, name text);
INSERT INTO src VALUES (1, 'alice2'), (3, 'carol2'), (4, 'dave');

CREATE TABLE archive (LIKE users);

-- Tables and columns named with dangerous words.
CREATE TABLE "grant" ("select" int, "from" text);
INSERT INTO "grant" VALUES (1, 'DROP TABLE users');
CREATE TABLE "drop" ("truncate" text);
INSERT INTO "drop" VALUES ('DELETE FROM users');
CREATE TABLE "DROP TABLE users" (id int);
INSERT INTO "DROP TABLE users" VALUES (42);

CREATE SEQUENCE order_seq;
CREATE MATERIALIZED VIEW src_count AS SELECT count(*) AS n FROM src;

-- Code that writes: the statements that call it must be refused.
CREATE FUNCTION purge_orders() RETURNS int LANGUAGE plpgsql AS $$
BEGIN DELETE FROM orders; RETURN 0; END $$;
CREATE PROCEDURE cleanup() LANGUAGE sql AS $$DELETE FROM audit$$;
CREATE PROCEDURE purge_all(keep int) LANGUAGE plpgsql AS $$
BEGIN DELETE FROM orders WHERE id > keep; END $$;
CREATE FUNCTION audit_noop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RETURN NEW; END $$;

-- A route to standard_conforming_strings = off that the classifier cannot
-- see into: a user-defined function (not a known side-effecting one).
CREATE FUNCTION scs_off() RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); RETURN 'ok'; END $$;
