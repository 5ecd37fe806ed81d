package http_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	sluicehttp "github.com/sluicegw/sluice/protocol/http"
	"github.com/sluicegw/sluice/recording"
)

// rpcExtension is a small application protocol over HTTP, written the way
// an extension like MCP plugs in: a body {"op": NAME} is the command
// "rpc NAME"; denials are answered in the protocol's own JSON; responses
// are upper-cased and masked as text.
type rpcExtension struct{}

func (rpcExtension) Inspect(r *http.Request, req *protocol.Command, body []byte, s protocol.Session) (*sluicehttp.Exchange, error) {
	if s == nil || sluicehttp.SessionFrom(r.Context()) != s {
		panic("the extension is handed the request's session")
	}
	if r.Method != http.MethodPost {
		return nil, nil
	}
	var msg struct{ Op string }
	if body == nil || json.Unmarshal(body, &msg) != nil || msg.Op == "" {
		return &sluicehttp.Exchange{Refuse: func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"unreadable"}`)
		}}, nil
	}
	cmd := &protocol.Command{Protocol: sluicehttp.Name, Kind: protocol.KindRequest, Text: "rpc " + msg.Op, HTTP: req.HTTP}
	return &sluicehttp.Exchange{
		Commands: []*protocol.Command{cmd},
		Deny: func(w http.ResponseWriter, i int, d protocol.Decision) {
			_ = json.NewEncoder(w).Encode(map[string]any{"error": d.Message, "command": i})
		},
		Response: func(w io.Writer, h http.Header, m *masking.Masker) (io.WriteCloser, error) {
			h.Set("X-Rpc", "1")
			return &upper{w: w, m: m}, nil
		},
	}, nil
}

type upper struct {
	w   io.Writer
	m   *masking.Masker
	buf bytes.Buffer
}

func (u *upper) Write(p []byte) (int, error) { return u.buf.Write(p) }
func (u *upper) Close() error {
	out := u.buf.Bytes()
	if u.m != nil {
		out, _ = u.m.MaskText(out, nil)
	}
	_, err := u.w.Write(bytes.ToUpper(out))
	return err
}

// No goroutine of a session, a server or a client outlives the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func init() {
	sluicehttp.RegisterExtension("rpc", func(t *protocol.Target) (sluicehttp.Extension, error) {
		if t.Options["rpc_mode"] != "strict" {
			panic("the extension's own options reach it")
		}
		return rpcExtension{}, nil
	})
}

// TestExtensionHook: an extension's commands are what policy checks and
// the recording keeps; its denial and refusal answers are used; it takes
// the response over, and the plugin still scrubs and records what it
// writes.
func TestHTTPExtensionHook(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "result for bob@example.com: "+string(b))
	}))
	defer backend.Close()

	dir := t.TempDir()
	const token = "tok-extension-test"
	auth, err := identity.NewStaticTokens([]identity.StaticToken{{SHA256: identity.HashToken(token), Subject: "alice"}})
	require.NoError(t, err)
	sink, err := recording.NewFileSink(filepath.Join(dir, "rec"), recording.FileOptions{})
	require.NoError(t, err)
	decide := func(_ context.Context, in *policy.Input) (protocol.Decision, error) {
		switch in.Command.Text {
		case "rpc forbidden":
			return protocol.Decision{Action: protocol.Deny, Rules: []string{"no-forbidden"}, Message: "not this one"}, nil
		case "rpc private":
			return protocol.Decision{Action: protocol.Allow, Rules: []string{"masked"}, Mask: []string{"email"}}, nil
		}
		return protocol.Decision{Action: protocol.Allow, Rules: []string{"all"}}, nil
	}
	g, err := gateway.New(gateway.Config{
		DataDir: dir,
		Targets: []gateway.TargetConfig{{
			Target: protocol.Target{Name: "rpc", Protocol: sluicehttp.Name, Address: backend.URL,
				Options: map[string]string{"rpc": "true", "rpc_mode": "strict", "max_body": "64"}},
			Listen: "127.0.0.1:0", Credential: credstore.Ref{Password: "inline:backend-credential-1"},
		}},
		Authenticator: auth, Decider: policy.DeciderFunc(decide),
		Credentials: credstore.Default{AllowInline: true}, Recording: sink,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, g.Start(ctx))
	defer func() { _ = g.Shutdown(context.Background()) }()

	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "cert.pem"))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caPEM))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	post := func(body string) (*http.Response, string) {
		req, err := http.NewRequest("POST", "https://"+g.Addr("rpc").String()+"/rpc", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(b)
	}

	resp, body := post(`{"op":"hello"}`)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("X-Rpc"))
	assert.Equal(t, `RESULT FOR BOB@EXAMPLE.COM: {"OP":"HELLO"}`, body)

	resp, body = post(`{"op":"private"}`)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, `RESULT FOR [REDACTED]: {"OP":"PRIVATE"}`, body)

	resp, body = post(`{"op":"forbidden"}`)
	assert.Equal(t, 200, resp.StatusCode)
	assert.JSONEq(t, `{"error":"not this one","command":0}`, body)

	resp, body = post(`{"op":"` + strings.Repeat("x", 100) + `"}`)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, `{"error":"unreadable"}`, body)

	mu.Lock()
	assert.Equal(t, []string{`{"op":"hello"}`, `{"op":"private"}`}, bodies)
	mu.Unlock()

	tr.CloseIdleConnections()
	require.Eventually(t, func() bool { return len(g.Sessions()) == 0 }, 10*time.Second, 10*time.Millisecond)
	sums, err := recording.List(filepath.Join(dir, "rec"))
	require.NoError(t, err)
	var texts []string
	var refused int
	for _, s := range sums {
		f, err := recording.FindFile(filepath.Join(dir, "rec"), s.ID)
		require.NoError(t, err)
		rd, err := openRecording(f)
		require.NoError(t, err)
		for _, e := range rd {
			if e.Type == recording.TypeCommand && e.Command.Kind == protocol.KindRequest {
				texts = append(texts, e.Command.Text)
				if e.Command.Attrs["refused"] == "true" {
					refused++
					assert.Contains(t, e.Command.Attrs["body_error"], "larger than max_body")
				}
			}
		}
	}
	assert.Contains(t, texts, "rpc hello")
	assert.Contains(t, texts, "rpc forbidden")
	assert.Equal(t, 1, refused)
}

// openRecording reads a whole recording file, verifying its chain.
func openRecording(path string) ([]*recording.Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rd := recording.NewReader(f)
	var out []*recording.Entry
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
}
