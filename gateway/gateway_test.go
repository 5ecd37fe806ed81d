package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/recording"
)

func TestCallOrderIsEnforced(t *testing.T) {
	e := newEnv(t, protoFunc, nil)
	e.setDecider(func(in *policy.Input) (protocol.Decision, error) {
		if in.Command.Kind == protocol.KindConnect && in.Command.Text == "deny me" {
			return protocol.Decision{Action: protocol.Deny, Message: "not you", Rules: []string{"no-connect"}}, nil
		}
		return protocol.Decision{Action: protocol.Allow}, nil
	})
	done := make(chan struct{})
	serveWith(t, func(ctx context.Context, _ net.Conn, s protocol.Session) error {
		defer close(done)
		query := &protocol.Command{Protocol: "x", Kind: protocol.KindQuery, Text: "select 1"}
		connect := func(text string) *protocol.Command {
			return &protocol.Command{Protocol: "x", Kind: protocol.KindConnect, Text: text}
		}

		// Before Authenticate: nothing works.
		assert.Nil(t, s.Info().Identity)
		d, err := s.Check(ctx, connect("connect"))
		assert.ErrorIs(t, err, protocol.ErrNotAuthorized)
		assert.Equal(t, protocol.Deny, d.Action)
		_, err = s.Credential(ctx)
		assert.ErrorIs(t, err, protocol.ErrNotAuthorized)
		assert.ErrorIs(t, s.Record(ctx, protocol.Event{Type: protocol.EventNotice}), protocol.ErrNotAuthorized)

		id, err := s.Authenticate(ctx, identity.Credentials{Token: goodToken})
		if !assert.NoError(t, err) {
			return err
		}
		assert.Equal(t, "alice", id.Subject)
		assert.Equal(t, "alice", s.Info().Identity.Subject)
		_, err = s.Authenticate(ctx, identity.Credentials{Token: goodToken})
		assert.ErrorIs(t, err, protocol.ErrNotAuthorized, "a second Authenticate")

		// Authenticated, no connect yet: only a connect may be checked.
		_, err = s.Check(ctx, query)
		assert.ErrorIs(t, err, protocol.ErrNotAuthorized)
		_, err = s.Credential(ctx)
		assert.ErrorIs(t, err, protocol.ErrNotAuthorized)

		// A denied connect changes nothing.
		d, err = s.Check(ctx, connect("deny me"))
		if !assert.NoError(t, err) {
			return err
		}
		assert.Equal(t, protocol.Deny, d.Action)
		assert.Equal(t, "not you", d.Message)
		_, err = s.Credential(ctx)
		assert.ErrorIs(t, err, protocol.ErrNotAuthorized)
		_, err = s.Check(ctx, query)
		assert.ErrorIs(t, err, protocol.ErrNotAuthorized)

		// An allowed connect opens the rest.
		d, err = s.Check(ctx, connect("connect"))
		if !assert.NoError(t, err) {
			return err
		}
		assert.True(t, d.Allowed())
		cred, err := s.Credential(ctx)
		if !assert.NoError(t, err) {
			return err
		}
		assert.Equal(t, "app", cred.Username)
		assert.Equal(t, "backend-pw", cred.Password.Reveal())
		d, err = s.Check(ctx, query)
		if !assert.NoError(t, err) {
			return err
		}
		assert.True(t, d.Allowed())
		assert.NotZero(t, d.Seq)
		_, err = s.Check(ctx, nil)
		assert.Error(t, err)
		return nil
	})
	c := dial(t, e.g.Addr("t1"))
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("serve func did not finish")
	}
	c.expectClosed()
	assert.NotContains(t, e.logs.String(), "backend-pw", "the backend credential is never logged")
}

