package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicegw/sluice/gateway"
)

// defaultAdminURL is where `sessions` finds the admin API.
const defaultAdminURL = "http://" + defaultAdminListen

func (c *cli) sessions(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageErr("sessions needs a subcommand: list, or kill ID")
	}
	sub, rest := args[0], args[1:]
	synopsis := map[string]string{
		"list": "sessions list [--admin URL] [--token T]",
		"kill": "sessions kill ID [--admin URL] [--token T] [--reason TEXT]",
	}[sub]
	if synopsis == "" {
		return usageErr("unknown sessions subcommand %q (want list or kill)", sub)
	}
	fs := c.newFlags("sessions "+sub, synopsis)
	adminURL := fs.String("admin", defaultAdminURL, "admin API base `URL`")
	token := fs.String("token", "", "admin bearer `token` (default $SLUICE_ADMIN_TOKEN)")
	var reason *string
	if sub == "kill" {
		reason = fs.String("reason", "", "why, recorded as the session's end reason")
	}
	pos, err := parseFlags(fs, rest)
	if err != nil {
		return err
	}
	if *token == "" {
		*token = os.Getenv("SLUICE_ADMIN_TOKEN")
	}
	ac, err := newAdminClient(*adminURL, *token)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		if len(pos) > 0 {
			return usageErr("sessions list takes no arguments")
		}
		return c.listSessions(ctx, ac)
	default:
		if len(pos) != 1 {
			return usageErr("sessions kill needs exactly one session ID")
		}
		return c.killSession(ctx, ac, pos[0], *reason)
	}
}

// adminClient calls the admin HTTP API.
type adminClient struct {
	base  *url.URL
	token string
	http  *http.Client
	// authHint says how to give the right token when the API answers 401.
	authHint string
}

func newAdminClient(base, token string) (*adminClient, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErr("--admin %q: want a URL such as http://127.0.0.1:9090", base)
	}
	// One request per command: no idle connection is worth keeping.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	return &adminClient{base: u, token: token, http: &http.Client{Timeout: 15 * time.Second, Transport: tr},
		authHint: "give the admin token with --token or SLUICE_ADMIN_TOKEN"}, nil
}

// do sends a request and decodes a 2xx JSON answer into out; any other
// answer becomes an error carrying the API's message.
func (a *adminClient) do(ctx context.Context, method, path string, query url.Values, out any) error {
	return a.send(ctx, method, path, query, nil, out)
}

// send is do with a JSON request body (none when in is nil).
func (a *adminClient) send(ctx context.Context, method, path string, query url.Values, in, out any) error {
	u := *a.base
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawQuery = query.Encode()
	var reqBody io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		reqBody = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), reqBody)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("admin API at %s: %v (is refserver running? set --admin)", a.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("admin API: reading the answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusUnauthorized {
			return fmt.Errorf("admin API: %s (%s)", msg, a.authHint)
		}
		return fmt.Errorf("admin API: %s %s: %s: %s", method, path, resp.Status, msg)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("admin API: %s %s: unexpected answer: %w", method, path, err)
	}
	return nil
}

func (c *cli) listSessions(ctx context.Context, ac *adminClient) error {
	var views []gateway.SessionView
	if err := ac.do(ctx, http.MethodGet, "/api/sessions", nil, &views); err != nil {
		return err
	}
	if len(views) == 0 {
		fmt.Fprintln(c.stdout, "no live sessions")
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTARGET\tPROTOCOL\tSUBJECT\tCLIENT\tSTARTED (UTC)\tAGE\tCOMMANDS\tSTATE")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n",
			v.ID, v.Target, v.Protocol, dash(v.Subject), v.ClientAddr,
			v.Start.UTC().Format("2006-01-02 15:04:05"), now.Sub(v.Start).Round(time.Second), v.Commands, v.State)
	}
	return tw.Flush()
}

func (c *cli) killSession(ctx context.Context, ac *adminClient, id, reason string) error {
	q := url.Values{}
	if reason != "" {
		q.Set("reason", reason)
	}
	var res struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := ac.do(ctx, http.MethodDelete, "/api/sessions/"+url.PathEscape(id), q, &res); err != nil {
		return err
	}
	status := res.Status
	if status == "" {
		status = "terminating"
	}
	fmt.Fprintf(c.stdout, "session %s: %s\n", id, status)
	return nil
}
