package http

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/protocol"
)

// HeaderApproval carries approval request ids with a retried request
// (approval: async), comma-separated.
const HeaderApproval = "Sluice-Approval"

// HeaderSession names the session on every response the gateway answers
// or passes on, to find its recording.
const HeaderSession = "Sluice-Session"

// minScrubbed is the shortest secret searched for in responses: a short
// one would be found by chance.
const minScrubbed = 8

// hopByHop are the connection-level headers a proxy does not forward
// (RFC 9110, 7.6.1), with the obsolete ones clients still send.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func isHopByHop(name string) bool { return slices.Contains(hopByHop, nethttp.CanonicalHeaderKey(name)) }

// exchange is one request through the gateway.
type exchange struct {
	c     *clientConn
	w     nethttp.ResponseWriter
	r     *nethttp.Request
	cmd   *protocol.Command
	body  *requestBody
	seq   uint64 // the recorded command the result belongs to
	start time.Time
}

func (x *exchange) serve() {
	c, r := x.c, x.r
	x.w.Header().Set(HeaderSession, c.id)
	cmd, body, err := x.command()
	if err != nil {
		var re *requestError
		if !errors.As(err, &re) {
			re = &requestError{status: nethttp.StatusBadRequest, msg: clientText(err.Error())}
		}
		x.recordError(fmt.Sprintf("%s %s refused before policy: %s", r.Method, truncate(r.URL.RequestURI(), 512), re.msg))
		writeProblem(x.w, re.status, problem{Type: problemBadRequest, Detail: re.msg})
		return
	}
	x.cmd, x.body = cmd, body

	var exch *Exchange
	if ext := c.p.opts.ext; ext != nil {
		exch, err = ext.Inspect(r, cmd, body.whole, c.s)
		if err != nil {
			c.log.Error("the extension could not inspect the request", "extension", c.p.opts.extName, "error", err)
			x.recordError(fmt.Sprintf("%s: the %s extension failed: %v", cmd.Text, c.p.opts.extName, err))
			writeProblem(x.w, nethttp.StatusBadGateway, problem{Type: problemUnavailable,
				Detail: fmt.Sprintf("sluice: the %s extension could not read this request", c.p.opts.extName)})
			return
		}
	}
	ctx := protocol.WithNotice(r.Context(), func(msg string) {
		c.log.Info("request waiting for approval", "notice", msg)
	})
	if exch != nil && exch.Refuse != nil {
		cmd.Attrs["refused"] = "true"
		if _, err := c.s.Check(ctx, cmd); err != nil {
			writeProblem(x.w, statusForCheckError(err), problem{Type: problemUnavailable, Detail: clientText(err.Error())})
			return
		}
		exch.Refuse(x.w)
		return
	}
	cmds := []*protocol.Command{cmd}
	if exch != nil && len(exch.Commands) > 0 {
		cmds = exch.Commands
	}
	// A request can only be matched to its retry when its body was read
	// whole (the digest is in the command): others are held.
	if c.p.opts.async && (!body.present || body.whole != nil) {
		ctx = protocol.WithAsyncApproval(ctx)
	}
	if ids := approvalIDs(r.Header); len(ids) > 0 {
		ctx = protocol.WithApprovalIDs(ctx, ids)
	}
	var masks []string
	for i, cm := range cmds {
		d, err := c.s.Check(ctx, cm)
		if err != nil {
			writeProblem(x.w, statusForCheckError(err), problem{Type: problemUnavailable, Detail: clientText(err.Error())})
			return
		}
		if i == 0 {
			x.seq = d.Seq
		}
		switch {
		case d.Allowed():
			for _, m := range d.Mask {
				if !slices.Contains(masks, m) {
					masks = append(masks, m)
				}
			}
			continue
		case d.Action == protocol.RequireApproval && d.ApprovalID != "":
			x.pending(d)
			return
		}
		if exch != nil && exch.Deny != nil {
			exch.Deny(x.w, i, d)
		} else {
			writeProblem(x.w, nethttp.StatusForbidden, deniedProblem(d))
		}
		return
	}
	x.forward(ctx, masks, exch)
}

// pending answers a request filed for approval under approval: async:
// 202 with the request's id, to send again with the request.
func (x *exchange) pending(d protocol.Decision) {
	h := x.w.Header()
	h.Set(HeaderApproval, d.ApprovalID)
	h.Set("Retry-After", "10")
	p := problem{Type: problemApproval, Title: "Approval required", Status: nethttp.StatusAccepted,
		Detail: clientText(d.Message) + fmt.Sprintf("; once approved, send the same request again with the header %s: %s", HeaderApproval, d.ApprovalID),
		Rules:  d.Rules, Approval: d.ApprovalID, Session: x.c.id}
	writeJSON(x.w, nethttp.StatusAccepted, "application/json", p)
	x.recordResult(&protocol.Result{Tag: statusTag(nethttp.StatusAccepted), Duration: 0})
}

