package http

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"sync"
	"time"
)

// The direct path: the backend round trip of the common request, done in
// the handler's own goroutine.
//
// net/http's Transport runs two goroutines per backend connection (a read
// loop and a write loop) and hands every request to both and its response
// back: on the two-core machines the gateway is measured on, those
// hand-offs are about a fifth of its CPU per request. A request that
// carries no body and cannot change protocols — GET or HEAD without an
// upgrade, an Expect or trailers — to a plain-HTTP/1.1 backend is instead
// written and its response read by the handler itself, over a connection
// the session keeps. Everything else (bodies, upgrades, TLS and h2c
// backends) goes through the Transport, which handles early responses to
// request bodies, 100-continue and protocol negotiation.

// maxDirectIdle is how many idle backend connections a session keeps for
// the direct path: one per request in flight on an HTTP/2 client
// connection, up to this many.
const maxDirectIdle = 4

// maxResponseHeaderBytes bounds a backend response's header, on both paths.
const maxResponseHeaderBytes = 1 << 20

// max1xx bounds the informational (1xx) responses read before the final
// one; they are not passed on, as the Transport does not pass them on.
const max1xx = 5

// errResponseHeaderTooLarge is a response header over maxResponseHeaderBytes.
var errResponseHeaderTooLarge = fmt.Errorf("the response header is larger than %d bytes", maxResponseHeaderBytes)

// aLongTimeAgo is a deadline in the past: it wakes a blocked read or
// write at once.
var aLongTimeAgo = time.Unix(1, 0)

// directPool is a session's backend connections for the direct path.
type directPool struct {
	addr string // host:port
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu     sync.Mutex
	idle   []*directConn
	closed bool
}

// directConn is one backend connection.
type directConn struct {
	conn   net.Conn
	budget budgetReader // under br: bounds a response header
	br     *bufio.Reader
	bw     *bufio.Writer
}

// budgetReader reads at most n more bytes when n >= 0, then fails with
// errResponseHeaderTooLarge; with n < 0 it reads without limit.
type budgetReader struct {
	r io.Reader
	n int64
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.n < 0 {
		return b.r.Read(p)
	}
	if b.n == 0 {
		return 0, errResponseHeaderTooLarge
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	return n, err
}

// directEligible reports whether out can take the direct path.
func directEligible(out *nethttp.Request) bool {
	return (out.Method == nethttp.MethodGet || out.Method == nethttp.MethodHead) &&
		out.Body == nil && len(out.Trailer) == 0 &&
		out.Header.Get("Upgrade") == "" && out.Header.Get("Expect") == ""
}

// roundTrip sends out and reads the response's header. A failure on a
// connection that was idle in the pool, before any byte of a response
// arrived, is retried once on a new connection: the backend closes idle
// connections when it likes, and GET and HEAD may be sent again.
func (p *directPool) roundTrip(out *nethttp.Request) (*nethttp.Response, error) {
	for attempt := 0; ; attempt++ {
		dc, reused, err := p.get(out.Context())
		if err != nil {
			return nil, err
		}
		resp, answered, err := dc.exchange(out, p)
		if err == nil {
			return resp, nil
		}
		_ = dc.conn.Close()
		if !reused || answered || attempt > 0 || out.Context().Err() != nil {
			return nil, err
		}
	}
}

// get takes an idle connection, or dials one.
func (p *directPool) get(ctx context.Context) (*directConn, bool, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		dc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return dc, true, nil
	}
	p.mu.Unlock()
	conn, err := p.dial(ctx, "tcp", p.addr)
	if err != nil {
		return nil, false, err
	}
	dc := &directConn{conn: conn, budget: budgetReader{r: conn, n: -1}}
	dc.br = bufio.NewReaderSize(&dc.budget, 4096)
	dc.bw = bufio.NewWriterSize(conn, 4096)
	return dc, false, nil
}

// put returns a connection whose exchange is complete to the pool.
func (p *directPool) put(dc *directConn) {
	p.mu.Lock()
	// Bytes after the end of a response are not the answer to anything
	// asked: such a connection is not used again.
	if p.closed || len(p.idle) >= maxDirectIdle || dc.br.Buffered() > 0 {
		p.mu.Unlock()
		_ = dc.conn.Close()
		return
	}
	p.idle = append(p.idle, dc)
	p.mu.Unlock()
}

// close closes the idle connections; connections in use close when their
// response is done.
func (p *directPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, dc := range idle {
		_ = dc.conn.Close()
	}
}

// exchange writes out and reads the final response's header; the body is
// read by the caller, and closing it hands the connection back to the
// pool or closes it. answered reports whether any of a response arrived.
func (dc *directConn) exchange(out *nethttp.Request, p *directPool) (resp *nethttp.Response, answered bool, err error) {
	ctx := out.Context()
	// The client going away ends the exchange where it stands, as the
	// Transport does by closing the connection.
	stop := context.AfterFunc(ctx, func() { _ = dc.conn.SetDeadline(aLongTimeAgo) })
	defer func() {
		if err != nil {
			stop()
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
			}
		}
	}()
	if err := out.Write(dc.bw); err != nil {
		return nil, false, err
	}
	if err := dc.bw.Flush(); err != nil {
		return nil, false, err
	}
	for i := 0; ; i++ {
		if _, err := dc.br.Peek(1); err != nil {
			return nil, false, err
		}
		dc.budget.n = maxResponseHeaderBytes - int64(dc.br.Buffered())
		resp, err = nethttp.ReadResponse(dc.br, out)
		dc.budget.n = -1
		if err != nil {
			return nil, true, err
		}
		switch {
		case resp.StatusCode == nethttp.StatusSwitchingProtocols:
			return nil, true, errors.New("the backend switched protocols on a request that asked for no upgrade")
		case resp.StatusCode >= 200:
			resp.Body = &directBody{rc: resp.Body, dc: dc, pool: p, stop: stop, reusable: !resp.Close && !out.Close}
			return resp, true, nil
		case i >= max1xx:
			return nil, true, fmt.Errorf("the backend sent more than %d informational responses", max1xx)
		}
	}
}

// directBody is a direct-path response body: read to its end and closed,
// its connection goes back to the pool; closed before its end, the
// connection is closed rather than drained (the rest of a large download
// is not read for nothing).
type directBody struct {
	rc       io.ReadCloser
	dc       *directConn
	pool     *directPool
	stop     func() bool // stops the context watch; false once it fired
	eof      bool
	closed   bool
	reusable bool
}

func (b *directBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *directBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	watched := b.stop()
	if !b.eof || !b.reusable || !watched {
		// Closed first, so that closing the body does not read the rest.
		_ = b.dc.conn.Close()
		_ = b.rc.Close()
		return nil
	}
	err := b.rc.Close()
	if err != nil {
		_ = b.dc.conn.Close()
		return nil
	}
	b.pool.put(b.dc)
	return nil
}
