package http

import (
	"bytes"
	"io"
	"maps"

	"github.com/sluicegw/sluice/masking"
)

// maxEvent bounds one event of an event stream held for masking.
const maxEvent = 1 << 20

// sseMasker masks a text/event-stream body event by event (HTML Living
// Standard, "Server-sent events", 9.2.6 Interpreting an event stream):
// lines end at CRLF, LF or CR, and an event ends at an empty line. Each
// event's data (its data lines joined with LF, as a client joins them) is
// masked whole, as JSON when it parses as JSON (so json: rules apply to
// the payloads of MCP and chat-completion streams) and as text otherwise;
// the other lines are masked as text, except retry. Each event is written
// as soon as its empty line arrives, so the caller's flush after every
// read delivers events as they come. Events larger than maxEvent fail the
// stream (fail closed).
type sseMasker struct {
	m      *masking.Masker
	w      io.Writer
	line   []byte
	lastCR bool // the last byte was CR: an LF right after it ends nothing
	lines  [][]byte
	size   int
	out    []byte
	counts map[string]int
	err    error
}

func newSSEMasker(m *masking.Masker, w io.Writer) *sseMasker {
	return &sseMasker{m: m, w: w, counts: map[string]int{}}
}

// Counts returns how many values each mask entry masked so far.
func (s *sseMasker) Counts() map[string]int { return maps.Clone(s.counts) }

func (s *sseMasker) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	for i := 0; i < len(p); {
		if s.lastCR {
			s.lastCR = false
			if p[i] == '\n' {
				i++
				continue
			}
		}
		j := bytes.IndexAny(p[i:], "\r\n")
		if j < 0 {
			s.line = append(s.line, p[i:]...)
			if s.size+len(s.line) > maxEvent {
				s.err = errEventTooLarge
				return 0, s.err
			}
			break
		}
		s.line = append(s.line, p[i:i+j]...)
		s.lastCR = p[i+j] == '\r'
		i += j + 1
		if err := s.endLine(); err != nil {
			return 0, err
		}
	}
	if len(s.out) > 0 {
		_, err := s.w.Write(s.out)
		s.out = s.out[:0]
		if err != nil {
			s.err = err
			return 0, err
		}
	}
	return len(p), nil
}

func (s *sseMasker) endLine() error {
	if len(s.line) == 0 {
		s.dispatch()
		return nil
	}
	s.size += len(s.line)
	if s.size > maxEvent {
		s.err = errEventTooLarge
		return s.err
	}
	s.lines = append(s.lines, bytes.Clone(s.line))
	s.line = s.line[:0]
	return nil
}

// field splits an event stream line into its field name and value (one
// space after the colon is not part of the value).
func field(line []byte) (name, value []byte) {
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return line, nil
	}
	v := line[i+1:]
	if len(v) > 0 && v[0] == ' ' {
		v = v[1:]
	}
	return line[:i], v
}

// dispatch masks and writes the event held, with its empty line.
func (s *sseMasker) dispatch() {
	var data [][]byte
	for _, l := range s.lines {
		if name, v := field(l); string(name) == "data" {
			data = append(data, v)
		}
	}
	var masked [][]byte
	if data != nil {
		joined := bytes.Join(data, []byte{'\n'})
		var out []byte
		if t := bytes.TrimLeft(joined, " \t"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
			counts := map[string]int{}
			if o, err := s.m.MaskJSON(joined, counts); err == nil {
				out = o
				for k, v := range counts {
					s.counts[k] += v
				}
			}
		}
		if out == nil {
			out, _ = s.m.MaskText(joined, s.counts)
		}
		masked = bytes.Split(out, []byte{'\n'})
	}
	wroteData := false
	for _, l := range s.lines {
		name, _ := field(l)
		switch {
		case string(name) == "data":
			if wroteData {
				continue
			}
			wroteData = true
			for _, d := range masked {
				s.out = append(s.out, "data: "...)
				s.out = append(s.out, d...)
				s.out = append(s.out, '\n')
			}
		case string(name) == "retry":
			s.out = append(s.out, l...)
			s.out = append(s.out, '\n')
		default:
			o, _ := s.m.MaskText(l, s.counts)
			s.out = append(s.out, o...)
			s.out = append(s.out, '\n')
		}
	}
	s.out = append(s.out, '\n')
	s.lines = s.lines[:0]
	s.size = 0
}

// Close writes an event the stream ended without terminating.
func (s *sseMasker) Close() error {
	if s.err != nil {
		return s.err
	}
	if len(s.line) > 0 {
		if err := s.endLine(); err != nil {
			return err
		}
	}
	if len(s.lines) > 0 {
		s.dispatch()
	}
	if len(s.out) > 0 {
		_, err := s.w.Write(s.out)
		s.out = s.out[:0]
		return err
	}
	return nil
}
