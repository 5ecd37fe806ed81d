// Command httpgw is bench/http.sh's HTTP gateway, composed from the sluice
// library the way examples/embed composes a PostgreSQL one, until the
// reference server wires the HTTP plugin: the HTTP plugin, a static token
// (SLUICE_BENCH_TOKEN), CEL policy files, the hash-chained file recorder
// and the backend credential from the environment. It also serves the
// benchmark's backend, and the peer it is compared with, so that the
// script needs no other server:
//
//	httpgw backend -listen 127.0.0.1:18080
//	httpgw bare -listen 127.0.0.1:18445 -backend 127.0.0.1:18080
//	SLUICE_BENCH_TOKEN=t BENCH_BACKEND_KEY=k httpgw gateway -listen 127.0.0.1:18443 \
//	    -backend 127.0.0.1:18080 -policy bench/policy-http.yaml -data /tmp/gw
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	_ "net/http/pprof" // HTTPGW_PPROF
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	sluicehttp "github.com/sluicegw/sluice/protocol/http"
	"github.com/sluicegw/sluice/recording"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: httpgw backend|bare|gateway [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "backend":
		err = backend(ctx, os.Args[2:])
	case "gateway":
		err = gw(ctx, os.Args[2:])
	case "bare":
		err = bare(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpgw:", err)
		os.Exit(1)
	}
}

// body is the backend's answer: about 2 KiB of JSON with values the
// masking policy finds (emails, card numbers, ssn fields).
var body = func() []byte {
	type user struct {
		ID    int    `json:"id"`
		Name  string `json:"name"`
		Email string `json:"email"`
		Card  string `json:"card"`
		SSN   string `json:"ssn"`
		Note  string `json:"note"`
	}
	var users []user
	for i := range 16 {
		users = append(users, user{ID: i, Name: fmt.Sprintf("user %d", i), Email: fmt.Sprintf("user%d@example.com", i),
			Card: "4111 1111 1111 1111", SSN: "078-05-1120", Note: "ordinary text"})
	}
	b, _ := json.Marshal(map[string]any{"users": users, "pad": ""})
	if n := 2048 - len(b); n > 0 { // exactly 2 KiB
		b, _ = json.Marshal(map[string]any{"users": users, "pad": strings.Repeat("x", n)})
	}
	return b
}()

func backend(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:18080", "address")
	_ = fs.Parse(args)
	srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		_, _ = w.Write(body)
	})}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	fmt.Printf("backend %s, %d-byte JSON body\n", *listen, len(body))
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// bare is the peer: the standard library's reverse proxy
// (net/http/httputil) with nothing of sluice, forwarding to the backend
// over kept-alive connections and replacing the caller's Authorization
// with the backend key, as the gateway does. It is the floor for any
// proxy built on net/http: what the gateway costs beyond it is sluice's.
func bare(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bare", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:18445", "client-facing address")
	backendAddr := fs.String("backend", "127.0.0.1:18080", "backend host:port (http)")
	_ = fs.Parse(args)
	key := os.Getenv("BENCH_BACKEND_KEY")
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", *backendAddr
			pr.Out.Header.Set("Authorization", "Bearer "+key)
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true},
	}
	srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 10 * time.Second, Handler: proxy}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	fmt.Printf("bare reverse proxy %s -> %s\n", *listen, *backendAddr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func gw(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:18443", "client-facing address")
	backendAddr := fs.String("backend", "127.0.0.1:18080", "backend host:port (http)")
	policyFile := fs.String("policy", "", "CEL policy file (default: allow everything)")
	dataDir := fs.String("data", "./httpgw-data", "directory for TLS material and recordings")
	tlsOn := fs.Bool("tls", false, "client-facing TLS (self-signed) instead of plaintext on loopback")
	_ = fs.Parse(args)

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	auth, err := identity.NewStaticTokens([]identity.StaticToken{{Subject: "bench", Env: "SLUICE_BENCH_TOKEN", Groups: []string{"bench"}}})
	if err != nil {
		return err
	}
	var decider policy.Decider = policy.DeciderFunc(func(context.Context, *policy.Input) (protocol.Decision, error) {
		return protocol.Decision{Action: protocol.Allow, Rules: []string{"allow-all"}}, nil
	})
	if *policyFile != "" {
		if decider, err = policy.Load(*policyFile); err != nil {
			return err
		}
	}
	sink, err := recording.NewFileSink(*dataDir+"/recordings", recording.FileOptions{Fsync: recording.FsyncInterval, Interval: time.Second})
	if err != nil {
		return err
	}
	g, err := gateway.New(gateway.Config{
		DataDir:       *dataDir,
		Authenticator: auth,
		Decider:       decider,
		Credentials:   credstore.Default{},
		Recording:     sink,
		Logger:        log,
		Targets: []gateway.TargetConfig{{
			Target: protocol.Target{Name: "api", Protocol: sluicehttp.Name, Address: "http://" + *backendAddr,
				Labels: map[string]string{"env": "bench"}},
			Listen:                 *listen,
			Credential:             credstore.Ref{Username: "bench", Password: "env:BENCH_BACKEND_KEY"},
			DisableTLS:             !*tlsOn,
			AllowPlaintextLoopback: true,
		}},
	})
	if err != nil {
		return err
	}
	if err := g.Start(ctx); err != nil {
		return err
	}
	if addr := os.Getenv("HTTPGW_PPROF"); addr != "" {
		// Profiling while wrk runs: go tool pprof http://ADDR/debug/pprof/profile
		go func() { _ = http.ListenAndServe(addr, nil) }() //nolint:gosec // loopback, bench only
	}
	host, port, _ := net.SplitHostPort(g.Addr("api").String())
	fmt.Printf("gateway %s -> %s (policy %s)\n", net.JoinHostPort(host, port), *backendAddr, strings.TrimSpace(*policyFile))
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return g.Shutdown(sctx)
}
