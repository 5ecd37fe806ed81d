package policy

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// memoPolicy has rules the memo can decide from a statement's form and
// rules it cannot: on the text, the attributes, the session, the time.
const memoPolicy = `
rules:
  - name: devs-query
    match: command.kind == "query" && "developers" in identity.groups
    action: allow
    mask: [email]
  - name: no-drop
    match: command.sql.statements.exists(s, s.kind in ["DROP", "TRUNCATE"])
    action: deny
  - name: alter-drop-by-text
    match: command.sql.statements.exists(s, s.kind.startsWith("ALTER")) && command.text.matches("(?i)\\bdrop\\b")
    action: deny
  - name: big-ids
    match: command.text.contains("999")
    action: deny
    message: no 999s
  - name: extended-writes
    match: command.attrs.?extended.orValue("") == "parse" && command.sql.writes
    action: require_approval
    approvers: [group:dba]
  - name: night
    match: now.getHours() >= 23 && command.sql.writes
    action: deny
  - name: from-elsewhere
    match: '!session.client_addr.startsWith("127.")'
    action: deny
  - name: prod-targets
    match: target.labels.?env.orValue("") == "prod" && command.sql.writes
    action: require_approval
    approvers: [group:dba]
default: deny
`

// memoCommands are commands in a few forms, with texts and attributes
// that differ within a form.
func memoCommands() []*protocol.Command {
	sel := protocol.SQL{Statements: []protocol.Statement{{Kind: "SELECT", Tables: []string{"public.users"}, HasWhere: true}}}
	upd := protocol.SQL{Statements: []protocol.Statement{{Kind: "UPDATE", Tables: []string{"public.users"}, HasWhere: true}}, Writes: true}
	alt := protocol.SQL{Statements: []protocol.Statement{{Kind: "ALTER TABLE", Tables: []string{"public.users"}}}, DDL: true, Writes: true}
	drop := protocol.SQL{Statements: []protocol.Statement{{Kind: "DROP", Tables: []string{"public.users"}}}, DDL: true, Writes: true}
	bad := protocol.SQL{ParseError: "syntax error at or near \"SELEC\""}
	var out []*protocol.Command
	add := func(sql protocol.SQL, text string, attrs map[string]string) {
		s := sql
		out = append(out, &protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: text, SQL: &s, Attrs: attrs})
	}
	for i := range 3 {
		add(sel, fmt.Sprintf("SELECT * FROM users WHERE id = %d", 41+i*479), nil)
		add(upd, fmt.Sprintf("UPDATE users SET n = %d WHERE id = 1", 998+i), nil)
		add(upd, "UPDATE users SET n = $1 WHERE id = 1", map[string]string{"extended": "parse"})
		add(alt, "ALTER TABLE users ADD COLUMN c int", nil)
		add(alt, "ALTER TABLE users DROP COLUMN c", nil)
		add(drop, "DROP TABLE users", nil)
		add(bad, "SELEC 1", nil)
	}
	out = append(out, &protocol.Command{Protocol: "postgres", Kind: protocol.KindConnect, Text: "connect"})
	return out
}

