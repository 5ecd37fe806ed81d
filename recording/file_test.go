package recording

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

func sessionInfo(id string) protocol.SessionInfo {
	return protocol.SessionInfo{ID: id, Target: &protocol.Target{Name: "pg-prod", Protocol: "postgres"}, Start: t0}
}

func newSink(t *testing.T, opts FileOptions) (*FileSink, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "recordings")
	s, err := NewFileSink(dir, opts)
	require.NoError(t, err)
	return s, dir
}

func verifyFile(t *testing.T, path string) VerifyReport {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	rep, err := Verify(f)
	require.NoError(t, err)
	return rep
}

func TestFileOptionsValidate(t *testing.T) {
	tests := []struct {
		opts FileOptions
		err  string
	}{
		{opts: FileOptions{}},
		{opts: FileOptions{Fsync: FsyncAlways}},
		{opts: FileOptions{Fsync: FsyncInterval, Interval: 5 * time.Second}},
		{opts: FileOptions{Fsync: FsyncNever}},
		{opts: FileOptions{Fsync: "sometimes"}, err: `recording: fsync: unknown policy "sometimes" (want always, interval or never)`},
		{opts: FileOptions{Interval: -time.Second}, err: "recording: interval: -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%+v", tt.opts), func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.err == "" {
				assert.NoError(t, err)
				return
			}
			assert.EqualError(t, err, tt.err)
			_, err = NewFileSink(t.TempDir(), tt.opts)
			assert.EqualError(t, err, tt.err)
		})
	}
	assert.Equal(t, FileOptions{Fsync: FsyncInterval, Interval: time.Second, Linger: DefaultLinger}, FileOptions{}.withDefaults())
	// "always" keeps no entry in memory unless asked to (a killed gateway
	// lost the results of commands its clients had been answered for:
	// test/e2e TestFaultGatewayKilled).
	assert.Negative(t, FileOptions{Fsync: FsyncAlways}.withDefaults().Linger)
	assert.Equal(t, time.Second, FileOptions{Fsync: FsyncAlways, Linger: time.Second}.withDefaults().Linger)
}

// Under "always", a result is on disk when Write returns.
func TestFileSinkAlwaysWritesResultsAtOnce(t *testing.T) {
	s, dir := newSink(t, FileOptions{Fsync: FsyncAlways})
	syncs := 0
	s.sync = func(f *os.File) error { syncs++; return f.Sync() }
	rec, err := s.Open(context.Background(), sessionInfo(testID))
	require.NoError(t, err)
	es := sampleEntries(testID)
	for _, e := range es[:3] { // session.start, command, result
		require.NoError(t, rec.Write(e))
	}
	assert.Equal(t, 3, verifyFile(t, filepath.Join(dir, testID+".jsonl")).Entries)
	assert.Equal(t, 3, syncs)
	require.NoError(t, rec.Close())
}

func TestFileSinkRecordsAndVerifies(t *testing.T) {
	s, dir := newSink(t, FileOptions{})
	rec, err := s.Open(context.Background(), sessionInfo(testID))
	require.NoError(t, err)
	for _, e := range sampleEntries(testID) {
		require.NoError(t, rec.Write(e))
	}
	head := rec.(ChainHead).Head()
	require.NoError(t, rec.(Flusher).Flush())
	require.NoError(t, rec.Close())
	require.NoError(t, rec.Close(), "a second Close does nothing")
	assert.ErrorIs(t, rec.Write(sampleEntries(testID)[0]), ErrClosed)
	assert.ErrorIs(t, rec.(Flusher).Flush(), ErrClosed)

	path, err := FindFile(dir, testID)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, testID+".jsonl"), path)

	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	di, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), di.Mode().Perm())

	rep := verifyFile(t, path)
	assert.Equal(t, VerifyReport{Session: testID, Entries: 6, Intact: true, Complete: true, Head: head}, rep)
}

func TestFileSinkEveryWriteReachesTheOS(t *testing.T) {
	s, dir := newSink(t, FileOptions{Fsync: FsyncNever, Linger: -1})
	rec, err := s.Open(context.Background(), sessionInfo(testID))
	require.NoError(t, err)
	defer rec.Close()
	for i, e := range sampleEntries(testID)[:4] {
		require.NoError(t, rec.Write(e))
		// Read back through another descriptor, as after a kill -9: no
		// user-space buffer holds anything back.
		rep := verifyFile(t, filepath.Join(dir, testID+".jsonl"))
		assert.True(t, rep.Intact, rep.Problem)
		assert.Equal(t, i+1, rep.Entries)
		assert.False(t, rep.Complete)
	}
}

