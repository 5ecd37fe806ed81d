package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluicegw/sluice/approval"
)

// Webhook headers.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the
	// body under Webhook.Secret.
	SignatureHeader = "X-Sluice-Signature"
	// TimestampHeader carries the Unix time the event happened; the body's
	// "at" field, covered by the signature, holds the same time, so a
	// receiver can refuse stale replays.
	TimestampHeader = "X-Sluice-Timestamp"
	EventHeader     = "X-Sluice-Event"
	// DeliveryHeader identifies the event ("<request id>.<event type>"),
	// the same on every retry, for receivers to drop duplicates.
	DeliveryHeader = "X-Sluice-Delivery"
)

// WebhookPayload is the JSON body a Webhook posts.
type WebhookPayload struct {
	Type    approval.EventType `json:"type"`
	At      time.Time          `json:"at"`
	Request Summary            `json:"request"`
	// URL is the request's approval page, "" when none is configured.
	URL string `json:"url,omitempty"`
}

// Webhook posts every event as JSON to URL, signed with Secret.
type Webhook struct {
	URL string
	// Secret keys the HMAC in SignatureHeader; receivers verify with it
	// (VerifySignature).
	Secret string
	// MaxAttempts bounds the tries per event (network errors, 408, 429 and
	// 5xx are retried); 5.
	MaxAttempts int
	// Backoff is the pause before the first retry, doubled each time
	// (capped at 30s, with jitter); 500ms. The broker's NotifyTimeout
	// bounds the whole.
	Backoff time.Duration
	// MaxCommandChars cuts the command text; 2000.
	MaxCommandChars int
	// Client sends the requests; nil: one with a 10s timeout per attempt.
	Client *http.Client
}

var _ approval.Notifier = (*Webhook)(nil)

// Name names the notifier in logs.
func (w *Webhook) Name() string { return "webhook" }

// Validate reports the first bad field.
func (w *Webhook) Validate() error {
	return validate("Webhook.URL", w.URL, "Webhook.Secret", w.Secret)
}

func validate(urlField, u, secretField, secret string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return fmt.Errorf("notify: %s: not an http(s) URL", urlField) // the URL may be a secret: not repeated
	}
	if secretField != "" && secret == "" {
		return fmt.Errorf("notify: %s: required (receivers verify %s with it)", secretField, SignatureHeader)
	}
	return nil
}

// Notify implements approval.Notifier.
func (w *Webhook) Notify(ctx context.Context, ev approval.Event) error {
	if err := w.Validate(); err != nil {
		return err
	}
	if ev.Request == nil {
		return errors.New("notify: webhook: event without a request")
	}
	body, err := json.Marshal(WebhookPayload{Type: ev.Type, At: ev.At, Request: Summarize(ev.Request, w.MaxCommandChars), URL: ev.URL})
	if err != nil {
		return fmt.Errorf("notify: webhook: encode: %w", err)
	}
	sig := Sign(w.Secret, body)
	err = newRetrier(w.Client, w.MaxAttempts, w.Backoff).post(ctx, w.URL, body, func(h http.Header) {
		h.Set(SignatureHeader, sig)
		h.Set(TimestampHeader, unix(ev.At))
		h.Set(EventHeader, string(ev.Type))
		h.Set(DeliveryHeader, ev.Request.ID+"."+string(ev.Type))
	})
	if err != nil {
		return fmt.Errorf("notify: webhook for request %s: %w", ev.Request.ID, err)
	}
	return nil
}

// Sign returns the SignatureHeader value for body.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature reports whether header (a SignatureHeader value) signs
// body under secret, in constant time.
func VerifySignature(secret string, body []byte, header string) bool {
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	mac, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal(mac, m.Sum(nil))
}
