package protocol

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type nopPlugin struct{ name string }

func (p nopPlugin) Name() string                                   { return p.name }
func (p nopPlugin) Serve(context.Context, net.Conn, Session) error { return nil }

func TestRegistry(t *testing.T) {
	Register("test-proto", func(t *Target) (Plugin, error) { return nopPlugin{name: t.Name}, nil })
	f, err := Lookup("test-proto")
	require.NoError(t, err)
	p, err := f(&Target{Name: "x"})
	require.NoError(t, err)
	assert.Equal(t, "x", p.Name())
	assert.Contains(t, Protocols(), "test-proto")

	_, err = Lookup("no-such-proto")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `no plugin registered for "no-such-proto"`)
	assert.Contains(t, err.Error(), "test-proto", "the error lists what is registered")

	assert.Panics(t, func() { Register("test-proto", func(*Target) (Plugin, error) { return nil, nil }) })
	assert.Panics(t, func() { Register("", nil) })
}

func TestDecisionAllowed(t *testing.T) {
	assert.True(t, Decision{Action: Allow}.Allowed())
	for _, a := range []Action{Deny, RequireApproval, "", "bogus"} {
		assert.False(t, Decision{Action: a}.Allowed(), a)
	}
}