func TestFileSinkFillsAndChecksSession(t *testing.T) {
	s, dir := newSink(t, FileOptions{})
	rec, err := s.Open(context.Background(), sessionInfo(testID))
	require.NoError(t, err)
	require.NoError(t, rec.Write(&Entry{Seq: 1, Time: t0, Type: TypeSessionStart}))
	err = rec.Write(&Entry{Seq: 2, Time: t0, Session: "01OTHERSESSION", Type: TypeCommand})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "01OTHERSESSION")
	require.NoError(t, rec.Write(&Entry{Seq: 2, Time: t0, Type: TypeSessionEnd}), "a refused entry does not break the recorder")
	require.NoError(t, rec.Close())
	rep := verifyFile(t, filepath.Join(dir, testID+".jsonl"))
	assert.Equal(t, testID, rep.Session)
	assert.Equal(t, 2, rep.Entries)
	assert.True(t, rep.Complete)
}

func TestFileSinkOpenErrors(t *testing.T) {
	s, dir := newSink(t, FileOptions{})
	ctx := context.Background()

	rec, err := s.Open(ctx, sessionInfo(testID))
	require.NoError(t, err)
	require.NoError(t, rec.Close())
	_, err = s.Open(ctx, sessionInfo(testID))
	require.Error(t, err, "a recording is never reopened")
	assert.ErrorIs(t, err, os.ErrExist)

	for _, id := range []string{"", ".", "..", "../escape", "a/b", `a\b`, ".hidden", "id.jsonl", "a b", "ünïcode", strings.Repeat("A", 129)} {
		_, err := s.Open(ctx, sessionInfo(id))
		assert.ErrorContains(t, err, "is not a safe file name", "id %q", id)
		_, err = FindFile(dir, id)
		assert.ErrorContains(t, err, "is not a safe file name", "id %q", id)
	}
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, des, 1, "no file created for a bad id")
	_, err = os.Stat(filepath.Join(filepath.Dir(dir), "escape.jsonl"))
	assert.ErrorIs(t, err, os.ErrNotExist)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Open(cctx, sessionInfo("01CANCELLED"))
	assert.ErrorIs(t, err, context.Canceled)

	// The directory vanished under the sink.
	require.NoError(t, os.RemoveAll(dir))
	_, err = s.Open(ctx, sessionInfo("01GONE"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestNewFileSinkErrors(t *testing.T) {
	// Tests run as root, where permissions do not stop a write; a path
	// under a regular file fails for everyone.
	file := filepath.Join(t.TempDir(), "plain")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err := NewFileSink(filepath.Join(file, "recordings"), FileOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "recording: create directory")

	_, err = NewFileSink("", FileOptions{})
	assert.ErrorContains(t, err, "recording: dir: empty")
}

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestFileSinkFsyncPolicies(t *testing.T) {
	type step struct {
		advance   time.Duration
		wantSyncs int // total after writing
	}
	tests := []struct {
		name       string
		opts       FileOptions
		steps      []step
		afterFlush int
		afterClose int
	}{
		{
			name:  "always",
			opts:  FileOptions{Fsync: FsyncAlways},
			steps: []step{{0, 1}, {0, 2}, {time.Hour, 3}},
			// Nothing left unsynced for Flush or Close.
			afterFlush: 3, afterClose: 4,
		},
		{
			name:  "interval default 1s",
			opts:  FileOptions{},
			steps: []step{{0, 0}, {500 * time.Millisecond, 0}, {500 * time.Millisecond, 1}, {200 * time.Millisecond, 1}, {700 * time.Millisecond, 1}, {100 * time.Millisecond, 2}},
			// Close syncs the last write.
			afterFlush: 2, afterClose: 3,
		},
		{
			name:       "interval 5s, Flush and Close sync the rest",
			opts:       FileOptions{Fsync: FsyncInterval, Interval: 5 * time.Second},
			steps:      []step{{time.Second, 0}, {3 * time.Second, 0}, {time.Second, 1}, {time.Second, 1}},
			afterFlush: 2, afterClose: 3,
		},
		{
			name:       "never",
			opts:       FileOptions{Fsync: FsyncNever},
			steps:      []step{{0, 0}, {time.Hour, 0}, {time.Hour, 0}},
			afterFlush: 0, afterClose: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, dir := newSink(t, tt.opts)
			clock := &fakeClock{t: t0}
			syncs := 0
			s.now = clock.now
			s.sync = func(f *os.File) error { syncs++; return f.Sync() }

			rec, err := s.Open(context.Background(), sessionInfo(testID))
			require.NoError(t, err)
			for i, st := range tt.steps {
				clock.advance(st.advance)
				require.NoError(t, rec.Write(&Entry{Seq: uint64(i + 1), Time: clock.t, Type: TypeCommand}))
				assert.Equal(t, st.wantSyncs, syncs, "after write %d", i+1)
			}
			require.NoError(t, rec.(Flusher).Flush())
			assert.Equal(t, tt.afterFlush, syncs, "after Flush")
			require.NoError(t, rec.Write(&Entry{Seq: 99, Time: clock.t, Type: TypeSessionEnd}))
			require.NoError(t, rec.Close())
			assert.Equal(t, tt.afterClose, syncs, "after a last write and Close")
			rep := verifyFile(t, filepath.Join(dir, testID+".jsonl"))
			assert.True(t, rep.Intact && rep.Complete, rep.Problem)
		})
	}
}

func TestFileRecorderFailsClosed(t *testing.T) {
	tests := []struct {
		name    string
		opts    FileOptions
		breakIt func(t *testing.T, s *FileSink, r *fileRecorder)
		want    string
	}{
		{
			name: "file closed under the recorder",
			opts: FileOptions{Fsync: FsyncNever, Linger: -1},
			breakIt: func(t *testing.T, _ *FileSink, r *fileRecorder) {
				require.NoError(t, r.f.Close())
			},
			want: "file already closed",
		},
		{
			name: "fsync fails",
			opts: FileOptions{Fsync: FsyncAlways, Linger: -1},
			breakIt: func(_ *testing.T, s *FileSink, _ *fileRecorder) {
				s.sync = func(*os.File) error { return errors.New("input/output error") }
			},
			want: "input/output error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, dir := newSink(t, tt.opts)
			rec, err := s.Open(context.Background(), sessionInfo(testID))
			require.NoError(t, err)
			es := sampleEntries(testID)
			require.NoError(t, rec.Write(es[0]))
			require.NoError(t, rec.Write(es[1]))

			tt.breakIt(t, s, rec.(*fileRecorder))
			err = rec.Write(es[2])
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			for _, e := range es[3:] {
				assert.Equal(t, err, rec.Write(e), "the recorder stays broken")
			}
			assert.Equal(t, err, rec.(Flusher).Flush())
			_ = rec.Close()

			rep := verifyFile(t, filepath.Join(dir, testID+".jsonl"))
			assert.False(t, rep.Complete)
			assert.GreaterOrEqual(t, rep.Entries, 2)
		})
	}
}

