package e2e

// The HTTP plugin end to end: the in-process gateway (gateway.New, static
// tokens, the file recording sink, the real policy engine and approval
// broker) in front of local backends (httptest servers, plain, TLS and
// HTTP/2), driven by curl and Go's net/http client. Nothing is a double.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/credstore"
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/internal/pgtest"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	sluicehttp "github.com/sluicegw/sluice/protocol/http"
	"github.com/sluicegw/sluice/recording"
)

// httpBackendSecret is the credential the gateway presents to backends;
// callers must never see it.
const httpBackendSecret = "backend-secret-5d1f0c9a7e"

// httpTarget is a target in front of an HTTP(S) backend, with the
// backend credential inline, client TLS from the gateway's self-signed
// certificate.
func httpTarget(name, address string, opts map[string]string) gateway.TargetConfig {
	return gateway.TargetConfig{
		Target: protocol.Target{
			Name:     name,
			Protocol: sluicehttp.Name,
			Address:  address,
			Labels:   map[string]string{"env": "e2e"},
			Options:  opts,
		},
		Listen:           "127.0.0.1:0",
		Credential:       credstore.Ref{Username: "svc", Password: "inline:" + httpBackendSecret},
		HandshakeTimeout: 5 * time.Second,
		Limits:           protocol.Limits{ConnectTimeout: 5 * time.Second},
	}
}

// startHTTPGateway starts an in-process gateway for HTTP targets.
func startHTTPGateway(t *testing.T, o gatewayOptions, targets ...gateway.TargetConfig) *env {
	t.Helper()
	if o.creds == nil {
		o.creds = credstore.Default{AllowInline: true}
	}
	if o.grace == 0 {
		o.grace = 2 * time.Second
	}
	return startGatewayWith(t, o, targets...)
}

// httpURL is the gateway's https URL of a target plus path.
func (e *env) httpURL(t *testing.T, target, path string) string {
	host, port := e.hostPort(t, target)
	return "https://" + net.JoinHostPort(host, port) + path
}

// gatewayCA is the gateway's self-signed certificate, for clients to
// trust.
func (e *env) gatewayCA() string { return filepath.Join(e.dataDir, "tls", "cert.pem") }

// httpClient is a Go client trusting the gateway; h2 makes it negotiate
// HTTP/2. Its connections are closed when the test ends.
func (e *env) httpClient(t *testing.T, h2 bool) *http.Client {
	t.Helper()
	pemBytes, err := os.ReadFile(e.gatewayCA())
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pemBytes))
	tr := &http.Transport{
		TLSClientConfig:    &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2:  h2,
		DisableCompression: true,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// httpDo sends a request with the env's token (unless the headers set
// Authorization) and returns the response and its whole body.
func (e *env) httpDo(t *testing.T, c *http.Client, method, url, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.token)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

// httpBackend is a local backend that remembers what reached it.
type httpBackend struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	Method, Path, Query, Proto string
	Header                     http.Header
	Body                       []byte
}

// startHTTPBackend serves mux on loopback (plain HTTP, or TLS with HTTP/2
// when tlsH2), recording every request (its first MiB of body) before mux
// sees it. configure, if any, adjusts the server before it starts.
func startHTTPBackend(t *testing.T, tlsH2 bool, mux http.Handler, configure ...func(*http.Server)) *httpBackend {
	t.Helper()
	b := &httpBackend{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		b.mu.Lock()
		b.seen = append(b.seen, seenRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Proto: r.Proto,
			Header: r.Header.Clone(), Body: body})
		b.mu.Unlock()
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
		mux.ServeHTTP(w, r)
	})
	b.srv = httptest.NewUnstartedServer(h)
	for _, f := range configure {
		f(b.srv.Config)
	}
	if tlsH2 {
		b.srv.EnableHTTP2 = true
		b.srv.StartTLS()
	} else {
		b.srv.Start()
	}
	t.Cleanup(func() {
		b.srv.CloseClientConnections()
		b.srv.Close()
	})
	return b
}

// addr is the backend's host:port.
func (b *httpBackend) addr() string { return b.srv.Listener.Addr().String() }

// caFile writes the TLS backend's certificate for the target's ca_file.
func (b *httpBackend) caFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "backend-ca.pem")
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.srv.Certificate().Raw}), 0o600))
	return p
}

func (b *httpBackend) requests() []seenRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seenRequest(nil), b.seen...)
}

// echoMux answers /echo with what it received (minus nothing: the test
// checks that the gateway stripped what it must) and serves fixtures.
func echoMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery, "body": string(body)})
	})
	return mux
}

func requireCurl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		pgtest.Unavailable(t, "curl is not installed; install it with: apt-get install curl")
	}
}

