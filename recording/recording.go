// Package recording keeps a tamper-evident, append-only record of every
// session: who connected to what, each command with its decision, each
// result with the data as the client saw it, and how the session ended. Its
// central types are Entry, one recorded event, and Sink, which opens a
// Recorder per session.
//
// Recordings are hash-chained JSON Lines (see Encoder): FileSink writes one
// file per session, Verify and Reader check the chain, WriteTranscript
// replays a recording for people, and FindFile and List locate recordings
// for the CLI.
package recording

import (
	"context"
	"errors"
	"time"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// Entry types. Plugin events (protocol.EventResult, ...) keep their own
// names.
const (
	TypeSessionStart = "session.start"
	TypeCommand      = "command"
	TypeApproval     = "approval"
	TypeSessionEnd   = "session.end"
)

// Entry is one recorded event. The gateway fills Seq, Time, Session and
// the payload for the type; a sink's encoder adds the hash chain.
type Entry struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Session string    `json:"session"`
	Type    string    `json:"type"`

	// session.start
	Identity   *identity.Identity `json:"identity,omitempty"`
	Target     *protocol.Target   `json:"target,omitempty"`
	ClientAddr string             `json:"client_addr,omitempty"`

	// command
	Command  *protocol.Command  `json:"command,omitempty"`
	Decision *protocol.Decision `json:"decision,omitempty"`

	// result, output, error, notice
	CommandSeq uint64           `json:"command_seq,omitempty"`
	Result     *protocol.Result `json:"result,omitempty"`
	Data       []byte           `json:"data,omitempty"`
	Message    string           `json:"message,omitempty"`
	Code       string           `json:"code,omitempty"`

	// session.end
	Reason string `json:"reason,omitempty"`
}

// Recorder receives one session's entries in order.
type Recorder interface {
	// Write appends an entry. An error means the entry may not be durable
	// and the session must fail closed.
	Write(e *Entry) error
	// Close flushes and closes the recording.
	Close() error
}

// Flusher is an optional Recorder capability: Flush makes every written
// entry durable (to the sink's fsync policy) before returning.
type Flusher interface {
	Flush() error
}

// Sink opens a Recorder for each new session.
type Sink interface {
	Open(ctx context.Context, info protocol.SessionInfo) (Recorder, error)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, info protocol.SessionInfo) (Recorder, error)

// Open calls f.
func (f SinkFunc) Open(ctx context.Context, info protocol.SessionInfo) (Recorder, error) {
	return f(ctx, info)
}

// Tee returns a sink that records to every given sink. A write succeeds
// only if it succeeds on all of them.
func Tee(sinks ...Sink) Sink {
	return SinkFunc(func(ctx context.Context, info protocol.SessionInfo) (Recorder, error) {
		rs := make(teeRecorder, 0, len(sinks))
		for _, s := range sinks {
			r, err := s.Open(ctx, info)
			if err != nil {
				_ = rs.Close()
				return nil, err
			}
			rs = append(rs, r)
		}
		return rs, nil
	})
}

type teeRecorder []Recorder

func (t teeRecorder) Write(e *Entry) error {
	var errs []error
	for _, r := range t {
		if err := r.Write(e); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (t teeRecorder) Flush() error {
	var errs []error
	for _, r := range t {
		if f, ok := r.(Flusher); ok {
			if err := f.Flush(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (t teeRecorder) Close() error {
	var errs []error
	for _, r := range t {
		if err := r.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
