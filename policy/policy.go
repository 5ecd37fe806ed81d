// Package policy decides, per command, what may run. Its central type is
// Decider, which turns an Input (who, which target, which session, what
// command, when) into a protocol.Decision.
package policy

import (
	"context"
	"time"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// Input is everything a policy may look at for one command.
type Input struct {
	Identity *identity.Identity
	Target   *protocol.Target
	Session  protocol.SessionInfo
	Command  *protocol.Command
	Now      time.Time
}

// Decider decides what happens to a command. An error means no decision
// could be made; the caller must deny.
type Decider interface {
	Decide(ctx context.Context, in *Input) (protocol.Decision, error)
}

// DeciderFunc adapts a function to Decider.
type DeciderFunc func(ctx context.Context, in *Input) (protocol.Decision, error)

// Decide calls f.
func (f DeciderFunc) Decide(ctx context.Context, in *Input) (protocol.Decision, error) {
	return f(ctx, in)
}