// A full disk cuts a write short: the whole lines that reached the file
// stay, the cut one is removed, and the recording verifies (incomplete)
// instead of looking damaged.
func TestFileRecorderFullDiskKeepsWholeLines(t *testing.T) {
	s, dir := newSink(t, FileOptions{Fsync: FsyncNever, Linger: time.Hour})
	rec, err := s.Open(context.Background(), sessionInfo(testID))
	require.NoError(t, err)
	es := sampleEntries(testID)
	require.NoError(t, rec.Write(es[0]))
	require.NoError(t, rec.Write(es[1]))
	require.NoError(t, rec.Write(es[2]), "a result waits in memory")

	// The next write (the waiting result and a command) reaches the disk
	// up to the middle of the command's line.
	s.write = func(f *os.File, b []byte) (int, error) {
		n := strings.IndexByte(string(b), '\n') + 1 + 40
		m, err := f.Write(b[:n])
		if err != nil {
			return m, err
		}
		return m, fmt.Errorf("write: %w", syscall.ENOSPC)
	}
	err = rec.Write(es[3])
	require.ErrorIs(t, err, syscall.ENOSPC)
	assert.Equal(t, err, rec.Write(es[4]), "the recorder stays broken")
	_ = rec.Close()

	rep := verifyFile(t, filepath.Join(dir, testID+".jsonl"))
	assert.True(t, rep.Intact, rep.Problem)
	assert.False(t, rep.Complete)
	assert.Equal(t, 3, rep.Entries, "session.start, the command and the result that fitted")
}