// curl runs curl against the gateway with its CA, returning stdout.
func (e *env) curl(t *testing.T, args ...string) cmdResult {
	t.Helper()
	requireCurl(t)
	cmd := exec.Command("curl", append([]string{"-sS", "--cacert", e.gatewayCA(), "--max-time", "30"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	return run(t, cmd, opTimeout)
}

// httpSessions waits until the gateway has no live session (clients close
// their connections when they like) and returns how many recordings there
// are.
func (e *env) httpSessions(t *testing.T) int {
	t.Helper()
	require.Eventually(t, func() bool { return len(e.g.Sessions()) == 0 }, 10*time.Second, 10*time.Millisecond,
		"sessions still open: %+v", e.g.Sessions())
	return len(recordingPaths(t, e.recDir))
}

// httpRecordingEntries returns the entries of every recording, in order.
func (e *env) httpRecordingEntries(t *testing.T) []recording.Entry {
	t.Helper()
	var out []recording.Entry
	for _, r := range waitRecordings(t, e.recDir, e.httpSessions(t)) {
		out = append(out, r.entries...)
	}
	return out
}

// problemBody decodes an RFC 9457 problem answer.
type problemBody struct {
	Type       string   `json:"type"`
	Title      string   `json:"title"`
	Status     int      `json:"status"`
	Detail     string   `json:"detail"`
	Rules      []string `json:"rules"`
	ApprovalID string   `json:"approval_id"`
}

func decodeProblem(t *testing.T, resp *http.Response, body []byte) problemBody {
	t.Helper()
	var p problemBody
	require.NoError(t, json.Unmarshal(body, &p), "problem body: %s", body)
	assert.Equal(t, resp.StatusCode, p.Status)
	return p
}

// TestHTTPProxyCredentialAndAuth: curl and the Go client reach the backend
// through the gateway; the backend sees the gateway's credential and never
// the caller's token; the caller never sees the credential, even when the
// backend echoes it; missing, wrong and switched tokens are refused with
// 401 and a Bearer challenge.
func TestHTTPProxyCredentialAndAuth(t *testing.T) {
	mux := echoMux()
	mux.HandleFunc("/leak", func(w http.ResponseWriter, r *http.Request) {
		// A careless backend that echoes the request's Authorization.
		w.Header().Set("X-Seen-Auth", r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "you sent %s, as %s\n", r.Header.Get("Authorization"), r.Header.Get("X-Api-Key"))
	})
	be := startHTTPBackend(t, false, mux)
	plain := httpTarget("plain", "http://"+be.addr(), nil)
	plain.DisableTLS, plain.AllowPlaintextLoopback = true, true
	e := startHTTPGateway(t, gatewayOptions{},
		httpTarget("api", "http://"+be.addr(), nil), plain,
		httpTarget("keyed", be.addr(), map[string]string{"scheme": "http", "credential_scheme": "header", "credential_header": "X-Api-Key"}),
		httpTarget("basic", be.addr(), map[string]string{"scheme": "http", "credential_scheme": "basic"}))

	// curl, HTTP/1.1 and HTTP/2.
	for _, proto := range []string{"--http1.1", "--http2"} {
		res := e.curl(t, proto, "-H", "Authorization: Bearer "+e.token, "-H", "Cookie: app=1",
			"-D", "-", e.httpURL(t, "api", "/echo/a?x=1&x=2"))
		require.Equal(t, 0, res.code, res.stderr)
		assert.Contains(t, res.stdout, `"path":"/echo/a"`)
		assert.Contains(t, res.stdout, `"query":"x=1\u0026x=2"`)
		assert.Regexp(t, `(?i)sluice-session: [0-9A-Z]{26}`, res.stdout)
		if proto == "--http2" {
			assert.Contains(t, res.stdout, "HTTP/2 200")
		}
	}
	// Plaintext on loopback: an h2c upgrade is ignored (it would be a
	// tunnel no request in is checked), prior knowledge is HTTP/2.
	host, port := e.hostPort(t, "plain")
	for proto, want := range map[string]string{"--http2": "HTTP/1.1 200", "--http2-prior-knowledge": "HTTP/2 200"} {
		res := e.curl(t, proto, "-H", "Authorization: Bearer "+e.token, "-D", "-", "http://"+net.JoinHostPort(host, port)+"/echo/plain")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Contains(t, res.stdout, want, proto)
	}
	for _, r := range be.requests() {
		assert.Empty(t, r.Header.Get("Upgrade"))
		assert.Empty(t, r.Header.Get("Http2-Settings"))
	}
	// The Go client.
	c := e.httpClient(t, false)
	resp, body := e.httpDo(t, c, "POST", e.httpURL(t, "api", "/echo/b"), "hello", "Content-Type", "text/plain",
		"Sluice-Debug", "x", "Proxy-Authorization", "Basic Zm9vOmJhcg==")
	require.Equal(t, 200, resp.StatusCode, string(body))
	assert.Contains(t, string(body), `"body":"hello"`)

	seen := be.requests()
	require.Len(t, seen, 5)
	for _, r := range seen {
		assert.Equal(t, []string{"Bearer " + httpBackendSecret}, r.Header.Values("Authorization"))
		for k, vs := range r.Header {
			for _, v := range vs {
				assert.NotContains(t, v, e.token, "the caller's token reached the backend in %s", k)
			}
			assert.False(t, strings.HasPrefix(k, "Sluice-"), "%s reached the backend", k)
		}
		assert.Empty(t, r.Header.Get("Proxy-Authorization"))
		assert.Equal(t, "127.0.0.1", r.Header.Get("X-Forwarded-For"))
	}
	assert.Equal(t, "https", seen[0].Header.Get("X-Forwarded-Proto"))
	assert.Equal(t, "http", seen[2].Header.Get("X-Forwarded-Proto"))
	assert.Equal(t, "app=1", seen[0].Header.Get("Cookie"), "cookies belong to the backend application")

	// An API key header and basic auth.
	resp, body = e.httpDo(t, c, "GET", e.httpURL(t, "keyed", "/leak"), "", "X-Api-Key", "caller-supplied")
	require.Equal(t, 200, resp.StatusCode)
	seen = be.requests()
	assert.Equal(t, httpBackendSecret, seen[len(seen)-1].Header.Get("X-Api-Key"), "the caller's own key header is replaced")
	assert.Empty(t, seen[len(seen)-1].Header.Get("Authorization"))
	assert.NotContains(t, string(body), httpBackendSecret, "the echoed key is scrubbed")
	assert.Contains(t, string(body), strings.Repeat("*", len(httpBackendSecret)))

	resp, body = e.httpDo(t, c, "GET", e.httpURL(t, "basic", "/leak"), "")
	require.Equal(t, 200, resp.StatusCode)
	seen = be.requests()
	user, pass, ok := (&http.Request{Header: seen[len(seen)-1].Header}).BasicAuth()
	require.True(t, ok)
	assert.Equal(t, "svc", user)
	assert.Equal(t, httpBackendSecret, pass)
	enc := base64.StdEncoding.EncodeToString([]byte("svc:" + httpBackendSecret))
	assert.NotContains(t, string(body), enc)
	assert.NotContains(t, resp.Header.Get("X-Seen-Auth"), enc, "an echoed header is scrubbed too")

	resp, body = e.httpDo(t, c, "GET", e.httpURL(t, "api", "/leak"), "")
	require.Equal(t, 200, resp.StatusCode)
	assert.NotContains(t, string(body), httpBackendSecret)
	assert.NotContains(t, resp.Header.Get("X-Seen-Auth"), httpBackendSecret)
	assert.Equal(t, "Bearer "+strings.Repeat("*", len(httpBackendSecret)), resp.Header.Get("X-Seen-Auth"))

	// No token, a wrong token: 401 with a Bearer challenge and a problem.
	n := len(be.requests())
	fresh := e.httpClient(t, false)
	resp, body = e.httpDo(t, fresh, "GET", e.httpURL(t, "api", "/echo/x"), "", "Authorization", "")
	assert.Equal(t, 401, resp.StatusCode)
	assert.Equal(t, `Bearer realm="sluice"`, resp.Header.Get("WWW-Authenticate"))
	assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	p := decodeProblem(t, resp, body)
	assert.Contains(t, p.Detail, "Authorization: Bearer")
	resp, body = e.httpDo(t, fresh, "GET", e.httpURL(t, "api", "/echo/x"), "", "Authorization", "Bearer not-the-token")
	assert.Equal(t, 401, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`)
	assert.Contains(t, decodeProblem(t, resp, body).Detail, "token not recognised")
	res := e.curl(t, "-o", "/dev/null", "-w", "%{http_code}", e.httpURL(t, "api", "/echo/x"))
	assert.Equal(t, "401", res.stdout)
	assert.Equal(t, n, len(be.requests()), "nothing unauthenticated reached the backend")

	// Another token on an authenticated connection: 401, and the
	// connection is closed.
	other := "tok-" + pgtest.RandomSecret(8)
	host, port = e.hostPort(t, "api")
	raw, err := tls.Dial("tcp", net.JoinHostPort(host, port), &tls.Config{RootCAs: c.Transport.(*http.Transport).TLSClientConfig.RootCAs, NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer raw.Close()
	require.NoError(t, raw.SetDeadline(time.Now().Add(opTimeout)))
	br := bufio.NewReader(raw)
	fmt.Fprintf(raw, "GET /echo/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", e.token)
	r1, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, r1.Body)
	assert.Equal(t, 200, r1.StatusCode)
	fmt.Fprintf(raw, "GET /echo/2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", other)
	r2, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, r2.Body)
	assert.Equal(t, 401, r2.StatusCode)
	assert.True(t, r2.Close, "the connection is closed after a token switch")
	_, err = br.ReadByte()
	assert.ErrorIs(t, err, io.EOF)

	// The same over HTTP/2: the connection goes away (GOAWAY) and the
	// next request opens a new session.
	c2 := e.httpClient(t, true)
	var conns []net.Conn
	var connsMu sync.Mutex
	tr2 := c2.Transport.(*http.Transport)
	tr2.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &tls.Dialer{Config: tr2.TLSClientConfig.Clone()}
		d.Config.NextProtos = []string{"h2"}
		conn, err := d.DialContext(ctx, network, addr)
		if err == nil {
			connsMu.Lock()
			conns = append(conns, conn)
			connsMu.Unlock()
		}
		return conn, err
	}
	resp, body = e.httpDo(t, c2, "GET", e.httpURL(t, "api", "/echo/h2"), "")
	require.Equal(t, 200, resp.StatusCode, string(body))
	require.Equal(t, "HTTP/2.0", resp.Proto)
	resp, body = e.httpDo(t, c2, "GET", e.httpURL(t, "api", "/echo/h2"), "", "Authorization", "Bearer "+other)
	assert.Equal(t, 401, resp.StatusCode, string(body))
	require.Eventually(t, func() bool {
		req, _ := http.NewRequest("GET", e.httpURL(t, "api", "/echo/h2"), nil)
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := c2.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 10*time.Second, 50*time.Millisecond, "a new connection works")
	connsMu.Lock()
	assert.Len(t, conns, 2, "the token switch closed the first HTTP/2 connection")
	connsMu.Unlock()
}

// httpPolicy is the policy of most tests: connects allowed; payments over
// 1000 denied by the JSON body; bodies declared JSON that were not parsed
// denied; deletes of orders need a DBA; every other request allowed with
// email, card and json:ssn masking on /masked paths.
const httpPolicy = `
rules:
  - name: connect
    match: command.kind == "connect" && target.name != "closed"
    action: allow
  - name: big-payments
    match: >
      command.http.method == "POST" && command.http.path == "/payments" &&
      command.http.body.amount > 1000
    action: deny
    message: payments over 1000 need a person
  - name: unparsed-json
    match: command.http.content_type == "application/json" && command.attrs.body_parsed != "true"
    action: deny
    message: JSON bodies must be readable by policy
  - name: order-deletes
    match: command.http.method == "DELETE" || command.http.path.startsWith("/refunds")
    action: require_approval
    approvers: [group:dba]
    timeout: 30s
  - name: masked-reads
    match: command.kind == "request" && command.http.path.startsWith("/masked")
    action: allow
    mask: [email, credit_card, "json:ssn"]
  - name: reads-and-writes
    match: command.kind == "request" && !command.http.path.startsWith("/masked")
    action: allow
default: deny
`

func httpEngine(t *testing.T) policy.Decider {
	t.Helper()
	eng, err := policy.Parse("http.yaml", []byte(httpPolicy))
	require.NoError(t, err)
	return eng
}

// TestHTTPDenialFromJSONBody: a rule on command.http.body.amount denies a
// large payment with 403 and a problem body naming the rule; a small one
// goes through with its body intact; a body policy cannot read (a key
// given twice in two cases, too large) is denied, not forwarded.
func TestHTTPDenialFromJSONBody(t *testing.T) {
	be := startHTTPBackend(t, false, echoMux())
	pay := http.NewServeMux()
	be2 := startHTTPBackend(t, false, pay)
	pay.HandleFunc("/payments", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) })
	_ = be
	e := startHTTPGateway(t, gatewayOptions{decider: httpEngine(t)},
		httpTarget("pay", "http://"+be2.addr(), map[string]string{"max_body": "1KiB"}),
		httpTarget("closed", "http://"+be2.addr(), nil))
	c := e.httpClient(t, false)
	url := e.httpURL(t, "pay", "/payments")

	// A session policy does not open: 403, and the connection closes.
	resp, body := e.httpDo(t, c, "GET", e.httpURL(t, "closed", "/payments"), "")
	assert.Equal(t, 403, resp.StatusCode, string(body))
	assert.True(t, resp.Close)
	assert.Contains(t, decodeProblem(t, resp, body).Detail, "no rule allows")

	resp, body = e.httpDo(t, c, "POST", url, `{"amount": 5000, "to": "mallory"}`, "Content-Type", "application/json")
	require.Equal(t, 403, resp.StatusCode, string(body))
	assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	p := decodeProblem(t, resp, body)
	assert.Contains(t, p.Rules, "big-payments")
	assert.Contains(t, p.Detail, "payments over 1000 need a person")
	assert.Contains(t, p.Detail, "big-payments")
	assert.Equal(t, "urn:sluice:problem:denied", p.Type)

	resp, body = e.httpDo(t, c, "POST", url, `{"amount": 50, "to": "bob"}`, "Content-Type", "application/json; charset=utf-8")
	require.Equal(t, 201, resp.StatusCode, string(body))
	seen := be2.requests()
	require.Len(t, seen, 1)
	assert.JSONEq(t, `{"amount": 50, "to": "bob"}`, string(seen[0].Body))

	// Two readers could disagree on these bodies: policy does not guess.
	for _, b := range []string{
		`{"amount": 5, "AMOUNT": 5000}`,
		`{"amount": 5, "amount": 5000}`,
		`{"amount": 5, "pad": "` + strings.Repeat("x", 2000) + `"}`,
		`{"amount": 5`,
	} {
		resp, body = e.httpDo(t, c, "POST", url, b, "Content-Type", "application/json")
		assert.Equal(t, 403, resp.StatusCode, "%.40s: %s", b, body)
		assert.Contains(t, decodeProblem(t, resp, body).Rules, "unparsed-json")
	}
	// curl, and a chunked body.
	res := e.curl(t, "-H", "Authorization: Bearer "+e.token, "-H", "Content-Type: application/json",
		"-H", "Transfer-Encoding: chunked", "--data-binary", `{"amount":1001}`, url)
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, `"rules":["big-payments"`)
	assert.Len(t, be2.requests(), 1, "denied requests never reach the backend")
	// Dot segments are refused before policy.
	resp, body = e.httpDo(t, c, "GET", e.httpURL(t, "pay", "/public/%2e%2e/payments"), "")
	assert.Equal(t, 400, resp.StatusCode, string(body))
}

// TestHTTPMaskingJSONTextAndRefusal: a JSON response has its emails, card
// numbers and ssn fields masked, streaming (the first element arrives
// masked before the backend writes the second); a text response is
// masked; a binary one is refused with 502 rather than passed unmasked; a
// gzip-encoded one is decoded and masked; the recording holds only masked
// bodies.
func TestHTTPMaskingJSONTextAndRefusal(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/masked/users", func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "identity", r.Header.Get("Accept-Encoding"), "masking asks for plain bytes")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `[{"name":"alice","email":"alice@example.com","card":"4111 1111 1111 1111","ssn":"123-45-6789"}`)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(30 * time.Second):
		}
		fmt.Fprint(w, `,{"name":"bob","email":"bob@example.org","note":"call 4242424242424242"}]`)
	})
	mux.HandleFunc("/masked/log", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for i := range 200 {
			fmt.Fprintf(w, "line %d: user%d@example.com paid with 5555 5555 5555 4444\n", i, i)
		}
	})
	mux.HandleFunc("/masked/blob", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Set-Cookie", "s=1")
		_, _ = w.Write([]byte("alice@example.com\x00\x01"))
	})
	mux.HandleFunc("/masked/gz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		// A backend ignoring Accept-Encoding: identity.
		_, _ = w.Write(gzipBytes(t, `{"email":"carol@example.net"}`))
	})
	be := startHTTPBackend(t, false, mux)
	e := startHTTPGateway(t, gatewayOptions{decider: httpEngine(t)}, httpTarget("api", "http://"+be.addr(), nil))
	c := e.httpClient(t, false)

	// Streaming JSON: read the first element before the backend sends the rest.
	req, err := http.NewRequest("GET", e.httpURL(t, "api", "/masked/users"), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	var got bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(got.String(), "}") {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		require.NoError(t, err, "the first element must arrive before the backend finishes (got %q)", got.String())
	}
	first := got.String()
	close(release)
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	full := first + string(rest)
	assert.NotContains(t, first, "alice@example.com")
	assert.NotContains(t, first, "4111 1111 1111 1111")
	assert.NotContains(t, first, "123-45-6789")
	assert.Contains(t, first, `"name":"alice"`)
	assert.NotContains(t, full, "bob@example.org")
	assert.NotContains(t, full, "4242424242424242")
	var arr []map[string]any
	require.NoError(t, json.Unmarshal([]byte(full), &arr), "the masked body is still JSON: %s", full)
	require.Len(t, arr, 2)
	assert.Equal(t, "[REDACTED]", arr[0]["ssn"])
	assert.Empty(t, resp.Header.Get("Content-Length"))

	// Text.
	resp2, body := e.httpDo(t, c, "GET", e.httpURL(t, "api", "/masked/log"), "")
	require.Equal(t, 200, resp2.StatusCode)
	assert.Equal(t, 200, strings.Count(string(body), "\n"))
	assert.NotContains(t, string(body), "@example.com")
	assert.NotContains(t, string(body), "5555 5555 5555 4444")
	assert.Contains(t, string(body), "line 199: [REDACTED] paid with [REDACTED]")

	// Binary with masking on: refused, the backend's headers dropped.
	resp3, body := e.httpDo(t, c, "GET", e.httpURL(t, "api", "/masked/blob"), "")
	assert.Equal(t, 502, resp3.StatusCode)
	assert.Empty(t, resp3.Header.Get("Set-Cookie"))
	p := decodeProblem(t, resp3, body)
	assert.Equal(t, "urn:sluice:problem:unmaskable", p.Type)
	assert.Contains(t, p.Detail, "application/octet-stream")
	assert.NotContains(t, string(body), "alice@example.com")

	// gzip anyway: decoded, masked, sent plain.
	resp4, body := e.httpDo(t, c, "GET", e.httpURL(t, "api", "/masked/gz"), "")
	require.Equal(t, 200, resp4.StatusCode)
	assert.Empty(t, resp4.Header.Get("Content-Encoding"))
	assert.JSONEq(t, `{"email":"[REDACTED]"}`, string(body))

	// curl sees the same.
	res := e.curl(t, "-H", "Authorization: Bearer "+e.token, e.httpURL(t, "api", "/masked/gz"))
	assert.JSONEq(t, `{"email":"[REDACTED]"}`, res.stdout)

	c.CloseIdleConnections()
	recs := waitRecordings(t, e.recDir, e.httpSessions(t))
	for _, r := range recs {
		assert.NotContains(t, string(r.raw), "alice@example.com")
		assert.NotContains(t, string(r.raw), "4111 1111 1111 1111")
		assert.NotContains(t, string(r.raw), base64.StdEncoding.EncodeToString([]byte("alice@example.com")))
	}
	var results []*protocol.Result
	for _, en := range e.httpRecordingEntries(t) {
		if en.Type == string(protocol.EventResult) && en.Result.Masked > 0 {
			results = append(results, en.Result)
		}
	}
	require.NotEmpty(t, results)
	assert.Equal(t, "200 OK", results[0].Tag)
	assert.Greater(t, results[0].Masked, int64(3))
	assert.Positive(t, results[0].MaskedBy["email"])
}

func gzipBytes(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, err := zw.Write([]byte(s))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return b.Bytes()
}

// TestHTTPStreamsIncrementally: a chunked response and a server-sent
// event stream reach the client piece by piece as the backend writes them
// (the client has the first piece while the backend still waits), masked
// per event in the event stream; the recording keeps the stream.
func TestHTTPStreamsIncrementally(t *testing.T) {
	step := make(chan struct{})
	mux := http.NewServeMux()
	wait := func() {
		select {
		case <-step:
		case <-time.After(30 * time.Second):
		}
	}
	mux.HandleFunc("/chunks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		for i := range 3 {
			fmt.Fprintf(w, "chunk-%d;", i)
			w.(http.Flusher).Flush()
			wait()
		}
	})
	sse := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.(http.Flusher).Flush()
		events := []string{
			"event: greeting\ndata: {\"to\":\"dave@example.com\",\"ssn\":\"078-05-1120\"}\n\n",
			": keep-alive\n\n",
			"data: plain text for eve@example.com\r\ndata: second line\r\n\r\n",
		}
		for _, ev := range events {
			fmt.Fprint(w, ev)
			w.(http.Flusher).Flush()
			wait()
		}
	}
	mux.HandleFunc("/events", sse)
	mux.HandleFunc("/masked/events", sse)
	be := startHTTPBackend(t, false, mux)
	e := startHTTPGateway(t, gatewayOptions{decider: httpEngine(t)}, httpTarget("api", "http://"+be.addr(), nil))

	for _, h2 := range []bool{false, true} {
		c := e.httpClient(t, h2)
		open := func(path string) (*http.Response, *bufio.Reader) {
			req, err := http.NewRequest("GET", e.httpURL(t, "api", path), nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+e.token)
			resp, err := c.Do(req)
			require.NoError(t, err)
			require.Equal(t, 200, resp.StatusCode)
			return resp, bufio.NewReader(resp.Body)
		}
		readUntil := func(br *bufio.Reader, delim byte) string {
			s, err := br.ReadString(delim)
			require.NoError(t, err)
			return s
		}

		resp, br := open("/chunks")
		for i := range 3 {
			start := time.Now()
			assert.Equal(t, fmt.Sprintf("chunk-%d;", i), readUntil(br, ';'), "chunk %d arrives while the backend waits", i)
			t.Logf("h2=%v chunk %d after %s", h2, i, time.Since(start))
			step <- struct{}{}
		}
		resp.Body.Close()

		resp, br = open("/events")
		assert.Equal(t, "event: greeting\n", readUntil(br, '\n'))
		assert.Contains(t, readUntil(br, '\n'), "dave@example.com", "unmasked without masking rules")
		step <- struct{}{}
		resp.Body.Close()
		step <- struct{}{} // the handler's next wait
		step <- struct{}{}

		resp, br = open("/masked/events")
		var ev1 string
		for !strings.HasSuffix(ev1, "\n\n") {
			ev1 += readUntil(br, '\n')
		}
		assert.Equal(t, "event: greeting\ndata: {\"to\":\"[REDACTED]\",\"ssn\":\"[REDACTED]\"}\n\n", ev1)
		step <- struct{}{}
		assert.Equal(t, ": keep-alive\n", readUntil(br, '\n'))
		assert.Equal(t, "\n", readUntil(br, '\n'))
		step <- struct{}{}
		var ev3 string
		for !strings.HasSuffix(ev3, "\n\n") {
			ev3 += readUntil(br, '\n')
		}
		assert.Equal(t, "data: plain text for [REDACTED]\ndata: second line\n\n", ev3)
		step <- struct{}{}
		rest, err := io.ReadAll(br)
		require.NoError(t, err)
		assert.Empty(t, rest)
		resp.Body.Close()
		c.CloseIdleConnections()
	}

	var streamed, maskedStreamed int
	for _, r := range waitRecordings(t, e.recDir, e.httpSessions(t)) {
		texts := map[uint64]string{}
		for _, en := range r.entries {
			switch {
			case en.Type == recording.TypeCommand:
				texts[en.Seq] = en.Command.Text
			case en.Type == string(protocol.EventOutput) && en.Message == "response stream":
				streamed++
				if texts[en.CommandSeq] == "GET /masked/events" {
					maskedStreamed++
					assert.NotContains(t, string(en.Data), "dave@example.com")
				}
			}
		}
	}
	assert.GreaterOrEqual(t, streamed, 4, "the event streams are recorded as they pass")
	assert.GreaterOrEqual(t, maskedStreamed, 2, "the masked streams are recorded masked")
}

// TestHTTPApprovalHoldAndAsync: a DELETE that needs a DBA waits in the
// gateway until approved through the broker, then runs; on a target with
// approval: async it is answered 202 with the request id at once, a retry
// before the decision is 202 again, the retry after approval goes through
// once, and a retry with another body is another request.
func TestHTTPApprovalHoldAndAsync(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	broker := newBroker(t, ctx, "e2e-http")

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "done %s %s", r.Method, r.URL.Path) })
	be := startHTTPBackend(t, false, mux)
	e := startHTTPGateway(t, gatewayOptions{decider: httpEngine(t), approvals: broker, groups: []string{"agents"}},
		httpTarget("held", "http://"+be.addr(), nil),
		httpTarget("async", "http://"+be.addr(), map[string]string{"approval": "async"}))
	dba := &identity.Identity{Subject: "dana", Groups: []string{"dba"}, Method: identity.MethodToken}
	c := e.httpClient(t, false)
	pendingIDs := func() []string {
		rs, err := broker.List(ctx, approval.Filter{States: []approval.State{approval.StatePending}})
		require.NoError(t, err)
		var ids []string
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		return ids
	}

	// Held until approved.
	type answer struct {
		code int
		body string
	}
	done := make(chan answer, 1)
	go func() {
		resp, body := e.httpDo(t, c, "DELETE", e.httpURL(t, "held", "/orders/7"), "")
		done <- answer{resp.StatusCode, string(body)}
	}()
	var id string
	require.Eventually(t, func() bool {
		ids := pendingIDs()
		if len(ids) == 1 {
			id = ids[0]
		}
		return id != ""
	}, 10*time.Second, 10*time.Millisecond, "the DELETE waits for approval")
	select {
	case a := <-done:
		t.Fatalf("answered before approval: %+v", a)
	default:
	}
	assert.Empty(t, be.requests(), "nothing reaches the backend before approval")
	_, err := broker.Approve(ctx, id, dba, "fine")
	require.NoError(t, err)
	select {
	case a := <-done:
		assert.Equal(t, 200, a.code)
		assert.Equal(t, "done DELETE /orders/7", a.body)
	case <-time.After(20 * time.Second):
		t.Fatal("the approved DELETE did not finish")
	}

	// Async: 202 with the id, retry pending, approve, retry once.
	url := e.httpURL(t, "async", "/refunds")
	body := `{"order": 7, "amount": 12}`
	resp, rb := e.httpDo(t, c, "POST", url, body, "Content-Type", "application/json")
	require.Equal(t, 202, resp.StatusCode, string(rb))
	aid := resp.Header.Get("Sluice-Approval")
	require.NotEmpty(t, aid)
	p := decodeProblem(t, resp, rb)
	assert.Equal(t, aid, p.ApprovalID)
	assert.Contains(t, p.Detail, "Sluice-Approval: "+aid)
	assert.Contains(t, p.Rules, "order-deletes")
	n := len(be.requests())

	resp, rb = e.httpDo(t, c, "POST", url, body, "Content-Type", "application/json", "Sluice-Approval", aid)
	assert.Equal(t, 202, resp.StatusCode, string(rb))
	assert.Equal(t, aid, resp.Header.Get("Sluice-Approval"), "still pending: the same request")
	assert.Equal(t, []string{aid}, pendingIDs())

	_, err = broker.Approve(ctx, aid, dba, "refund ok")
	require.NoError(t, err)
	// Another body with the approved id: not covered, a new request.
	resp, rb = e.httpDo(t, c, "POST", url, `{"order": 7, "amount": 12000}`, "Content-Type", "application/json", "Sluice-Approval", aid)
	assert.Equal(t, 202, resp.StatusCode, string(rb))
	assert.NotEqual(t, aid, resp.Header.Get("Sluice-Approval"))
	// The approved request, from a new connection (a caller with a short
	// timeout comes back later).
	c2 := e.httpClient(t, true)
	resp, rb = e.httpDo(t, c2, "POST", url, body, "Content-Type", "application/json", "Sluice-Approval", aid)
	require.Equal(t, 200, resp.StatusCode, string(rb))
	assert.Equal(t, "done POST /refunds", string(rb))
	require.Len(t, be.requests(), n+1)
	assert.JSONEq(t, body, string(be.requests()[n].Body))
	// Once.
	resp, rb = e.httpDo(t, c2, "POST", url, body, "Content-Type", "application/json", "Sluice-Approval", aid)
	assert.Equal(t, 403, resp.StatusCode, string(rb))
	assert.Contains(t, decodeProblem(t, resp, rb).Detail, "already")
	assert.Len(t, be.requests(), n+1)

	// A denied request stays denied when presented.
	resp, rb = e.httpDo(t, c2, "DELETE", e.httpURL(t, "async", "/orders/9"), "")
	require.Equal(t, 202, resp.StatusCode, string(rb))
	did := resp.Header.Get("Sluice-Approval")
	_, err = broker.Deny(ctx, did, dba, "not today")
	require.NoError(t, err)
	resp, rb = e.httpDo(t, c2, "DELETE", e.httpURL(t, "async", "/orders/9"), "", "Sluice-Approval", did)
	assert.Equal(t, 403, resp.StatusCode, string(rb))
	assert.Contains(t, decodeProblem(t, resp, rb).Detail, "denied by dana: not today")
	assert.Len(t, be.requests(), n+1)
}

// TestHTTPWebSocketPassthrough: a WebSocket upgrade passes through (a
// hand-rolled RFC 6455 client and echo server), messages echo both ways,
// and the stream is recorded.
func TestHTTPWebSocketPassthrough(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", wsEchoHandler(t))
	be := startHTTPBackend(t, false, mux)
	e := startHTTPGateway(t, gatewayOptions{decider: httpEngine(t)}, httpTarget("api", "http://"+be.addr(), nil))
	host, port := e.hostPort(t, "api")
	pemBytes, err := os.ReadFile(e.gatewayCA())
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	conn, err := tls.Dial("tcp", net.JoinHostPort(host, port), &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(opTimeout)))
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n",
		host, key, e.token)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, 101, resp.StatusCode)
	assert.Equal(t, wsAccept(key), resp.Header.Get("Sec-WebSocket-Accept"))
	for _, msg := range []string{"hello", strings.Repeat("big", 30000)} {
		require.NoError(t, wsWrite(conn, []byte(msg), true))
		echo, err := wsRead(br)
		require.NoError(t, err)
		assert.Equal(t, "echo: "+msg, string(echo))
	}
	require.NoError(t, conn.Close())
	seen := be.requests()
	require.Len(t, seen, 1)
	assert.Equal(t, "Bearer "+httpBackendSecret, seen[0].Header.Get("Authorization"))

	recs := waitRecordings(t, e.recDir, 1)
	var up, down int
	var result *protocol.Result
	for _, en := range recs[0].entries {
		switch {
		case en.Type == string(protocol.EventOutput) && en.Message == "websocket client to server":
			up++
		case en.Type == string(protocol.EventOutput) && en.Message == "websocket server to client":
			down++
			if down == 1 {
				assert.Contains(t, string(en.Data), "echo: hello")
			}
		case en.Type == string(protocol.EventResult):
			result = en.Result
		}
	}
	assert.Positive(t, up)
	assert.Positive(t, down)
	require.NotNil(t, result)
	assert.Equal(t, "101 Switching Protocols", result.Tag)
	assert.True(t, result.Truncated, "90 kB of echo exceeds the 64 KiB cap")
}

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsEchoHandler is a minimal RFC 6455 server: it answers the handshake and
// echoes each text message with "echo: " in front.
func wsEchoHandler(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "websocket only", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			wsAccept(r.Header.Get("Sec-WebSocket-Key")))
		if brw.Flush() != nil {
			return
		}
		_ = conn.SetDeadline(time.Now().Add(opTimeout))
		for {
			msg, err := wsRead(brw.Reader)
			if err != nil {
				return
			}
			if wsWrite(conn, append([]byte("echo: "), msg...), false) != nil {
				return
			}
		}
	}
}

// wsWrite writes one final text frame, masked when from a client.
func wsWrite(w io.Writer, payload []byte, mask bool) error {
	hdr := []byte{0x81}
	mbit := byte(0)
	if mask {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, mbit|byte(n))
	case n < 1<<16:
		hdr = append(hdr, mbit|126, byte(n>>8), byte(n))
	default:
		hdr = binary.BigEndian.AppendUint64(append(hdr, mbit|127), uint64(n))
	}
	out := append([]byte(nil), payload...)
	if mask {
		key := []byte{1, 2, 3, 4}
		hdr = append(hdr, key...)
		for i := range out {
			out[i] ^= key[i%4]
		}
	}
	_, err := w.Write(append(hdr, out...))
	return err
}

// wsRead reads one frame's payload, unmasking it; a close frame is EOF.
func wsRead(r *bufio.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	if h[0]&0x0f == 0x8 {
		return nil, io.EOF
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<24 {
		return nil, errors.New("frame too large")
	}
	var key [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return nil, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	if masked {
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	return p, nil
}

// TestHTTPHTTP2BothSides: HTTP/2 from the client (Go over TLS with ALPN,
// concurrent streams on one connection) to an HTTP/2 backend over TLS
// verified with ca_file; one connection is one session.
func TestHTTPHTTP2BothSides(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/proto", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s", r.Proto, r.URL.Query().Get("i"))
	})
	be := startHTTPBackend(t, true, mux)
	e := startHTTPGateway(t, gatewayOptions{},
		httpTarget("h2", "https://"+be.addr(), map[string]string{"ca_file": be.caFile(t), "server_name": "example.com"}))
	c := e.httpClient(t, true)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			resp, body := e.httpDo(t, c, "GET", e.httpURL(t, "h2", fmt.Sprintf("/proto?i=%d", i)), "")
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "HTTP/2.0", resp.Proto, "client side")
			assert.Equal(t, fmt.Sprintf("HTTP/2.0 %d", i), string(body), "backend side")
		})
	}
	wg.Wait()
	res := e.curl(t, "--http2", "-H", "Authorization: Bearer "+e.token, "-w", " %{http_version}", e.httpURL(t, "h2", "/proto?i=x"))
	assert.Equal(t, "HTTP/2.0 x 2", res.stdout)
	c.CloseIdleConnections()
	recs := waitRecordings(t, e.recDir, 2)
	var cmds int
	for _, en := range recs[0].entries {
		if en.Type == recording.TypeCommand && en.Command.Kind == protocol.KindRequest {
			cmds++
		}
	}
	assert.Equal(t, 20, cmds, "20 concurrent streams, one session")

	// A backend whose certificate the gateway cannot verify is not used;
	// an h2c backend is spoken to in HTTP/2 with prior knowledge.
	h2c := httptest.NewUnstartedServer(mux)
	h2c.Config.Protocols = new(http.Protocols)
	h2c.Config.Protocols.SetUnencryptedHTTP2(true)
	h2c.Start()
	t.Cleanup(h2c.Close)
	e2 := startHTTPGateway(t, gatewayOptions{}, httpTarget("bad", "https://"+be.addr(), nil),
		httpTarget("h2c", h2c.Listener.Addr().String(), map[string]string{"scheme": "http", "h2c": "true"}))
	c2 := e2.httpClient(t, false)
	resp, body := e2.httpDo(t, c2, "GET", e2.httpURL(t, "bad", "/proto"), "")
	assert.Equal(t, 502, resp.StatusCode, string(body))
	assert.Equal(t, "urn:sluice:problem:backend", decodeProblem(t, resp, body).Type)
	resp, body = e2.httpDo(t, c2, "GET", e2.httpURL(t, "h2c", "/proto?i=c"), "")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "HTTP/1.1", resp.Proto)
	assert.Equal(t, "HTTP/2.0 c", string(body))
}

// TestHTTPRecordingAndReplay: the recording holds the request line,
// selected headers (never Authorization or cookies), the JSON body as
// parsed, the response status and the masked body; neither the caller's
// token nor the backend credential appears in it; the replay prints it
// readably.
func TestHTTPRecordingAndReplay(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/masked/profile", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"user":"frank","email":"frank@example.com"}`)
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "got %d bytes", n)
	})
	be := startHTTPBackend(t, false, mux)
	e := startHTTPGateway(t, gatewayOptions{decider: httpEngine(t)},
		httpTarget("api", "http://"+be.addr(), map[string]string{"headers": "X-Tenant", "record_body_bytes": "100"}))
	c := e.httpClient(t, false)
	resp, body := e.httpDo(t, c, "POST", e.httpURL(t, "api", "/masked/profile?view=full"), `{"fields":["email"]}`,
		"Content-Type", "application/json", "X-Tenant", "acme", "Cookie", "sid=secret-cookie")
	require.Equal(t, 200, resp.StatusCode, string(body))
	resp, body = e.httpDo(t, c, "PUT", e.httpURL(t, "api", "/upload"), strings.Repeat("0123456789", 50), "Content-Type", "text/plain")
	require.Equal(t, 200, resp.StatusCode, string(body))
	c.CloseIdleConnections()

	recs := waitRecordings(t, e.recDir, 1)
	raw := string(recs[0].raw)
	assert.NotContains(t, raw, e.token)
	assert.NotContains(t, raw, httpBackendSecret)
	assert.NotContains(t, raw, "secret-cookie")
	assert.NotContains(t, raw, "frank@example.com")
	var cmd *protocol.Command
	for _, en := range recs[0].entries {
		if en.Type == recording.TypeCommand && en.Command.Kind == protocol.KindRequest && cmd == nil {
			cmd = en.Command
		}
	}
	require.NotNil(t, cmd)
	assert.Equal(t, "POST /masked/profile?view=full", cmd.Text)
	assert.Equal(t, "acme", cmd.HTTP.Headers["x-tenant"])
	assert.Equal(t, "application/json", cmd.HTTP.Headers["content-type"])
	assert.NotContains(t, cmd.HTTP.Headers, "authorization")
	assert.NotContains(t, cmd.HTTP.Headers, "cookie")
	assert.Equal(t, map[string]any{"fields": []any{"email"}}, cmd.HTTP.Body)
	assert.Equal(t, "full", cmd.HTTP.Query["view"])

	var out bytes.Buffer
	f, err := os.Open(recs[0].path)
	require.NoError(t, err)
	defer f.Close()
	rep, err := recording.WriteTranscript(&out, f)
	require.NoError(t, err)
	assert.True(t, rep.Intact)
	text := out.String()
	t.Logf("replay:\n%s", text)
	for _, want := range []string{
		"command (connect)",
		"command (request)\n    POST /masked/profile?view=full\n",
		"    x-tenant: acme\n",
		`    body: {"fields":["email"]}`,
		"decision: allow (rules: masked-reads)",
		": 200 OK\n    {\"user\":\"frank\",\"email\":\"[REDACTED]\"}\n    (37 bytes, ",
		"PUT /upload",
		": request body, truncated (100 bytes)",
		"got 500 bytes",
		"0123456789",
		"[masked: 1 value]",
	} {
		assert.Contains(t, text, want)
	}
	assert.NotContains(t, strings.ToLower(text), "authorization")
}

// TestHTTPRecordingFailureFailsClosed: when the recording cannot be
// written, requests are refused with 503 and nothing reaches the backend.
func TestHTTPRecordingFailureFailsClosed(t *testing.T) {
	be := startHTTPBackend(t, false, echoMux())
	var writes int
	var mu sync.Mutex
	sink := recording.SinkFunc(func(context.Context, protocol.SessionInfo) (recording.Recorder, error) {
		return recorderFunc(func(e *recording.Entry) error {
			mu.Lock()
			defer mu.Unlock()
			writes++
			if e.Type == recording.TypeCommand && e.Command.Kind == protocol.KindRequest && writes > 3 {
				return errors.New("disk full")
			}
			return nil
		}), nil
	})
	e := &env{dataDir: t.TempDir(), logs: &syncBuffer{}, token: "tok-" + pgtest.RandomSecret(16)}
	static, err := identity.NewStaticTokens([]identity.StaticToken{{SHA256: identity.HashToken(e.token), Subject: subject}})
	require.NoError(t, err)
	e.g, err = gateway.New(gateway.Config{
		DataDir: e.dataDir, Targets: []gateway.TargetConfig{httpTarget("api", "http://"+be.addr(), nil)},
		Authenticator: static, Decider: policy.DeciderFunc(func(context.Context, *policy.Input) (protocol.Decision, error) {
			return protocol.Decision{Action: protocol.Allow, Rules: []string{allowRule}}, nil
		}),
		Credentials: credstore.Default{AllowInline: true}, Recording: sink, ShutdownGrace: time.Second,
		Logger: slog.New(slog.NewTextHandler(e.logs, nil)),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, e.g.Start(ctx))
	t.Cleanup(func() { _ = e.g.Shutdown(context.Background()) })
	c := e.httpClient(t, false)
	resp, body := e.httpDo(t, c, "GET", e.httpURL(t, "api", "/echo/1"), "")
	require.Equal(t, 200, resp.StatusCode, string(body))
	resp, body = e.httpDo(t, c, "GET", e.httpURL(t, "api", "/echo/2"), "")
	assert.Equal(t, 503, resp.StatusCode, string(body))
	assert.Contains(t, decodeProblem(t, resp, body).Detail, "recording unavailable")
	resp, body = e.httpDo(t, c, "GET", e.httpURL(t, "api", "/echo/3"), "")
	assert.Equal(t, 503, resp.StatusCode, string(body))
	assert.Len(t, be.requests(), 1)
}

type recorderFunc func(*recording.Entry) error

func (f recorderFunc) Write(e *recording.Entry) error { return f(e) }
func (f recorderFunc) Close() error                   { return nil }

// TestHTTPLargeDownloadBoundedMemory: a download of httpDownloadSize (1
// GiB without the race detector) streams from a generator through the
// gateway over TLS while the process's heap in use grows by a few MiB at
// most; every byte arrives intact and the result records the full size.
func TestHTTPLargeDownloadBoundedMemory(t *testing.T) {
	size := int64(httpDownloadSize)
	pattern := make([]byte, 64<<10)
	for i := range pattern {
		pattern[i] = byte(i*7 + i/251)
	}
	want := crc32.NewIEEE()
	for left := size; left > 0; left -= int64(len(pattern)) {
		want.Write(pattern[:min(left, int64(len(pattern)))])
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		for left := size; left > 0; left -= int64(len(pattern)) {
			if _, err := w.Write(pattern[:min(left, int64(len(pattern)))]); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/sink", func(w http.ResponseWriter, r *http.Request) {
		h := crc32.NewIEEE()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %08x", n, h.Sum32())
	})
	be := startHTTPBackend(t, false, mux)
	e := startHTTPGateway(t, gatewayOptions{}, httpTarget("api", "http://"+be.addr(), nil))
	c := e.httpClient(t, false)
	// Warm up (TLS, the session) before measuring.
	resp, _ := e.httpDo(t, c, "GET", e.httpURL(t, "api", "/nothing"), "")
	require.Equal(t, 404, resp.StatusCode)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.HeapInuse
	var peak uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	start := time.Now()
	req, err := http.NewRequest("GET", e.httpURL(t, "api", "/big"), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err = c.Do(req)
	require.NoError(t, err)
	got := crc32.NewIEEE()
	n, err := io.CopyBuffer(got, resp.Body, make([]byte, 64<<10))
	resp.Body.Close()
	took := time.Since(start)
	close(stop)
	<-sampled
	require.NoError(t, err)
	assert.Equal(t, size, n)
	assert.Equal(t, want.Sum32(), got.Sum32(), "the bytes arrive unchanged")
	growth := float64(int64(peak)-int64(before)) / (1 << 20)
	t.Logf("%d MiB in %s (%.0f MiB/s); heap in use before %.1f MiB, peak %.1f MiB (growth %.1f MiB)",
		size>>20, took.Round(time.Millisecond), float64(size)/(1<<20)/took.Seconds(), float64(before)/(1<<20), float64(peak)/(1<<20), growth)
	assert.Less(t, growth, 32.0, "the gateway must stream, not buffer")

	// An upload of unknown length streams to the backend the same way.
	upload := size / 16
	req, err = http.NewRequest("PUT", e.httpURL(t, "api", "/sink"), io.LimitReader(&patternReader{p: pattern}, upload))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err = c.Do(req)
	require.NoError(t, err)
	sum, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode, string(sum))
	wantUp := crc32.NewIEEE()
	_, _ = io.Copy(wantUp, io.LimitReader(&patternReader{p: pattern}, upload))
	assert.Equal(t, fmt.Sprintf("%d %08x", upload, wantUp.Sum32()), string(sum))

	c.CloseIdleConnections()
	recs := waitRecordings(t, e.recDir, 1)
	var res *protocol.Result
	for _, en := range recs[0].entries {
		if en.Type == string(protocol.EventResult) && en.Result.Bytes == size {
			res = en.Result
		}
	}
	require.NotNil(t, res)
	assert.Equal(t, "200 OK", res.Tag)
	assert.True(t, res.Truncated, "only the first bytes are recorded")
}

// patternReader repeats p forever.
type patternReader struct {
	p   []byte
	off int
}

func (r *patternReader) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k := copy(b[n:], r.p[r.off:])
		n += k
		r.off = (r.off + k) % len(r.p)
	}
	return n, nil
}
