package recording

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The hash chain.
//
// Each line of a recording is one entry as a JSON object, followed by "\n".
// The encoder marshals the entry with a final "prev" member, the hash of
// the line before (ZeroHash for the first line), giving the bytes
//
//	B = {...,"prev":"<64 hex>"}
//
// and writes B with its last byte replaced by the suffix
//
//	,"hash":"<hex SHA-256 of B>"}
//
// A verifier never re-marshals: it cuts the fixed-size suffix off the line,
// puts back the "}", hashes, and compares. Editing a line breaks its hash;
// removing, inserting or reordering lines breaks the next line's prev.
//
// The chain has no key: someone who can rewrite the whole file can rebuild
// a consistent chain, and cutting entries off the end leaves a valid (if
// incomplete) chain. Keep the head hash (Encoder.Head, ChainHead,
// VerifyReport.Head) somewhere else, such as the session's end log line, to
// detect those too.

// ZeroHash is the prev of the first line of a recording.
const ZeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

const (
	hashPrefix = `,"hash":"`
	// suffixLen is the length of `,"hash":"<64 hex>"}`.
	suffixLen = len(hashPrefix) + sha256.Size*2 + len(`"}`)
)

// ChainHead is an optional Recorder capability: Head returns the hash of
// the last entry written (ZeroHash before the first). Logging it when a
// session ends anchors the recording outside itself.
type ChainHead interface {
	Head() string
}

// chained is what a line holds: the entry's members followed by prev. The
// hash member is not part of it; it is appended to the encoded bytes.
type chained struct {
	*Entry
	Prev string `json:"prev"`
}

// Encoder writes entries as hash-chained JSON Lines. Each Encode makes
// exactly one Write call on the underlying writer, of one whole line, so a
// writer that reaches the OS on Write (an *os.File) never holds half a line
// on its own. An Encoder is not safe for concurrent use.
type Encoder struct {
	w    io.Writer
	prev string
	buf  bytes.Buffer // encoding/json's output, for entries appendChained leaves to it
	line []byte       // the line being written
	json *json.Encoder
	err  error
}

// NewEncoder returns an Encoder that starts a new chain on w.
func NewEncoder(w io.Writer) *Encoder {
	enc := &Encoder{w: w, prev: ZeroHash}
	enc.json = json.NewEncoder(&enc.buf)
	// Keep SQL such as "a < b" readable in the file; the verifier hashes
	// bytes, so the escaping style does not matter to it.
	enc.json.SetEscapeHTML(false)
	return enc
}

// Encode appends e to the chain. An entry that cannot be marshalled is
// refused with an error and the encoder stays usable. A write error is
// sticky: the line may be partly written, so every later Encode returns
// the same error.
func (enc *Encoder) Encode(e *Entry) error {
	if enc.err != nil {
		return enc.err
	}
	if e == nil {
		return errors.New("recording: encode: nil entry")
	}
	line, fast := appendChained(enc.line[:0], e, enc.prev)
	if !fast {
		enc.buf.Reset()
		if err := enc.json.Encode(chained{Entry: e, Prev: enc.prev}); err != nil {
			return fmt.Errorf("recording: encode %s entry: %w", e.Type, err)
		}
		line = append(line[:0], bytes.TrimSuffix(enc.buf.Bytes(), []byte("\n"))...)
	}
	sum := sha256.Sum256(line)
	line = line[:len(line)-1] // drop the closing brace
	line = append(line, hashPrefix...)
	line = hex.AppendEncode(line, sum[:])
	line = append(line, "\"}\n"...)
	if _, err := enc.w.Write(line); err != nil {
		enc.err = fmt.Errorf("recording: write: %w", err)
		return enc.err
	}
	enc.prev = hex.EncodeToString(sum[:])
	enc.line = line
	if cap(enc.line) > 1<<20 {
		// Do not keep a large result's buffer for the rest of the session.
		enc.line = nil
	}
	if enc.buf.Cap() > 1<<20 {
		enc.buf = bytes.Buffer{}
	}
	return nil
}

// Head returns the hash of the last line written, or ZeroHash.
func (enc *Encoder) Head() string { return enc.prev }

// ErrChainBroken is wrapped by every *ChainError.
var ErrChainBroken = errors.New("recording: hash chain broken")

// ChainError says where and how a recording fails verification.
type ChainError struct {
	// Line is the 1-based line number of the first line that does not
	// verify.
	Line int
	// What says what is wrong with it, e.g. "content does not match its
	// hash (edited)".
	What string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("recording: hash chain broken at line %d: %s", e.Line, e.What)
}

// Unwrap returns ErrChainBroken.
func (e *ChainError) Unwrap() error { return ErrChainBroken }

// VerifyReport is the outcome of reading a recording.
type VerifyReport struct {
	// Session is the session id of the first entry.
	Session string
	// Entries counts the lines that verified, from the first line up to
	// the first break.
	Entries int
	// Intact is true when every line verified.
	Intact bool
	// BreakLine is the 1-based line number of the first line that does
	// not verify; 0 when Intact.
	BreakLine int
	// Problem is a sentence saying what broke, starting with the line:
	// "line 7: content does not match its hash (edited)". Empty when
	// Intact.
	Problem string
	// Complete is true when the last line is a verified session.end
	// entry. A recording whose gateway crashed is incomplete, but the
	// chain of the lines it has still verifies.
	Complete bool
	// Head is the hash of the last verified line (ZeroHash if none).
	Head string
}

