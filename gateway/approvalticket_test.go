package gateway

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/sluicegw/sluice/protocol"
)

func TestSameCommandComparesEverythingPolicySees(t *testing.T) {
	base := func() *protocol.Command {
		return &protocol.Command{Protocol: "http", Kind: protocol.KindRequest, Text: "POST /refunds",
			HTTP:  &protocol.HTTP{Method: "POST", Path: "/refunds", Body: map[string]any{"amount": int64(12)}},
			Attrs: map[string]string{"body_sha256": "ab"}}
	}
	stored := base()
	stored.HTTP.Body = map[string]any{"amount": 12.0} // as the approval store gives it back
	assert.True(t, sameCommand(stored, base()))
	other := base()
	other.HTTP.Body = map[string]any{"amount": int64(12000)}
	assert.False(t, sameCommand(stored, other))
	other = base()
	other.Attrs["body_sha256"] = "cd"
	assert.False(t, sameCommand(stored, other))
	other = base()
	other.HTTP.Headers = map[string]string{"x-tenant": "b"}
	assert.False(t, sameCommand(stored, other))
}
