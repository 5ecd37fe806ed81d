package http

import (
	"context"
	"fmt"
	"io"
	nethttp "net/http"
	"sync"
	"time"

	"github.com/sluicegw/sluice/protocol"
)

// upgraded relays a connection the backend switched to another protocol
// (101 Switching Protocols, a WebSocket): the client's connection is taken
// from the HTTP server, told the backend's 101, and then bytes are copied
// both ways unchanged (but for the credential, scrubbed from what the
// backend sends, same length so frames stay valid) until either side
// closes or the session ends. Each direction is recorded chunk by chunk
// up to the cap.
func (x *exchange) upgraded(ctx context.Context, resp *nethttp.Response, secrets []string) {
	backend, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		x.fail(nethttp.StatusBadGateway, problemBackend, "sluice: the backend switched protocols without a stream", "101 without a stream")
		return
	}
	defer backend.Close()
	conn, brw, err := nethttp.NewResponseController(x.w).Hijack()
	if err != nil {
		x.fail(nethttp.StatusBadGateway, problemBackend, "sluice: this connection cannot switch protocols (use HTTP/1.1)", "hijack: "+err.Error())
		return
	}
	defer conn.Close()

	h := nethttp.Header{}
	copyResponseHeader(h, resp.Header, secrets)
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", resp.Header.Get("Upgrade"))
	h.Set(HeaderSession, x.c.id)
	_, _ = fmt.Fprintf(brw, "HTTP/1.1 %s\r\n", statusTag(nethttp.StatusSwitchingProtocols))
	_ = h.Write(brw)
	_, _ = brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		x.recordResult(&protocol.Result{Tag: statusTag(resp.StatusCode), Duration: time.Since(x.start), Error: "the client went away: " + err.Error()})
		return
	}
	start := time.Now()
	stop := context.AfterFunc(ctx, func() {
		_ = conn.Close()
		_ = backend.Close()
	})
	defer stop()

	up := &streamRecorder{x: x, label: "websocket client to server", max: x.recordCap()}
	down := &streamRecorder{x: x, label: "websocket server to client", max: x.recordCap()}
	var wg sync.WaitGroup
	var upN int64
	wg.Go(func() {
		// brw.Reader holds what the client sent after its request.
		upN, _ = io.Copy(io.MultiWriter(backend, up), brw.Reader)
		_ = backend.Close()
		_ = conn.Close()
	})
	var dst io.Writer = io.MultiWriter(conn, down)
	scr := newScrubber(dst, secrets)
	downN, _ := io.Copy(scr, backend)
	_ = scr.Close()
	_ = conn.Close()
	_ = backend.Close()
	wg.Wait()

	res := &protocol.Result{Tag: statusTag(resp.StatusCode), Bytes: downN, Duration: time.Since(start),
		Truncated: up.truncated || down.truncated}
	if scr.found > 0 {
		res.Masked = int64(scr.found)
		res.MaskedBy = map[string]int64{"backend-credential": int64(scr.found)}
	}
	x.c.log.Debug("upgraded stream ended", "to_backend", upN, "to_client", downN)
	x.recordResult(res)
}

// streamRecorder records each chunk written to it as an output event,
// until max bytes are recorded.
type streamRecorder struct {
	x         *exchange
	label     string
	max       int
	n         int
	truncated bool
}

func (r *streamRecorder) Write(p []byte) (int, error) {
	if room := r.max - r.n; room > 0 {
		chunk := p[:min(len(p), room)]
		r.x.record(protocol.Event{Type: protocol.EventOutput, CommandSeq: r.x.seq, Data: chunk, Message: r.label})
		r.n += len(chunk)
		if len(p) > room {
			r.truncated = true
		}
	} else if len(p) > 0 {
		r.truncated = true
	}
	return len(p), nil
}
