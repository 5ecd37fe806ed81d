package http_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	sluicehttp "github.com/sluicegw/sluice/protocol/http"
	"github.com/sluicegw/sluice/recording"
)

// BenchmarkHTTPProxy measures one GET of a 2 KiB JSON body through an
// in-process gateway (plaintext on loopback, the file recorder) against
// the same GET straight to the backend: "direct", "gateway" (allow-all,
// no masking) and "masked" (a CEL policy with email, credit_card and
// json:ssn masking). Run with -cpuprofile to see where the time goes.
func BenchmarkHTTPProxy(b *testing.B) {
	var users []string
	for i := range 16 {
		users = append(users, fmt.Sprintf(`{"id":%d,"name":"user %d","email":"user%d@example.com","card":"4111 1111 1111 1111","ssn":"078-05-1120","note":"ordinary text"}`, i, i, i))
	}
	payload := []byte(`{"users":[` + strings.Join(users, ",") + `]}`)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(payload)
	}))
	defer backend.Close()

	const token = "tok-bench"
	auth, err := identity.NewStaticTokens([]identity.StaticToken{{SHA256: identity.HashToken(token), Subject: "bench", Groups: []string{"bench"}}})
	if err != nil {
		b.Fatal(err)
	}
	eng, err := policy.Parse("bench.yaml", []byte(`
rules:
  - name: connect
    match: command.kind == "connect"
    action: allow
  - name: no-admin
    match: command.http.path.startsWith("/admin")
    action: deny
  - name: reads-masked
    match: command.kind == "request" && command.http.method == "GET" && "bench" in identity.groups
    action: allow
    mask: [email, credit_card, "json:ssn"]
default: deny
`))
	if err != nil {
		b.Fatal(err)
	}
	start := func(b *testing.B, d policy.Decider) string {
		dir := b.TempDir()
		sink, err := recording.NewFileSink(filepath.Join(dir, "rec"), recording.FileOptions{Fsync: recording.FsyncNever})
		if err != nil {
			b.Fatal(err)
		}
		g, err := gateway.New(gateway.Config{
			DataDir: dir,
			Targets: []gateway.TargetConfig{{
				Target: protocol.Target{Name: "api", Protocol: sluicehttp.Name, Address: backend.URL},
				Listen: "127.0.0.1:0", Credential: credstore.Ref{Password: "inline:backend-key-0123456789"},
				DisableTLS: true, AllowPlaintextLoopback: true,
			}},
			Authenticator: auth, Decider: d, Credentials: credstore.Default{AllowInline: true}, Recording: sink,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := g.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = g.Shutdown(ctx)
		})
		return "http://" + g.Addr("api").String()
	}
	allow := policy.DeciderFunc(func(context.Context, *policy.Input) (protocol.Decision, error) {
		return protocol.Decision{Action: protocol.Allow, Rules: []string{"all"}}, nil
	})
	run := func(b *testing.B, base string) {
		tr := &http.Transport{MaxIdleConnsPerHost: 64}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		b.SetBytes(int64(len(payload)))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("GET", base+"/api/users", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := c.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	}
	b.Run("direct", func(b *testing.B) { run(b, backend.URL) })
	b.Run("gateway", func(b *testing.B) { run(b, start(b, allow)) })
	b.Run("masked", func(b *testing.B) { run(b, start(b, eng)) })
}
