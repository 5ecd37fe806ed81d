package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicegw/sluice/gateway"
)

// approverTokenEnv holds the approver's own identity token.
const approverTokenEnv = "SLUICE_APPROVER_TOKEN"

// approvals is `refserver approvals`: the approvers' side of the admin
// API. The token is the approver's own identity token (the one they log in
// to targets with), not the admin token: the gateway checks the approver's
// groups against each request's approvers.
func (c *cli) approvals(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageErr("approvals needs a subcommand: list, show ID, approve ID or deny ID")
	}
	sub, rest := args[0], args[1:]
	synopsis := map[string]string{
		"list":    "approvals list [--all] [--admin URL] [--token T]",
		"show":    "approvals show ID [--admin URL] [--token T]",
		"approve": "approvals approve ID [--reason TEXT] [--admin URL] [--token T]",
		"deny":    "approvals deny ID [--reason TEXT] [--admin URL] [--token T]",
	}[sub]
	if synopsis == "" {
		return usageErr("unknown approvals subcommand %q (want list, show, approve or deny)", sub)
	}
	fs := c.newFlags("approvals "+sub, synopsis)
	adminURL := fs.String("admin", defaultAdminURL, "admin API base `URL`")
	token := fs.String("token", "", "your own identity `token` (default $"+approverTokenEnv+")")
	var (
		all    *bool
		reason *string
	)
	switch sub {
	case "list":
		all = fs.Bool("all", false, "list decided and expired requests too")
	case "approve", "deny":
		reason = fs.String("reason", "", "why, recorded with your decision")
	}
	pos, err := parseFlags(fs, rest)
	if err != nil {
		return err
	}
	if *token == "" {
		*token = os.Getenv(approverTokenEnv)
	}
	ac, err := newAdminClient(*adminURL, *token)
	if err != nil {
		return err
	}
	ac.authHint = "give your own identity token with --token or " + approverTokenEnv
	if sub == "list" {
		if len(pos) > 0 {
			return usageErr("approvals list takes no arguments")
		}
		return c.listApprovals(ctx, ac, *all)
	}
	if len(pos) != 1 || pos[0] == "" {
		return usageErr("approvals %s needs exactly one request ID", sub)
	}
	id := pos[0]
	if sub == "show" {
		var v gateway.ApprovalView
		if err := ac.do(ctx, http.MethodGet, "/api/approvals/"+url.PathEscape(id), nil, &v); err != nil {
			return err
		}
		c.printApproval(v)
		return nil
	}
	var v gateway.ApprovalView
	body := map[string]string{"reason": *reason}
	if err := ac.send(ctx, http.MethodPost, "/api/approvals/"+url.PathEscape(id)+"/"+sub, nil, body, &v); err != nil {
		return err
	}
	verb := map[string]string{"approve": "approved", "deny": "denied"}[sub]
	fmt.Fprintf(c.stdout, "request %s: you %s it; it is now %s (%d of %d approvals)\n", v.ID, verb, v.State, v.Approvals, v.Quorum)
	return nil
}

func (c *cli) listApprovals(ctx context.Context, ac *adminClient, all bool) error {
	q := url.Values{"state": {"pending"}}
	if all {
		q.Set("state", "all")
	}
	var views []gateway.ApprovalView
	if err := ac.do(ctx, http.MethodGet, "/api/approvals", q, &views); err != nil {
		return err
	}
	if len(views) == 0 {
		if all {
			fmt.Fprintln(c.stdout, "no approval requests")
		} else {
			fmt.Fprintln(c.stdout, "no pending approval requests")
		}
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tREQUESTER\tTARGET\tRULES\tEXPIRES IN\tYOU MAY DECIDE\tCOMMAND")
	for _, v := range views {
		expires := "-"
		if v.State == "pending" {
			expires = v.ExpiresAt.Sub(now).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.State, v.Requester.Subject, v.Target.Name,
			dash(strings.Join(v.Rules, ",")), expires, yesNo(v.CanDecide), oneLine(v.Command.Text, 60))
	}
	return tw.Flush()
}

func (c *cli) printApproval(v gateway.ApprovalView) {
	w := c.stdout
	fmt.Fprintf(w, "Request:    %s (%s)\n", v.ID, v.State)
	fmt.Fprintf(w, "Requester:  %s\n", person(v.Requester))
	fmt.Fprintf(w, "Target:     %s (%s)\n", v.Target.Name, v.Target.Protocol)
	fmt.Fprintf(w, "Session:    %s on gateway %s\n", v.SessionID, v.GatewayID)
	fmt.Fprintf(w, "Rules:      %s\n", dash(strings.Join(v.Rules, ", ")))
	if v.Reason != "" {
		fmt.Fprintf(w, "Why:        %s\n", v.Reason)
	}
	fmt.Fprintf(w, "Approvers:  %s (%d of %d approvals)\n", strings.Join(v.Approvers, ", "), v.Approvals, v.Quorum)
	fmt.Fprintf(w, "Created:    %s\n", v.CreatedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "Expires:    %s\n", v.ExpiresAt.UTC().Format(time.RFC3339))
	if v.GrantWindow != "" {
		fmt.Fprintf(w, "Grant:      %s after approval\n", v.GrantWindow)
	}
	for _, d := range v.Decisions {
		verb := "denied"
		if d.Approve {
			verb = "approved"
		}
		fmt.Fprintf(w, "Decision:   %s %s at %s", person(d.Approver), verb, d.At.UTC().Format(time.RFC3339))
		if d.Reason != "" {
			fmt.Fprintf(w, ": %s", d.Reason)
		}
		fmt.Fprintln(w)
	}
	if !v.ResolvedAt.IsZero() {
		fmt.Fprintf(w, "Resolved:   %s %s\n", v.ResolvedAt.UTC().Format(time.RFC3339), v.ResolvedReason)
	}
	fmt.Fprintf(w, "You may decide: %s\n", yesNo(v.CanDecide))
	fmt.Fprintf(w, "Command:\n%s\n", v.Command.Text)
}

func person(p gateway.PersonView) string {
	if p.Name != "" {
		return p.Name + " (" + p.Subject + ")"
	}
	return p.Subject
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// oneLine folds a command onto one line and cuts it to n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
