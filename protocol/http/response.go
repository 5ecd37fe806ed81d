package http

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	nethttp "net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/protocol"
)

// copyBufSize is the size of the reads from the backend.
const copyBufSize = 32 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// unsafeWhenMasked are response headers that describe the backend's
// bytes, which masking changes.
var unsafeWhenMasked = []string{"Content-Length", "Content-Md5", "Content-Digest", "Repr-Digest", "Digest", "Etag", "Accept-Ranges", "Content-Range"}

// respond streams the backend's response to the client: masked when the
// decision says so, with the credential scrubbed, recorded up to the cap.
func (x *exchange) respond(resp *nethttp.Response, m *masking.Masker, exch *Exchange, secrets []string) {
	c := x.c
	h := x.w.Header()
	copyResponseHeader(h, resp.Header, secrets)
	h.Set(HeaderSession, c.id)
	if loc := h.Get("Location"); loc != "" {
		h.Set("Location", relativeLocation(loc, c.p.opts.base))
	}
	status := resp.StatusCode
	ct := mediaType(resp.Header.Get("Content-Type"))
	sse := ct == "text/event-stream"
	noBody := x.r.Method == nethttp.MethodHead || status == nethttp.StatusNoContent || status == nethttp.StatusNotModified
	transform := !noBody && (m != nil || (exch != nil && exch.Response != nil))
	encoding := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	if encoding == "identity" {
		encoding = ""
	}

	var body io.Reader = resp.Body
	if transform {
		switch encoding {
		case "":
		case "gzip", "x-gzip":
			zr, err := gzip.NewReader(resp.Body)
			if err != nil {
				x.refuseResponse(nethttp.StatusBadGateway, problemBackend, "sluice: the backend's gzip body could not be read", "gzip: "+err.Error())
				return
			}
			defer zr.Close()
			body = zr
			h.Del("Content-Encoding")
			encoding = ""
		default:
			x.refuseResponse(nethttp.StatusBadGateway, problemUnmaskable,
				fmt.Sprintf("sluice: the response could not be masked: the backend sent it %s-encoded", encoding),
				"response not masked: content encoding "+encoding)
			return
		}
		for _, k := range unsafeWhenMasked {
			h.Del(k)
		}
	}

	t := &tap{x: x, w: x.w, rc: nethttp.NewResponseController(x.w), status: status, max: x.recordCap(), stream: sse}
	var sink io.Writer = t
	var scr *scrubber
	if len(secrets) > 0 && encoding == "" {
		scr = newScrubber(t, secrets)
		sink = scr
	}
	var mw io.WriteCloser
	var counts func() map[string]int
	switch {
	case !transform:
	case exch != nil && exch.Response != nil:
		w, err := exch.Response(sink, h, m)
		if err != nil {
			c.log.Error("the extension cannot take the response over", "extension", c.p.opts.extName, "error", err)
			x.refuseResponse(nethttp.StatusBadGateway, problemUnmaskable, "sluice: the response could not be passed on", "extension: "+err.Error())
			return
		}
		mw = w
	case isJSON(ct):
		js := m.NewJSONStream(sink)
		mw, counts = js, js.Counts
	case sse:
		sm := newSSEMasker(m, sink)
		mw, counts = sm, sm.Counts
	case isText(ct):
		ts := m.NewTextStream(sink)
		mw, counts = ts, ts.Counts
	default:
		what := "it has no content type"
		if ct != "" {
			what = fmt.Sprintf("its content type %s is not JSON or text", ct)
		}
		x.refuseResponse(nethttp.StatusBadGateway, problemUnmaskable, "sluice: the response could not be masked: "+what,
			"response not masked: content type "+ct)
		return
	}
	if !transform && len(resp.Trailer) > 0 {
		for k := range resp.Trailer {
			h.Add("Trailer", k)
		}
	}
	// Flush after every read when the backend streams (unknown length, an
	// event stream), so the client sees what the backend sent as it
	// arrives. A masked JSON or text body is committed with its first
	// masked bytes, so that a body failing to mask at once is answered 502.
	streaming := !noBody && (sse || resp.ContentLength < 0)
	if mw == nil || sse {
		t.commit()
		if streaming {
			_ = t.flush()
		}
	}

	var failure string // why the response was cut off
	var clientGone bool
	if !noBody {
		var into io.Writer = sink
		if mw != nil {
			into = mw
		}
		bp := copyBufs.Get().(*[]byte)
		buf := *bp
		for {
			n, rerr := body.Read(buf)
			if n > 0 {
				if _, werr := into.Write(buf[:n]); werr != nil {
					if t.werr != nil {
						clientGone = true
					} else {
						failure = "response not masked: " + werr.Error()
					}
					break
				}
				if streaming {
					if err := t.flush(); err != nil {
						clientGone = true
						break
					}
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				if x.r.Context().Err() != nil {
					clientGone = true
				} else {
					failure = "the backend's body ended early: " + rerr.Error()
				}
				break
			}
		}
		copyBufs.Put(bp)
		if failure == "" && !clientGone {
			var err error
			if mw != nil {
				err = mw.Close()
			}
			if err == nil && scr != nil {
				err = scr.Close()
			}
			switch {
			case t.werr != nil:
				clientGone = true
			case err != nil:
				failure = "response not masked: " + err.Error()
			}
		}
	}
	if failure != "" && !t.committed {
		// Nothing was sent: the client gets a clean refusal.
		x.refuseResponse(nethttp.StatusBadGateway, problemUnmaskable, "sluice: the response could not be masked", failure)
		return
	}
	if failure == "" && !clientGone {
		t.commit()
		for k, vs := range resp.Trailer {
			if !transform {
				h[k] = scrubValues(vs, secrets)
			}
		}
	}

	res := &protocol.Result{Tag: statusTag(status), Bytes: t.n, Duration: time.Since(x.start), Truncated: t.truncated}
	switch {
	case failure != "":
		res.Error = failure
	case clientGone:
		res.Error = "the client went away before the response was complete"
	}
	if counts != nil {
		for k, v := range counts() {
			if v > 0 {
				if res.MaskedBy == nil {
					res.MaskedBy = map[string]int64{}
				}
				res.MaskedBy[k] += int64(v)
				res.Masked += int64(v)
			}
		}
	}
	if scr != nil && scr.found > 0 {
		c.log.Warn("the backend sent its own credential back; it was replaced before reaching the client", "times", scr.found)
		if res.MaskedBy == nil {
			res.MaskedBy = map[string]int64{}
		}
		res.MaskedBy["backend-credential"] += int64(scr.found)
		res.Masked += int64(scr.found)
	}
	t.finish(res)
	x.recordResult(res)
	if failure != "" {
		c.log.Warn("response cut off", "reason", failure)
		// What was sent is masked; the rest is not sent, and the client
		// must not take the body for complete (HTTP/1.1: no last chunk;
		// HTTP/2: RST_STREAM).
		panic(nethttp.ErrAbortHandler)
	}
}

// refuseResponse answers a response the gateway will not pass on,
// dropping the backend's headers, and records why.
func (x *exchange) refuseResponse(status int, typ, detail, recorded string) {
	h := x.w.Header()
	for k := range h {
		delete(h, k)
	}
	h.Set(HeaderSession, x.c.id)
	x.fail(status, typ, detail, recorded)
}

// relativeLocation turns a redirect to the backend's own URL into a
// reference relative to the gateway (the path without the target's
// prefix), so that the client follows it through the gateway; other
// locations are left alone.
func relativeLocation(loc string, base *url.URL) string {
	u, err := url.Parse(loc)
	if err != nil || !u.IsAbs() || !strings.EqualFold(u.Host, base.Host) || u.Scheme != base.Scheme {
		return loc
	}
	p := u.EscapedPath()
	if prefix := base.EscapedPath(); prefix != "" {
		if p != prefix && !strings.HasPrefix(p, prefix+"/") {
			return loc
		}
		p = strings.TrimPrefix(p, prefix)
	}
	if p == "" {
		p = "/"
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	if u.Fragment != "" {
		p += "#" + u.EscapedFragment()
	}
	return p
}

// copyResponseHeader copies the backend's response header for the client,
// less hop-by-hop headers, with the credential replaced where it appears.
func copyResponseHeader(dst, src nethttp.Header, secrets []string) {
	drop := map[string]bool{}
	for _, v := range src.Values("Connection") {
		for t := range strings.SplitSeq(v, ",") {
			drop[nethttp.CanonicalHeaderKey(strings.TrimSpace(t))] = true
		}
	}
	for k, vs := range src {
		if drop[k] || isHopByHop(k) {
			continue
		}
		dst[k] = scrubValues(vs, secrets)
	}
}

func scrubValues(vs, secrets []string) []string {
	out, copied := vs, false
	for i, v := range vs {
		if s := scrubString(v, secrets); s != v {
			if !copied {
				out, copied = append([]string(nil), vs...), true
			}
			out[i] = s
		}
	}
	return out
}

// scrubString replaces the secrets in s with asterisks.
func scrubString(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= minScrubbed && strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, strings.Repeat("*", len(sec)))
		}
	}
	return s
}