// A session whose session.start does not fit on the disk leaves no file
// behind (an empty one would not verify), whether nothing or part of the
// line was written.
func TestFileRecorderNoFileWithoutSessionStart(t *testing.T) {
	for _, part := range []int{0, 25} {
		s, dir := newSink(t, FileOptions{Fsync: FsyncAlways})
		rec, err := s.Open(context.Background(), sessionInfo(testID))
		require.NoError(t, err)
		path := filepath.Join(dir, testID+".jsonl")
		require.FileExists(t, path)
		s.write = func(f *os.File, b []byte) (int, error) {
			m, err := f.Write(b[:part])
			if err != nil {
				return m, err
			}
			return m, fmt.Errorf("write: %w", syscall.ENOSPC)
		}
		require.ErrorIs(t, rec.Write(sampleEntries(testID)[0]), syscall.ENOSPC)
		require.NoError(t, rec.Close())
		assert.NoFileExists(t, path, "%d bytes written", part)
	}
}

func TestFileSinkLinger(t *testing.T) {
	s, dir := newSink(t, FileOptions{Fsync: FsyncNever, Linger: 200 * time.Millisecond})
	rec, err := s.Open(context.Background(), sessionInfo(testID))
	require.NoError(t, err)
	path := filepath.Join(dir, testID+".jsonl")
	es := sampleEntries(testID)
	entries := func() int { return verifyFile(t, path).Entries }

	// session.start and a command are written at once.
	require.NoError(t, rec.Write(es[0]))
	require.NoError(t, rec.Write(es[1]))
	assert.Equal(t, 2, entries())
	// A result waits in memory...
	require.NoError(t, rec.Write(es[2]))
	assert.Equal(t, 2, entries())
	// ...until the next command, which writes it first, in order.
	require.NoError(t, rec.Write(es[3]))
	assert.Equal(t, 4, entries())
	// An error entry waits, and the timer writes it within the linger.
	require.NoError(t, rec.Write(es[4]))
	assert.Equal(t, 4, entries())
	assert.Eventually(t, func() bool { return entries() == 5 }, 2*time.Second, 10*time.Millisecond)
	// A waiting result is written by Close.
	require.NoError(t, rec.Write(&Entry{Seq: 6, Time: t0, Type: string(protocol.EventResult), Result: &protocol.Result{Rows: 1}}))
	require.NoError(t, rec.Close())
	rep := verifyFile(t, path)
	assert.True(t, rep.Intact, rep.Problem)
	assert.Equal(t, 6, rep.Entries)
}

func TestFileSinkLingerFailureSurfacesAtNextCommand(t *testing.T) {
	s, _ := newSink(t, FileOptions{Fsync: FsyncNever, Linger: time.Hour})
	rec, err := s.Open(context.Background(), sessionInfo(testID))
	require.NoError(t, err)
	es := sampleEntries(testID)
	require.NoError(t, rec.Write(es[0]))
	require.NoError(t, rec.Write(es[1]))
	require.NoError(t, rec.(*fileRecorder).f.Close())
	require.NoError(t, rec.Write(es[2]), "a result only waits in memory")
	err = rec.Write(es[3])
	require.Error(t, err, "the command that follows cannot be recorded")
	assert.Equal(t, err, rec.Write(es[5]), "and the recorder stays broken")
}

