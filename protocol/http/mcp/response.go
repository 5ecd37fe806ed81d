package mcp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"strings"

	"github.com/sluicegw/sluice/masking"
)

// DefaultMaxMessage bounds one server message (a JSON body, or one SSE
// event) that a ResponseFilter holds to inspect.
const DefaultMaxMessage = 16 << 20

// ResponseOptions configure a ResponseFilter.
type ResponseOptions struct {
	// Request is the POST body the response answers; it tells which
	// responses answer a tools/list. Nil for a GET stream: tools/list
	// results are then recognised by shape (a result with a tools array).
	Request *Request
	// Masker masks what the server returns; nil masks nothing.
	Masker *masking.Masker
	// ToolAllowed reports whether the caller may call a tool at all; a
	// tools/list result keeps only the tools it approves (and drops any
	// entry without a readable name). Nil filters nothing. The plugin
	// answers it with policy on ToolCommand(name) (policy.Prober), false
	// on error.
	ToolAllowed func(name string) bool
	// MaxMessage bounds one message held to inspect; DefaultMaxMessage
	// when zero or negative. A larger message is withheld: replaced by a
	// CodeWithheld error for its id.
	MaxMessage int
}

type filterMode uint8

const (
	modePass filterMode = iota // nothing to do: bytes pass
	modeText                   // not JSON-RPC: masked as text
	modeJSON                   // application/json: one message (or batch), held whole
	modeSSE                    // text/event-stream: event by event
)

// ResponseFilter rewrites an MCP server's answer on its way to the client:
// results are masked and tools/list results filtered (see ResponseOptions),
// in a JSON body or, event by event, in an SSE stream. It holds at most one
// message (bounded by MaxMessage) and writes each SSE event as soon as it
// is complete, flushing w when it is an http.Flusher, so streams stay
// streams.
//
// What is masked in a message (with the Masker's detectors and json:
// rules):
//
//   - a result's content[].text, the text of embedded resources, the text
//     of resources/read contents and of prompts/get messages: as a JSON
//     document when the text is JSON (so json: rules apply inside, with
//     the text as the document root), else as text;
//   - result.structuredContent: as a JSON document of its own ($ is the
//     tool's structured output);
//   - base64 blobs whose mimeType is textual (text/*, JSON, XML, YAML,
//     CSV): decoded, masked as text, encoded again; other blobs, images
//     and audio pass unchanged;
//   - every other member of a result, an error's message and data, and the
//     params of the server's own requests and notifications (sampling,
//     logging, progress): as JSON.
//
// A message that is not JSON, cannot be masked, or is larger than
// MaxMessage is withheld: replaced by a JSON-RPC error response with its id
// and CodeWithheld. A body that is neither JSON nor SSE is masked as text.
// An SSE event cut off by the end of the stream is dropped, as a client
// would drop it.
//
// A ResponseFilter is not safe for concurrent use.
type ResponseFilter struct {
	w    io.Writer
	opts ResponseOptions
	mode filterMode
	max  int
	text *masking.TextStream

	listIDs map[string]bool // ids of the request's tools/list calls
	known   map[string]bool // ids of all the request's calls

	// modeJSON: the body; modeSSE: the current event's lines, each
	// ending in "\n", then the current line.
	buf     []byte
	over    bool // the message outgrew max; buf holds its prefix
	lineLen int  // modeSSE: bytes of the current line seen (stored or not)
	lastCR  bool // modeSSE: the previous byte ended a line with CR

	counts   map[string]int
	hidden   int
	withheld int
	err      error
	closed   bool
}

