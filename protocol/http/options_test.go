package http

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/protocol"
)

func TestHTTPOptions(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, []byte("not a certificate"), 0o600))
	tests := []struct {
		name    string
		addr    string
		opts    map[string]string
		wantErr string
		check   func(t *testing.T, o options)
	}{
		{name: "defaults", addr: "api.internal:8443", check: func(t *testing.T, o options) {
			assert.Equal(t, "https://api.internal:8443", o.base.String())
			assert.Equal(t, credBearer, o.credScheme)
			assert.Equal(t, "Authorization", o.credHeader)
			assert.Equal(t, int64(DefaultMaxBody), o.maxBody)
			assert.False(t, o.async)
			assert.Equal(t, "api.internal", o.backendTLS.ServerName)
			assert.Equal(t, []string{"Accept", "Content-Length", "Content-Type"}, o.headers)
		}},
		{name: "url with prefix", addr: "http://127.0.0.1:8080/v1/", check: func(t *testing.T, o options) {
			assert.Equal(t, "http", o.base.Scheme)
			assert.Equal(t, "/v1", o.base.Path)
			assert.Nil(t, o.backendTLS)
		}},
		{name: "everything", addr: "127.0.0.1:80", opts: map[string]string{
			"scheme": "http", "h2c": "true", "credential_scheme": "header", "credential_header": "x-api-key",
			"approval": "async", "max_body": "64KiB", "record_body_bytes": "1024", "headers": "X-Tenant, x-request-id",
			"idle_timeout": "30s",
		}, check: func(t *testing.T, o options) {
			assert.True(t, o.h2c)
			assert.Equal(t, "X-Api-Key", o.credHeader)
			assert.True(t, o.async)
			assert.Equal(t, int64(64<<10), o.maxBody)
			assert.Equal(t, 1024, o.recordBody)
			assert.Contains(t, o.headers, "X-Tenant")
			assert.Contains(t, o.headers, "X-Request-Id")
		}},
		{name: "typo", addr: "h:1", opts: map[string]string{"credential_shceme": "basic"}, wantErr: "options.credential_shceme: unknown option"},
		{name: "mcp without the extension", addr: "h:1", opts: map[string]string{"mcp": "true"}, wantErr: "import github.com/sluicegw/sluice/protocol/http/mcp"},
		{name: "bad scheme", addr: "h:1", opts: map[string]string{"scheme": "ftp"}, wantErr: "options.scheme"},
		{name: "url credentials", addr: "https://u:p@h:1", wantErr: "must not hold credentials"},
		{name: "not host:port", addr: "h", wantErr: "not host:port"},
		{name: "header scheme needs a header", addr: "h:1", opts: map[string]string{"credential_scheme": "header"}, wantErr: "options.credential_header: required"},
		{name: "hop-by-hop credential header", addr: "h:1", opts: map[string]string{"credential_header": "Connection"}, wantErr: "cannot carry the credential"},
		{name: "authorization never selected", addr: "h:1", opts: map[string]string{"headers": "authorization"}, wantErr: "never recorded"},
		{name: "cookie never selected", addr: "h:1", opts: map[string]string{"headers": "Cookie"}, wantErr: "never recorded"},
		{name: "bad size", addr: "h:1", opts: map[string]string{"max_body": "lots"}, wantErr: "options.max_body"},
		{name: "bad approval", addr: "h:1", opts: map[string]string{"approval": "later"}, wantErr: "options.approval"},
		{name: "h2c on https", addr: "h:1", opts: map[string]string{"h2c": "true"}, wantErr: "options.h2c"},
		{name: "ca on http", addr: "http://h:1", opts: map[string]string{"ca_file": ca}, wantErr: "only applies to an https backend"},
		{name: "bad ca", addr: "h:1", opts: map[string]string{"ca_file": ca}, wantErr: "holds no PEM certificate"},
		{name: "missing ca", addr: "h:1", opts: map[string]string{"ca_file": ca + ".missing"}, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(&protocol.Target{Name: "t", Protocol: Name, Address: tt.addr, Options: tt.opts})
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			tt.check(t, o)
		})
	}
}

func TestHTTPParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "4096": 4096, "64KiB": 64 << 10, "1 MiB": 1 << 20, "2GiB": 2 << 30, "10B": 10} {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "-1", "1.5MiB", "1MB", "9999999999999GiB"} {
		_, err := parseSize(in)
		assert.Error(t, err, in)
	}
}

func TestHTTPBearerToken(t *testing.T) {
	tests := []struct {
		header              []string
		tok                 string
		present, wellFormed bool
	}{
		{nil, "", false, true},
		{[]string{"Bearer abc"}, "abc", true, true},
		{[]string{"bearer  abc "}, "abc", true, true},
		{[]string{"Basic YTpi"}, "", true, false},
		{[]string{"Bearer"}, "", true, false},
		{[]string{"Bearer a b"}, "", true, false},
		{[]string{"Bearer a", "Bearer b"}, "", true, false},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, v := range tt.header {
			h.Add("Authorization", v)
		}
		tok, present, ok := bearerToken(h)
		assert.Equal(t, tt.tok, tok, "%q", tt.header)
		assert.Equal(t, tt.present, present, "%q", tt.header)
		assert.Equal(t, tt.wellFormed, ok, "%q", tt.header)
	}
}

func TestHTTPRegisterExtensionRefusesClashes(t *testing.T) {
	f := func(*protocol.Target) (Extension, error) { return nil, nil }
	assert.Panics(t, func() { RegisterExtension("", f) })
	assert.Panics(t, func() { RegisterExtension("Bad-Name", f) })
	assert.Panics(t, func() { RegisterExtension("credential", f) }, "prefix of credential_scheme")
	assert.Panics(t, func() { RegisterExtension("x", nil) })
}
