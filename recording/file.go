package recording

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/protocol"
)

// FsyncPolicy says when a FileSink forces written entries to stable
// storage.
type FsyncPolicy string

// Fsync policies.
const (
	// FsyncAlways fsyncs after every entry: nothing written is lost even
	// on power failure, at the cost of one disk flush per entry.
	FsyncAlways FsyncPolicy = "always"
	// FsyncInterval fsyncs on a write when at least Interval has passed
	// since the last fsync, and at Close.
	FsyncInterval FsyncPolicy = "interval"
	// FsyncNever leaves flushing to the operating system.
	FsyncNever FsyncPolicy = "never"
)

// DefaultFsyncInterval is FileOptions.Interval when it is zero.
const DefaultFsyncInterval = time.Second

// FileOptions configures a FileSink. The zero value is valid: fsync at
// most once a second.
type FileOptions struct {
	// Fsync is "always", "interval" (the default) or "never".
	Fsync FsyncPolicy `yaml:"fsync" json:"fsync,omitempty"`
	// Interval is the least time between two fsyncs under the interval
	// policy (default 1s).
	Interval time.Duration `yaml:"interval" json:"interval,omitempty"`
	// Linger is how long result, output, notice and error entries may
	// wait in memory before they are written, so that a busy session
	// writes its results in batches instead of one write(2) each. Entries
	// that gate what happens next (session start and end, commands with
	// their decisions, approvals) are always written at once, together
	// with anything waiting before them. Zero means DefaultLinger, except
	// under the "always" policy, which promises every entry on disk when
	// Write returns: there zero writes every entry at once. A negative
	// value writes every entry at once under any policy.
	Linger time.Duration `yaml:"linger" json:"linger,omitempty"`
}

// DefaultLinger is FileOptions.Linger when it is zero, under the
// "interval" and "never" policies.
const DefaultLinger = 100 * time.Millisecond

// lingerBytes is how much may wait in memory before it is written anyway.
const lingerBytes = 64 << 10

// Validate reports the first bad field.
func (o FileOptions) Validate() error {
	switch o.Fsync {
	case "", FsyncAlways, FsyncInterval, FsyncNever:
	default:
		return fmt.Errorf("recording: fsync: unknown policy %q (want always, interval or never)", o.Fsync)
	}
	if o.Interval < 0 {
		return fmt.Errorf("recording: interval: %v is negative", o.Interval)
	}
	return nil
}

func (o FileOptions) withDefaults() FileOptions {
	if o.Fsync == "" {
		o.Fsync = FsyncInterval
	}
	if o.Interval == 0 {
		o.Interval = DefaultFsyncInterval
	}
	if o.Linger == 0 {
		o.Linger = DefaultLinger
		if o.Fsync == FsyncAlways {
			// A result the client was answered for must not wait in
			// memory, where a crash loses it.
			o.Linger = -1
		}
	}
	return o
}

// FileSink records each session to its own JSON Lines file,
// <dir>/<session id>.jsonl, hash-chained by an Encoder. Files are created
// 0600 (never reopened or appended to) in a directory created 0700.
//
// Durability: session start and end, command and approval entries reach
// the operating system (one write(2)) before Write returns; result,
// output, notice and error entries may wait in memory for up to Linger
// (default 100ms; not at all under "always" unless Linger is set) or 64
// KiB, and are written in order ahead of the next entry that cannot wait.
// Killing the gateway process therefore loses at most the results of the
// last Linger. What a power failure or kernel
// crash can lose further depends on
// the fsync policy: nothing under "always"; under "interval", the entries
// written since the last fsync, which is at most Interval old when another
// entry was written after it (a session that goes quiet stays unsynced
// until its next write or Close); under "never", whatever the OS had not
// flushed yet. Such a loss shows when verifying as an incomplete recording,
// possibly with a cut last line.
//
// A failed write or fsync breaks the recorder: that Write and every later
// one return an error, so the session fails closed. The part of a failed
// write that reached the file is cut back to its last whole line (a full
// disk leaves a recording that verifies, incomplete).
type FileSink struct {
	dir  string
	opts FileOptions

	// Test hooks.
	now   func() time.Time
	sync  func(f *os.File) error
	write func(f *os.File, b []byte) (int, error)
}

// NewFileSink returns a sink writing under dir, creating dir (0700) if it
// does not exist.
func NewFileSink(dir string, opts FileOptions) (*FileSink, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, errors.New("recording: dir: empty (set the directory to write recordings to)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("recording: create directory: %w", err)
	}
	return &FileSink{
		dir:   dir,
		opts:  opts.withDefaults(),
		now:   time.Now,
		sync:  (*os.File).Sync,
		write: (*os.File).Write,
	}, nil
}

// Dir returns the directory the sink writes to.
func (s *FileSink) Dir() string { return s.dir }

