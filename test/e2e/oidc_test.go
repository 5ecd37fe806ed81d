package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/identity/oidc"
	"github.com/sluicegw/sluice/internal/oidctest"
	"github.com/sluicegw/sluice/internal/pgtest"
)

// TestOIDCThroughGateway: agents present an OIDC access token as their
// PostgreSQL password; psql gets in with a valid one and is refused, with
// the reason, for each kind of bad token. Key rotation, an issuer outage
// with cached keys, and a token that expires mid-session behave as a
// security gateway must.
func TestOIDCThroughGateway(t *testing.T) {
	pgtest.Require(t)
	requireTool(t, "psql")
	iss := oidctest.New(t)
	authn, err := oidc.New(oidc.Config{Issuers: []oidc.IssuerConfig{{
		Issuer: iss.URL, Audiences: []string{"sluice"}, ClockSkew: time.Second,
		GroupsClaim: "realm_access.roles", MinRefreshInterval: 200 * time.Millisecond,
	}}})
	require.NoError(t, err)
	e := startGatewayWith(t, gatewayOptions{grace: 2 * time.Second, auth: authn}, pgTarget("pg"))
	host, port := e.hostPort(t, "pg")

	claims := func(mod func(map[string]any)) map[string]any {
		c := iss.Claims(subject, "sluice")
		c["realm_access"] = map[string]any{"roles": []any{"agents"}}
		if mod != nil {
			mod(c)
		}
		return c
	}
	psql := func(token string) cmdResult {
		cmd := exec.Command("psql", "-X", "-At", "-c", "select current_user is not null")
		cmd.Env = psqlEnv(t, host, port, "test", token, "require")
		return run(t, cmd, opTimeout)
	}
	accepted := func(token, what string) {
		t.Helper()
		r := psql(token)
		require.Equal(t, 0, r.code, "%s: %s", what, r.stderr)
		assert.Equal(t, "t", strings.TrimSpace(r.stdout))
	}
	refused := func(token, what, reason string) {
		t.Helper()
		r := psql(token)
		require.NotEqual(t, 0, r.code, "%s must be refused", what)
		assert.Contains(t, r.stderr, "authentication failed", what)
		assert.NotContains(t, r.stderr, token, "the token is never echoed")
		if reason != "" {
			assert.Contains(t, e.logs.String(), reason, "%s: the gateway log names the reason", what)
		}
	}

	accepted(iss.Mint(claims(nil)), "a valid token")
	refused(iss.Mint(claims(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() })), "an expired token", "token expired")
	refused(iss.Mint(claims(func(c map[string]any) { c["aud"] = "someone-else" })), "a wrong audience", "expected one of")
	refused(iss.Mint(claims(func(c map[string]any) { c["iss"] = "https://evil.example" })), "a wrong issuer", "is not configured")
	refused(iss.MintForged(iss.SigningKey("RS256").ID, claims(nil)), "a bad signature", "signature")
	refused(iss.MintNone(claims(nil)), "alg none", "an unsigned token")

	// An unknown key id: refused before the issuer publishes the key,
	// accepted after (one refetch, rate-limited).
	k, err := oidctest.NewKey("RS256")
	require.NoError(t, err)
	tok := iss.MintWith(k, claims(nil), nil)
	refused(tok, "an unknown key id", "unknown key id")
	iss.Publish(k)
	time.Sleep(250 * time.Millisecond) // past the refetch rate limit
	accepted(tok, "the same token after rotation")

	// The issuer goes down: cached keys keep verifying.
	iss.Down(oidctest.Refused)
	accepted(iss.Mint(claims(nil)), "a valid token while the issuer is down")
	require.NoError(t, iss.Up())

	// A token that expires mid-session ends the session with a FATAL
	// naming the expiry, recorded as the end reason.
	short := iss.Mint(claims(func(c map[string]any) { c["exp"] = time.Now().Add(3 * time.Second).Unix() }))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, "host="+host+" port="+port+" user="+subject+" dbname=test sslmode=require password="+short)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	require.NoError(t, conn.Ping(ctx))
	var err2 error
	require.Eventually(t, func() bool {
		_, err2 = conn.Exec(ctx, "select 1")
		return err2 != nil
	}, 10*time.Second, 200*time.Millisecond, "the session outlived its token")
	assert.True(t, conn.IsClosed())
	t.Logf("client saw: %v", err2)
	assert.Contains(t, err2.Error(), "expired")
	require.NoError(t, e.g.Shutdown(ctx))
	found := false
	for _, path := range recordingPaths(t, e.recDir) {
		rec := readRecording(t, path)
		if last := rec.entries[len(rec.entries)-1]; last.Reason == "credential expired" {
			found = true
		}
	}
	assert.True(t, found, "a recording ends with reason 'credential expired'")
	assert.Contains(t, e.logs.String(), "credential expired: ending the session")
}
