package credstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// maxFileSize bounds a secret file: anything bigger is a mistake (a
// directory of keys, a log file), not a password.
const maxFileSize = 1 << 20

// fileSource resolves file: references. It keeps each file's secret with
// the identity of the file it came from and serves it again only while an
// fstat of the freshly opened path shows the same file (device and inode),
// size and modification time, so a rotation is seen at the next Resolve.
// A rewrite that keeps size and inode within the file system's timestamp
// granularity can go unseen until TTL ends; rotation tools that write a
// new file and rename it (or swap a symlink) are always seen.
type fileSource struct {
	ttl time.Duration
	now func() time.Time
	log *slog.Logger

	mu      sync.Mutex
	entries map[string]*fileEntry
}

type fileEntry struct {
	secret  Secret
	info    os.FileInfo
	expires time.Time
	timer   *time.Timer
}

func newFileSource(cfg FileConfig, now func() time.Time, log *slog.Logger) *fileSource {
	return &fileSource{ttl: cfg.TTL, now: now, log: log, entries: make(map[string]*fileEntry)}
}

func (f *fileSource) Lookup(_ context.Context, path string) (Secret, error) {
	if path == "" {
		return Secret{}, errors.New("file: reference without a path")
	}
	fh, err := os.Open(path)
	if err != nil {
		f.drop(path)
		return Secret{}, fileError(path, err)
	}
	defer fh.Close()
	info, err := fh.Stat()
	if err != nil {
		f.drop(path)
		return Secret{}, fileError(path, err)
	}
	if info.IsDir() {
		f.drop(path)
		return Secret{}, fmt.Errorf("file %s: is a directory", path)
	}
	f.mu.Lock()
	e, had := f.entries[path]
	same := had && sameFile(e.info, info)
	if same && f.now().Before(e.expires) {
		f.mu.Unlock()
		return e.secret, nil
	}
	f.mu.Unlock()

	b, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		f.drop(path)
		return Secret{}, fileError(path, err)
	}
	if len(b) > maxFileSize {
		f.drop(path)
		return Secret{}, fmt.Errorf("file %s: larger than %d bytes; a secret file holds one secret", path, maxFileSize)
	}
	s := NewSecret(strings.TrimRight(string(b), "\r\n"))
	f.store(path, s, info)
	f.log.Debug("credstore: read secret file", "path", path, "changed", had && !same)
	return s, nil
}

// sameFile reports whether two stats describe one unchanged file.
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func (f *fileSource) store(path string, s Secret, info os.FileInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.entries[path]; ok {
		old.timer.Stop()
		delete(f.entries, path)
	}
	if f.ttl <= 0 {
		return
	}
	e := &fileEntry{secret: s, info: info, expires: f.now().Add(f.ttl)}
	e.timer = time.AfterFunc(f.ttl, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.entries[path] == e {
			delete(f.entries, path)
		}
	})
	f.entries[path] = e
}

func (f *fileSource) drop(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.entries[path]; ok {
		e.timer.Stop()
		delete(f.entries, path)
	}
}

// Purge implements Purger.
func (f *fileSource) Purge() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p, e := range f.entries {
		e.timer.Stop()
		delete(f.entries, p)
	}
}