// Open creates the session's recording file. It fails if the file exists:
// a recording is never appended to.
func (s *FileSink) Open(ctx context.Context, info protocol.SessionInfo) (Recorder, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("recording: open: %w", err)
	}
	if err := checkID(info.ID); err != nil {
		return nil, err
	}
	path := filepath.Join(s.dir, info.ID+".jsonl")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("recording: session %s: %w", info.ID, err)
	}
	if s.opts.Fsync != FsyncNever {
		// Make the new file's directory entry durable too.
		if err := syncDir(s.dir); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("recording: session %s: %w", info.ID, err)
		}
	}
	r := &fileRecorder{
		sink:     s,
		id:       info.ID,
		path:     path,
		f:        f,
		lastSync: s.now(),
	}
	r.enc = NewEncoder(&r.pending)
	return r, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// ErrClosed is returned by a Recorder used after Close.
var ErrClosed = errors.New("recording: recorder is closed")

// fileRecorder is one session's file. Write, Flush and Close may be called
// from several goroutines (one per direction of the session).
type fileRecorder struct {
	sink *FileSink
	id   string
	path string

	mu         sync.Mutex
	f          *os.File
	enc        *Encoder     // encodes into pending
	pending    bytes.Buffer // encoded lines not yet written to f
	timer      *time.Timer  // writes pending after Linger
	timerArmed bool
	size       int64 // bytes of whole lines in f
	lastSync   time.Time
	dirty      bool  // written since the last fsync
	err        error // sticky: the recorder is broken
	closed     bool
}

// Write appends e. An empty e.Session is taken as this session; another
// session's entry is refused.
func (r *fileRecorder) Write(e *Entry) error {
	if e == nil {
		return errors.New("recording: write: nil entry")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	if r.closed {
		return ErrClosed
	}
	c := *e
	switch c.Session {
	case r.id:
	case "":
		c.Session = r.id
	default:
		return fmt.Errorf("recording: entry of session %s written to the recording of session %s", c.Session, r.id)
	}
	if err := r.enc.Encode(&c); err != nil {
		return err
	}
	if r.sink.opts.Linger > 0 && r.pending.Len() < lingerBytes && canWait(c.Type) {
		if r.timer == nil {
			r.timer = time.AfterFunc(r.sink.opts.Linger, r.flushPending)
		} else if !r.timerArmed {
			r.timer.Reset(r.sink.opts.Linger)
		}
		r.timerArmed = true
		return nil
	}
	return r.writePendingLocked()
}

// canWait reports whether an entry of type t may wait in memory: nothing
// that decides what happens next in the session depends on it.
func canWait(t string) bool {
	switch t {
	case TypeSessionStart, TypeSessionEnd, TypeCommand, TypeApproval:
		return false
	}
	return true
}

// flushPending is the Linger timer: it writes what waited.
func (r *fileRecorder) flushPending() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timerArmed = false
	if r.err != nil || r.closed {
		return
	}
	_ = r.writePendingLocked()
}

// writePendingLocked writes every waiting line in one write(2) and applies
// the fsync policy. A failure breaks the recorder.
func (r *fileRecorder) writePendingLocked() error {
	if r.pending.Len() == 0 {
		return nil
	}
	b := r.pending.Bytes()
	n, err := r.sink.write(r.f, b)
	if err != nil {
		r.err = fmt.Errorf("recording: write %s: %w", r.path, err)
		r.cutPartialLineLocked(b[:max(n, 0)])
	} else {
		r.size += int64(n)
	}
	if r.pending.Cap() > 4*lingerBytes {
		r.pending = bytes.Buffer{}
	} else {
		r.pending.Reset()
	}
	if err != nil {
		return r.err
	}
	r.dirty = true
	switch r.sink.opts.Fsync {
	case FsyncAlways:
		return r.syncLocked()
	case FsyncInterval:
		if r.sink.now().Sub(r.lastSync) >= r.sink.opts.Interval {
			return r.syncLocked()
		}
	}
	return nil
}

// cutPartialLineLocked keeps the whole lines of a failed write (written,
// the part of it that reached the file) and cuts the rest off, so that a
// full disk leaves a recording that verifies up to its last whole entry
// (incomplete, like a crashed gateway's) rather than one whose last line
// is cut mid-way, which verifying reports as damage.
func (r *fileRecorder) cutPartialLineLocked(written []byte) {
	keep := int64(bytes.LastIndexByte(written, '\n') + 1)
	r.size += keep
	if keep < int64(len(written)) {
		if err := r.f.Truncate(r.size); err != nil {
			r.err = fmt.Errorf("%w (and cutting its partly written line off failed: %w)", r.err, err)
		}
	}
}

func (r *fileRecorder) syncLocked() error {
	if err := r.sink.sync(r.f); err != nil {
		// After a failed fsync the kernel may have dropped the dirty
		// pages: what is on disk is unknown, so the recorder is broken.
		r.err = fmt.Errorf("recording: fsync %s: %w", r.path, err)
		return r.err
	}
	r.dirty = false
	r.lastSync = r.sink.now()
	return nil
}

// Flush fsyncs what was written, unless the policy is "never".
func (r *fileRecorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	if r.closed {
		return ErrClosed
	}
	if err := r.writePendingLocked(); err != nil {
		return err
	}
	if r.sink.opts.Fsync == FsyncNever || !r.dirty {
		return nil
	}
	return r.syncLocked()
}