func TestPlaintextTokenRefusedUnlessLoopbackAllowed(t *testing.T) {
	t.Run("refused without TLS", func(t *testing.T) {
		e := newEnv(t, protoLine, func(c *Config) { c.Targets[0].AllowPlaintextLoopback = false })
		c := dial(t, e.g.Addr("t1"))
		assert.Equal(t, "ERR "+msgPlaintext, c.send("AUTH "+goodToken))
		c.expectClosed()
		assert.Equal(t, 1.0, metricValue(e.g.metrics.sessionsTotal.WithLabelValues("t1", resultRefused)))
	})
	t.Run("allowed on loopback", func(t *testing.T) {
		e := newEnv(t, protoLine, nil)
		c := dial(t, e.g.Addr("t1"))
		assert.Equal(t, "OK alice", c.send("AUTH "+goodToken))
	})
	t.Run("accepted over TLS", func(t *testing.T) {
		e := newEnv(t, protoLine, func(c *Config) {
			c.Targets[0].DisableTLS = false
			c.Targets[0].AllowPlaintextLoopback = false
		})
		c := dial(t, e.g.Addr("t1"))
		st := c.startTLS()
		require.NotEmpty(t, st.PeerCertificates)
		assert.Contains(t, st.PeerCertificates[0].DNSNames, "localhost")
		assert.Equal(t, "OK alice", c.send("AUTH "+goodToken))
	})
	t.Run("refused from a remote address even when loopback is allowed", func(t *testing.T) {
		e := &env{sink: &memSink{}, logs: &syncBuffer{}}
		g, err := New(baseConfig(t, e, protoLine))
		require.NoError(t, err)
		server, peer := net.Pipe()
		defer peer.Close()
		s := newSession(g, g.targets[0], remoteConn{server}, time.Now())
		defer s.finish(nil)
		_, err = s.Authenticate(context.Background(), identity.Credentials{Token: goodToken})
		require.Error(t, err)
		assert.Equal(t, msgPlaintext, err.Error())
		assert.ErrorIs(t, err, identity.ErrUnauthenticated)
	})
}

// remoteConn pretends to come from a non-loopback address.
type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000} }

func TestBadTokenErrorsNeverContainTheToken(t *testing.T) {
	const secret = "sk-very-secret-token-e3b0c442"
	t.Run("not recognised", func(t *testing.T) {
		e := newEnv(t, protoLine, nil)
		c := dial(t, e.g.Addr("t1"))
		reply := c.send("AUTH " + secret)
		assert.Equal(t, "ERR "+msgBadToken, reply)
		c.expectClosed()
		e.waitNoSessions(t)
		assert.NotContains(t, e.logs.String(), secret)
		assert.Empty(t, e.sink.all(), "nothing is recorded for a refused caller")
	})
	t.Run("authenticator that leaks the token", func(t *testing.T) {
		e := newEnv(t, protoLine, func(c *Config) {
			c.Authenticator = identity.AuthenticatorFunc(func(_ context.Context, cr identity.Credentials) (*identity.Identity, error) {
				return nil, fmt.Errorf("idp down while checking %s", cr.Token)
			})
		})
		c := dial(t, e.g.Addr("t1"))
		reply := c.send("AUTH " + secret)
		assert.Equal(t, "ERR "+msgIdPUnavailable, reply)
		c.expectClosed()
		e.waitNoSessions(t)
		logs := e.logs.String()
		assert.NotContains(t, logs, secret)
		assert.Contains(t, logs, "idp down while checking [redacted]")
	})
	t.Run("too many attempts", func(t *testing.T) {
		e := newEnv(t, protoFunc, nil)
		done := make(chan []error, 1)
		serveWith(t, func(ctx context.Context, _ net.Conn, s protocol.Session) error {
			var errs []error
			for range 4 {
				_, err := s.Authenticate(ctx, identity.Credentials{Token: "wrong"})
				errs = append(errs, err)
			}
			_, err := s.Authenticate(ctx, identity.Credentials{Token: goodToken})
			done <- append(errs, err)
			return nil
		})
		dial(t, e.g.Addr("t1"))
		errs := <-done
		assert.Equal(t, msgBadToken, errs[0].Error())
		assert.Equal(t, msgTooManyAttempts, errs[3].Error())
		assert.Equal(t, msgTooManyAttempts, errs[4].Error(), "even a good token after the budget")
	})
}

