package e2e

// The HTTP plugin's direct path (GET and HEAD to a plain-HTTP/1.1 backend,
// written and read by the handler itself over connections the session
// keeps) against real backends that misbehave the ways backends do: they
// close idle connections, send informational responses, end bodies by
// closing, send oversized headers, and are left by clients mid-answer.
// And grant windows on HTTP requests, which bind the body.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/policy"
)

// connCounter counts the backend's new connections and closed ones.
type connCounter struct {
	opened, closed atomic.Int64
}

func (c *connCounter) state(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		c.opened.Add(1)
	case http.StateClosed, http.StateHijacked:
		c.closed.Add(1)
	}
}

// TestHTTPDirectConnectionReuse: sequential GETs and HEADs on one client
// connection share one backend connection; when the backend closes it
// while idle, the next GET is sent again on a new connection and the
// client never sees the failure; a "Connection: close" answer and an
// answer whose end is the connection's end are not followed by reuse.
func TestHTTPDirectConnectionReuse(t *testing.T) {
	var counter connCounter
	mux := http.NewServeMux()
	mux.HandleFunc("/n/{i}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "answer %s", r.PathValue("i"))
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "closing")
	})
	mux.HandleFunc("/eof", func(w http.ResponseWriter, r *http.Request) {
		// HTTP/1.0 style: no length, the body ends when the connection does.
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until EOF")
		brw.Flush()
	})
	be := startHTTPBackend(t, false, mux, func(s *http.Server) { s.ConnState = counter.state })
	e := startHTTPGateway(t, gatewayOptions{decider: httpEngine(t)}, httpTarget("api", "http://"+be.addr(), nil))
	c := e.httpClient(t, false)

	for i := range 20 {
		resp, body := e.httpDo(t, c, "GET", e.httpURL(t, "api", fmt.Sprintf("/n/%d", i)), "")
		require.Equal(t, 200, resp.StatusCode, string(body))
		assert.Equal(t, fmt.Sprintf("answer %d", i), string(body))
	}
	for _, seen := range be.requests() {
		assert.Equal(t, "Bearer "+httpBackendSecret, seen.Header.Get("Authorization"), "the credential is injected on the direct path")
	}
	resp, body := e.httpDo(t, c, "HEAD", e.httpURL(t, "api", "/n/head"), "")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Empty(t, body)
	assert.Equal(t, int64(1), counter.opened.Load(), "21 requests, one backend connection")

	// The backend drops its idle connections: the next request is resent.
	be.srv.CloseClientConnections()
	require.Eventually(t, func() bool { return counter.closed.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	resp, body = e.httpDo(t, c, "GET", e.httpURL(t, "api", "/n/after"), "")
	require.Equal(t, 200, resp.StatusCode, string(body))
	assert.Contains(t, string(body), "answer after")
	assert.Equal(t, int64(2), counter.opened.Load())

	for _, path := range []string{"/close", "/eof"} {
		before := counter.opened.Load()
		resp, body = e.httpDo(t, c, "GET", e.httpURL(t, "api", path), "")
		require.Equal(t, 200, resp.StatusCode, string(body))
		resp, body = e.httpDo(t, c, "GET", e.httpURL(t, "api", "/n/next"), "")
		require.Equal(t, 200, resp.StatusCode, string(body))
		assert.Contains(t, string(body), "answer next")
		// The answer came on the kept connection; the next one needs a new one.
		assert.Equal(t, before+1, counter.opened.Load(), "%s: the connection was not used again", path)
	}
	resp, body = e.httpDo(t, c, "GET", e.httpURL(t, "api", "/eof"), "")
	assert.Equal(t, "body until EOF", string(body))
	assert.Equal(t, 200, resp.StatusCode)
}

// TestHTTPDirectInformationalAndOversizedHeaders: 103 Early Hints before
// the answer are dropped and the answer arrives; a backend header over
// the limit is a 502, not unbounded memory.
func TestHTTPDirectInformationalAndOversizedHeaders(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/hints", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "final answer")
	})
	mux.HandleFunc("/huge-header", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 200 OK\r\n")
		line := "X-Filler: " + strings.Repeat("f", 8000) + "\r\n"
		for range 300 { // 2.4 MB of header
			if _, err := brw.WriteString(line); err != nil {
				return
			}
		}
		brw.WriteString("Content-Length: 2\r\n\r\nok")
		brw.Flush()
	})
	be := startHTTPBackend(t, false, mux)
	e := startHTTPGateway(t, gatewayOptions{decider: httpEngine(t)}, httpTarget("api", "http://"+be.addr(), nil))
	c := e.httpClient(t, false)

	resp, body := e.httpDo(t, c, "GET", e.httpURL(t, "api", "/hints"), "")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "final answer", string(body))

	resp, body = e.httpDo(t, c, "GET", e.httpURL(t, "api", "/huge-header"), "")
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode, string(body))
	assert.NotContains(t, string(body), "ffff")
	require.Eventually(t, func() bool { return strings.Contains(e.logs.String(), "the response header is larger than") },
		5*time.Second, 10*time.Millisecond, "the gateway logs why")

	// The session goes on.
	resp, body = e.httpDo(t, c, "GET", e.httpURL(t, "api", "/hints"), "")
	assert.Equal(t, 200, resp.StatusCode, string(body))
}

