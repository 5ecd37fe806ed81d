package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/recording"
)

// writeRecording records a short session with the file sink, as the
// gateway would.
func writeRecording(t *testing.T, dir, id string, end bool) string {
	t.Helper()
	sink, err := recording.NewFileSink(dir, recording.FileOptions{Fsync: recording.FsyncNever})
	require.NoError(t, err)
	target := &protocol.Target{Name: "pg", Protocol: "postgres", Address: "127.0.0.1:5432"}
	info := protocol.SessionInfo{ID: id, Target: target, ClientAddr: "127.0.0.1:5000", Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	rec, err := sink.Open(t.Context(), info)
	require.NoError(t, err)
	at := info.Start
	entries := []*recording.Entry{
		{Seq: 1, Time: at, Type: recording.TypeSessionStart, Identity: &identity.Identity{Subject: "alice", Method: identity.MethodToken}, Target: target, ClientAddr: info.ClientAddr},
		{Seq: 2, Time: at, Type: recording.TypeCommand, Command: &protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: "SELECT name FROM customers"}, Decision: &protocol.Decision{Action: protocol.Allow, Rules: []string{"default:allow"}}},
		{Seq: 3, Time: at, Type: string(protocol.EventResult), CommandSeq: 2, Result: &protocol.Result{Tag: "SELECT 1", Rows: 1, Columns: []string{"name"}, Data: [][]*string{{ptr("Ada Lovelace")}}}},
	}
	if end {
		entries = append(entries, &recording.Entry{Seq: 4, Time: at, Type: recording.TypeSessionEnd, Reason: "client closed"})
	}
	for _, e := range entries {
		e.Session = id
		require.NoError(t, rec.Write(e))
	}
	require.NoError(t, rec.Close())
	return filepath.Join(dir, id+".jsonl")
}

func ptr(s string) *string { return &s }

func TestReplayCommand(t *testing.T) {
	dir := t.TempDir()
	path := writeRecording(t, dir, "01JREPLAYA", true)
	writeRecording(t, dir, "01JREPLAYB", false)

	r := runCLI(t, "replay", "--dir", dir, "01JREPLAYA")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "SELECT name FROM customers")
	assert.Contains(t, r.stdout, "Ada Lovelace")
	assert.Contains(t, r.stdout, "hash chain: intact (4 entries)")

	// Flags after the id work too; an incomplete recording is not broken.
	r = runCLI(t, "replay", "01JREPLAYB", "--dir", dir)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "incomplete")
	assert.Contains(t, r.stdout, "hash chain: intact (3 entries)")

	r = runCLI(t, "replay", "--dir", dir, "--list")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(r.stdout, "\n")
	assert.Regexp(t, `^SESSION\s+START \(UTC\)\s+SUBJECT\s+TARGET\s+STATUS\s+SIZE$`, lines[0])
	assert.Regexp(t, `^01JREPLAYA\s+2026-01-02 03:04:05\s+alice\s+pg\s+complete\s+[\d.]+ (B|KiB)$`, lines[1])
	assert.Regexp(t, `^01JREPLAYB\s+2026-01-02 03:04:05\s+alice\s+pg\s+incomplete\s+`, lines[2])
	assert.Contains(t, r.stdout, "2 recordings in "+dir)

	// An edit breaks the chain: exit status 1 and the verdict says where.
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(string(b), "Ada Lovelace", "Eve Intruder", 1)), 0o600))
	r = runCLI(t, "replay", "--dir", dir, "01JREPLAYA")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "hash chain: BROKEN at line 3")
	assert.NotContains(t, r.stdout, "Eve Intruder", "nothing after the break is shown")
	assert.Contains(t, r.stderr, "altered or damaged")

	r = runCLI(t, "replay", "--dir", dir, "01JMISSING")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "recording not found")
}

func TestReplayDirFromConfig(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	writeRecording(t, rec, "01JREPLAYC", true)
	cfg := filepath.Join(dir, "refserver.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(goodConfig+"recording: {dir: "+rec+"}\n"), 0o600))

	r := runCLI(t, "replay", "--config", cfg, "01JREPLAYC")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "hash chain: intact")

	empty := t.TempDir()
	r = runCLI(t, "replay", "--dir", empty, "--list")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "no recordings in "+empty+"\n", r.stdout)

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"replay"}, "replay needs one SESSION_ID (or --list)"},
		{[]string{"replay", "--dir", dir, "--config", cfg, "x"}, "give --dir or --config, not both"},
		{[]string{"replay", "--list", "x"}, "--list takes no SESSION_ID"},
	} {
		r := runCLI(t, tt.args...)
		assert.Equal(t, 2, r.code, "%v", tt.args)
		assert.Contains(t, r.stderr, tt.want)
	}
}