// String returns the verdict line of a transcript: "hash chain: intact (N
// entries)" or "hash chain: BROKEN at line K: <what>".
func (r VerifyReport) String() string {
	if r.Intact {
		return fmt.Sprintf("hash chain: intact (%d %s)", r.Entries, plural(r.Entries, "entry", "entries"))
	}
	return "hash chain: BROKEN at " + r.Problem
}

// Reader reads and verifies a recording one entry at a time, holding one
// line in memory (lines may be many megabytes; there is no line limit).
type Reader struct {
	br   *bufio.Reader
	line []byte
	rep  VerifyReport
	last string // type of the last verified entry
	err  error  // sticky
}

// NewReader returns a Reader of the recording in r.
func NewReader(r io.Reader) *Reader {
	return &Reader{
		br:  bufio.NewReaderSize(r, 64<<10),
		rep: VerifyReport{Intact: true, Head: ZeroHash},
	}
}

// Next returns the next entry after verifying its line. It returns io.EOF
// after the last line, a *ChainError (wrapping ErrChainBroken) at the first
// line that does not verify, or the underlying reader's error. Once it has
// returned an error it returns the same error again: nothing after a break
// is trusted.
func (r *Reader) Next() (*Entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	e, err := r.next()
	if err != nil {
		r.err = err
		var ce *ChainError
		if errors.As(err, &ce) {
			r.rep.Intact = false
			r.rep.BreakLine = ce.Line
			r.rep.Problem = fmt.Sprintf("line %d: %s", ce.Line, ce.What)
		}
		r.rep.Complete = r.rep.Intact && err == io.EOF && r.last == TypeSessionEnd
		return nil, err
	}
	return e, nil
}

// Report returns what has been verified so far; after Next has returned an
// error it is the final report.
func (r *Reader) Report() VerifyReport { return r.rep }

func (r *Reader) next() (*Entry, error) {
	n := r.rep.Entries + 1
	line, err := r.readLine()
	if err != nil {
		if err != io.EOF {
			return nil, fmt.Errorf("recording: read line %d: %w", n, err)
		}
		if len(line) > 0 {
			return nil, &ChainError{Line: n, What: "incomplete line at the end of the file (truncated mid-line)"}
		}
		return nil, io.EOF
	}
	line = line[:len(line)-1] // the newline

	if !hasHashSuffix(line) {
		if json.Valid(line) {
			return nil, &ChainError{Line: n, What: "no hash at the end of the line (not written by a recording encoder)"}
		}
		return nil, &ChainError{Line: n, What: "not valid JSON"}
	}
	// The encoder writes the hash in lowercase; the same hash in capitals
	// is an edit too (compared as bytes, every changed byte breaks the
	// line, and Head is exactly what the next line's prev must say).
	want := string(line[len(line)-suffixLen+len(hashPrefix) : len(line)-2])
	b := append(line[:len(line)-suffixLen], '}')
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != want {
		return nil, &ChainError{Line: n, What: "content does not match its hash (edited)"}
	}

	e := new(Entry)
	c := chained{Entry: e}
	if err := json.Unmarshal(b, &c); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, &ChainError{Line: n, What: "not valid JSON"}
		}
		return nil, &ChainError{Line: n, What: "not a recording entry: " + err.Error()}
	}
	switch {
	case c.Prev == r.rep.Head:
	case c.Prev == "":
		return nil, &ChainError{Line: n, What: "no prev field (not written by a recording encoder)"}
	case n == 1:
		return nil, &ChainError{Line: n, What: "prev is not the start of a chain (lines were removed from the beginning)"}
	default:
		return nil, &ChainError{Line: n, What: fmt.Sprintf("prev does not match line %d (a line was removed, inserted or reordered)", n-1)}
	}
	if n == 1 {
		r.rep.Session = e.Session
	} else if e.Session != r.rep.Session {
		return nil, &ChainError{Line: n, What: fmt.Sprintf("entry of session %q in the recording of session %q", e.Session, r.rep.Session)}
	}

	r.rep.Entries = n
	r.rep.Head = want
	r.last = e.Type
	return e, nil
}

// readLine returns the next line including its "\n", or what is left
// before EOF with io.EOF. The slice is valid until the next call.
func (r *Reader) readLine() ([]byte, error) {
	r.line = r.line[:0]
	for {
		frag, err := r.br.ReadSlice('\n')
		r.line = append(r.line, frag...)
		switch err {
		case nil:
			return r.line, nil
		case bufio.ErrBufferFull:
			continue
		default:
			return r.line, err
		}
	}
}

// hasHashSuffix reports whether line ends with `,"hash":"<64 hex>"}`.
func hasHashSuffix(line []byte) bool {
	if len(line) < suffixLen+1 {
		return false
	}
	s := line[len(line)-suffixLen:]
	if !bytes.HasPrefix(s, []byte(hashPrefix)) || !bytes.HasSuffix(s, []byte(`"}`)) {
		return false
	}
	for _, c := range s[len(hashPrefix) : len(s)-2] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Verify reads a whole recording and checks its hash chain. A broken chain
// is not an error: it is in the report. The error is for reading failures.
func Verify(r io.Reader) (VerifyReport, error) {
	rd := NewReader(r)
	for {
		if _, err := rd.Next(); err != nil {
			if err == io.EOF || errors.Is(err, ErrChainBroken) {
				return rd.Report(), nil
			}
			return rd.Report(), err
		}
	}
}

func plural[N int | int64](n N, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