// Head returns the hash of the last entry written.
func (r *fileRecorder) Head() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.enc.Head()
}

// Close fsyncs (unless the policy is "never") and closes the file. A
// second Close does nothing.
func (r *fileRecorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
	}
	var errs []error
	if r.err == nil {
		if err := r.writePendingLocked(); err != nil {
			errs = append(errs, err)
		}
	}
	if r.sink.opts.Fsync != FsyncNever && r.dirty && r.err == nil {
		if err := r.sink.sync(r.f); err != nil {
			errs = append(errs, fmt.Errorf("recording: fsync %s: %w", r.path, err))
		}
	}
	if err := r.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("recording: close: %w", err))
	}
	if r.size == 0 && r.err != nil {
		// Not one entry reached the file (its session.start could not be
		// written: a full disk): there is no recording, so there is no
		// file, rather than an empty one that does not verify.
		if err := os.Remove(r.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("recording: removing the empty %s: %w", r.path, err))
		}
	}
	return errors.Join(errs...)
}

// checkID accepts session ids that are safe as a file name: ULIDs, UUIDs,
// any 1 to 128 ASCII letters, digits, '-' and '_'.
func checkID(id string) error {
	ok := id != "" && len(id) <= 128
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
	}
	if !ok {
		if len(id) > 40 {
			id = id[:40] + "..."
		}
		return fmt.Errorf("recording: session id %q is not a safe file name (want 1 to 128 letters, digits, '-' or '_')", id)
	}
	return nil
}

// ErrNotFound is wrapped when there is no recording of a session.
var ErrNotFound = errors.New("recording not found")

// FindFile returns the path of session id's recording in dir.
func FindFile(dir, id string) (string, error) {
	if err := checkID(id); err != nil {
		return "", err
	}
	path := filepath.Join(dir, id+".jsonl")
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("recording: session %s: %w in %s", id, ErrNotFound, dir)
	}
	if err != nil {
		return "", fmt.Errorf("recording: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("recording: %s is not a regular file", path)
	}
	return path, nil
}

// Summary describes one recording in a directory, for listing.
type Summary struct {
	ID string
	// Start, Subject and Target come from the first entry (session.start).
	Start   time.Time
	Subject string
	Target  string
	// Complete is true when the last line is a session.end entry. List
	// reads only the first and the last line; Verify checks the chain.
	Complete bool
	// Size is the file's size in bytes.
	Size int64
	// Problem is set when the first line cannot be read ("line 1: not
	// valid JSON", "empty recording").
	Problem string
}

// List summarises the recordings (<id>.jsonl files) in dir, oldest first.
func List(dir string) ([]Summary, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("recording: list: %w", err)
	}
	var out []Summary
	for _, de := range des {
		id, ok := strings.CutSuffix(de.Name(), ".jsonl")
		if !ok || !de.Type().IsRegular() || checkID(id) != nil {
			continue
		}
		s, err := summarize(filepath.Join(dir, de.Name()), id)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Start.Equal(out[j].Start) {
			return out[i].Start.Before(out[j].Start)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func summarize(path, id string) (Summary, error) {
	s := Summary{ID: id}
	f, err := os.Open(path)
	if err != nil {
		return s, fmt.Errorf("recording: list: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return s, fmt.Errorf("recording: list: %w", err)
	}
	s.Size = fi.Size()

	rd := NewReader(f)
	e, err := rd.Next()
	var ce *ChainError
	switch {
	case err == io.EOF:
		s.Problem = "empty recording"
		return s, nil
	case errors.As(err, &ce):
		s.Problem = rd.Report().Problem
		return s, nil
	case err != nil:
		return s, fmt.Errorf("recording: list: %w", err)
	}
	s.Start = e.Time
	if e.Identity != nil {
		s.Subject = e.Identity.Subject
	}
	if e.Target != nil {
		s.Target = e.Target.Name
	}
	if e.Session != id {
		s.Problem = fmt.Sprintf("the file name says session %s but line 1 is of session %s", id, e.Session)
		return s, nil
	}
	s.Complete, err = endsWithSessionEnd(f, s.Size, id)
	if err != nil {
		return s, fmt.Errorf("recording: list: %s: %w", path, err)
	}
	return s, nil
}

// endsWithSessionEnd reads the file's last line, if it is short enough to
// be a session.end entry, and checks its type.
func endsWithSessionEnd(f *os.File, size int64, id string) (bool, error) {
	const window = 64 << 10
	n := min(size, window)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil {
		return false, err
	}
	if len(buf) == 0 || buf[len(buf)-1] != '\n' {
		return false, nil
	}
	buf = buf[:len(buf)-1]
	i := bytes.LastIndexByte(buf, '\n')
	if i < 0 && n < size {
		return false, nil
	}
	var e struct {
		Type    string `json:"type"`
		Session string `json:"session"`
	}
	if json.Unmarshal(buf[i+1:], &e) != nil {
		return false, nil
	}
	return e.Type == TypeSessionEnd && e.Session == id, nil
}