// TestMemoDecidesAsEvaluationDoes: for every example policy and one with
// rules on the text, attributes, session and time, a session's decisions
// with the memo equal those without it, command by command, whatever the
// order, the identity, the client address or the hour.
func TestMemoDecidesAsEvaluationDoes(t *testing.T) {
	engines := map[string]*Engine{}
	files, err := filepath.Glob("../examples/policies/*.yaml")
	require.NoError(t, err)
	for _, f := range files {
		if filepath.Ext(f) == ".yaml" && !isTestFile(f) {
			e, err := Load(f)
			require.NoError(t, err, f)
			engines[filepath.Base(f)] = e
		}
	}
	e, err := Parse("memo.yaml", []byte(memoPolicy))
	require.NoError(t, err)
	engines["memo.yaml"] = e
	require.Greater(t, len(engines), 3)

	idents := []*identity.Identity{
		{Subject: "dev", Groups: []string{"developers"}},
		{Subject: "agent", Groups: []string{"agents"}},
		{Subject: "nobody"},
	}
	targets := []*protocol.Target{
		{Name: "prod", Protocol: "postgres", Labels: map[string]string{"env": "prod"}},
		{Name: "dev", Protocol: "postgres"},
	}
	ctx := context.Background()
	cmds := memoCommands()
	checked, memoised := 0, 0
	for name, e := range engines {
		for _, id := range idents {
			for _, tg := range targets {
				for _, addr := range []string{"127.0.0.1:5000", "10.1.2.3:5000"} {
					memo := NewMemo()
					for round := range 3 {
						for i, c := range cmds {
							now := time.Date(2026, 11, 26, 10+13*((i+round)%2), 0, 0, 0, time.UTC)
							in := &Input{Identity: id, Target: tg, Command: c, Now: now,
								Session: protocol.SessionInfo{ID: "s1", ClientAddr: addr}}
							want, werr := e.decide(ctx, in, false)
							in.Memo = memo
							got, gerr := e.Decide(ctx, in)
							require.Equal(t, werr, gerr)
							require.Equal(t, want, got, "%s: %s as %s on %s from %s (round %d)", name, c.Text, id.Subject, tg.Name, addr, round)
							checked++
						}
					}
					for _, v := range memo.forms {
						for _, x := range v {
							if x == verdictTrue || x == verdictFalse {
								memoised++
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d decisions compared; %d rule verdicts memoised", checked, memoised)
	assert.Positive(t, memoised)
}

func isTestFile(f string) bool {
	m, _ := filepath.Match("*_test.yaml", filepath.Base(f))
	return m
}

// TestMemoVerdicts: the verdicts are what the rules' reads allow — known
// for rules on the form, identity and target, unknown for rules on the
// text, attributes, session or time — computed on a form's second sight,
// and started over for another engine, identity or target.
func TestMemoVerdicts(t *testing.T) {
	e, err := Parse("memo.yaml", []byte(memoPolicy))
	require.NoError(t, err)
	dev := &identity.Identity{Subject: "dev", Groups: []string{"developers"}}
	prod := &protocol.Target{Name: "prod", Labels: map[string]string{"env": "prod"}}
	memo := NewMemo()
	cmds := memoCommands()
	sel, alt := cmds[0], cmds[3]
	in := func(c *protocol.Command) *Input { return &Input{Identity: dev, Target: prod, Command: c} }

	assert.Nil(t, memo.verdicts(e, in(sel)), "first sight: no verdicts")
	v := memo.verdicts(e, in(sel))
	require.Len(t, v, len(e.rules))
	byName := map[string]verdict{}
	for i, r := range e.rules {
		byName[r.name] = v[i]
	}
	assert.Equal(t, map[string]verdict{
		"devs-query":         verdictTrue,
		"no-drop":            verdictFalse,
		"alter-drop-by-text": verdictFalse, // no ALTER: false whatever the text
		"big-ids":            verdictUnknown,
		"extended-writes":    verdictFalse, // no writes: false whatever the attributes
		"night":              verdictFalse, // no writes: false whatever the time
		"from-elsewhere":     verdictUnknown,
		"prod-targets":       verdictFalse,
	}, byName)

	memo.verdicts(e, in(alt))
	v = memo.verdicts(e, in(alt))
	for i, r := range e.rules {
		if r.name == "alter-drop-by-text" || r.name == "night" || r.name == "extended-writes" {
			assert.Equal(t, verdictUnknown, v[i], r.name)
		}
		if r.name == "prod-targets" {
			assert.Equal(t, verdictTrue, v[i])
		}
	}

	// Another engine (a reload), identity or target starts over.
	e2, err := Parse("memo.yaml", []byte(memoPolicy))
	require.NoError(t, err)
	assert.Nil(t, memo.verdicts(e2, in(sel)))
	assert.Nil(t, memo.verdicts(e2, &Input{Identity: &identity.Identity{Subject: "dev"}, Target: prod, Command: sel}))
	assert.Len(t, memo.forms, 1)

	// Commands with other parts, or none, are not memoised.
	assert.Nil(t, memo.verdicts(e, in(&protocol.Command{Protocol: "postgres", Kind: protocol.KindConnect})))
}
