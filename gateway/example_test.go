package gateway_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/recording"
)

// A gateway in front of one PostgreSQL server. The program must import the
// plugin for its init to register "postgres":
//
//	import _ "github.com/sluicegw/sluice/protocol/postgres"
func Example() {
	tokens, err := identity.NewStaticTokens([]identity.StaticToken{
		{Env: "AGENT_TOKEN", Subject: "agent-1", Groups: []string{"agents"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	sink, err := recording.NewFileSink("/var/lib/sluice/recordings", recording.FileOptions{})
	if err != nil {
		log.Fatal(err)
	}
	g, err := gateway.New(gateway.Config{
		DataDir: "/var/lib/sluice",
		Targets: []gateway.TargetConfig{{
			Target:     protocol.Target{Name: "orders", Protocol: "postgres", Address: "db.internal:5432"},
			Listen:     ":6432",
			Credential: credstore.Ref{Username: "sluice", Password: "env:ORDERS_DB_PASSWORD"},
		}},
		Authenticator: tokens,
		Decider: policy.DeciderFunc(func(context.Context, *policy.Input) (protocol.Decision, error) {
			return protocol.Decision{Action: protocol.Allow}, nil // a real policy engine goes here
		}),
		Credentials: credstore.Default{},
		Recording:   sink,
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	admin := &http.Server{Addr: "127.0.0.1:9090", Handler: g.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = admin.ListenAndServe() }()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = admin.Shutdown(shutdown)
	if err := g.Shutdown(shutdown); err != nil {
		log.Print(err)
	}
}