// NewResponseFilter returns a filter writing to w for a response of the
// given Content-Type.
func NewResponseFilter(w io.Writer, contentType string, opts ResponseOptions) *ResponseFilter {
	f := &ResponseFilter{w: w, opts: opts, max: opts.MaxMessage, counts: map[string]int{}}
	if f.max <= 0 {
		f.max = DefaultMaxMessage
	}
	if opts.Request != nil {
		f.listIDs, f.known = map[string]bool{}, map[string]bool{}
		for _, m := range opts.Request.Messages {
			if k := idKey(m.ID); k != "" && m.Method != "" {
				f.known[k] = true
				if m.Method == "tools/list" {
					f.listIDs[k] = true
				}
			}
		}
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case opts.Masker == nil && opts.ToolAllowed == nil:
		f.mode = modePass
	case mt == "text/event-stream":
		f.mode = modeSSE
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		f.mode = modeJSON
	case opts.Masker != nil:
		f.mode = modeText
		f.text = opts.Masker.NewTextStream(w)
	default:
		f.mode = modePass
	}
	return f
}

// Counts returns how many values each mask entry masked so far.
func (f *ResponseFilter) Counts() map[string]int {
	if f.text != nil {
		out := maps.Clone(f.counts)
		for k, v := range f.text.Counts() {
			out[k] += v
		}
		return out
	}
	return maps.Clone(f.counts)
}

// HiddenTools returns how many tools were dropped from tools/list results.
func (f *ResponseFilter) HiddenTools() int { return f.hidden }

// Withheld returns how many messages were replaced by CodeWithheld errors.
func (f *ResponseFilter) Withheld() int { return f.withheld }

// Write implements io.Writer. It fails only when w does, or after Close.
func (f *ResponseFilter) Write(p []byte) (int, error) {
	if f.closed {
		return 0, masking.ErrClosed
	}
	if f.err != nil {
		return 0, f.err
	}
	var err error
	switch f.mode {
	case modePass:
		_, err = f.w.Write(p)
		f.flush()
	case modeText:
		// No TextStream.Flush here: it holds back what may be the start
		// of a match that the next write completes.
		_, err = f.text.Write(p)
		f.flush()
	case modeJSON:
		f.hold(p)
	case modeSSE:
		err = f.sse(p)
	}
	if err != nil {
		f.err = err
		return 0, err
	}
	return len(p), nil
}

// Close writes what the filter still holds: the JSON body, rewritten. It
// does not close w.
func (f *ResponseFilter) Close() error {
	if f.closed {
		return f.err
	}
	f.closed = true
	if f.err != nil {
		return f.err
	}
	switch f.mode {
	case modeText:
		f.err = f.text.Close()
		f.flush()
	case modeJSON:
		if len(bytes.TrimSpace(f.buf)) > 0 || f.over {
			out := f.message(f.buf, f.over)
			if _, err := f.w.Write(out); err != nil {
				f.err = err
			}
			f.flush()
		}
		f.buf = nil
	case modeSSE:
		f.buf = nil // an incomplete event: dropped (WHATWG HTML 9.2.6)
	}
	return f.err
}

func (f *ResponseFilter) flush() {
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
}

// hold appends p to buf, up to max.
func (f *ResponseFilter) hold(p []byte) {
	if room := f.max - len(f.buf); len(p) > room {
		f.over = true
		p = p[:max(room, 0)]
	}
	f.buf = append(f.buf, p...)
}

// sse parses SSE lines (terminated by CRLF, LF or CR: WHATWG HTML 9.2.5)
// and handles each event at its blank line.
func (f *ResponseFilter) sse(p []byte) error {
	for len(p) > 0 {
		if f.lastCR && p[0] == '\n' {
			f.lastCR = false
			p = p[1:]
			continue
		}
		f.lastCR = false
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			f.hold(p)
			f.lineLen += len(p)
			return nil
		}
		f.hold(p[:i])
		f.lineLen += i
		f.lastCR = p[i] == '\r'
		p = p[i+1:]
		if f.lineLen == 0 {
			if err := f.dispatch(); err != nil {
				return err
			}
			continue
		}
		f.hold([]byte{'\n'})
		f.lineLen = 0
	}
	return nil
}