// TestHTTPDirectClientLeavesMidAnswer: a client that gives up while the
// backend has not answered ends the backend request (the backend sees its
// request's context end); an HTTP/2 client that resets a stream half-way
// through a large body leaves the backend connection closed, not drained,
// and its next request on the same session is answered on a new one.
func TestHTTPDirectClientLeavesMidAnswer(t *testing.T) {
	var counter connCounter
	var mu sync.Mutex
	var slowEnded error
	slowDone := make(chan struct{})
	var bigWritten atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		defer close(slowDone)
		select {
		case <-r.Context().Done():
			mu.Lock()
			slowEnded = r.Context().Err()
			mu.Unlock()
		case <-time.After(20 * time.Second):
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(256<<20))
		chunk := make([]byte, 64<<10)
		for written := 0; written < 256<<20; written += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			bigWritten.Add(int64(len(chunk)))
		}
	})
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "small") })
	be := startHTTPBackend(t, false, mux, func(s *http.Server) { s.ConnState = counter.state })
	e := startHTTPGateway(t, gatewayOptions{decider: httpEngine(t)}, httpTarget("api", "http://"+be.addr(), nil))

	// The client gives up after 300 ms.
	c := e.httpClient(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", e.httpURL(t, "api", "/slow"), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.token)
	_, err = c.Do(req)
	require.Error(t, err)
	select {
	case <-slowDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend request outlived the client by 10 s")
	}
	mu.Lock()
	assert.ErrorIs(t, slowEnded, context.Canceled, "the backend saw its request end")
	mu.Unlock()

	// HTTP/2: read 1 MiB of 256 MiB, reset the stream, ask again.
	h2 := e.httpClient(t, true)
	opened := counter.opened.Load()
	req, err = http.NewRequest("GET", e.httpURL(t, "api", "/big"), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := h2.Do(req)
	require.NoError(t, err)
	require.Equal(t, 2, resp.ProtoMajor)
	n, err := io.CopyN(io.Discard, bufio.NewReader(resp.Body), 1<<20)
	require.NoError(t, err)
	require.Equal(t, int64(1<<20), n)
	require.NoError(t, resp.Body.Close())
	resp2, body := e.httpDo(t, h2, "GET", e.httpURL(t, "api", "/small"), "")
	assert.Equal(t, 200, resp2.StatusCode)
	assert.Equal(t, "small", string(body))
	assert.Equal(t, 2, resp2.ProtoMajor, "the same HTTP/2 session")
	assert.Equal(t, opened+2, counter.opened.Load(), "the half-read connection was not used again")
	require.Eventually(t, func() bool { return counter.closed.Load() >= 2 }, 5*time.Second, 10*time.Millisecond,
		"the half-read backend connection was closed")
	assert.Less(t, bigWritten.Load(), int64(64<<20), "the rest of the body was not drained from the backend")
}

// TestHTTPGrantWindowBindsTheBody: an approved POST with a grant window
// lets the same request (same body) through again without a new approval,
// while the same method and path with another body, or the same body to
// another path, is held for approval of its own.
func TestHTTPGrantWindowBindsTheBody(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	broker := newBroker(t, ctx, "e2e-http-grant")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "done %s %s", r.Method, r.URL.Path) })
	be := startHTTPBackend(t, false, mux)
	eng, err := policy.Parse("grant.yaml", []byte(`
rules:
  - name: connect
    match: command.kind == "connect"
    action: allow
  - name: refunds
    match: command.kind == "request" && command.http.path.startsWith("/refunds")
    action: require_approval
    approvers: [group:dba]
    grant_window: 10m
    timeout: 30s
default: deny
`))
	require.NoError(t, err)
	e := startHTTPGateway(t, gatewayOptions{decider: eng, approvals: broker, groups: []string{"agents"}},
		httpTarget("api", "http://"+be.addr(), map[string]string{"approval": "async"}))
	dba := &identity.Identity{Subject: "dana", Groups: []string{"dba"}, Method: identity.MethodToken}
	c := e.httpClient(t, false)
	post := func(path, body string, hdr ...string) (*http.Response, []byte) {
		return e.httpDo(t, c, "POST", e.httpURL(t, "api", path), body, append([]string{"Content-Type", "application/json"}, hdr...)...)
	}

	small := `{"order": 7, "amount": 12}`
	resp, rb := post("/refunds", small)
	require.Equal(t, 202, resp.StatusCode, string(rb))
	id := resp.Header.Get("Sluice-Approval")
	_, err = broker.Approve(ctx, id, dba, "small refund")
	require.NoError(t, err)
	resp, rb = post("/refunds", small, "Sluice-Approval", id)
	require.Equal(t, 200, resp.StatusCode, string(rb))

	// The same request again, without the header: covered by the window.
	resp, rb = post("/refunds", `{"amount": 12, "order": 7}`)
	assert.Equal(t, 200, resp.StatusCode, string(rb))
	assert.Equal(t, "done POST /refunds", string(rb))
	n := len(be.requests())

	// Another body, or another path: a request of its own.
	for _, tc := range []struct{ path, body string }{
		{"/refunds", `{"order": 7, "amount": 12000}`},
		{"/refunds/bulk", small},
	} {
		resp, rb = post(tc.path, tc.body)
		assert.Equal(t, 202, resp.StatusCode, "%s %s: %s", tc.path, tc.body, rb)
		assert.NotEmpty(t, resp.Header.Get("Sluice-Approval"))
		assert.NotEqual(t, id, resp.Header.Get("Sluice-Approval"))
	}
	assert.Len(t, be.requests(), n, "nothing more reached the backend")
}
