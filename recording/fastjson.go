package recording

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/sluicegw/sluice/internal/jsonquote"
	"github.com/sluicegw/sluice/protocol"
)

// appendChained appends the JSON of a chained entry to b, producing the
// same bytes as encoding/json (with HTML escaping off) for the entry types
// on a session's hot path: commands of every protocol and results. It
// reports false when the entry has a part it does not encode itself (an
// identity, a target, a value in an HTTP body or MCP arguments of a type
// the parsers do not produce...); the caller then uses encoding/json. A
// test holds the two encoders byte-for-byte equal.
func appendChained(b []byte, e *Entry, prev string) ([]byte, bool) {
	if e.Identity != nil || e.Target != nil {
		return b, false
	}
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"time":`...)
	if y := e.Time.Year(); y < 0 || y > 9999 {
		return b, false // encoding/json refuses these; let it say so
	}
	b = append(b, '"')
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "session", e.Session)
	b = appendField(b, "type", e.Type)
	b = appendNonEmpty(b, "client_addr", e.ClientAddr)
	if e.Command != nil {
		b = append(b, `,"command":`...)
		var ok bool
		if b, ok = appendCommand(b, e.Command); !ok {
			return b, false
		}
	}
	if e.Decision != nil {
		b = append(b, `,"decision":`...)
		b = appendDecision(b, e.Decision)
	}
	if e.CommandSeq != 0 {
		b = append(b, `,"command_seq":`...)
		b = strconv.AppendUint(b, e.CommandSeq, 10)
	}
	if e.Result != nil {
		b = append(b, `,"result":`...)
		b = appendResult(b, e.Result)
	}
	if len(e.Data) > 0 {
		b = append(b, `,"data":"`...)
		b = base64.StdEncoding.AppendEncode(b, e.Data)
		b = append(b, '"')
	}
	b = appendNonEmpty(b, "message", e.Message)
	b = appendNonEmpty(b, "code", e.Code)
	b = appendNonEmpty(b, "reason", e.Reason)
	b = appendField(b, "prev", prev)
	return append(b, '}'), true
}

// appendNonEmpty is appendField for an omitempty string: nothing when v
// is empty.
func appendNonEmpty(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	return appendField(b, name, v)
}

