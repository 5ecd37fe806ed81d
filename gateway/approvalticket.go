package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/recording"
)

// Approval ids presented with a retried command (protocol.WithApprovalIDs):
// a client that cannot wait for approvers (an HTTP caller with a short
// timeout, protocol.WithAsyncApproval) files the request, goes away, and
// sends the same command again with the request's id. An approved request
// lets that command through once, across every gateway sharing the
// approval store (approval.Broker.Redeem).

// maxPresentedIDs bounds the ids looked up for one command.
const maxPresentedIDs = 8

// redeem looks among the presented approval request ids for one that
// covers cmd, a command policy says needs approval (decision d, already
// recorded as d.Seq). It reports false when none does; the command is
// then filed for approval as usual. Otherwise the decision is:
//
//   - approved and not used before, within the request's timeout after
//     its approval: allow, once;
//   - pending, under protocol.WithAsyncApproval: require_approval again,
//     with the same id (without it the command is filed anew and waited
//     on: a pending request cannot be joined);
//   - anything else (denied, expired, withdrawn, abandoned, used): deny.
//
// Every outcome is recorded as an approval entry of the command.
func (s *session) redeem(ctx context.Context, cmd *protocol.Command, d protocol.Decision, ids []string) (protocol.Decision, bool) {
	b := s.g.cfg.Approvals
	info := s.Info()
	if info.Identity == nil || b == nil {
		return d, false
	}
	step := func(out protocol.Decision, msg string) (protocol.Decision, bool) {
		if _, err := s.write(&recording.Entry{Type: recording.TypeApproval, CommandSeq: d.Seq, Message: msg}); err != nil {
			s.log.Error("recording an approval step failed; refusing the command", "error", err)
			return protocol.Decision{Action: protocol.Deny, Rules: d.Rules, Message: msgRecordingCommand, Seq: d.Seq}, true
		}
		return out, true
	}
	key := approval.GrantKeyFor(info.Identity, info.Target.Name, *cmd)
	for i, id := range ids {
		if i == maxPresentedIDs {
			break
		}
		r, err := b.Get(ctx, id)
		if err != nil {
			s.log.Info("presented approval request not found", "request", id, "error", err)
			continue
		}
		if r.GrantKey != key || r.Requester.Subject != info.Identity.Subject || r.Requester.Issuer != info.Identity.Issuer ||
			r.Target.Name != info.Target.Name || !sameCommand(&r.Command, cmd) {
			s.log.Info("presented approval request is for another command, caller or target; ignored", "request", id)
			continue
		}
		now := time.Now()
		switch r.State {
		case approval.StateApproved:
			until := r.ResolvedAt.Add(max(r.Timeout, time.Minute))
			if now.After(until) {
				return step(protocol.Decision{Action: protocol.Deny, Rules: d.Rules, Seq: d.Seq,
					Message: fmt.Sprintf("sluice: approval request %s was approved at %s and could be used until %s; send the command without it to ask again",
						id, r.ResolvedAt.UTC().Format(time.RFC3339), until.UTC().Format(time.RFC3339))},
					fmt.Sprintf("approval request %s presented after its use window closed", id))
			}
			// Used once, on whichever gateway sharing the store gets
			// there first; a store that cannot say denies.
			if _, err := b.Redeem(ctx, id, info.Identity); err != nil {
				if errors.Is(err, approval.ErrUsed) {
					return step(protocol.Decision{Action: protocol.Deny, Rules: d.Rules, Seq: d.Seq,
						Message: fmt.Sprintf("sluice: approval request %s has already let this command through once; send the command without it to ask again", id)},
						fmt.Sprintf("approval request %s presented again after it was used", id))
				}
				s.log.Warn("an approved request could not be marked used; denying", "request", id, "error", err)
				return step(protocol.Decision{Action: protocol.Deny, Rules: d.Rules, Seq: d.Seq,
					Message: fmt.Sprintf("sluice: approval request %s could not be used: the approval store did not answer; try again", id)},
					fmt.Sprintf("approval request %s presented; marking it used failed: %v", id, err))
			}
			s.log.Info("approved request presented with the command; allowing it", "request", id)
			return step(protocol.Decision{Action: protocol.Allow, Rules: d.Rules, Mask: d.Mask, Seq: d.Seq,
				Message: approval.Outcome{State: r.State, Request: r}.Message()},
				fmt.Sprintf("allowed by approval request %s, presented with the command", id))
		case approval.StatePending:
			if !protocol.AsyncApproval(ctx) {
				return d, false
			}
			return step(protocol.Decision{Action: protocol.RequireApproval, Rules: d.Rules, Approvers: d.Approvers,
				Quorum: d.Quorum, Timeout: d.Timeout, Seq: d.Seq, ApprovalID: id,
				Message: fmt.Sprintf("sluice: approval request %s is still waiting for %s (until %s)",
					id, joinOr(r.Approvers), r.ExpiresAt.UTC().Format(time.RFC3339))},
				fmt.Sprintf("approval request %s presented; still pending", id))
		default:
			return step(protocol.Decision{Action: protocol.Deny, Rules: d.Rules, Seq: d.Seq,
				Message: approval.Outcome{State: r.State, Request: r}.Message()},
				fmt.Sprintf("approval request %s presented; it is %s", id, r.State))
		}
	}
	return d, false
}

// sameCommand reports whether two commands are the same in everything
// policy and approvers see: text, parsed parts and attributes (an HTTP
// request's body digest among them), compared as their JSON, which is
// also the form the approval store kept.
func sameCommand(a, b *protocol.Command) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

func joinOr(ss []string) string {
	var b bytes.Buffer
	for i, s := range ss {
		if i > 0 {
			b.WriteString(" or ")
		}
		b.WriteString(s)
	}
	return b.String()
}
