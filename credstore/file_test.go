package credstore

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFileRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pg")
	h := newHarness(t, Config{})
	ref := "file:" + path
	reads := func() int { return h.logCount("credstore: read secret file") }

	require.NoError(t, os.WriteFile(path, []byte("first-Qa11\n"), 0o600))
	assert.Equal(t, "first-Qa11", h.must(ref))
	assert.Equal(t, "first-Qa11", h.must(ref))
	assert.Equal(t, 1, reads(), "an unchanged file is served from memory")

	// Rewritten in place with a different size.
	require.NoError(t, os.WriteFile(path, []byte("second-Qa22-longer\n"), 0o600))
	assert.Equal(t, "second-Qa22-longer", h.must(ref))
	assert.Equal(t, 2, reads())

	// Rewritten in place, same size, new modification time.
	require.NoError(t, os.WriteFile(path, []byte("third--Qa33-longer\n"), 0o600))
	future := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(path, future, future))
	assert.Equal(t, "third--Qa33-longer", h.must(ref))

	// Replaced by rename: same size and time, another inode.
	tmp := filepath.Join(dir, "pg.new")
	require.NoError(t, os.WriteFile(tmp, []byte("fourth-Qa44-longer\n"), 0o600))
	require.NoError(t, os.Chtimes(tmp, future, future))
	require.NoError(t, os.Rename(tmp, path))
	assert.Equal(t, "fourth-Qa44-longer", h.must(ref))

	// A Kubernetes-style symlink swap.
	for i, v := range []string{"fifth-Qa55", "sixth-Qa66"} {
		d := filepath.Join(dir, "gen", string(rune('a'+i)))
		require.NoError(t, os.MkdirAll(d, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(d, "pw"), []byte(v), 0o600))
		link := filepath.Join(dir, "data.tmp")
		require.NoError(t, os.Symlink(d, link))
		require.NoError(t, os.Rename(link, filepath.Join(dir, "data")))
		assert.Equal(t, v, h.must("file:"+filepath.Join(dir, "data", "pw")))
	}

	// Removed: an error, not the last value.
	require.NoError(t, os.Remove(path))
	err := h.fail(ref, "credstore: file "+path+": credential not found")
	assert.ErrorIs(t, err, ErrNotFound)
	h.assertClean("Qa11", "Qa22", "Qa33", "Qa44", "Qa55", "Qa66")
}

func TestFileTTLAndPurge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(path, []byte("value-Rb12"), 0o600))
	h := newHarness(t, Config{File: FileConfig{TTL: time.Minute}})
	fs := h.r.sources["file"].(*fileSource)
	reads := func() int { return h.logCount("credstore: read secret file") }

	h.must("file:" + path)
	assert.Len(t, fs.entries, 1)
	h.clk.Advance(2 * time.Minute)
	h.must("file:" + path)
	assert.Equal(t, 2, reads(), "read again after the TTL")

	h.r.Purge()
	assert.Empty(t, fs.entries)
	h.must("file:" + path)
	assert.Equal(t, 3, reads())

	require.NoError(t, h.r.Close())
	assert.Empty(t, fs.entries, "Close drops cached secrets")
	_, err := h.resolve("file:" + path)
	assert.ErrorIs(t, err, ErrClosed)
}

func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, Config{})
	h.fail("file:"+dir, "file "+dir+": is a directory")
	big := filepath.Join(dir, "big")
	require.NoError(t, os.WriteFile(big, make([]byte, maxFileSize+1), 0o600))
	h.fail("file:"+big, "larger than")
	h.fail("file:", "file: reference without a path")
}