// dispatch handles the event in buf (its lines, each ending in "\n").
func (f *ResponseFilter) dispatch() error {
	lines, over := f.buf, f.over
	f.buf, f.over, f.lineLen = f.buf[:0], false, 0
	var (
		data    []byte
		hasData bool
	)
	for line := range bytes.Lines(lines) {
		if name, value := sseField(line); name == "data" {
			if hasData {
				data = append(data, '\n')
			}
			data, hasData = append(data, value...), true
		}
	}
	var out []byte
	switch {
	case over && !hasData:
		return nil // an oversized event without a message: dropped
	case over:
		out = f.withhold(prefixID(data), fmt.Sprintf("the server's message is larger than %d bytes, more than the gateway inspects", f.max))
		out = sseEvent(nil, out)
	case len(data) == 0:
		out = append(lines, '\n') // no message: comments, ids, retry, priming
	default:
		msg := f.message(data, false)
		if bytes.Equal(msg, data) {
			out = append(lines, '\n')
		} else {
			out = sseEvent(lines, msg)
		}
	}
	_, err := f.w.Write(out)
	f.flush()
	return err
}

// sseField splits an SSE line ("\n"-terminated) into field and value.
func sseField(line []byte) (name string, value []byte) {
	line = bytes.TrimSuffix(line, []byte{'\n'})
	n, v, ok := bytes.Cut(line, []byte{':'})
	if !ok {
		return string(line), nil
	}
	return string(n), bytes.TrimPrefix(v, []byte{' '})
}

// sseEvent writes an event: the lines of the original that are not data
// (nil for none), with the data lines replaced by data at the first one.
func sseEvent(lines, data []byte) []byte {
	var out []byte
	wrote := false
	emit := func() {
		for part := range bytes.Lines(data) {
			part = bytes.TrimRight(part, "\r\n")
			out = append(out, "data: "...)
			out = append(out, part...)
			out = append(out, '\n')
		}
		wrote = true
	}
	for line := range bytes.Lines(lines) {
		if name, _ := sseField(line); name == "data" {
			if !wrote {
				emit()
			}
			continue
		}
		out = append(out, line...)
	}
	if !wrote {
		emit()
	}
	return append(out, '\n')
}

// message rewrites one JSON-RPC message or batch; what cannot be read or
// masked is withheld.
func (f *ResponseFilter) message(data []byte, over bool) []byte {
	if over {
		return f.withhold(prefixID(data), fmt.Sprintf("the server's message is larger than %d bytes, more than the gateway inspects", f.max))
	}
	if elems, ok, err := decodeArray(data); err == nil && ok {
		changed := false
		for i, e := range elems {
			out, err := f.one(e)
			if err != nil {
				out = f.withhold(prefixID(e), err.Error())
			}
			if !bytes.Equal(out, e) {
				elems[i], changed = out, true
			}
		}
		if !changed {
			return data
		}
		return encodeArray(elems)
	}
	out, err := f.one(data)
	if err != nil {
		return f.withhold(prefixID(data), err.Error())
	}
	return out
}

func (f *ResponseFilter) withhold(id json.RawMessage, reason string) []byte {
	f.withheld++
	return ErrorResponse(id, CodeWithheld, "sluice: the gateway withheld the server's response: "+reason,
		&ErrorData{Action: "withheld", Reason: reason})
}

var errNotMessage = errors.New("the server sent something that is not a JSON-RPC message")

// one rewrites one message; the result is data itself when nothing
// changed.
func (f *ResponseFilter) one(data []byte) ([]byte, error) {
	ms, ok, err := decodeObject(data)
	if err != nil || !ok {
		return nil, errNotMessage
	}
	var id json.RawMessage
	for _, m := range ms {
		if m.key == "id" {
			id = m.val
		}
	}
	k := idKey(id)
	changed := false
	for i := range ms {
		m := &ms[i]
		var (
			out []byte
			err error
		)
		switch m.key {
		case "jsonrpc", "id", "method":
			continue
		case "result":
			out = m.val
			if f.opts.ToolAllowed != nil && (f.listIDs[k] || (!f.known[k] && hasTools(out))) {
				out, err = f.filterTools(out)
			}
			if err == nil && f.opts.Masker != nil {
				out, err = f.maskResult(out)
			}
		case "error":
			out, err = f.maskError(m.val)
		default: // params, and anything else a server sends
			out, err = f.maskJSON(m.val)
		}
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(out, m.val) {
			m.val, changed = out, true
		}
	}
	if !changed {
		return data, nil
	}
	return encodeObject(ms), nil
}

