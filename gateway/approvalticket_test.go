package gateway

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sluicegw/sluice/protocol"
)

func TestTicketLedgerLetsAnApprovalThroughOnce(t *testing.T) {
	var l ticketLedger
	now := time.Now()
	assert.True(t, l.take("A", now.Add(time.Minute), now))
	assert.False(t, l.take("A", now.Add(time.Minute), now), "used")
	assert.True(t, l.take("B", now.Add(time.Second), now))
	// Entries are forgotten once their window has closed.
	later := now.Add(2 * time.Second)
	assert.True(t, l.take("C", later.Add(time.Minute), later))
	assert.NotContains(t, l.used, "B")
	assert.Contains(t, l.used, "A")
}

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