func TestSessionLimit(t *testing.T) {
	e := newEnv(t, protoLine, func(c *Config) { c.Targets[0].MaxSessions = 1 })
	first, _ := e.connected(t)

	second := dial(t, e.g.Addr("t1"))
	assert.Equal(t, "ERR sluice: target t1 has reached its session limit (1)", second.send("AUTH "+goodToken))
	second.expectClosed()

	assert.Equal(t, "BYE", first.send("QUIT"))
	e.waitNoSessions(t)
	third := dial(t, e.g.Addr("t1"))
	assert.Equal(t, "OK alice", third.send("AUTH "+goodToken))
}

func TestHandshakeTimeoutClosesSilentClient(t *testing.T) {
	t.Run("deadline on the connection", func(t *testing.T) {
		e := newEnv(t, protoLine, func(c *Config) { c.Targets[0].HandshakeTimeout = 150 * time.Millisecond })
		c := dial(t, e.g.Addr("t1"))
		start := time.Now()
		c.expectClosed()
		assert.Less(t, time.Since(start), 3*time.Second)
		e.waitNoSessions(t)
		assert.Contains(t, e.logs.String(), `"reason":"handshake timeout"`)
	})
	t.Run("plugin that clears the deadline", func(t *testing.T) {
		e := newEnv(t, protoFunc, func(c *Config) { c.Targets[0].HandshakeTimeout = 150 * time.Millisecond })
		serveWith(t, func(ctx context.Context, c net.Conn, s protocol.Session) error {
			_ = c.SetDeadline(time.Time{})
			_, err := c.Read(make([]byte, 1))
			return err
		})
		c := dial(t, e.g.Addr("t1"))
		c.expectClosed()
		e.waitNoSessions(t)
	})
	t.Run("authenticated sessions have no deadline", func(t *testing.T) {
		e := newEnv(t, protoLine, func(c *Config) { c.Targets[0].HandshakeTimeout = 150 * time.Millisecond })
		c, _ := e.connected(t)
		time.Sleep(300 * time.Millisecond)
		assert.Regexp(t, `^OK \d+$`, c.send("Q select 1"))
	})
}

