package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/internal/pgtest"
)

// TestReplay records a psql session through the refserver binary, stops
// the server with SIGTERM, replays the recording with `refserver replay`,
// then edits one character inside a JSON string in the middle of the file
// and replays again: the broken line is named and the exit status is 1.
func TestReplay(t *testing.T) {
	pgtest.Require(t)
	requireTool(t, "psql")
	bin := buildRefserver(t)
	dir := t.TempDir()
	token := "tok-" + pgtest.RandomSecret(16)
	config, listen, recDir := refserverConfig(t, dir, token, "always")
	s := startRefserver(t, bin, config, listen)

	script := filepath.Join(dir, "session.sql")
	require.NoError(t, os.WriteFile(script, []byte(`create temp table fruit(id int, name text);
insert into fruit values (1, 'apple'), (2, 'banana'), (3, 'cherry');
select id, name from fruit where id < 3 order by id;
`), 0o600))
	host, port, _ := net.SplitHostPort(listen)
	psql := exec.Command("psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-f", script)
	psql.Env = psqlEnv(t, host, port, "test", token, "require")
	r := run(t, psql, opTimeout)
	require.Equal(t, 0, r.code, "psql: %s", r.stderr)
	assert.Equal(t, "CREATE TABLE\nINSERT 0 3\n1|apple\n2|banana\n", r.stdout)

	// The session has ended (psql has gone) before the server is stopped,
	// so that its end reason is the client's, not the shutdown's.
	waitRecordings(t, recDir, 1)
	s.stop(t)
	assert.Contains(t, s.stderr.String(), `msg=stopped`)

	// The session id, from the listing.
	r = refserverCmd(t, bin, "replay", "--dir", recDir, "--list")
	require.Equal(t, 0, r.code, r.stderr)
	m := regexp.MustCompile(`(?m)^([0-9A-Z]{26})\s+\S+ \S+\s+` + subject + `\s+pg\s+complete\s`).FindStringSubmatch(r.stdout)
	require.NotNil(t, m, "replay --list:\n%s", r.stdout)
	id := m[1]

	r = refserverCmd(t, bin, "replay", "--dir", recDir, id)
	require.Equal(t, 0, r.code, "replay:\n%s\n%s", r.stdout, r.stderr)
	for _, want := range []string{
		"session   " + id,
		"identity  " + subject + " (method: token; groups: dba)",
		"create temp table fruit(id int, name text);",
		"insert into fruit values (1, 'apple'), (2, 'banana'), (3, 'cherry');",
		"select id, name from fruit where id < 3 order by id;",
		"result of #",
		": INSERT 0 3",
		": SELECT 2",
		"session end: ", // the reason: TestClientCloseRecordedAsClientClosed
		"hash chain: intact",
	} {
		assert.Contains(t, r.stdout, want)
	}
	assert.Regexp(t, `(?m)^\s+id\s+\|\s+name$`, r.stdout)
	assert.Regexp(t, `(?m)^\s+1\s+\|\s+apple$`, r.stdout)
	assert.Regexp(t, `(?m)^\s+2\s+\|\s+banana$`, r.stdout)
	assert.NotContains(t, r.stdout, token)

	// Tamper: change one character inside the select's text, in the
	// middle of the file, keeping the line valid JSON.
	path := filepath.Join(recDir, id+".jsonl")
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
	edited := 0
	for i, l := range lines {
		if bytes.Contains(l, []byte(`"type":"command"`)) && bytes.Contains(l, []byte("from fruit where id")) {
			edited = i + 1
			break
		}
	}
	require.NotZero(t, edited, "no command line for the select in:\n%s", raw)
	require.Greater(t, edited, 1)
	require.Less(t, edited, len(lines), "the edited line must be in the middle")
	line := lines[edited-1]
	changed := bytes.Replace(line, []byte("order by id"), []byte("order by ID"), 1)
	require.NotEqual(t, line, changed)
	require.True(t, json.Valid(changed), "the edit keeps the line valid JSON")
	lines[edited-1] = changed
	require.NoError(t, os.WriteFile(path, append(bytes.Join(lines, []byte("\n")), '\n'), 0o600))

	r = refserverCmd(t, bin, "replay", "--dir", recDir, id)
	assert.Equal(t, 1, r.code, "a tampered recording: exit status 1\n%s\n%s", r.stdout, r.stderr)
	assert.Contains(t, r.stdout, fmt.Sprintf("hash chain: BROKEN at line %d: content does not match its hash (edited)", edited))
	assert.Contains(t, r.stdout, fmt.Sprintf("[replay stopped at line %d", edited))
	assert.NotContains(t, r.stdout, "order by ID", "nothing from the edited line on is shown as if trusted")
	assert.Contains(t, r.stderr, "altered or damaged")
	assert.True(t, strings.Contains(r.stdout, "insert into fruit"), "the lines before the break are still replayed")
}
