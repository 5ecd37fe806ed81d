// Package storesql holds what the SQL stores of package approval share:
// the WHERE clause for a Filter and the indexed columns of a request.
package storesql

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluicegw/sluice/approval"
)

// Table is the requests table; every store prefixes its tables with
// sluice_approval_ so they can live in a database shared with others.
const (
	Table       = "sluice_approval_requests"
	SchemaTable = "sluice_approval_schema"
	// Version is the schema version these stores write.
	Version = 1
)

// Where builds the WHERE clause (with a leading " WHERE " when not empty),
// ORDER BY and LIMIT for f. ph returns the placeholder for argument n
// (1-based); ts converts a time to the stored form.
func Where(f approval.Filter, ph func(n int) string, ts func(time.Time) any) (string, []any) {
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return ph(len(args))
	}
	if len(f.States) > 0 {
		ps := make([]string, len(f.States))
		for i, s := range f.States {
			ps[i] = arg(string(s))
		}
		conds = append(conds, "state IN ("+strings.Join(ps, ", ")+")")
	}
	eq := func(col, v string) {
		if v != "" {
			conds = append(conds, col+" = "+arg(v))
		}
	}
	eq("gateway_id", f.GatewayID)
	eq("session_id", f.SessionID)
	eq("requester_subject", f.RequesterSubject)
	eq("target", f.Target)
	eq("grant_key", f.GrantKey)
	if !f.GrantActiveAt.IsZero() {
		conds = append(conds, "grant_until > "+arg(ts(f.GrantActiveAt)))
	}
	if !f.ExpiresBefore.IsZero() {
		conds = append(conds, "expires_at < "+arg(ts(f.ExpiresBefore)))
	}
	if f.AfterID != "" {
		conds = append(conds, "id > "+arg(f.AfterID))
	}
	q := ""
	if len(conds) > 0 {
		q = " WHERE " + strings.Join(conds, " AND ")
	}
	q += " ORDER BY id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return q, args
}

// Check rejects a request a store cannot keep.
func Check(r *approval.Request) error {
	if r.ID == "" {
		return fmt.Errorf("%w: no ID", approval.ErrInvalid)
	}
	return nil
}
