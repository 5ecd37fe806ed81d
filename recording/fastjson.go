package recording

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/sluicegw/sluice/internal/jsonquote"
	"github.com/sluicegw/sluice/protocol"
)

// appendChained appends the JSON of a chained entry to b, producing the
// same bytes as encoding/json (with HTML escaping off) for the entry types
// on a session's hot path: commands and results. It reports false when the
// entry has a part it does not encode itself (an identity, a target, an
// HTTP or Kubernetes command...); the caller then uses encoding/json. A
// test holds the two encoders byte-for-byte equal.
func appendChained(b []byte, e *Entry, prev string) ([]byte, bool) {
	if e.Identity != nil || e.Target != nil {
		return b, false
	}
	if c := e.Command; c != nil && (c.HTTP != nil || c.MCP != nil || c.K8s != nil || c.SSH != nil) {
		return b, false
	}
	if e.Result != nil && len(e.Result.MaskedBy) > 0 {
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
	if e.ClientAddr != "" {
		b = appendField(b, "client_addr", e.ClientAddr)
	}
	if e.Command != nil {
		b = append(b, `,"command":`...)
		b = appendCommand(b, e.Command)
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
	if e.Message != "" {
		b = appendField(b, "message", e.Message)
	}
	if e.Code != "" {
		b = appendField(b, "code", e.Code)
	}
	if e.Reason != "" {
		b = appendField(b, "reason", e.Reason)
	}
	b = appendField(b, "prev", prev)
	return append(b, '}'), true
}

func appendField(b []byte, name, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

func appendCommand(b []byte, c *protocol.Command) []byte {
	b = append(b, `{"protocol":`...)
	b = appendString(b, c.Protocol)
	b = append(b, `,"kind":`...)
	b = appendString(b, string(c.Kind))
	if c.Text != "" {
		b = appendField(b, "text", c.Text)
	}
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
		if s.ParseError != "" {
			b = appendField(b, "parse_error", s.ParseError)
		}
		b = append(b, '}')
	}
	if len(c.Attrs) > 0 {
		b = append(b, `,"attrs":{`...)
		keys := make([]string, 0, len(c.Attrs))
		for k := range c.Attrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, c.Attrs[k])
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendDecision(b []byte, d *protocol.Decision) []byte {
	b = append(b, `{"action":`...)
	b = appendString(b, string(d.Action))
	if len(d.Rules) > 0 {
		b = append(b, `,"rules":`...)
		b = appendStrings(b, d.Rules)
	}
	if d.Message != "" {
		b = appendField(b, "message", d.Message)
	}
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
	if r.Error != "" {
		b = appendField(b, "error", r.Error)
	}
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
