package masking

import "io"

// Text stream masking: terminal output arrives in arbitrary chunks, and a
// card number or key may be split between two of them. A TextStream holds
// back the tail of what it has seen (at least streamWindow bytes, more
// while the last token or an unfinished match may still grow, never more
// than Options.StreamHold) and writes the rest masked.

const (
	// streamWindow is always held back: longer than any match of the
	// fixed-size detectors (cards, SSNs, phones, IBANs, IPs, AWS keys,
	// most emails).
	streamWindow = 256
	// streamContext is how much already written text stays in the buffer
	// as look-behind, so that boundaries (a digit before a number) are
	// judged as in one piece.
	streamContext = 64
)

// TextStream masks what the detectors find in a byte stream (terminal
// output, logs). Matches whose strategy is null are removed. It is not
// safe for concurrent use and does not close the underlying writer.
type TextStream struct {
	m      *Masker
	w      io.Writer
	buf    []byte // buf[:ctx] was written; buf[ctx:] is held
	ctx    int
	out    []byte
	spans  []span
	counts map[string]int
	err    error
	closed bool
}

// NewTextStream returns a TextStream writing to w.
func (m *Masker) NewTextStream(w io.Writer) *TextStream {
	return &TextStream{m: m, w: w, counts: map[string]int{}}
}

// Write implements io.Writer. It returns len(p) once p is taken in, even
// when part of it is still held back.
func (s *TextStream) Write(p []byte) (int, error) {
	if s.closed {
		return 0, ErrClosed
	}
	if s.err != nil {
		return 0, s.err
	}
	n := 0
	for len(p) > 0 {
		k := min(len(p), streamChunk)
		s.buf = append(s.buf, p[:k]...)
		if err := s.emit(false); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// Flush writes everything held back, masking what matches now. Call it
// when the source goes idle (a prompt waiting for input); a value split by
// a Flush is seen as two.
func (s *TextStream) Flush() error {
	if s.closed || s.err != nil {
		return s.err
	}
	return s.emit(true)
}

// Close writes everything held back, masked.
func (s *TextStream) Close() error {
	if s.closed || s.err != nil {
		s.closed = true
		return s.err
	}
	s.closed = true
	return s.emit(true)
}

// Counts returns how many matches each entry masked so far.
func (s *TextStream) Counts() map[string]int { return copyCounts(s.counts) }

// emit writes the part of the buffer no match can still extend into, or
// all of it.
func (s *TextStream) emit(all bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = ErrDetectorPanic
			s.err = err
		}
	}()
	b := s.buf
	if len(b) == s.ctx {
		return nil
	}
	m := s.m
	spans := m.mergeSpans(m.findSpans(b, s.spans[:0]))
	s.spans = spans
	limit := len(b)
	if !all {
		limit = min(len(b)-streamWindow, trailingRun(b, m.hold))
		for _, sp := range spans {
			// A match across the limit, or one that reaches the end of
			// what has arrived, may still grow: hold it whole.
			if sp.i < limit && (sp.j > limit || sp.j == len(b)) {
				limit = sp.i
				break
			}
		}
		if len(b)-limit > m.hold {
			// Held too long (a match that keeps growing): write it
			// masked as it stands; what follows is scanned afresh.
			limit = len(b) - streamWindow
			for _, sp := range spans {
				if sp.i < limit && sp.j > limit {
					limit = sp.j
					break
				}
			}
		}
		if limit <= s.ctx {
			return nil
		}
	}
	out := s.out[:0]
	pos := s.ctx
	for _, sp := range spans {
		if sp.j <= s.ctx {
			continue
		}
		if sp.i >= limit {
			break
		}
		i := max(sp.i, s.ctx)
		out = append(out, b[pos:i]...)
		r := &m.dets[sp.rule]
		out = m.appendReplacement(out, b[i:sp.j], r.strat)
		s.counts[r.entry]++
		pos = sp.j
	}
	if pos < limit {
		out = append(out, b[pos:limit]...)
	}
	s.out = out
	keep := max(limit-streamContext, 0)
	s.buf = b[:copy(b, b[keep:])]
	s.ctx = limit - keep
	if len(out) > 0 {
		if _, err := s.w.Write(out); err != nil {
			s.err = err
			return err
		}
	}
	return nil
}

// trailingRun returns where the last run of non-space bytes in b begins,
// looking back at most hold bytes: a token (a JWT, a key) may continue in
// the next write.
func trailingRun(b []byte, hold int) int {
	lo := max(len(b)-hold, 0)
	i := len(b)
	for i > lo && ctype[b[i-1]]&cSpace == 0 {
		i--
	}
	return i
}
