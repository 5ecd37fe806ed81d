package vaulttest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fixture stands in for a Vault server; these checks keep it honest
// about the parts of Vault's behaviour the credstore/vault tests rely on.
func TestFixtureChecksTokens(t *testing.T) {
	s := New()
	defer s.Close()
	s.Put("secret", "pg", map[string]any{"password": "pw"})
	s.AddToken("good", TokenOptions{TTL: time.Hour})

	get := func(path, tok string) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodGet, s.URL+path, nil)
		require.NoError(t, err)
		if tok != "" {
			req.Header.Set("X-Vault-Token", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		return resp.StatusCode, body
	}
	code, body := get("/v1/secret/data/pg", "")
	assert.Equal(t, 403, code)
	assert.Equal(t, []any{"permission denied"}, body["errors"])
	code, _ = get("/v1/secret/data/pg", "bad")
	assert.Equal(t, 403, code)
	code, body = get("/v1/secret/data/pg", "good")
	assert.Equal(t, 200, code)
	data := body["data"].(map[string]any)
	assert.Equal(t, map[string]any{"password": "pw"}, data["data"])
	assert.EqualValues(t, 1, data["metadata"].(map[string]any)["version"])
	code, _ = get("/v1/auth/token/lookup-self", "good")
	assert.Equal(t, 200, code)

	s.ExpireToken("good")
	code, _ = get("/v1/auth/token/lookup-self", "good")
	assert.Equal(t, 403, code)
	assert.Equal(t, 3, s.Count(OpRead))
	assert.Equal(t, 2, s.Count(OpLookupSelf))

	resp, err := http.Post(s.URL+"/v1/auth/approle/login", "application/json", strings.NewReader(`{"role_id":"r","secret_id":"s"}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 400, resp.StatusCode, "no such role")
}