// tap is the last writer before the client: it sends the response header
// with the first byte, counts what the client receives and keeps the
// first bytes of it for the recording.
type tap struct {
	x         *exchange
	w         nethttp.ResponseWriter
	rc        *nethttp.ResponseController
	status    int
	committed bool
	n         int64
	werr      error

	max       int    // recording cap
	kept      []byte // the first max bytes
	truncated bool
	stream    bool // record as the stream goes, at every flush
	recorded  int  // kept bytes already recorded (stream)
}

func (t *tap) commit() {
	if !t.committed {
		t.committed = true
		t.w.WriteHeader(t.status)
	}
}

func (t *tap) Write(p []byte) (int, error) {
	t.commit()
	n, err := t.w.Write(p)
	t.n += int64(n)
	if room := t.max - len(t.kept); room > 0 {
		t.kept = append(t.kept, p[:min(n, room)]...)
		if n > room {
			t.truncated = true
		}
	} else if n > 0 {
		t.truncated = true
	}
	if err != nil {
		t.werr = err
	}
	return n, err
}

// flush sends what was written to the client now, and records a stream's
// new bytes.
func (t *tap) flush() error {
	t.commit()
	t.recordStream()
	if err := t.rc.Flush(); err != nil {
		t.werr = err
		return err
	}
	return nil
}

