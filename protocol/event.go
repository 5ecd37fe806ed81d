package protocol

import "time"

// EventType names a recorded event.
type EventType string

// Event types a plugin records through Session.Record. The gateway itself
// records session.start, command (with its decision) and session.end.
const (
	EventResult EventType = "result" // the outcome of one command, with data as the client saw it
	EventOutput EventType = "output" // terminal or stream bytes
	EventError  EventType = "error"  // a protocol or backend error
	EventNotice EventType = "notice" // an informational message from the backend
)

// Event is what a plugin asks the gateway to record.
type Event struct {
	Type EventType `json:"type"`
	// CommandSeq is Decision.Seq of the command this event belongs to; 0
	// if none.
	CommandSeq uint64  `json:"command_seq,omitempty"`
	Result     *Result `json:"result,omitempty"`
	// Data is output bytes (EventOutput).
	Data []byte `json:"data,omitempty"`
	// Message is the text of an error or notice, or what output Data is
	// (HTTP: "request body", "response body", "websocket client to
	// server"), which a replay prints as its label.
	Message string `json:"message,omitempty"`
	// Code is a protocol error code (SQLSTATE).
	Code string `json:"code,omitempty"`
}

// Result summarises what one command returned.
type Result struct {
	// Tag is the protocol's completion tag ("SELECT 3", "INSERT 0 1").
	Tag      string        `json:"tag,omitempty"`
	Rows     int64         `json:"rows"`
	Bytes    int64         `json:"bytes"`
	Duration time.Duration `json:"duration"`
	Columns  []string      `json:"columns,omitempty"`
	// Data holds rows as the client saw them (after masking), as text, up
	// to the session's recording cap. A nil cell is NULL.
	Data [][]*string `json:"data,omitempty"`
	// Truncated is true when rows were left out of Data by the cap.
	Truncated bool `json:"truncated,omitempty"`
	// Masked counts values the masker changed.
	Masked int64 `json:"masked,omitempty"`
	// MaskedBy counts masked values per mask entry, as the policy wrote
	// it.
	MaskedBy map[string]int64 `json:"masked_by,omitempty"`
	// Error is set when the command failed at the backend.
	Error string `json:"error,omitempty"`
	// Params are the bind parameters of an extended-protocol execution, as
	// text (binary ones as hex), NULL as nil.
	Params []*string `json:"params,omitempty"`
}
