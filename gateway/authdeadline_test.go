package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sluicegw/sluice/identity"
)

// An identity provider that does not answer is given up on before the
// handshake deadline cuts the connection, so the client reads why it is
// refused instead of finding its connection closed (found by
// test/e2e TestFaultIdentityProviderUnreachable).
func TestAuthenticatorThatHangsIsRefusedBeforeTheHandshakeDeadline(t *testing.T) {
	const handshake = time.Second
	e := newEnv(t, protoLine, func(c *Config) {
		c.Targets[0].HandshakeTimeout = handshake
		c.Authenticator = identity.AuthenticatorFunc(func(ctx context.Context, _ identity.Credentials) (*identity.Identity, error) {
			<-ctx.Done() // an identity provider that never answers
			return nil, ctx.Err()
		})
	})
	c := dial(t, e.g.Addr("t1"))
	start := time.Now()
	assert.Equal(t, "ERR "+msgIdPUnavailable, c.send("AUTH "+goodToken))
	took := time.Since(start)
	assert.Greater(t, took, handshake/2)
	assert.Less(t, took, handshake, "refused before the handshake deadline")
	c.expectClosed()
	e.waitNoSessions(t)
}
