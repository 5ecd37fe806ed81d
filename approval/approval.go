// Package approval pauses risky commands until a human approves them. Its
// central type is Broker, which turns a require_approval decision into a
// request that approvers resolve.
package approval
