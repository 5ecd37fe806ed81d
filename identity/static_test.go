package identity

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStaticTokensConfigErrors(t *testing.T) {
	t.Setenv("SLUICE_TEST_TOKEN", "from-env")
	tests := []struct {
		name string
		in   StaticToken
		err  string
	}{
		{"no subject", StaticToken{SHA256: HashToken("x")}, "identity: token 0: subject is required"},
		{"both", StaticToken{Subject: "a", SHA256: HashToken("x"), Env: "X"}, "identity: token 0 (a): set sha256 or env, not both"},
		{"neither", StaticToken{Subject: "a"}, "identity: token 0 (a): one of sha256 or env is required"},
		{"short digest", StaticToken{Subject: "a", SHA256: "abcd"}, "identity: token 0 (a): sha256 must be 64 hex digits"},
		{"unset env", StaticToken{Subject: "a", Env: "SLUICE_TEST_NO_SUCH_VAR"}, "identity: token 0 (a): environment variable SLUICE_TEST_NO_SUCH_VAR is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewStaticTokens([]StaticToken{tt.in})
			assert.EqualError(t, err, tt.err)
		})
	}
}

func TestStaticTokensAuthenticate(t *testing.T) {
	t.Setenv("SLUICE_TEST_TOKEN", "from-env")
	st, err := NewStaticTokens([]StaticToken{
		{Subject: "hashed", SHA256: HashToken("tok-1"), Groups: []string{"g"}},
		{Subject: "env", Env: "SLUICE_TEST_TOKEN"},
	})
	require.NoError(t, err)
	ctx := context.Background()

	id, err := st.Authenticate(ctx, Credentials{Token: "tok-1"})
	require.NoError(t, err)
	assert.Equal(t, "hashed", id.Subject)
	assert.Equal(t, MethodToken, id.Method)
	id.Groups[0] = "mutated"
	id2, _ := st.Authenticate(ctx, Credentials{Token: "tok-1"})
	assert.Equal(t, []string{"g"}, id2.Groups, "callers cannot change the configured identity")

	id, err = st.Authenticate(ctx, Credentials{Token: "from-env"})
	require.NoError(t, err)
	assert.Equal(t, "env", id.Subject)

	for _, bad := range []string{"", "tok-2", "from-env "} {
		_, err := st.Authenticate(ctx, Credentials{Token: bad})
		require.ErrorIs(t, err, ErrUnauthenticated)
		if bad != "" {
			assert.NotContains(t, err.Error(), bad)
		}
	}
}

func TestChainStopsOnProviderFailure(t *testing.T) {
	refuse := AuthenticatorFunc(func(context.Context, Credentials) (*Identity, error) { return nil, ErrUnauthenticated })
	down := AuthenticatorFunc(func(context.Context, Credentials) (*Identity, error) { return nil, assert.AnError })
	ok := AuthenticatorFunc(func(context.Context, Credentials) (*Identity, error) { return &Identity{Subject: "x"}, nil })

	id, err := Chain{refuse, ok}.Authenticate(context.Background(), Credentials{Token: "t"})
	require.NoError(t, err)
	assert.Equal(t, "x", id.Subject)

	_, err = Chain{down, ok}.Authenticate(context.Background(), Credentials{Token: "t"})
	assert.ErrorIs(t, err, assert.AnError, "an unreachable provider fails closed instead of falling through")

	_, err = Chain{refuse}.Authenticate(context.Background(), Credentials{Token: "t"})
	assert.ErrorIs(t, err, ErrUnauthenticated)
}

func TestInGroup(t *testing.T) {
	var nilID *Identity
	assert.False(t, nilID.InGroup("a"))
	assert.True(t, (&Identity{Groups: []string{"a", "b"}}).InGroup("b"))
}