func TestRecordingOfASession(t *testing.T) {
	e := newEnv(t, protoLine, nil)
	c, id := e.connected(t)
	assert.Equal(t, "OK 3", c.send("Q select 1"))
	assert.Equal(t, "OK 5", c.send("Q select 2"))
	assert.Equal(t, "BYE", c.send("QUIT"))

	entries := e.sink.closed(t, id)
	types := make([]string, len(entries))
	for i, en := range entries {
		types[i] = en.Type
		assert.Equal(t, uint64(i+1), en.Seq, "seq of entry %d", i)
		assert.Equal(t, id, en.Session)
		assert.Equal(t, time.UTC, en.Time.Location())
		assert.False(t, en.Time.IsZero())
	}
	require.Equal(t, []string{"session.start", "command", "command", "result", "command", "result", "session.end"}, types)

	start := entries[0]
	assert.Equal(t, "alice", start.Identity.Subject)
	assert.Equal(t, "t1", start.Target.Name)
	assert.Contains(t, start.ClientAddr, "127.0.0.1:")

	assert.Equal(t, protocol.KindConnect, entries[1].Command.Kind)
	assert.Equal(t, protocol.Allow, entries[1].Decision.Action)
	assert.Equal(t, "select 1", entries[2].Command.Text)
	assert.Equal(t, uint64(3), entries[3].CommandSeq, "a result points at its command")
	assert.Equal(t, int64(1), entries[3].Result.Rows)
	assert.Equal(t, "client closed", entries[6].Reason)

	r := e.sink.rec(id)
	r.mu.Lock()
	assert.Equal(t, 1, r.closes)
	r.mu.Unlock()
	assert.Equal(t, "t1", r.info.Target.Name)
	assert.Equal(t, "alice", r.info.Identity.Subject, "the sink sees the identity")

	m := e.g.metrics
	assert.Equal(t, 3.0, metricValue(m.commandsTotal.WithLabelValues("t1", "allow")))
	assert.Equal(t, 2.0, metricValue(m.resultRows.WithLabelValues("t1")))
	assert.Equal(t, 16.0, metricValue(m.resultBytes.WithLabelValues("t1")))
	assert.Equal(t, 1.0, metricValue(m.sessionsTotal.WithLabelValues("t1", resultAuthenticated)))
	require.Eventually(t, func() bool { return metricValue(m.sessionsActive.WithLabelValues("t1")) == 0 }, waitTimeout, 5*time.Millisecond)
	assert.Equal(t, 2, seriesCount(m.checkDuration)+seriesCount(m.commandDuration))

	logs := e.logs.String()
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if strings.Contains(line, `"session ended"`) || strings.Contains(line, `"session authenticated"`) {
			assert.Contains(t, line, `"session_id":"`+id+`"`)
			assert.Contains(t, line, `"target":"t1"`)
		}
	}
}

func TestConcurrentWritesKeepSeqOrder(t *testing.T) {
	e := newEnv(t, protoFunc, nil)
	done := make(chan string, 1)
	serveWith(t, func(ctx context.Context, _ net.Conn, s protocol.Session) error {
		_, err := s.Authenticate(ctx, identity.Credentials{Token: goodToken})
		if !assert.NoError(t, err) {
			return err
		}
		_, err = s.Check(ctx, &protocol.Command{Kind: protocol.KindConnect})
		if !assert.NoError(t, err) {
			return err
		}
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 50 {
					if i%2 == 0 {
						_, err := s.Check(ctx, &protocol.Command{Kind: protocol.KindQuery, Text: fmt.Sprint(w, i)})
						assert.NoError(t, err)
					} else {
						assert.NoError(t, s.Record(ctx, protocol.Event{Type: protocol.EventOutput, Data: []byte("x")}))
					}
				}
			})
		}
		wg.Wait()
		done <- s.Info().ID
		return nil
	})
	dial(t, e.g.Addr("t1"))
	id := <-done
	entries := e.sink.closed(t, id)
	require.Len(t, entries, 1+1+200+1)
	for i, en := range entries {
		require.Equal(t, uint64(i+1), en.Seq)
	}
}

