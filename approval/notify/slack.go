package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sluicegw/sluice/approval"
)

// Slack posts events to a Slack incoming webhook
// (https://api.slack.com/messaging/webhooks): a fallback text and Block
// Kit blocks showing the command, requester, target and rule, with a
// button linking to the request's approval page.
type Slack struct {
	// WebhookURL is the incoming webhook's URL. It is a secret: it never
	// appears in errors.
	WebhookURL string
	// ApproveURLBase is the base of the approval page; the link is
	// ApproveURLBase + "/" + request ID. Empty: the event's URL (the
	// broker's Config.ApproveURL).
	ApproveURLBase string
	// MaxCommandChars cuts the command text; 1000 (a section holds 3000).
	MaxCommandChars int
	MaxAttempts     int           // as Webhook.MaxAttempts; 5
	Backoff         time.Duration // as Webhook.Backoff; 500ms
	Client          *http.Client
}

var _ approval.Notifier = (*Slack)(nil)

// Name names the notifier in logs.
func (s *Slack) Name() string { return "slack" }

// Validate reports the first bad field.
func (s *Slack) Validate() error { return validate("Slack.WebhookURL", s.WebhookURL, "", "") }

// SlackMessage is an incoming-webhook message.
type SlackMessage struct {
	// Text is the fallback shown in notifications.
	Text   string           `json:"text"`
	Blocks []map[string]any `json:"blocks"`
}

// Notify implements approval.Notifier.
func (s *Slack) Notify(ctx context.Context, ev approval.Event) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if ev.Request == nil {
		return errors.New("notify: slack: event without a request")
	}
	body, err := json.Marshal(s.Message(ev))
	if err != nil {
		return fmt.Errorf("notify: slack: encode: %w", err)
	}
	if err := newRetrier(s.Client, s.MaxAttempts, s.Backoff).post(ctx, s.WebhookURL, body, nil); err != nil {
		return fmt.Errorf("notify: slack for request %s: %w", ev.Request.ID, err)
	}
	return nil
}

// escape makes text safe in Slack mrkdwn.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func mrkdwn(s string) map[string]any  { return map[string]any{"type": "mrkdwn", "text": s} }
func plain(s string) map[string]any   { return map[string]any{"type": "plain_text", "text": s} }
func section(s string) map[string]any { return map[string]any{"type": "section", "text": mrkdwn(s)} }

func who(p Person) string {
	switch {
	case p.Name != "" && p.Email != "":
		return fmt.Sprintf("%s (%s)", p.Name, p.Email)
	case p.Name != "":
		return p.Name
	case p.Email != "":
		return p.Email
	}
	return p.Subject
}

// Message builds the message for ev.
func (s *Slack) Message(ev approval.Event) SlackMessage {
	limit := s.MaxCommandChars
	if limit <= 0 {
		limit = 1000
	}
	sum := Summarize(ev.Request, limit)
	link := ev.URL
	if s.ApproveURLBase != "" {
		link = strings.TrimRight(s.ApproveURLBase, "/") + "/" + sum.ID
	}
	what := sum.Command.Protocol
	if sum.Command.Kind != "" {
		what += " " + string(sum.Command.Kind)
	}
	code := "```" + strings.ReplaceAll(escape(sum.Command.Text), "```", "` ` `") + "```"
	rules := strings.Join(sum.Rules, ", ")
	if rules == "" {
		rules = "(unnamed)"
	}

	if ev.Type == approval.EventResolved {
		text := fmt.Sprintf("Approval request %s (%s on %s by %s) is %s", sum.ID, what, sum.Target.Name, who(sum.Requester), sum.State)
		detail := fmt.Sprintf("*%s*: %s on *%s* requested by %s", strings.ToUpper(string(sum.State)), escape(what),
			escape(sum.Target.Name), escape(who(sum.Requester)))
		var votes []string
		for _, d := range sum.Decisions {
			verb := "approved"
			if !d.Approve {
				verb = "denied"
			}
			v := fmt.Sprintf("%s %s", escape(who(d.Approver)), verb)
			if d.Reason != "" {
				v += ": " + escape(d.Reason)
			}
			votes = append(votes, v)
		}
		if len(votes) > 0 {
			detail += "\n" + strings.Join(votes, "\n")
		} else if sum.ResolvedReason != "" {
			detail += "\n" + escape(sum.ResolvedReason)
		}
		return SlackMessage{Text: text, Blocks: []map[string]any{
			section(detail + "\n" + code),
			{"type": "context", "elements": []any{mrkdwn(fmt.Sprintf("Request `%s` · session `%s`", sum.ID, escape(sum.SessionID)))}},
		}}
	}

	text := fmt.Sprintf("Approval needed: %s wants to run a %s on %s (rule %s)", who(sum.Requester), what, sum.Target.Name, rules)
	if link != "" {
		text += ": " + link
	}
	approvers := strings.Join(sum.Approvers, " or ")
	if sum.Quorum > 1 {
		approvers += fmt.Sprintf(" (%d distinct approvers)", sum.Quorum)
	}
	fields := []any{
		mrkdwn("*Rule*\n" + escape(rules)),
		mrkdwn("*Approvers*\n" + escape(approvers)),
		mrkdwn(fmt.Sprintf("*Expires*\n<!date^%d^{date_short_pretty} {time}|%s>", sum.ExpiresAt.Unix(), sum.ExpiresAt.Format(time.RFC3339))),
		mrkdwn("*Request*\n`" + sum.ID + "`"),
	}
	if sum.Reason != "" {
		r, _ := Truncate(sum.Reason, 500)
		fields = append(fields, mrkdwn("*Why*\n"+escape(r)))
	}
	if sum.GrantWindow != "" {
		fields = append(fields, mrkdwn("*Grant window*\n"+sum.GrantWindow+" for the same command"))
	}
	header, _ := Truncate("Approval needed: "+sum.Target.Name, 140)
	blocks := []map[string]any{
		{"type": "header", "text": plain(header)},
		section(fmt.Sprintf("*%s* wants to run this %s on *%s* (%s):\n%s", escape(who(sum.Requester)), escape(what),
			escape(sum.Target.Name), escape(sum.Target.Protocol), code)),
		{"type": "section", "fields": fields},
	}
	if link != "" {
		blocks = append(blocks, map[string]any{"type": "actions", "elements": []any{map[string]any{
			"type": "button", "text": plain("Review and approve"), "url": link, "style": "primary", "action_id": "sluice_review",
		}}})
	}
	blocks = append(blocks, map[string]any{"type": "context", "elements": []any{mrkdwn(fmt.Sprintf(
		"Or: `sluice approvals approve %s` · session `%s` · gateway `%s`", sum.ID, escape(sum.SessionID), escape(sum.GatewayID)))}})
	return SlackMessage{Text: text, Blocks: blocks}
}