func appendField(b []byte, name, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

// appendCommand reports false when an HTTP body or MCP arguments hold a
// value appendValue does not write.
func appendCommand(b []byte, c *protocol.Command) ([]byte, bool) {
	b = append(b, `{"protocol":`...)
	b = appendString(b, c.Protocol)
	b = append(b, `,"kind":`...)
	b = appendString(b, string(c.Kind))
	b = appendNonEmpty(b, "text", c.Text)
	if s := c.SQL; s != nil {
		b = append(b, `,"sql":{"statements":`...)
		if s.Statements == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, '[')
			for i := range s.Statements {
				if i > 0 {
					b = append(b, ',')
				}
				st := &s.Statements[i]
				b = append(b, `{"kind":`...)
				b = appendString(b, st.Kind)
				if len(st.Tables) > 0 {
					b = append(b, `,"tables":`...)
					b = appendStrings(b, st.Tables)
				}
				b = append(b, `,"has_where":`...)
				b = strconv.AppendBool(b, st.HasWhere)
				if len(st.Functions) > 0 {
					b = append(b, `,"functions":`...)
					b = appendStrings(b, st.Functions)
				}
				b = append(b, '}')
			}
			b = append(b, ']')
		}
		b = append(b, `,"writes":`...)
		b = strconv.AppendBool(b, s.Writes)
		b = append(b, `,"ddl":`...)
		b = strconv.AppendBool(b, s.DDL)
		b = appendNonEmpty(b, "parse_error", s.ParseError)
		b = append(b, '}')
	}
	if h := c.HTTP; h != nil {
		b = append(b, `,"http":{"method":`...)
		b = appendString(b, h.Method)
		b = appendField(b, "host", h.Host)
		b = appendField(b, "path", h.Path)
		if len(h.Query) > 0 {
			b = append(b, `,"query":`...)
			b = appendMap(b, h.Query, appendString)
		}
		if len(h.Headers) > 0 {
			b = append(b, `,"headers":`...)
			b = appendMap(b, h.Headers, appendString)
		}
		b = appendNonEmpty(b, "content_type", h.ContentType)
		if h.Body != nil {
			b = append(b, `,"body":`...)
			var ok bool
			if b, ok = appendValue(b, h.Body, 0); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	}
	if m := c.MCP; m != nil {
		b = append(b, `,"mcp":{"method":`...)
		b = appendString(b, m.Method)
		b = appendNonEmpty(b, "tool", m.Tool)
		if len(m.Arguments) > 0 {
			b = append(b, `,"arguments":`...)
			var ok bool
			if b, ok = appendObject(b, m.Arguments, 0); !ok {
				return b, false
			}
		}
		b = appendNonEmpty(b, "uri", m.URI)
		b = appendNonEmpty(b, "prompt", m.Prompt)
		b = append(b, '}')
	}
	if k := c.K8s; k != nil {
		b = append(b, `,"k8s":{"verb":`...)
		b = appendString(b, k.Verb)
		b = appendNonEmpty(b, "api_group", k.APIGroup)
		b = appendNonEmpty(b, "resource", k.Resource)
		b = appendNonEmpty(b, "subresource", k.Subresource)
		b = appendNonEmpty(b, "namespace", k.Namespace)
		b = appendNonEmpty(b, "name", k.Name)
		b = append(b, '}')
	}
	if s := c.SSH; s != nil {
		b = append(b, `,"ssh":{"channel_type":`...)
		b = appendString(b, s.ChannelType)
		b = appendNonEmpty(b, "command", s.Command)
		b = appendNonEmpty(b, "subsystem", s.Subsystem)
		b = append(b, '}')
	}
	if len(c.Attrs) > 0 {
		b = append(b, `,"attrs":`...)
		b = appendMap(b, c.Attrs, appendString)
	}
	return append(b, '}'), true
}

func appendDecision(b []byte, d *protocol.Decision) []byte {
	b = append(b, `{"action":`...)
	b = appendString(b, string(d.Action))
	if len(d.Rules) > 0 {
		b = append(b, `,"rules":`...)
		b = appendStrings(b, d.Rules)
	}
	b = appendNonEmpty(b, "message", d.Message)
	if len(d.Approvers) > 0 {
		b = append(b, `,"approvers":`...)
		b = appendStrings(b, d.Approvers)
	}
	if d.Quorum != 0 {
		b = append(b, `,"quorum":`...)
		b = strconv.AppendInt(b, int64(d.Quorum), 10)
	}
	if d.Timeout != 0 {
		b = append(b, `,"timeout":`...)
		b = strconv.AppendInt(b, int64(d.Timeout), 10)
	}
	if d.GrantWindow != 0 {
		b = append(b, `,"grant_window":`...)
		b = strconv.AppendInt(b, int64(d.GrantWindow), 10)
	}
	if len(d.Mask) > 0 {
		b = append(b, `,"mask":`...)
		b = appendStrings(b, d.Mask)
	}
	if d.PerExecution {
		b = append(b, `,"per_execution":true`...)
	}
	return append(b, '}')
}

