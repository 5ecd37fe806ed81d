package protocol

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type nopPlugin struct{ name string }

func (p nopPlugin) Name() string                                   { return p.name }
func (p nopPlugin) Serve(context.Context, net.Conn, Session) error { return nil }

// registered counts TestRegistry's runs, so -count=N registers a fresh
// name each time (the registry, like database/sql's, cannot unregister).
var registered int

func TestRegistry(t *testing.T) {
	registered++
	name := fmt.Sprintf("test-proto-%d", registered)
	Register(name, func(t *Target) (Plugin, error) { return nopPlugin{name: t.Name}, nil })
	f, err := Lookup(name)
	require.NoError(t, err)
	p, err := f(&Target{Name: "x"})
	require.NoError(t, err)
	assert.Equal(t, "x", p.Name())
	assert.Contains(t, Protocols(), name)

	_, err = Lookup("no-such-proto")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `no plugin registered for "no-such-proto"`)
	assert.Contains(t, err.Error(), name, "the error lists what is registered")

	assert.Panics(t, func() { Register(name, func(*Target) (Plugin, error) { return nil, nil }) })
	assert.Panics(t, func() { Register("", nil) })
}

func TestDecisionAllowed(t *testing.T) {
	assert.True(t, Decision{Action: Allow}.Allowed())
	for _, a := range []Action{Deny, RequireApproval, "", "bogus"} {
		assert.False(t, Decision{Action: a}.Allowed(), a)
	}
}
