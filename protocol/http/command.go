package http

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	nethttp "net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sluicegw/sluice/protocol"
)

// maxJSONDepth bounds the nesting of a request body parsed for policy.
const maxJSONDepth = 1000

// requestError is a request refused before policy: the status and the
// message for the caller.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{status: nethttp.StatusBadRequest, msg: "sluice: " + fmt.Sprintf(format, args...)}
}

// requestBody is what the plugin read of a request's body.
type requestBody struct {
	present bool      // the request has a body (or may: unknown length)
	whole   []byte    // the body read whole; nil when not
	rest    io.Reader // the body still to forward when not read whole
	length  int64     // the body's length when known, else -1
	prefix  []byte    // what was read of a body too large to read whole
}

// command builds the request's command, reading the body when policy (a
// JSON body), an extension or the approval digest needs it whole.
func (x *exchange) command() (*protocol.Command, *requestBody, error) {
	r, o := x.r, &x.c.p.opts
	switch r.Method {
	case nethttp.MethodConnect, nethttp.MethodTrace:
		return nil, nil, &requestError{status: nethttp.StatusMethodNotAllowed,
			msg: fmt.Sprintf("sluice: %s is not proxied", r.Method)}
	}
	if err := checkPath(r.URL.Path); err != nil {
		return nil, nil, err
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, nil, badRequest("the query string is not well-formed (%v); send it URL-encoded, parameters separated by &", err)
	}
	h := &protocol.HTTP{Method: r.Method, Host: r.Host, Path: r.URL.Path}
	if len(q) > 0 {
		h.Query = make(map[string]string, len(q))
		for k, vs := range q {
			h.Query[k] = strings.Join(vs, ",")
		}
	}
	for _, name := range o.headers {
		if vs := r.Header.Values(name); len(vs) > 0 {
			if h.Headers == nil {
				h.Headers = map[string]string{}
			}
			h.Headers[strings.ToLower(name)] = strings.Join(vs, ", ")
		}
	}
	if r.ContentLength > 0 && h.Headers != nil {
		// HTTP/2 carries the length outside the header: the same request
		// reads the same over both.
		h.Headers["content-length"] = strconv.FormatInt(r.ContentLength, 10)
	} else if r.ContentLength > 0 {
		h.Headers = map[string]string{"content-length": strconv.FormatInt(r.ContentLength, 10)}
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		h.ContentType = mediaType(ct)
	}
	cmd := &protocol.Command{
		Protocol: Name,
		Kind:     protocol.KindRequest,
		Text:     r.Method + " " + r.URL.RequestURI(),
		HTTP:     h,
		Attrs:    map[string]string{},
	}
	if raw := r.URL.EscapedPath(); raw != r.URL.Path {
		cmd.Attrs["raw_path"] = raw
	}
	// Only WebSocket upgrades pass: an upgrade is a tunnel to the backend
	// that no later request in it is checked on, and h2c in particular
	// would carry unchecked HTTP/2 requests. Others are ignored (RFC 9110,
	// 7.8), their headers dropped as hop-by-hop.
	if up := upgradeProtocol(r); up == "websocket" {
		cmd.Attrs["upgrade"] = up
	}

	b := &requestBody{length: r.ContentLength}
	b.present = r.Body != nil && r.Body != nethttp.NoBody && r.ContentLength != 0
	if !b.present {
		return cmd, b, nil
	}
	isJSONBody := isJSON(h.ContentType)
	wantWhole := isJSONBody || o.ext != nil
	readWhole := wantWhole || (r.ContentLength > 0 && r.ContentLength <= o.maxBody)
	tooLarge := false
	switch {
	case !readWhole:
		b.rest = r.Body
	case r.ContentLength > o.maxBody:
		b.rest, tooLarge = r.Body, true
	default:
		data, err := io.ReadAll(io.LimitReader(r.Body, o.maxBody+1))
		if err != nil {
			return nil, nil, badRequest("the request body could not be read: %v", err)
		}
		if int64(len(data)) > o.maxBody {
			b.prefix, b.rest, tooLarge = data, io.MultiReader(bytes.NewReader(data), r.Body), true
		} else {
			b.whole, b.length = data, int64(len(data))
			b.present = len(data) > 0
		}
	}
	if len(b.whole) > 0 {
		sum := sha256.Sum256(b.whole)
		cmd.Attrs["body_sha256"] = hex.EncodeToString(sum[:])
	}
	var bodyErr error
	switch {
	case tooLarge && wantWhole:
		bodyErr = fmt.Errorf("larger than max_body (%d bytes)", o.maxBody)
	case isJSONBody && b.whole != nil:
		v, err := parseJSONBody(b.whole)
		if err != nil {
			bodyErr = err
		} else {
			h.Body = v
			cmd.Attrs["body_parsed"] = "true"
		}
	}
	if bodyErr != nil {
		cmd.Attrs["body_error"] = bodyErr.Error()
		if isJSONBody {
			cmd.Attrs["body_parsed"] = "false"
		}
	}
	return cmd, b, nil
}