func appendResult(b []byte, r *protocol.Result) []byte {
	b = append(b, '{')
	if r.Tag != "" {
		b = append(b, `"tag":`...)
		b = appendString(b, r.Tag)
		b = append(b, ',')
	}
	b = append(b, `"rows":`...)
	b = strconv.AppendInt(b, r.Rows, 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, r.Bytes, 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, int64(r.Duration), 10)
	if len(r.Columns) > 0 {
		b = append(b, `,"columns":`...)
		b = appendStrings(b, r.Columns)
	}
	if len(r.Data) > 0 {
		b = append(b, `,"data":[`...)
		for i, row := range r.Data {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendNullableStrings(b, row)
		}
		b = append(b, ']')
	}
	if r.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	if r.Masked != 0 {
		b = append(b, `,"masked":`...)
		b = strconv.AppendInt(b, r.Masked, 10)
	}
	if len(r.MaskedBy) > 0 {
		b = append(b, `,"masked_by":`...)
		b = appendMap(b, r.MaskedBy, appendInt)
	}
	b = appendNonEmpty(b, "error", r.Error)
	if len(r.Params) > 0 {
		b = append(b, `,"params":`...)
		b = appendNullableStrings(b, r.Params)
	}
	return append(b, '}')
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

func appendNullableStrings(b []byte, ss []*string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		if s == nil {
			b = append(b, "null"...)
		} else {
			b = appendString(b, *s)
		}
	}
	return append(b, ']')
}

// appendString quotes s as encoding/json does with HTML escaping off.
func appendString(b []byte, s string) []byte { return jsonquote.Append(b, s) }

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }

// appendMap appends a non-nil map as encoding/json does: an object with
// its keys sorted, quoted as strings.
func appendMap[V any](b []byte, m map[string]V, appendElem func([]byte, V) []byte) []byte {
	var buf [8]string
	b = append(b, '{')
	for i, k := range sortedKeys(buf[:0], m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendElem(b, m[k])
	}
	return append(b, '}')
}

// sortedKeys appends the keys of m to keys, which callers give a small
// array on their stack to fill, and sorts them.
func sortedKeys[V any](keys []string, m map[string]V) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// maxValueDepth bounds the nesting of the JSON values appendValue writes,
// as protocol/http bounds the bodies it parses. A deeper value, or a
// cyclic one, is left to encoding/json.
const maxValueDepth = 1000

// appendValue appends a parsed JSON value (an HTTP body, an MCP argument)
// as encoding/json writes it: map[string]any, []any, string, bool, nil,
// int64 and float64, which are what protocol/http and protocol/http/mcp
// parse JSON into. It reports false for any other type, for a float
// encoding/json refuses (NaN, an infinity), and for a container at depth
// maxValueDepth or deeper; v is at depth d, a whole body at 0.
func appendValue(b []byte, v any, d int) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), true
	case string:
		return appendString(b, x), true
	case bool:
		return strconv.AppendBool(b, x), true
	case int64:
		return strconv.AppendInt(b, x, 10), true
	case float64:
		return appendFloat(b, x)
	case map[string]any:
		return appendObject(b, x, d)
	case []any:
		if x == nil {
			return append(b, "null"...), true
		}
		if d >= maxValueDepth {
			return b, false
		}
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendValue(b, e, d+1); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	}
	return b, false
}

// appendObject is appendValue for a map[string]any.
func appendObject(b []byte, m map[string]any, d int) ([]byte, bool) {
	if m == nil {
		return append(b, "null"...), true
	}
	if d >= maxValueDepth {
		return b, false
	}
	var buf [8]string
	b = append(b, '{')
	for i, k := range sortedKeys(buf[:0], m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		var ok bool
		if b, ok = appendValue(b, m[k], d+1); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendFloat writes f as encoding/json's float64 encoder does: like
// ES6's number to string conversion, the shortest decimal that reads back
// as f, with an exponent (not padded to two digits) only for magnitudes
// below 1e-6 or from 1e21.
func appendFloat(b []byte, f float64) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if n := len(b); format == 'e' && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
		b[n-2] = b[n-1]
		b = b[:n-1]
	}
	return b, true
}

// stdChained is the encoding/json fallback, kept for the test that holds
// the fast encoder to it.
func stdChained(e *Entry, prev string) ([]byte, error) {
	var buf jsonBuffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(chained{Entry: e, Prev: prev}); err != nil {
		return nil, err
	}
	return buf.b[:len(buf.b)-1], nil
}

type jsonBuffer struct{ b []byte }

func (j *jsonBuffer) Write(p []byte) (int, error) { j.b = append(j.b, p...); return len(p), nil }