// hasTools reports whether a result has a tools array: a tools/list result
// on a stream whose requests are not known.
func hasTools(result []byte) bool {
	ms, ok, err := decodeObject(result)
	if err != nil || !ok {
		return false
	}
	for _, m := range ms {
		if strings.EqualFold(m.key, "tools") {
			if _, ok, _ := decodeArray(m.val); ok {
				return true
			}
		}
	}
	return false
}

// filterTools keeps the tools ToolAllowed approves in a tools/list result.
func (f *ResponseFilter) filterTools(result []byte) ([]byte, error) {
	ms, ok, err := decodeObject(result)
	if err != nil {
		return nil, err
	}
	if !ok {
		return result, nil
	}
	changed := false
	for i := range ms {
		if !strings.EqualFold(ms[i].key, "tools") {
			continue
		}
		tools, ok, err := decodeArray(ms[i].val)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		kept := tools[:0:0]
		for _, t := range tools {
			if name := toolName(t); name != "" && f.opts.ToolAllowed(name) {
				kept = append(kept, t)
			} else {
				f.hidden++
			}
		}
		if len(kept) != len(tools) {
			ms[i].val, changed = encodeArray(kept), true
		}
	}
	if !changed {
		return result, nil
	}
	return encodeObject(ms), nil
}

// toolName is a tool definition's name: "" unless it has exactly one
// member named name in any case, spelled "name", holding a string.
func toolName(tool []byte) string {
	ms, ok, err := decodeObject(tool)
	if err != nil || !ok {
		return ""
	}
	var (
		name string
		n    int
	)
	for _, m := range ms {
		if strings.EqualFold(m.key, "name") {
			n++
			if m.key != "name" || json.Unmarshal(m.val, &name) != nil {
				return ""
			}
		}
	}
	if n != 1 {
		return ""
	}
	return name
}

// maskMembers rewrites the members of an object with fn (which returns the
// value itself when it leaves it); a value that is not an object is masked
// as JSON.
func (f *ResponseFilter) maskMembers(raw []byte, fn func(ms []member, i int) ([]byte, error)) ([]byte, error) {
	if f.opts.Masker == nil {
		return raw, nil
	}
	ms, ok, err := decodeObject(raw)
	if err != nil {
		return nil, err
	}
	if !ok {
		return f.maskJSON(raw)
	}
	changed := false
	for i := range ms {
		out, err := fn(ms, i)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(out, ms[i].val) {
			ms[i].val, changed = out, true
		}
	}
	if !changed {
		return raw, nil
	}
	return encodeObject(ms), nil
}

// maskEach masks every element of an array with fn; a value that is not an
// array is masked as JSON.
func (f *ResponseFilter) maskEach(raw []byte, fn func([]byte) ([]byte, error)) ([]byte, error) {
	elems, ok, err := decodeArray(raw)
	if err != nil {
		return nil, err
	}
	if !ok {
		return f.maskJSON(raw)
	}
	changed := false
	for i, e := range elems {
		out, err := fn(e)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(out, e) {
			elems[i], changed = out, true
		}
	}
	if !changed {
		return raw, nil
	}
	return encodeArray(elems), nil
}

func (f *ResponseFilter) maskResult(raw []byte) ([]byte, error) {
	return f.maskMembers(raw, func(ms []member, i int) ([]byte, error) {
		v := ms[i].val
		switch ms[i].key {
		case "content": // tools/call
			return f.maskEach(v, f.maskContent)
		case "structuredContent":
			return f.maskJSON(v)
		case "contents": // resources/read
			return f.maskEach(v, f.maskResource)
		case "messages": // prompts/get
			return f.maskEach(v, func(msg []byte) ([]byte, error) {
				return f.maskMembers(msg, func(ms []member, i int) ([]byte, error) {
					switch ms[i].key {
					case "role":
						return ms[i].val, nil
					case "content":
						if _, ok, _ := decodeArray(ms[i].val); ok {
							return f.maskEach(ms[i].val, f.maskContent)
						}
						return f.maskContent(ms[i].val)
					}
					return f.maskJSON(ms[i].val)
				})
			})
		}
		return f.maskJSON(v)
	})
}

