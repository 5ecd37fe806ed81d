package gateway

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/credstore"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(c *Config)
		want   []string // substrings, each naming its field
	}{
		{name: "valid", mutate: func(*Config) {}},
		{
			name:   "missing components",
			mutate: func(c *Config) { c.Authenticator, c.Decider, c.Credentials, c.Recording = nil, nil, nil, nil },
			want:   []string{"authenticator: required", "decider: required", "credentials: required", "recording: required"},
		},
		{name: "no targets", mutate: func(c *Config) { c.Targets = nil }, want: []string{"targets: at least one target is required"}},
		{name: "negative grace", mutate: func(c *Config) { c.ShutdownGrace = -time.Second }, want: []string{"shutdown_grace: must not be negative"}},
		{name: "admin token", mutate: func(c *Config) { c.AdminTokenSHA256 = "abc" }, want: []string{"admin_token_sha256: must be the 64 hex digits"}},
		{
			name: "target fields",
			mutate: func(c *Config) {
				c.Targets[0].Target.Name, c.Targets[0].Target.Address, c.Targets[0].Listen = "", "", ""
			},
			want: []string{"targets[0].name: required", "targets[0].address: required", "targets[0].listen: required"},
		},
		{name: "unknown protocol", mutate: func(c *Config) { c.Targets[0].Target.Protocol = "gopher" }, want: []string{`targets[0].protocol: protocol: no plugin registered for "gopher"`}},
		{name: "no protocol", mutate: func(c *Config) { c.Targets[0].Target.Protocol = "" }, want: []string{"targets[0].protocol: required (registered: "}},
		{name: "bad listen", mutate: func(c *Config) { c.Targets[0].Listen = "6432" }, want: []string{`targets[0].listen: "6432" is not host:port`}},
		{name: "bad port", mutate: func(c *Config) { c.Targets[0].Listen = "127.0.0.1:99999" }, want: []string{"targets[0].listen: \"127.0.0.1:99999\": port must be a number"}},
		{name: "name with space", mutate: func(c *Config) { c.Targets[0].Target.Name = "a b" }, want: []string{"targets[0].name: \"a b\" must not contain spaces"}},
		{
			name: "duplicates",
			mutate: func(c *Config) {
				c.Targets[0].Listen = "127.0.0.1:6432"
				c.Targets = append(c.Targets, c.Targets[0])
			},
			want: []string{`targets[1].name: "t1" is already the name of targets[0]`, "targets[1].listen: 127.0.0.1:6432 is already the listen address of targets[0]"},
		},
		{
			name:   "port 0 twice is fine",
			mutate: func(c *Config) { t2 := c.Targets[0]; t2.Target.Name = "t2"; c.Targets = append(c.Targets, t2) },
		},
		{name: "credential", mutate: func(c *Config) { c.Targets[0].Credential = credstore.Ref{Password: "bogus:x"} }, want: []string{`targets[0].credential.password: unknown reference scheme "bogus"`}},
		{name: "tls and disable_tls", mutate: func(c *Config) { c.Targets[0].TLS = &tls.Config{} }, want: []string{"targets[0].disable_tls: set either tls or disable_tls, not both"}},
		{
			name:   "generated TLS needs a data dir",
			mutate: func(c *Config) { c.DataDir = ""; c.Targets[0].DisableTLS = false },
			want:   []string{"data_dir: required to generate a TLS certificate for targets[0]"},
		},
		{
			name: "negative limits",
			mutate: func(c *Config) {
				tc := &c.Targets[0]
				tc.MaxSessions, tc.HandshakeTimeout = -1, -1
				tc.Limits.MaxMessageSize, tc.Limits.RecordRows, tc.Limits.RecordBytes, tc.Limits.ConnectTimeout = -1, -1, -1, -1
				tc.Limits.ClientWriteTimeout = -1
			},
			want: []string{
				"targets[0].max_sessions", "targets[0].handshake_timeout", "targets[0].limits.max_message_size",
				"targets[0].limits.record_rows", "targets[0].limits.record_bytes", "targets[0].limits.connect_timeout",
				"targets[0].limits.client_write_timeout",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{sink: &memSink{}, logs: &syncBuffer{}}
			cfg := baseConfig(t, e, protoLine)
			tc.mutate(&cfg)
			err := cfg.Validate()
			if len(tc.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}
