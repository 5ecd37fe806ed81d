package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/identity"
)

// Demo defaults; SLUICE_DEMO_PG and SLUICE_DEMO_LISTEN override the
// connection string and the listen address.
const (
	defaultDemoPG     = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
	demoRole          = "sluice_demo"
	demoDatabase      = "sluice_demo"
	demoTargetName    = "demo"
	demoSubject       = "demo"
	demoPasswordFile  = "backend-password"
	demoTokenFile     = "token"
	demoPolicyFile    = "policy.yaml" // in the data directory
	startPostgresHint = "start it with `pg_ctlcluster --skip-systemctl-redirect 15 main start`, or point SLUICE_DEMO_PG at a PostgreSQL superuser connection string"
)

// demoSetup says what bootstrapDemo prepares.
type demoSetup struct {
	// AdminConn is a pgx connection string for a superuser (it creates a
	// role and a database).
	AdminConn string
	// Role and Database are created if missing; Role owns Database.
	Role     string
	Database string
	// Dir keeps the role's password and the caller token, each 0600 and
	// reused across runs.
	Dir string
}

// demoResult is what bootstrapDemo prepared.
type demoResult struct {
	// Token is the caller token for the demo identity.
	Token string
	// PasswordFile holds the backend role's password.
	PasswordFile string
	// PolicyFile is the demo's policy (writeDemoPolicy); empty to keep
	// the configuration's policy.
	PolicyFile string
}

// demoPolicy is the demo's policy, a copy of examples/policies/demo.yaml
// (a test keeps the two the same).
//
//go:embed demo-policy.yaml
var demoPolicy []byte

// writeDemoPolicy writes the demo policy to path unless a file is there
// already: the user may have edited it, and the running demo reloads it.
func writeDemoPolicy(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("demo: create the demo policy: %w", err)
	}
	if _, err := f.Write(demoPolicy); err != nil {
		f.Close()
		return fmt.Errorf("demo: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("demo: write %s: %w", path, err)
	}
	return nil
}

// bootstrapDemo prepares the demo: the secrets in s.Dir, a login role with a
// SCRAM-SHA-256 password, a database it owns and a small customers table. It
// is idempotent: a second run changes nothing but re-setting the password
// from the file (so a file and a role that drifted apart agree again).
func bootstrapDemo(ctx context.Context, s demoSetup) (*demoResult, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	res := &demoResult{PasswordFile: filepath.Join(s.Dir, demoPasswordFile)}
	password, err := readOrCreateSecret(res.PasswordFile)
	if err != nil {
		return nil, err
	}
	if res.Token, err = readOrCreateSecret(filepath.Join(s.Dir, demoTokenFile)); err != nil {
		return nil, err
	}

	cfg, err := pgx.ParseConfig(s.AdminConn)
	if err != nil {
		// pgx's parse errors may quote the string, which can hold a
		// password: say only what is wrong with it.
		return nil, errors.New("demo: SLUICE_DEMO_PG is not a valid PostgreSQL connection string")
	}
	where := net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("demo: cannot reach PostgreSQL at %s as %s (%v); %s", where, cfg.User, connectReason(err), startPostgresHint)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	role := pgx.Identifier{s.Role}.Sanitize()
	// PostgreSQL hashes the password as password_encryption says; make
	// sure it stores a SCRAM-SHA-256 verifier whatever the server default.
	if _, err := conn.Exec(ctx, "SET password_encryption = 'scram-sha-256'"); err != nil {
		return nil, fmt.Errorf("demo: set password_encryption: %w", err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", s.Role).Scan(&exists); err != nil {
		return nil, fmt.Errorf("demo: look up role %s: %w", s.Role, err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE ROLE "+role+" LOGIN"); err != nil && !isCode(err, "42710") { // duplicate_object: created meanwhile
			return nil, fmt.Errorf("demo: create role %s: %w", s.Role, err)
		}
	}
	// Utility statements take no parameters, so the password is a
	// literal; it is base64url, but quote it properly all the same.
	if _, err := conn.Exec(ctx, "ALTER ROLE "+role+" LOGIN PASSWORD "+quoteLiteral(password)); err != nil {
		return nil, fmt.Errorf("demo: set the password of role %s: %s", s.Role, pgCode(err))
	}

	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", s.Database).Scan(&exists); err != nil {
		return nil, fmt.Errorf("demo: look up database %s: %w", s.Database, err)
	}
	if !exists {
		// CREATE DATABASE cannot run inside a transaction block; this is a
		// plain simple-protocol statement on its own.
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{s.Database}.Sanitize()+" OWNER "+role); err != nil && !isCode(err, "42P04") { // duplicate_database
			return nil, fmt.Errorf("demo: create database %s: %w", s.Database, err)
		}
	}

	dbcfg := cfg.Copy()
	dbcfg.Database = s.Database
	db, err := pgx.ConnectConfig(ctx, dbcfg)
	if err != nil {
		return nil, fmt.Errorf("demo: connect to database %s: %v", s.Database, connectReason(err))
	}
	defer db.Close(context.WithoutCancel(ctx))
	if err := createDemoTable(ctx, db, role); err != nil {
		return nil, err
	}
	return res, nil
}