func TestRecordingFailureFailsClosed(t *testing.T) {
	t.Run("sink cannot open", func(t *testing.T) {
		e := newEnv(t, protoLine, nil)
		e.sink.setOpenErr(errors.New("bucket unreachable"))
		c := dial(t, e.g.Addr("t1"))
		assert.Equal(t, "ERR "+msgRecordingRefused, c.send("AUTH "+goodToken))
		c.expectClosed()
	})
	t.Run("session.start cannot be written", func(t *testing.T) {
		e := newEnv(t, protoLine, nil)
		e.sink.setWriteErr(func(*recording.Entry) error { return errors.New("disk full") })
		c := dial(t, e.g.Addr("t1"))
		assert.Equal(t, "ERR "+msgRecordingRefused, c.send("AUTH "+goodToken))
		c.expectClosed()
		e.waitNoSessions(t)
		recs := e.sink.all()
		require.Len(t, recs, 1)
		assert.Empty(t, recs[0].snapshot(), "no session.end for a session that was never recorded")
		assert.Equal(t, 1, recs[0].closes)
	})
	t.Run("command cannot be written", func(t *testing.T) {
		e := newEnv(t, protoFunc, nil)
		done := make(chan string, 1)
		serveWith(t, func(ctx context.Context, _ net.Conn, s protocol.Session) error {
			defer func() { done <- s.Info().ID }()
			_, err := s.Authenticate(ctx, identity.Credentials{Token: goodToken})
			if !assert.NoError(t, err) {
				return err
			}
			_, err = s.Check(ctx, &protocol.Command{Kind: protocol.KindConnect})
			if !assert.NoError(t, err) {
				return err
			}

			fail := true
			var mu sync.Mutex
			e.sink.setWriteErr(func(en *recording.Entry) error {
				mu.Lock()
				defer mu.Unlock()
				if fail && en.Type == recording.TypeCommand {
					return errors.New("disk full")
				}
				return nil
			})
			d, err := s.Check(ctx, &protocol.Command{Kind: protocol.KindQuery, Text: "drop table t"})
			assert.ErrorIs(t, err, protocol.ErrRecording)
			assert.Equal(t, msgRecordingCommand, err.Error())
			assert.Equal(t, protocol.Deny, d.Action)

			// The sink recovers; the session stays refused.
			mu.Lock()
			fail = false
			mu.Unlock()
			_, err = s.Check(ctx, &protocol.Command{Kind: protocol.KindQuery, Text: "select 1"})
			assert.ErrorIs(t, err, protocol.ErrRecording)
			assert.ErrorIs(t, s.Record(ctx, protocol.Event{Type: protocol.EventNotice}), protocol.ErrRecording)
			return nil
		})
		dial(t, e.g.Addr("t1"))
		id := <-done
		entries := e.sink.closed(t, id)
		var types []string
		for _, en := range entries {
			types = append(types, en.Type)
		}
		assert.Equal(t, []string{"session.start", "command", "session.end"}, types)
		assert.Equal(t, uint64(3), entries[2].Seq, "a refused entry does not consume a seq")
		assert.Equal(t, 1.0, metricValue(e.g.metrics.commandsTotal.WithLabelValues("t1", "deny")))
	})
	t.Run("result cannot be written", func(t *testing.T) {
		e := newEnv(t, protoLine, nil)
		c, _ := e.connected(t)
		e.sink.setWriteErr(func(en *recording.Entry) error {
			if en.Type == string(protocol.EventResult) {
				return errors.New("disk full")
			}
			return nil
		})
		assert.Equal(t, "ERR sluice: recording unavailable", c.send("Q select 1"))
		assert.Equal(t, "ERR "+msgRecordingCommand, c.send("Q select 2"))
	})
}

func TestDecisionsTheGatewayCannotCarryOut(t *testing.T) {
	cases := []struct {
		name     string
		decision protocol.Decision
		err      error
		want     string
		rules    []string
	}{
		{
			name:     "require_approval without an approval service",
			decision: protocol.Decision{Action: protocol.RequireApproval, Rules: []string{"prod-writes-need-a-dba"}, Approvers: []string{"group:dba"}},
			want:     "sluice: this command needs approval (rule prod-writes-need-a-dba) but no approval service is configured",
			rules:    []string{"prod-writes-need-a-dba"},
		},
		{
			name:     "masking that cannot be compiled",
			decision: protocol.Decision{Action: protocol.Allow, Rules: []string{"agents-read"}, Mask: []string{"email=hash"}},
			want:     "sluice: the masking this command needs cannot be applied (" + maskErr("email=hash") + ")",
			rules:    []string{"agents-read"},
		},
		{
			name: "decider error",
			err:  errors.New("rule file unreadable"),
			want: "sluice: policy could not decide: rule file unreadable",
		},
		{
			name:     "unknown action",
			decision: protocol.Decision{Action: "maybe"},
			want:     `sluice: policy returned an unknown action "maybe"`,
		},
		{
			name:     "deny without a message",
			decision: protocol.Decision{Action: protocol.Deny, Rules: []string{"r"}},
			want:     "sluice: command denied by policy",
			rules:    []string{"r"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, protoLine, nil)
			c, id := e.connected(t)
			e.setDecider(func(*policy.Input) (protocol.Decision, error) { return tc.decision, tc.err })
			assert.Equal(t, "DENIED "+tc.want, c.send("Q update t set a = 1"))
			assert.Equal(t, "BYE", c.send("QUIT"))
			entries := e.sink.closed(t, id)
			require.Len(t, entries, 4)
			d := entries[2].Decision
			assert.Equal(t, protocol.Deny, d.Action, "the record shows what was enforced")
			assert.Equal(t, tc.want, d.Message)
			assert.Equal(t, tc.rules, d.Rules)
		})
	}
}