// approvalIDs are the ids of the Sluice-Approval header.
func approvalIDs(h nethttp.Header) []string {
	var ids []string
	for _, v := range h.Values(HeaderApproval) {
		for id := range strings.SplitSeq(v, ",") {
			if id = strings.TrimSpace(id); id != "" && len(id) <= 64 {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// forward sends the allowed request to the backend with the gateway's
// credential and streams the response back.
func (x *exchange) forward(ctx context.Context, masks []string, exch *Exchange) {
	c, r := x.c, x.r
	o := &c.p.opts
	x.start = time.Now()
	var m *masking.Masker
	if len(masks) > 0 {
		rm := c.s.Masker(protocol.Decision{Action: protocol.Allow, Mask: masks})
		mm, ok := rm.(*masking.Masker)
		if !ok || mm == nil {
			x.fail(nethttp.StatusBadGateway, problemUnmaskable, "sluice: the masking this request needs cannot be applied", "no JSON masker for the decision's masking")
			return
		}
		m = mm
	}
	upgrade := x.cmd.Attrs["upgrade"]
	if upgrade != "" && m != nil {
		x.fail(nethttp.StatusForbidden, problemUnmaskable,
			"sluice: this request's responses must be masked, and an upgraded ("+upgrade+") stream cannot be; it was not forwarded",
			"upgrade refused: masking applies")
		return
	}

	var secrets []string
	header := outboundHeader(r, upgrade, o.credHeader)
	if o.credScheme != credNone {
		cred, err := c.s.Credential(ctx)
		if err != nil {
			x.fail(nethttp.StatusBadGateway, problemUnavailable, clientText(err.Error()), "backend credential unavailable")
			return
		}
		pw := cred.Password.Reveal()
		if pw == "" {
			c.log.Error("the backend credential resolved to an empty secret; refusing to send the request")
			x.fail(nethttp.StatusBadGateway, problemUnavailable,
				fmt.Sprintf("sluice: the backend credential of target %s is unavailable", c.p.target.Name), "backend credential empty")
			return
		}
		var value string
		switch o.credScheme {
		case credBearer:
			value = "Bearer " + pw
		case credBasic:
			enc := base64.StdEncoding.EncodeToString([]byte(cred.Username + ":" + pw))
			value = "Basic " + enc
			secrets = append(secrets, enc)
		case credHeader:
			value = pw
		}
		header.Set(o.credHeader, value)
		secrets = append(secrets, pw)
	}
	if m != nil || (exch != nil && exch.Response != nil) {
		// The masker reads plain bytes, and a range of a JSON document is
		// not JSON.
		header.Set("Accept-Encoding", "identity")
		header.Del("Range")
		header.Del("If-Range")
	}

	u := *o.base
	u.Path = o.base.Path + r.URL.Path
	if o.base.RawPath != "" || r.URL.RawPath != "" {
		u.RawPath = o.base.EscapedPath() + r.URL.EscapedPath()
	}
	u.RawQuery = r.URL.RawQuery
	var reqBody io.Reader
	var capture *captureReader
	length := int64(0)
	b := x.body
	switch {
	case len(b.whole) > 0:
		reqBody, length = bytes.NewReader(b.whole), int64(len(b.whole))
	case b.rest != nil:
		capture = &captureReader{r: b.rest, max: x.recordCap()}
		reqBody, length = capture, b.length
	}
	out, err := nethttp.NewRequestWithContext(ctx, r.Method, u.String(), reqBody)
	if err != nil {
		x.fail(nethttp.StatusBadRequest, problemBadRequest, "sluice: the request cannot be forwarded: "+err.Error(), err.Error())
		return
	}
	out.ContentLength = length
	if reqBody == nil {
		out.Body = nil
	}
	out.Header = header
	out.Trailer = r.Trailer

	var resp *nethttp.Response
	if c.direct != nil && directEligible(out) {
		resp, err = c.direct.roundTrip(out)
	} else {
		resp, err = c.transport.RoundTrip(out)
	}
	x.recordRequestBody(capture)
	if err != nil {
		if r.Context().Err() != nil {
			x.recordResult(&protocol.Result{Duration: time.Since(x.start), Error: "the client went away before the backend answered"})
			return
		}
		c.log.Warn("backend request failed", "error", scrubString(err.Error(), secrets))
		x.fail(nethttp.StatusBadGateway, problemBackend,
			fmt.Sprintf("sluice: the backend of target %s did not answer", c.p.target.Name), "backend: "+scrubString(err.Error(), secrets))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == nethttp.StatusSwitchingProtocols {
		x.upgraded(ctx, resp, secrets)
		return
	}
	x.respond(resp, m, exch, secrets)
}

// outboundHeader is the header sent to the backend: the caller's, less
// hop-by-hop headers, the caller's Authorization, the credential header
// and Sluice-* headers, plus X-Forwarded-*.
func outboundHeader(r *nethttp.Request, upgrade, credHeader string) nethttp.Header {
	h := r.Header.Clone()
	for _, v := range h.Values("Connection") {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				h.Del(t)
			}
		}
	}
	trailers := headerHasToken(r.Header, "Te", "trailers")
	for _, k := range hopByHop {
		h.Del(k)
	}
	if trailers {
		h.Set("Te", "trailers")
	}
	h.Del("Authorization")
	h.Del(credHeader)
	// What says who the client is comes from the gateway, not the client.
	h.Del("Forwarded")
	h.Del("X-Real-Ip")
	for k := range h {
		if strings.HasPrefix(k, "Sluice-") {
			delete(h, k)
		}
	}
	if upgrade != "" {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", r.Header.Get("Upgrade"))
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		h.Set("X-Forwarded-For", ip)
	}
	h.Set("X-Forwarded-Host", r.Host)
	if r.TLS != nil {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // not Go's default
	}
	return h
}

// newTransport is a session's connection pool to the backend: no proxy
// from the environment, no transparent decompression (bodies pass as the
// backend encoded them, unless masking asks for identity), HTTP/2 when
// the backend offers it over TLS, or with h2c.
func (p *Plugin) newTransport(l protocol.Limits) (*nethttp.Transport, *directPool) {
	o := &p.opts
	d := &net.Dialer{Timeout: l.ConnectTimeout, KeepAlive: 30 * time.Second}
	var direct *directPool
	if o.base.Scheme == "http" && !o.h2c {
		direct = &directPool{addr: backendHostPort(o.base), dial: d.DialContext}
	}
	protos := new(nethttp.Protocols)
	switch {
	case o.base.Scheme == "https":
		protos.SetHTTP1(true)
		protos.SetHTTP2(true)
	case o.h2c:
		protos.SetUnencryptedHTTP2(true)
	default:
		protos.SetHTTP1(true)
	}
	t := &nethttp.Transport{
		DialContext:            d.DialContext,
		TLSHandshakeTimeout:    l.ConnectTimeout,
		DisableCompression:     true,
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        90 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		ForceAttemptHTTP2:      o.base.Scheme == "https",
		Protocols:              protos,
	}
	if o.backendTLS != nil {
		t.TLSClientConfig = o.backendTLS.Clone()
	}
	return t, direct
}

// backendHostPort is the backend's host:port, with the scheme's default
// port when the address names none.
func backendHostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// fail answers a request that was allowed but could not be forwarded, and
// records why.
func (x *exchange) fail(status int, typ, detail, recorded string) {
	writeProblem(x.w, status, problem{Type: typ, Detail: detail})
	x.recordResult(&protocol.Result{Tag: statusTag(status), Duration: time.Since(x.start), Error: recorded})
}

// recordCap is the most bytes of one body the recording keeps.
func (x *exchange) recordCap() int {
	if n := x.c.p.opts.recordBody; n > 0 {
		return n
	}
	return x.c.limits.RecordBytes
}

// recordRequestBody records the request body, when it was not parsed into
// the command, up to the cap.
func (x *exchange) recordRequestBody(streamed *captureReader) {
	var data []byte
	truncated := false
	switch {
	case x.cmd.HTTP.Body != nil:
		return
	case x.body.whole != nil:
		data = x.body.whole
		if n := x.recordCap(); len(data) > n {
			data, truncated = data[:n], true
		}
	case streamed != nil:
		data, truncated = streamed.captured()
	}
	if len(data) == 0 {
		return
	}
	label := "request body"
	if truncated {
		label += ", truncated"
	}
	x.record(protocol.Event{Type: protocol.EventOutput, CommandSeq: x.seq, Data: data, Message: label})
}

func (x *exchange) recordResult(res *protocol.Result) {
	x.record(protocol.Event{Type: protocol.EventResult, CommandSeq: x.seq, Result: res})
}

func (x *exchange) recordError(msg string) {
	x.record(protocol.Event{Type: protocol.EventError, CommandSeq: x.seq, Message: msg})
}

func (x *exchange) record(ev protocol.Event) {
	if err := x.c.s.Record(context.WithoutCancel(x.r.Context()), ev); err != nil {
		x.c.log.Error("recording failed; later requests will be refused", "type", ev.Type, "error", err)
	}
}

func statusTag(code int) string {
	if t := nethttp.StatusText(code); t != "" {
		return fmt.Sprintf("%d %s", code, t)
	}
	return fmt.Sprint(code)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// captureReader keeps the first max bytes read through it. The transport
// may still be reading it when the response is done, hence the lock.
type captureReader struct {
	r         io.Reader
	max       int
	mu        sync.Mutex
	buf       []byte
	truncated bool
}

func (c *captureReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.mu.Lock()
		if room := c.max - len(c.buf); room > 0 {
			c.buf = append(c.buf, p[:min(n, room)]...)
			if n > room {
				c.truncated = true
			}
		} else {
			c.truncated = true
		}
		c.mu.Unlock()
	}
	return n, err
}

// captured returns a copy of what was kept and whether more went by.
func (c *captureReader) captured() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf), c.truncated
}
