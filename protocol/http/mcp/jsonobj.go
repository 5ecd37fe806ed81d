package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
)

// Order-preserving access to JSON objects and arrays: members are kept as
// raw JSON, so what is not rewritten goes out byte for byte.

type member struct {
	key string
	val json.RawMessage
}

var errNotJSON = errors.New("not a JSON object or array")

// decodeObject splits a JSON object into its members in order; ok is false
// when raw is valid JSON but not an object.
func decodeObject(raw []byte) (ms []member, ok bool, err error) {
	t := bytes.TrimLeft(raw, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		if !json.Valid(raw) {
			return nil, false, errNotJSON
		}
		return nil, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return nil, false, err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false, err
		}
		k, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false, err
		}
		ms = append(ms, member{key: k, val: v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, false, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false, errNotJSON
	}
	return ms, true, nil
}

// decodeArray splits a JSON array into its elements; ok is false when raw
// is valid JSON but not an array.
func decodeArray(raw []byte) (elems []json.RawMessage, ok bool, err error) {
	t := bytes.TrimLeft(raw, " \t\r\n")
	if len(t) == 0 || t[0] != '[' {
		if !json.Valid(raw) {
			return nil, false, errNotJSON
		}
		return nil, false, nil
	}
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, false, err
	}
	return elems, true, nil
}

func encodeObject(ms []member) []byte {
	b := []byte{'{'}
	for i, m := range ms {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, m.key)
		b = append(b, ':')
		b = append(b, m.val...)
	}
	return append(b, '}')
}

func encodeArray(elems []json.RawMessage) []byte {
	b := []byte{'['}
	for i, e := range elems {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e...)
	}
	return append(b, ']')
}

// appendString appends s as a JSON string, without HTML escaping.
func appendString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimRight(buf.Bytes(), "\n")...)
}

// idKey is a canonical form of a JSON-RPC id, so that 1, 1.0 and 1e0 are
// one id and "1" another; "" for no usable id.
func idKey(raw json.RawMessage) string {
	if raw == nil {
		return ""
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return ""
	}
	switch x := v.(type) {
	case string:
		return "s:" + x
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return "n:" + strconv.FormatInt(i, 10)
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return ""
		}
		if f == float64(int64(f)) {
			return "n:" + strconv.FormatInt(int64(f), 10)
		}
		return "n:" + strconv.FormatFloat(f, 'g', -1, 64)
	}
	return ""
}

// prefixID finds the id of a JSON-RPC message of which only a prefix is at
// hand (a message too large to hold): the members before the first one it
// cannot read whole. nil when it is not found.
func prefixID(prefix []byte) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(prefix))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil
		}
		if tok == "id" {
			if idKey(v) == "" {
				return nil
			}
			return v
		}
	}
	return nil
}