// checkPath refuses what a backend could read differently from policy:
// dot segments, empty segments, backslashes and control characters, in
// the decoded path (so %2e%2e is a dot segment too).
func checkPath(p string) error {
	if p == "" || p[0] != '/' {
		return badRequest("the request target must be an absolute path (origin form)")
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		switch {
		case s == "." || s == "..":
			return badRequest("the path %q has dot segments; send it resolved", p)
		case s == "" && i != len(segs)-1:
			return badRequest("the path %q has an empty segment (//); send it without", p)
		}
	}
	for _, c := range p {
		if c == '\\' || c < 0x20 || c == 0x7f {
			return badRequest("the path %q has a backslash or a control character", p)
		}
	}
	return nil
}

// mediaType is the lower-case media type of a Content-Type, without
// parameters.
func mediaType(ct string) string {
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		return mt
	}
	mt, _, _ := strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// isJSON reports whether a media type is JSON, or JSON values one per
// line (NDJSON, JSON Lines).
func isJSON(mt string) bool {
	switch mt {
	case "application/json", "application/x-ndjson", "application/ndjson", "application/jsonl",
		"application/x-jsonlines", "application/jsonlines":
		return true
	}
	return strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

// isText reports whether a media type is text a TextStream can mask.
func isText(mt string) bool {
	switch mt {
	case "application/xml", "application/javascript", "application/x-www-form-urlencoded",
		"application/graphql", "application/x-yaml", "application/yaml", "application/csv":
		return true
	}
	return strings.HasPrefix(mt, "text/") && mt != "text/event-stream" ||
		strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+xml")
}

// upgradeProtocol is the protocol an HTTP/1.1 request asks to upgrade to
// (RFC 9110, 7.8), lower case, or "".
func upgradeProtocol(r *nethttp.Request) string {
	if r.ProtoMajor != 1 || !headerHasToken(r.Header, "Connection", "upgrade") {
		return ""
	}
	return strings.ToLower(strings.TrimSpace(r.Header.Get("Upgrade")))
}

// headerHasToken reports whether a comma-separated header has token.
func headerHasToken(h nethttp.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// parseJSONBody parses a request body for policy: objects as
// map[string]any, arrays as []any, integers that fit as int64 and other
// numbers as float64 (as protocol/http/mcp and policytest read JSON, so
// that a policy test sees what the gateway sees). It refuses what a
// backend could read differently: invalid UTF-8 (decoders replace it),
// an object with a key given twice, or twice in different cases (Go's
// encoding/json fills a field from either), more than one value, and
// deeper nesting than maxJSONDepth.
func parseJSONBody(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := jsonValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: more than one value")
	}
	return v, nil
}

func jsonValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		if n, isNum := tok.(json.Number); isNum {
			if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
				return i, nil
			}
			f, err := strconv.ParseFloat(string(n), 64)
			if err != nil || math.IsInf(f, 0) {
				return nil, fmt.Errorf("invalid JSON: the number %.40s is out of range", n)
			}
			return f, nil
		}
		return tok, nil // string, bool or nil
	}
	if depth >= maxJSONDepth {
		return nil, fmt.Errorf("invalid JSON: nested deeper than %d", maxJSONDepth)
	}
	switch d {
	case '{':
		m := map[string]any{}
		var seen map[string]string
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("invalid JSON: %v", err)
			}
			k, _ := kt.(string)
			f := foldKey(k)
			if seen == nil {
				seen = map[string]string{}
			}
			if prev, dup := seen[f]; dup {
				if prev == k {
					return nil, fmt.Errorf("the key %q is given twice", k)
				}
				return nil, fmt.Errorf("the keys %q and %q differ only in case", prev, k)
			}
			seen[f] = k
			v, err := jsonValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		if _, err := dec.Token(); err != nil {
			return nil, fmt.Errorf("invalid JSON: %v", err)
		}
		return m, nil
	default: // '['
		a := []any{}
		for dec.More() {
			v, err := jsonValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, fmt.Errorf("invalid JSON: %v", err)
		}
		return a, nil
	}
}

// foldKey maps a key to one form for all keys equal under simple case
// folding (what bytes.EqualFold and encoding/json's field matching use):
// each rune becomes the smallest rune of its folding orbit, which for
// ASCII letters is the upper-case one.
func foldKey(k string) string {
	ascii := true
	for i := 0; i < len(k); i++ {
		if k[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToUpper(k)
	}
	var b strings.Builder
	for _, r := range k {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}