// maskContent masks a content block: text, image, audio, resource_link,
// embedded resource.
func (f *ResponseFilter) maskContent(raw []byte) ([]byte, error) {
	return f.maskMembers(raw, func(ms []member, i int) ([]byte, error) {
		v := ms[i].val
		switch ms[i].key {
		case "type", "mimeType", "data": // data: base64 image or audio
			return v, nil
		case "text":
			return f.maskTextValue(v)
		case "resource":
			return f.maskResource(v)
		}
		return f.maskJSON(v)
	})
}

// maskResource masks resource contents: text, or a base64 blob.
func (f *ResponseFilter) maskResource(raw []byte) ([]byte, error) {
	return f.maskMembers(raw, func(ms []member, i int) ([]byte, error) {
		v := ms[i].val
		switch ms[i].key {
		case "mimeType":
			return v, nil
		case "text":
			return f.maskTextValue(v)
		case "blob":
			var mt string
			for _, m := range ms {
				if m.key == "mimeType" {
					_ = json.Unmarshal(m.val, &mt)
				}
			}
			if !textual(mt) {
				return v, nil
			}
			var b64 string
			if err := json.Unmarshal(v, &b64); err != nil {
				return nil, errors.New("a resource blob that is not a string")
			}
			blob, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				return nil, fmt.Errorf("a %s resource blob that is not base64", mt)
			}
			masked, err := f.maskText(blob)
			if err != nil || bytes.Equal(masked, blob) {
				return v, err
			}
			return appendString(nil, base64.StdEncoding.EncodeToString(masked)), nil
		}
		return f.maskJSON(v)
	})
}

// textual reports whether a mime type is text a detector can read.
func textual(mt string) bool {
	mt, _, _ = mime.ParseMediaType(mt)
	switch {
	case strings.HasPrefix(mt, "text/"), strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"):
		return true
	}
	switch mt {
	case "application/json", "application/xml", "application/yaml", "application/x-yaml",
		"application/csv", "application/javascript", "application/sql", "application/x-ndjson":
		return true
	}
	return false
}

func (f *ResponseFilter) maskError(raw []byte) ([]byte, error) {
	return f.maskMembers(raw, func(ms []member, i int) ([]byte, error) {
		v := ms[i].val
		switch ms[i].key {
		case "code":
			return v, nil
		case "message":
			return f.maskTextValue(v)
		}
		return f.maskJSON(v)
	})
}

// maskTextValue masks a JSON string holding text (or JSON text); another
// value is masked as JSON.
func (f *ResponseFilter) maskTextValue(raw []byte) ([]byte, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return f.maskJSON(raw)
	}
	masked, err := f.maskText([]byte(s))
	if err != nil {
		return nil, err
	}
	if string(masked) == s {
		return raw, nil
	}
	return appendString(nil, string(masked)), nil
}

// maskText masks text; text that is a JSON document is masked as JSON,
// so that json: rules apply inside it and a masked number stays JSON.
func (f *ResponseFilter) maskText(b []byte) ([]byte, error) {
	t := bytes.TrimSpace(b)
	if len(t) > 0 && (t[0] == '{' || t[0] == '[') && json.Valid(t) {
		return f.maskJSON(b)
	}
	out, _ := f.opts.Masker.MaskText(b, f.counts)
	return out, nil
}

// maskJSON masks a JSON value as a document of its own.
func (f *ResponseFilter) maskJSON(raw []byte) ([]byte, error) {
	if f.opts.Masker == nil {
		return raw, nil
	}
	out, err := f.opts.Masker.MaskJSON(raw, f.counts)
	if err != nil {
		return nil, fmt.Errorf("masking: %w", err)
	}
	return out, nil
}
