package protocol

import "context"

// NoticeFunc tells the waiting client something while its command is held,
// such as the id of the approval request it waits on and where to approve
// it. It is called from the goroutine that called Session.Check.
type NoticeFunc func(message string)

type noticeKey struct{}

// WithNotice returns a context carrying f, for a plugin to pass to
// Session.Check so the gateway can reach the client during a long check
// (PostgreSQL: a NoticeResponse; SSH: a line on stderr; HTTP: nothing
// until the answer).
func WithNotice(ctx context.Context, f NoticeFunc) context.Context {
	return context.WithValue(ctx, noticeKey{}, f)
}

// NoticeFrom returns the NoticeFunc a plugin put in ctx, or nil.
func NoticeFrom(ctx context.Context) NoticeFunc {
	f, _ := ctx.Value(noticeKey{}).(NoticeFunc)
	return f
}

type asyncApprovalKey struct{}

// WithAsyncApproval returns a context for Session.Check under which a
// command that needs approval is not held: Check files the approval
// request, records it, and returns at once a Decision with Action
// RequireApproval, the request's id in ApprovalID and the notice in
// Message. It is for clients that cannot wait for a person (an HTTP
// caller with a short timeout): the client comes back later with the same
// command and the id (WithApprovalIDs), and Check lets it through once
// the request is approved.
func WithAsyncApproval(ctx context.Context) context.Context {
	return context.WithValue(ctx, asyncApprovalKey{}, true)
}

// AsyncApproval reports whether ctx asks Check not to hold commands for
// approval (WithAsyncApproval).
func AsyncApproval(ctx context.Context) bool {
	v, _ := ctx.Value(asyncApprovalKey{}).(bool)
	return v
}

type approvalIDsKey struct{}

// WithApprovalIDs returns a context carrying the ids of approval requests
// the client presents with a command it sends again (HTTP: the
// Sluice-Approval header). When policy says the command needs approval,
// Check looks for one that covers it: a request of the same identity, on
// the same target, for the same command (text, parsed parts and
// attributes alike). An approved one lets the command through, once; a
// denied or expired one denies it; a pending one, under
// WithAsyncApproval, is answered with RequireApproval and its id again.
// Ids that cover nothing are ignored.
func WithApprovalIDs(ctx context.Context, ids []string) context.Context {
	return context.WithValue(ctx, approvalIDsKey{}, ids)
}

// ApprovalIDs returns the approval request ids a plugin put in ctx.
func ApprovalIDs(ctx context.Context) []string {
	ids, _ := ctx.Value(approvalIDsKey{}).([]string)
	return ids
}
