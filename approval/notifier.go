package approval

import (
	"context"
	"time"
)

// EventType says what happened to a request.
type EventType string

// Event types.
const (
	EventRequested EventType = "approval.requested"
	EventResolved  EventType = "approval.resolved"
)

// Event is what a Notifier is told.
type Event struct {
	Type    EventType `json:"type"`
	Request *Request  `json:"request"`
	// URL is the request's approval page, "" when none is configured.
	URL string `json:"url,omitempty"`
	// At is when the event happened.
	At time.Time `json:"at"`
}

// Notifier tells approvers about requests. Notify is called from the
// Broker's delivery workers, never from a waiting command, with a context
// bounded by Config.NotifyTimeout. A failure is logged; it never decides
// a request, which stays pending and can still be decided through the API.
type Notifier interface {
	Notify(ctx context.Context, ev Event) error
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(ctx context.Context, ev Event) error

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, ev Event) error { return f(ctx, ev) }

// notify queues ev for the notifiers without blocking; when the queue is
// full the event is dropped and logged (the request can still be found
// and decided through List).
func (b *Broker) notify(t EventType, r *Request) {
	if len(b.cfg.Notifiers) == 0 {
		return
	}
	ev := Event{Type: t, Request: r.Clone(), URL: b.URL(r.ID), At: b.now()}
	select {
	case b.events <- ev:
	default:
		b.log.Warn("approval: notification queue full; event dropped", "request", r.ID, "session", r.SessionID, "event", t)
	}
}

// deliver is one delivery worker.
func (b *Broker) deliver(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-b.events:
			for _, n := range b.cfg.Notifiers {
				nctx, cancel := context.WithTimeout(ctx, b.cfg.NotifyTimeout)
				err := n.Notify(nctx, ev)
				cancel()
				if err != nil && ctx.Err() == nil {
					b.log.Warn("approval: notification failed", "request", ev.Request.ID, "session", ev.Request.SessionID,
						"event", ev.Type, "notifier", notifierName(n), "err", err)
				}
			}
		}
	}
}

func notifierName(n Notifier) string {
	if s, ok := n.(interface{ Name() string }); ok {
		return s.Name()
	}
	return "notifier"
}
