// Package pgtest holds test helpers for the real PostgreSQL servers the
// integration tests use: the machine's server on 127.0.0.1:5432, and
// throwaway clusters started on a free port with scram-sha-256 required
// in pg_hba.conf, for testing backend authentication for real.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Addr is the machine's PostgreSQL, overridable with SLUICE_TEST_PG_ADDR.
func Addr() string {
	if a := os.Getenv("SLUICE_TEST_PG_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:5432"
}

// Require skips the test when the machine's PostgreSQL is not reachable,
// or fails it when SLUICE_REQUIRE_INTEGRATION=1 (as CI sets).
func Require(t testing.TB) {
	t.Helper()
	c, err := net.DialTimeout("tcp", Addr(), 2*time.Second)
	if err == nil {
		c.Close()
		return
	}
	Unavailable(t, fmt.Sprintf("PostgreSQL is not reachable at %s (%v); start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start", Addr(), err))
}

// Unavailable skips with msg, or fails under SLUICE_REQUIRE_INTEGRATION=1.
func Unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("SLUICE_REQUIRE_INTEGRATION") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// AdminConn connects to the machine's PostgreSQL as the postgres superuser
// (trust authentication on loopback).
func AdminConn(t testing.TB, database string) *pgx.Conn {
	t.Helper()
	Require(t)
	host, port, _ := net.SplitHostPort(Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=postgres dbname=%s sslmode=disable", host, port, database))
	if err != nil {
		t.Fatalf("pgtest: admin connection: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// RandomSecret returns a random hex string of n bytes.
func RandomSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Cluster is a throwaway PostgreSQL cluster.
type Cluster struct {
	Dir  string
	Port int
	bin  string
}

// Addr is the cluster's host:port.
func (c *Cluster) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)) }

func binDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", fmt.Errorf("no initdb under /usr/lib/postgresql/*/bin (install the postgresql package)")
	}
	return filepath.Dir(matches[len(matches)-1]), nil
}

// FreeAddr returns a loopback address with a port nothing listens on, for
// a server a test is about to start.
func FreeAddr(t testing.TB) string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("pgtest: no free port: %v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// asPostgres runs a command as the postgres OS user when running as root
// (initdb and postgres refuse to run as root).
func asPostgres(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

// StartScramCluster initialises and starts a cluster whose pg_hba.conf
// demands scram-sha-256 for every TCP connection, with a superuser
// "postgres" whose SCRAM password is returned. The cluster is stopped and
// removed when the test ends.
func StartScramCluster(t testing.TB) (*Cluster, string) {
	t.Helper()
	bin, err := binDir()
	if err != nil {
		Unavailable(t, "pgtest: "+err.Error())
	}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			Unavailable(t, "pgtest: no postgres OS user to run a throwaway cluster as")
		}
	}
	dir, err := os.MkdirTemp("", "sluice-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres:postgres", dir).CombinedOutput(); err != nil {
			t.Fatalf("pgtest: chown: %v: %s", err, out)
		}
	}
	password := RandomSecret(16)
	pwfile := filepath.Join(dir, "pwfile")
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		_ = exec.Command("chown", "postgres:postgres", pwfile).Run()
	}
	cmd := asPostgres(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--pwfile", pwfile,
		"--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgtest: initdb: %v: %s", err, out)
	}
	_ = os.Remove(pwfile)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\npassword_encryption = 'scram-sha-256'\nfsync = off\nshared_buffers = 16MB\nmax_connections = 40\n", port, dir)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(conf)
	f.Close()
	hba := "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		_ = exec.Command("chown", "postgres:postgres", filepath.Join(data, "pg_hba.conf")).Run()
	}
	start := asPostgres(filepath.Join(bin, "pg_ctl"), "-D", data, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start")
	if out, err := start.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		t.Fatalf("pgtest: pg_ctl start: %v: %s\n%s", err, out, log)
	}
	c := &Cluster{Dir: dir, Port: port, bin: bin}
	t.Cleanup(func() {
		_ = asPostgres(filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop").Run()
	})
	return c, password
}

// Exec runs SQL on the cluster as the postgres superuser with its password.
func (c *Cluster) Exec(t testing.TB, password, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable password=%s", c.Port, password))
	if err != nil {
		t.Fatalf("pgtest: connect to throwaway cluster: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("pgtest: %s: %v", strings.SplitN(sql, " ", 3)[0], err)
	}
}
