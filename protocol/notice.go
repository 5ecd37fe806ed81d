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
