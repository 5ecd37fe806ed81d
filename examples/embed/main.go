// Command embed composes a PostgreSQL gateway from the sluice library, the
// way a team would inside its own program, without the reference server:
// the PostgreSQL plugin, a static-token authenticator, a decider of its
// own, the hash-chained file recorder, and a recorder of its own that also
// prints every event to stdout.
//
//	SLUICE_TOKEN=let-me-in go run ./examples/embed -listen 127.0.0.1:6543 -backend 127.0.0.1:5432 -db postgres
//	PGPASSWORD=let-me-in psql "host=127.0.0.1 port=6543 sslmode=require user=me dbname=postgres"
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	_ "github.com/sluicegw/sluice/protocol/postgres" // registers "postgres"
	"github.com/sluicegw/sluice/recording"
)

// stdoutSink is a recording.Sink of our own: one line per event on w.
type stdoutSink struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *stdoutSink) Open(_ context.Context, info protocol.SessionInfo) (recording.Recorder, error) {
	return &stdoutRecorder{sink: s}, nil
}

type stdoutRecorder struct{ sink *stdoutSink }

func (r *stdoutRecorder) Write(e *recording.Entry) error {
	line := e.Type
	switch {
	case e.Command != nil:
		line += fmt.Sprintf(" %q -> %s", e.Command.Text, e.Decision.Action)
	case e.Result != nil:
		line += fmt.Sprintf(" %s rows=%d bytes=%d", e.Result.Tag, e.Result.Rows, e.Result.Bytes)
	case e.Identity != nil:
		line += " " + e.Identity.Subject
	case e.Reason != "":
		line += " " + e.Reason
	}
	r.sink.mu.Lock()
	defer r.sink.mu.Unlock()
	_, err := fmt.Fprintf(r.sink.w, "[%s #%d] %s\n", e.Session, e.Seq, line)
	return err
}

func (r *stdoutRecorder) Close() error { return nil }

// readOnly is a decider of our own: sessions may open, and only commands
// that start with SELECT, SHOW or EXPLAIN run. (A real deployment uses the
// CEL policy engine over parsed SQL; a prefix test like this one is easy to
// fool and is here only to show the contract.)
func readOnly(_ context.Context, in *policy.Input) (protocol.Decision, error) {
	if in.Command.Kind == protocol.KindConnect {
		return protocol.Decision{Action: protocol.Allow, Rules: []string{"connect"}}, nil
	}
	t := strings.ToUpper(strings.TrimSpace(in.Command.Text))
	for _, p := range []string{"SELECT", "SHOW", "EXPLAIN"} {
		if strings.HasPrefix(t, p) {
			return protocol.Decision{Action: protocol.Allow, Rules: []string{"read-only"}}, nil
		}
	}
	return protocol.Decision{Action: protocol.Deny, Rules: []string{"read-only"}, Message: "this gateway only runs reads"}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:6543", "client-facing address")
	backend := flag.String("backend", "127.0.0.1:5432", "PostgreSQL server host:port")
	db := flag.String("db", "postgres", "backend database")
	user := flag.String("user", "postgres", "backend user")
	passwordRef := flag.String("password", "", "backend password reference (env:NAME or file:PATH)")
	dataDir := flag.String("data", "./embed-data", "directory for TLS material and recordings")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *listen, *backend, *db, *user, *passwordRef, *dataDir); err != nil {
		log.Error("embed", "error", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, listen, backend, db, user, passwordRef, dataDir string) error {
	auth, err := identity.NewStaticTokens([]identity.StaticToken{{Subject: "me", Env: "SLUICE_TOKEN", Groups: []string{"readers"}}})
	if err != nil {
		return err
	}
	files, err := recording.NewFileSink(dataDir+"/recordings", recording.FileOptions{Fsync: recording.FsyncInterval, Interval: time.Second})
	if err != nil {
		return err
	}
	gw, err := gateway.New(gateway.Config{
		DataDir:       dataDir,
		Authenticator: auth,
		Decider:       policy.DeciderFunc(readOnly),
		Credentials:   credstore.Default{},
		Recording:     recording.Tee(files, &stdoutSink{w: os.Stdout}),
		Logger:        log,
		Targets: []gateway.TargetConfig{{
			Target: protocol.Target{
				Name: "db", Protocol: "postgres", Address: backend,
				Options: map[string]string{"database": db, "sslmode": "prefer"},
			},
			Listen:     listen,
			Credential: credstore.Ref{Username: user, Password: passwordRef},
		}},
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := gw.Start(ctx); err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]string{"listening": gw.Addr("db").String()})
	fmt.Println(string(b))
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return gw.Shutdown(sctx)
}