// maskErr is the error compiling entries with no pseudonym key gives.
func maskErr(entries ...string) string {
	_, err := masking.Compile(entries, masking.Options{})
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestPolicyInput(t *testing.T) {
	e := newEnv(t, protoLine, nil)
	inputs := make(chan *policy.Input, 2)
	e.setDecider(func(in *policy.Input) (protocol.Decision, error) {
		inputs <- in
		return protocol.Decision{Action: protocol.Allow}, nil
	})
	c := dial(t, e.g.Addr("t1"))
	require.Equal(t, "OK alice", c.send("AUTH "+goodToken))
	require.Equal(t, "OK 2", c.send("CONNECT"))
	in := <-inputs
	assert.Equal(t, "alice", in.Identity.Subject)
	assert.Equal(t, []string{"agents"}, in.Identity.Groups)
	assert.Equal(t, "test", in.Target.Labels["env"])
	assert.Equal(t, in.Identity, in.Session.Identity)
	assert.NotEmpty(t, in.Session.ID)
	assert.Equal(t, protocol.KindConnect, in.Command.Kind)
	assert.WithinDuration(t, time.Now(), in.Now, time.Minute)
}

func TestTerminate(t *testing.T) {
	e := newEnv(t, protoLine, nil)
	c, id := e.connected(t)
	views := e.g.Sessions()
	require.Len(t, views, 1)
	assert.Equal(t, SessionView{
		ID: id, Target: "t1", Protocol: protoLine, Subject: "alice", Groups: []string{"agents"},
		ClientAddr: c.conn.LocalAddr().String(), Start: views[0].Start, Commands: 1, State: "active",
	}, views[0])

	require.NoError(t, e.g.Terminate(id, "runaway agent"))
	c.expectClosed()
	entries := e.sink.closed(t, id)
	last := entries[len(entries)-1]
	assert.Equal(t, recording.TypeSessionEnd, last.Type)
	assert.Equal(t, "terminated by admin: runaway agent", last.Reason)
	e.waitNoSessions(t)

	assert.ErrorIs(t, e.g.Terminate(id, "again"), ErrSessionNotFound)
}

func TestCredentialExpiryEndsTheSession(t *testing.T) {
	e := newEnv(t, protoLine, func(c *Config) {
		c.Authenticator = identity.AuthenticatorFunc(func(context.Context, identity.Credentials) (*identity.Identity, error) {
			return &identity.Identity{Subject: "bot", Method: identity.MethodOIDC, Expiry: time.Now().Add(300 * time.Millisecond)}, nil
		})
	})
	c := dial(t, e.g.Addr("t1"))
	require.Equal(t, "OK bot", c.send("AUTH anything"))
	id := e.onlySessionID(t)
	c.expectClosed()
	entries := e.sink.closed(t, id)
	assert.Equal(t, "credential expired", entries[len(entries)-1].Reason)
}

// TestExpiryGrace: a session outlives its credential by the configured
// grace, no more; commands inside the grace still run.
func TestExpiryGrace(t *testing.T) {
	e := newEnv(t, protoLine, func(c *Config) {
		c.ExpiryGrace = 800 * time.Millisecond
		c.Authenticator = identity.AuthenticatorFunc(func(context.Context, identity.Credentials) (*identity.Identity, error) {
			return &identity.Identity{Subject: "bot", Method: identity.MethodOIDC, Expiry: time.Now().Add(100 * time.Millisecond)}, nil
		})
	})
	c := dial(t, e.g.Addr("t1"))
	start := time.Now()
	require.Equal(t, "OK bot", c.send("AUTH anything"))
	require.True(t, strings.HasPrefix(c.send("CONNECT"), "OK"))
	time.Sleep(300 * time.Millisecond) // past expiry, inside the grace
	if time.Since(start) < 800*time.Millisecond {
		r := c.send("Q select 1")
		assert.True(t, strings.HasPrefix(r, "OK"), "inside the grace the session still works: %q", r)
	}
	id := e.onlySessionID(t)
	c.expectClosed()
	assert.GreaterOrEqual(t, time.Since(start), 850*time.Millisecond, "not ended before expiry plus grace")
	entries := e.sink.closed(t, id)
	assert.Equal(t, "credential expired", entries[len(entries)-1].Reason)
}

func TestPluginPanicEndsOnlyItsSession(t *testing.T) {
	e := newEnv(t, protoFunc, nil)
	serveWith(t, func(ctx context.Context, _ net.Conn, s protocol.Session) error {
		if _, err := s.Authenticate(ctx, identity.Credentials{Token: goodToken}); err != nil {
			return err
		}
		panic("codec bug")
	})
	c := dial(t, e.g.Addr("t1"))
	c.expectClosed()
	e.waitNoSessions(t)
	recs := e.sink.all()
	require.Len(t, recs, 1)
	entries := e.sink.closed(t, recs[0].info.ID)
	assert.Equal(t, "plugin panic: codec bug", entries[len(entries)-1].Reason)
	assert.True(t, e.g.Ready())
	assert.Equal(t, 0.0, metricValue(e.g.metrics.sessionsActive.WithLabelValues("t1")))
}

func TestShutdownDrainsWithADrainingPlugin(t *testing.T) {
	e := newEnv(t, protoLine, func(c *Config) { c.ShutdownGrace = 10 * time.Second })
	idle, idleID := e.connected(t)
	busy := dial(t, e.g.Addr("t1"))
	require.Equal(t, "OK alice", busy.send("AUTH "+goodToken))
	require.Regexp(t, `^OK`, busy.send("CONNECT"))
	_, err := fmt.Fprintf(busy.conn, "SLEEP 300ms\n")
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // the SLEEP is in flight

	start := time.Now()
	require.NoError(t, e.g.Shutdown(context.Background()))
	assert.Less(t, time.Since(start), 5*time.Second, "drained sessions end before the grace")
	assert.False(t, e.g.Ready())

	assert.Equal(t, "BYE draining", idle.read())
	assert.Equal(t, "OK slept", busy.read(), "the in-flight command completes")
	assert.Equal(t, "BYE draining", busy.read())
	for _, r := range e.sink.all() {
		entries := e.sink.closed(t, r.info.ID)
		assert.Equal(t, "gateway shutdown", entries[len(entries)-1].Reason)
	}
	assert.NotNil(t, e.sink.rec(idleID))

	_, err = net.DialTimeout("tcp", e.g.Addr("t1").String(), time.Second)
	assert.Error(t, err, "the listener is closed")
	assert.ErrorIs(t, e.g.Start(context.Background()), ErrClosed)
	assert.NoError(t, e.g.Shutdown(context.Background()), "Shutdown twice")
}

func TestShutdownTerminatesANonDrainingPluginAtGrace(t *testing.T) {
	const grace = 300 * time.Millisecond
	e := newEnv(t, protoNoDrn, func(c *Config) { c.ShutdownGrace = grace })
	c, id := e.connected(t)
	start := time.Now()
	require.NoError(t, e.g.Shutdown(context.Background()))
	assert.GreaterOrEqual(t, time.Since(start), grace)
	c.expectClosed()
	entries := e.sink.closed(t, id)
	assert.Equal(t, "gateway shutdown", entries[len(entries)-1].Reason)
	assert.Empty(t, e.g.Sessions())
}

func TestShutdownContextCutsTheGraceShort(t *testing.T) {
	e := newEnv(t, protoNoDrn, func(c *Config) { c.ShutdownGrace = time.Minute })
	c, _ := e.connected(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, e.g.Shutdown(ctx), context.DeadlineExceeded)
	c.expectClosed()
	assert.Empty(t, e.g.Sessions())
}

func TestAuthenticateRefusedDuringShutdown(t *testing.T) {
	e := newEnv(t, protoNoDrn, func(c *Config) { c.ShutdownGrace = 2 * time.Second })
	c := dial(t, e.g.Addr("t1"))
	require.Eventually(t, func() bool { return len(e.g.Sessions()) == 1 }, waitTimeout, 5*time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- e.g.Shutdown(context.Background()) }()
	require.Eventually(t, func() bool { return !e.g.Ready() }, waitTimeout, 5*time.Millisecond)
	assert.Equal(t, "ERR "+msgShuttingDown, c.send("AUTH "+goodToken))
	require.NoError(t, <-done)
}

func TestStartFailsWhenAnyBindFails(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()

	e := &env{sink: &memSink{}, logs: &syncBuffer{}}
	cfg := baseConfig(t, e, protoLine)
	free, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	freeAddr := free.Addr().String()
	require.NoError(t, free.Close())
	second := cfg.Targets[0]
	second.Target.Name = "t2"
	second.Listen = busy.Addr().String()
	cfg.Targets[0].Listen = freeAddr
	cfg.Targets = append(cfg.Targets, second)

	g, err := New(cfg)
	require.NoError(t, err)
	err = g.Start(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "targets[1] (t2)")
	assert.Nil(t, g.Addr("t1"))
	assert.False(t, g.Ready())

	// The first listener was released.
	ln, err := net.Listen("tcp", freeAddr)
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	require.NoError(t, g.Shutdown(context.Background()))
}

func TestNewBuildsOnePluginPerTarget(t *testing.T) {
	e := &env{sink: &memSink{}, logs: &syncBuffer{}}
	cfg := baseConfig(t, e, protoLine)
	second := cfg.Targets[0]
	second.Target.Name = "t2"
	cfg.Targets = append(cfg.Targets, second)
	g, err := New(cfg)
	require.NoError(t, err)
	require.Len(t, g.targets, 2)
	assert.NotSame(t, g.targets[0].plugin, g.targets[1].plugin)
	assert.Equal(t, DefaultMaxSessions, g.targets[0].cfg.MaxSessions)
	assert.Equal(t, protocol.Limits{
		MaxMessageSize: 64 << 20, RecordRows: 100, RecordBytes: 64 << 10, ConnectTimeout: 10 * time.Second,
	}, g.targets[1].cfg.Limits)
	require.NoError(t, g.Shutdown(context.Background()))

	_, err = New(Config{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "authenticator: required")
}

func TestConnectionsFarOverTheLimitAreClosed(t *testing.T) {
	e := newEnv(t, protoLine, func(c *Config) { c.Targets[0].MaxSessions = 1 })
	e.connected(t)
	for range overLimitBacklog {
		dial(t, e.g.Addr("t1"))
	}
	require.Eventually(t, func() bool { return len(e.g.Sessions()) == 1+overLimitBacklog }, waitTimeout, 5*time.Millisecond)
	extra := dial(t, e.g.Addr("t1"))
	extra.expectClosed()
	assert.Len(t, e.g.Sessions(), 1+overLimitBacklog)
}