func (t *tap) recordStream() {
	if t.stream && len(t.kept) > t.recorded {
		t.x.record(protocol.Event{Type: protocol.EventOutput, CommandSeq: t.x.seq,
			Data: t.kept[t.recorded:], Message: "response stream"})
		t.recorded = len(t.kept)
	}
}

// finish records what was kept of the body.
// finish records what was kept of the body: a stream's last bytes as
// output; a text body in the result (one "body" cell, readable in the
// recording and one entry less per request); another body as output.
func (t *tap) finish(res *protocol.Result) {
	switch {
	case t.stream:
		t.recordStream()
	case len(t.kept) == 0:
	case utf8.Valid(t.kept):
		body := string(t.kept)
		res.Columns, res.Data = []string{"body"}, [][]*string{{&body}}
	default:
		label := "response body"
		if t.truncated {
			label += ", truncated"
		}
		t.x.record(protocol.Event{Type: protocol.EventOutput, CommandSeq: t.x.seq, Data: t.kept, Message: label})
	}
}

// scrubber replaces secrets in a byte stream with asterisks of the same
// length (so that a Content-Length or a frame length stays right),
// holding back a tail that may be the start of a secret split across
// writes.
type scrubber struct {
	w       io.Writer
	secrets [][]byte
	held    []byte
	buf     []byte
	found   int
}

func newScrubber(w io.Writer, secrets []string) *scrubber {
	s := &scrubber{w: w}
	for _, sec := range secrets {
		if len(sec) >= minScrubbed {
			s.secrets = append(s.secrets, []byte(sec))
		}
	}
	return s
}

func (s *scrubber) Write(p []byte) (int, error) {
	if len(s.secrets) == 0 {
		return s.w.Write(p)
	}
	data, owned := p, false
	if len(s.held) > 0 {
		s.buf = append(append(s.buf[:0], s.held...), p...)
		data, owned = s.buf, true
		s.held = s.held[:0]
	}
	for _, sec := range s.secrets {
		for off := 0; ; {
			i := bytes.Index(data[off:], sec)
			if i < 0 {
				break
			}
			if !owned {
				s.buf = append(s.buf[:0], data...)
				data, owned = s.buf, true
			}
			for j := range sec {
				data[off+i+j] = '*'
			}
			s.found++
			off += i + len(sec)
		}
	}
	keep := s.tail(data)
	if keep > 0 {
		s.held = append(s.held[:0], data[len(data)-keep:]...)
	}
	if _, err := s.w.Write(data[:len(data)-keep]); err != nil {
		return 0, err
	}
	return len(p), nil
}

// tail is the length of the longest end of data that begins a secret.
func (s *scrubber) tail(data []byte) int {
	best := 0
	for _, sec := range s.secrets {
		for k := min(len(sec)-1, len(data)); k > best; k-- {
			if data[len(data)-k] == sec[0] && bytes.Equal(data[len(data)-k:], sec[:k]) {
				best = k
				break
			}
		}
	}
	return best
}

// Close writes what was held back.
func (s *scrubber) Close() error {
	if len(s.held) == 0 {
		return nil
	}
	_, err := s.w.Write(s.held)
	s.held = s.held[:0]
	return err
}

var errEventTooLarge = errors.New("an event of the event stream is larger than 1 MiB")