func TestFileRecorderConcurrentWrites(t *testing.T) {
	s, dir := newSink(t, FileOptions{Fsync: FsyncInterval, Interval: time.Millisecond})
	rec, err := s.Open(context.Background(), sessionInfo(testID))
	require.NoError(t, err)
	require.NoError(t, rec.Write(&Entry{Seq: 1, Time: t0, Type: TypeSessionStart}))

	const perDirection = 300
	var wg sync.WaitGroup
	for d := range 2 {
		wg.Go(func() {
			for i := range perDirection {
				e := &Entry{Time: t0, Type: "output", Data: []byte(strings.Repeat(fmt.Sprint(d), i%50))}
				assert.NoError(t, rec.Write(e))
				if i%100 == 0 {
					assert.NoError(t, rec.(Flusher).Flush())
					_ = rec.(ChainHead).Head()
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, rec.Write(&Entry{Time: t0, Type: TypeSessionEnd}))
	require.NoError(t, rec.Close())

	rep := verifyFile(t, filepath.Join(dir, testID+".jsonl"))
	assert.True(t, rep.Intact, rep.Problem)
	assert.True(t, rep.Complete)
	assert.Equal(t, 2*perDirection+2, rep.Entries)
}

func TestFindFile(t *testing.T) {
	s, dir := newSink(t, FileOptions{})
	rec, err := s.Open(context.Background(), sessionInfo(testID))
	require.NoError(t, err)
	require.NoError(t, rec.Close())

	path, err := FindFile(dir, testID)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, testID+".jsonl"), path)

	_, err = FindFile(dir, "01JQ8Z5V7S3E6T4N2W9X0Y1K5N")
	assert.ErrorIs(t, err, ErrNotFound)
	assert.EqualError(t, err, "recording: session 01JQ8Z5V7S3E6T4N2W9X0Y1K5N: recording not found in "+dir)

	require.NoError(t, os.Mkdir(filepath.Join(dir, "01ADIRECTORY.jsonl"), 0o700))
	_, err = FindFile(dir, "01ADIRECTORY")
	assert.ErrorContains(t, err, "is not a regular file")
}

func TestList(t *testing.T) {
	s, dir := newSink(t, FileOptions{Fsync: FsyncNever})
	ctx := context.Background()
	write := func(id string, start time.Time, es []*Entry) {
		rec, err := s.Open(ctx, sessionInfo(id))
		require.NoError(t, err)
		for _, e := range es {
			e.Session = id
			e.Time = e.Time.Add(start.Sub(t0))
			require.NoError(t, rec.Write(e))
		}
		require.NoError(t, rec.Close())
	}
	// Written out of order; listed by start time.
	write("01B", t0.Add(time.Hour), sampleEntries(""))
	write("01A", t0, sampleEntries("")[:3]) // crashed: no session.end
	bob := sampleEntries("")
	bob[0].Identity = &identity.Identity{Subject: "bob", Method: identity.MethodToken}
	write("01C", t0.Add(2*time.Hour), bob)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "01D.jsonl"), []byte("garbage\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "01E.jsonl"), nil, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad name.jsonl"), []byte("x"), 0o600))
	// A copy under another name.
	data, err := os.ReadFile(filepath.Join(dir, "01B.jsonl"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "01F.jsonl"), data, 0o600))

	got, err := List(dir)
	require.NoError(t, err)
	for i := range got {
		got[i].Size = 0
	}
	assert.Equal(t, []Summary{
		{ID: "01D", Problem: "line 1: not valid JSON"},
		{ID: "01E", Problem: "empty recording"},
		{ID: "01A", Start: t0, Subject: "alice", Target: "pg-prod"},
		{ID: "01B", Start: t0.Add(time.Hour), Subject: "alice", Target: "pg-prod", Complete: true},
		{ID: "01F", Start: t0.Add(time.Hour), Subject: "alice", Target: "pg-prod", Problem: "the file name says session 01F but line 1 is of session 01B"},
		{ID: "01C", Start: t0.Add(2 * time.Hour), Subject: "bob", Target: "pg-prod", Complete: true},
	}, got)

	_, err = List(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestListLongLastLine(t *testing.T) {
	s, dir := newSink(t, FileOptions{Fsync: FsyncNever})
	rec, err := s.Open(context.Background(), sessionInfo(testID))
	require.NoError(t, err)
	es := sampleEntries(testID)
	require.NoError(t, rec.Write(es[0]))
	require.NoError(t, rec.Write(&Entry{Time: t0, Type: "output", Data: make([]byte, 200<<10)}))
	require.NoError(t, rec.Close())
	got, err := List(dir)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.False(t, got[0].Complete)
	assert.Empty(t, got[0].Problem)
}