// demoRows are the customers the demo table starts with. The card numbers
// are the card networks' published test numbers.
var demoRows = [][3]string{
	{"Ada Lovelace", "ada@example.com", "4111 1111 1111 1111"},
	{"Alan Turing", "alan@example.com", "5555 5555 5555 4444"},
	{"Grace Hopper", "grace@example.com", "3782 822463 10005"},
	{"Edsger Dijkstra", "edsger@example.com", "6011 1111 1111 1117"},
}

// createDemoTable creates customers, owned by the demo role, with a few
// rows, unless it exists.
func createDemoTable(ctx context.Context, db *pgx.Conn, role string) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit this is a no-op
	// Objects created under SET LOCAL ROLE belong to the demo role, which
	// can then read and change them through the gateway.
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+role); err != nil {
		return fmt.Errorf("demo: set role: %w", err)
	}
	var missing bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass('public.customers') IS NULL").Scan(&missing); err != nil {
		return fmt.Errorf("demo: look up table customers: %w", err)
	}
	if !missing {
		return nil
	}
	if _, err := tx.Exec(ctx, "CREATE TABLE public.customers (id serial PRIMARY KEY, name text NOT NULL, email text, card text)"); err != nil {
		return fmt.Errorf("demo: create table customers: %w", err)
	}
	for _, r := range demoRows {
		if _, err := tx.Exec(ctx, "INSERT INTO public.customers (name, email, card) VALUES ($1, $2, $3)", r[0], r[1], r[2]); err != nil {
			return fmt.Errorf("demo: fill table customers: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("demo: create table customers: %w", err)
	}
	return nil
}

// readOrCreateSecret returns the secret kept in path, creating it (32
// random bytes, base64url, mode 0600) if the file does not exist.
func readOrCreateSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("demo: %s is empty; delete it to have a new secret generated", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("demo: read %s: %w", path, err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	s := base64.RawURLEncoding.EncodeToString(raw[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) { // another refserver made it first
			return readOrCreateSecret(path)
		}
		return "", fmt.Errorf("demo: create %s: %w", path, err)
	}
	if _, err := f.WriteString(s + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("demo: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("demo: write %s: %w", path, err)
	}
	return s, nil
}

// applyDemo points the embedded configuration at what bootstrapDemo
// prepared: the demo target logs in as the demo role with the password file,
// listens where SLUICE_DEMO_LISTEN says (if set), the demo token is
// accepted for subject "demo" (group demo), and the demo policy file is
// the policy.
func applyDemo(cfg *Config, s demoSetup, res *demoResult, listen string) error {
	var t *TargetConfig
	for i := range cfg.Targets {
		if cfg.Targets[i].Name == demoTargetName {
			t = &cfg.Targets[i]
		}
	}
	if t == nil {
		return fmt.Errorf("demo: the embedded configuration has no target %q", demoTargetName)
	}
	t.Database = s.Database
	t.Credential = credstore.Ref{Username: s.Role, Password: "file:" + res.PasswordFile}
	if res.PolicyFile != "" {
		cfg.Policy.Files, cfg.Policy.Default = []string{res.PolicyFile}, ""
	}
	if listen != "" {
		t.Listen = listen
	}
	cfg.Identity.Tokens = append(cfg.Identity.Tokens, TokenConfig{
		Subject: demoSubject,
		Name:    "Demo user",
		Groups:  []string{"demo"},
		SHA256:  identity.HashToken(res.Token),
	})
	return nil
}

// demoPsqlLine is the command that connects to the demo through the
// gateway.
func demoPsqlLine(listen, database, token string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		host, port = "127.0.0.1", "6432"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return fmt.Sprintf(`psql "host=%s port=%s dbname=%s user=%s sslmode=require password=%s"`, host, port, database, demoSubject, token)
}

// quoteLiteral quotes s as an SQL string literal. Backslashes are
// doubled inside an E'...' literal so the result means the same whatever
// standard_conforming_strings is.
func quoteLiteral(s string) string {
	s = strings.ReplaceAll(s, "'", "''")
	if strings.Contains(s, `\`) {
		return "E'" + strings.ReplaceAll(s, `\`, `\\`) + "'"
	}
	return "'" + s + "'"
}

func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

// pgCode describes a server error by its message and SQLSTATE only: the
// statement that failed carries a password and must not end up in a log.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s (SQLSTATE %s)", pe.Message, pe.Code)
	}
	return "the statement failed"
}

// connectReason is the innermost cause of a connect failure ("connection
// refused"), without pgx's prefix, which can name the whole configuration.
func connectReason(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s (SQLSTATE %s)", pe.Message, pe.Code)
	}
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Err != nil {
		return ne.Err.Error()
	}
	return err.Error()
}
