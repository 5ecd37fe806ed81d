package recording

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sluicegw/sluice/protocol"
)

// transcriptTime is how entry times are shown, in UTC.
const transcriptTime = "15:04:05.000"

// WriteTranscript reads the recording in r, verifying it as it goes, and
// writes a readable replay to w: a header from session.start, then each
// entry with its time (UTC) and sequence number, result data as aligned
// tables, and last the chain verdict (VerifyReport.String). It stops at the
// first line that does not verify: what follows is not trusted.
//
// Recorded text (SQL, data, terminal output) is printed with control
// characters escaped ("\x1b"), so replaying a recording cannot drive the
// reader's terminal. The layout is stable; tests compare it.
//
// A broken chain is reported in the transcript and the VerifyReport, not as
// an error; the error is for reading r or writing w.
func WriteTranscript(w io.Writer, r io.Reader) (VerifyReport, error) {
	t := &transcript{w: w}
	rd := NewReader(r)
	for {
		e, err := rd.Next()
		if err != nil {
			rep := rd.Report()
			if err != io.EOF && !errors.Is(err, ErrChainBroken) {
				return rep, err
			}
			if !rep.Intact {
				t.printf("\n[replay stopped at line %d: it and the lines after it are not verified]\n", rep.BreakLine)
			} else if !rep.Complete {
				t.printf("\n[incomplete: no session.end entry (the gateway stopped before the session ended, or the end was cut off)]\n")
			}
			t.printf("\n%s\n", rep)
			return rep, t.err
		}
		t.entry(e)
		if t.err != nil {
			return rd.Report(), t.err
		}
	}
}

type transcript struct {
	w     io.Writer
	err   error
	start time.Time
	// stream is set for a session whose results are byte streams (HTTP),
	// not rows.
	stream bool
}

func (t *transcript) printf(format string, args ...any) {
	if t.err == nil {
		_, t.err = fmt.Fprintf(t.w, format, args...)
	}
}

// block prints multi-line text indented, with control characters escaped.
func (t *transcript) block(s string) {
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		t.printf("    %s\n", sanitize(line, false))
	}
}

func (t *transcript) entry(e *Entry) {
	stamp := e.Time.UTC().Format(transcriptTime)
	head := fmt.Sprintf("%s  #%d ", stamp, e.Seq)
	switch e.Type {
	case TypeSessionStart:
		t.start = e.Time
		t.stream = e.Target != nil && e.Target.Protocol == "http"
		t.printf("session   %s\n", sanitize(e.Session, true))
		t.printf("identity  %s\n", identityLine(e))
		t.printf("target    %s\n", targetLine(e.Target))
		t.printf("client    %s\n", sanitize(e.ClientAddr, true))
		t.printf("started   %s\n\n", e.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"))

	case TypeCommand:
		kind := ""
		if e.Command != nil && e.Command.Kind != "" {
			kind = " (" + sanitize(string(e.Command.Kind), true) + ")"
		}
		t.printf("%scommand%s\n", head, kind)
		if e.Command != nil && e.Command.Text != "" {
			t.block(e.Command.Text)
		}
		if e.Command != nil && e.Command.HTTP != nil {
			t.httpRequest(e.Command.HTTP)
		}
		if e.Decision != nil {
			t.printf("    decision: %s\n", decisionLine(e.Decision))
		}

	case TypeApproval:
		t.printf("%sapproval%s\n", head, of(e.CommandSeq))
		if e.Decision != nil {
			t.printf("    decision: %s\n", decisionLine(e.Decision))
		}
		if e.Message != "" {
			t.block(e.Message)
		}

	case string(protocol.EventResult):
		t.result(head, e)

	case string(protocol.EventOutput):
		label := ""
		if e.Message != "" {
			label = ": " + sanitize(e.Message, true)
		}
		t.printf("%soutput%s%s (%d %s)\n", head, of(e.CommandSeq), label, len(e.Data), plural(len(e.Data), "byte", "bytes"))
		if len(e.Data) > 0 {
			t.block(string(e.Data))
		}

	case string(protocol.EventError), string(protocol.EventNotice):
		code := ""
		if e.Code != "" {
			code = " (code " + sanitize(e.Code, true) + ")"
		}
		t.printf("%s%s%s%s\n", head, e.Type, of(e.CommandSeq), code)
		if e.Message != "" {
			t.block(e.Message)
		}

	case TypeSessionEnd:
		dur := ""
		if !t.start.IsZero() {
			dur = fmt.Sprintf(" (duration %s)", e.Time.Sub(t.start))
		}
		reason := e.Reason
		if reason == "" {
			reason = "no reason given"
		}
		t.printf("%ssession end: %s%s\n", head, sanitize(reason, true), dur)

	default:
		t.printf("%s%s%s\n", head, sanitize(e.Type, true), of(e.CommandSeq))
		if e.Message != "" {
			t.block(e.Message)
		}
	}
}

func (t *transcript) result(head string, e *Entry) {
	res := e.Result
	if res == nil {
		res = &protocol.Result{}
	}
	tag := ""
	if res.Tag != "" {
		tag = ": " + sanitize(res.Tag, true)
	}
	t.printf("%sresult%s%s\n", head, of(e.CommandSeq), tag)
	if len(res.Params) > 0 {
		ps := make([]string, len(res.Params))
		for i, p := range res.Params {
			ps[i] = fmt.Sprintf("$%d=%s", i+1, paramText(p))
		}
		t.printf("    params: %s\n", strings.Join(ps, ", "))
	}
	if res.Error != "" {
		t.printf("    error: %s\n", sanitize(res.Error, true))
	}
	bodyOnly := t.stream && len(res.Columns) == 1 && res.Columns[0] == "body" && len(res.Data) == 1 &&
		len(res.Data[0]) == 1 && res.Data[0][0] != nil
	switch {
	case bodyOnly:
		// A byte stream's body, as the client received it.
		t.block(*res.Data[0][0])
	case len(res.Columns) > 0 || len(res.Data) > 0:
		for _, line := range table(res.Columns, res.Data) {
			t.printf("    %s\n", line)
		}
	}
	if t.stream && res.Rows == 0 && (len(res.Columns) == 0 || bodyOnly) {
		t.printf("    (%d %s, %s)\n", res.Bytes, plural(res.Bytes, "byte", "bytes"), res.Duration)
	} else {
		t.printf("    (%d %s, %d %s, %s)\n", res.Rows, plural(res.Rows, "row", "rows"),
			res.Bytes, plural(res.Bytes, "byte", "bytes"), res.Duration)
	}
	if res.Truncated && t.stream && (len(res.Data) == 0 || bodyOnly) {
		t.printf("    [truncated: only the first bytes recorded]\n")
	} else if res.Truncated {
		t.printf("    [truncated: only the first %d %s recorded]\n", len(res.Data), plural(len(res.Data), "row was", "rows were"))
	}
	if res.Masked > 0 {
		t.printf("    [masked: %d %s]\n", res.Masked, plural(res.Masked, "value", "values"))
	}
}

// httpRequest prints the selected headers of an HTTP request, one per
// line in name order, and its parsed JSON body on one line.
func (t *transcript) httpRequest(h *protocol.HTTP) {
	names := make([]string, 0, len(h.Headers))
	for k := range h.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		t.printf("    %s: %s\n", sanitize(k, true), sanitize(h.Headers[k], true))
	}
	if h.Body != nil {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(h.Body); err == nil {
			t.printf("    body: %s\n", sanitize(strings.TrimSuffix(b.String(), "\n"), true))
		}
	}
}

// table lays rows out in aligned columns, NULL for a nil cell.
func table(cols []string, rows [][]*string) []string {
	n := len(cols)
	for _, r := range rows {
		n = max(n, len(r))
	}
	width := make([]int, n)
	cell := func(s string) string { return sanitize(s, true) }
	hdr := make([]string, n)
	for i, c := range cols {
		hdr[i] = cell(c)
		width[i] = utf8.RuneCountInString(hdr[i])
	}
	body := make([][]string, len(rows))
	for i, r := range rows {
		body[i] = make([]string, n)
		for j, v := range r {
			s := "NULL"
			if v != nil {
				s = cell(*v)
			}
			body[i][j] = s
			width[j] = max(width[j], utf8.RuneCountInString(s))
		}
	}
	format := func(cells []string) string {
		var b strings.Builder
		for j, s := range cells {
			if j > 0 {
				b.WriteString(" | ")
			}
			b.WriteString(s)
			b.WriteString(strings.Repeat(" ", width[j]-utf8.RuneCountInString(s)))
		}
		return strings.TrimRight(b.String(), " ")
	}
	var out []string
	if len(cols) > 0 {
		out = append(out, format(hdr))
		dashes := make([]string, n)
		for j := range dashes {
			dashes[j] = strings.Repeat("-", width[j])
		}
		out = append(out, strings.Join(dashes, "-+-"))
	}
	for _, r := range body {
		out = append(out, format(r))
	}
	return out
}

func of(seq uint64) string {
	if seq == 0 {
		return ""
	}
	return fmt.Sprintf(" of #%d", seq)
}

func paramText(p *string) string {
	if p == nil {
		return "NULL"
	}
	return "'" + sanitize(*p, true) + "'"
}

func identityLine(e *Entry) string {
	id := e.Identity
	if id == nil {
		return "(not authenticated)"
	}
	s := sanitize(id.Subject, true)
	if id.Method != "" {
		s += " (method: " + sanitize(string(id.Method), true)
	} else {
		s += " (method: unknown"
	}
	if len(id.Groups) > 0 {
		gs := make([]string, len(id.Groups))
		for i, g := range id.Groups {
			gs[i] = sanitize(g, true)
		}
		s += "; groups: " + strings.Join(gs, ", ")
	}
	return s + ")"
}

func targetLine(tg *protocol.Target) string {
	if tg == nil {
		return "(unknown)"
	}
	return fmt.Sprintf("%s (%s at %s)", sanitize(tg.Name, true), sanitize(tg.Protocol, true), sanitize(tg.Address, true))
}

func decisionLine(d *protocol.Decision) string {
	s := sanitize(string(d.Action), true)
	if len(d.Rules) > 0 {
		rs := make([]string, len(d.Rules))
		for i, r := range d.Rules {
			rs[i] = sanitize(r, true)
		}
		s += " (rules: " + strings.Join(rs, ", ") + ")"
	}
	if d.Message != "" {
		s += ": " + sanitize(d.Message, true)
	}
	return s
}

// sanitize escapes what could garble a transcript or drive a terminal:
// control characters (tabs too when oneLine), invalid UTF-8, and the
// Unicode bidirectional controls that reorder how text reads.
func sanitize(s string, oneLine bool) string {
	clean := true
	for _, r := range s {
		if needsEscape(r, oneLine) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !needsEscape(r, oneLine):
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteString(strings.Trim(strconv.QuoteRuneToASCII(r), "'"))
		}
		i += size
	}
	return b.String()
}

func needsEscape(r rune, oneLine bool) bool {
	switch {
	case r == '\t':
		return oneLine
	case r == utf8.RuneError:
		return true // invalid UTF-8 (or a literal U+FFFD, escaped too)
	case unicode.IsControl(r):
		return true
	case r == '\u200e', r == '\u200f', '\u202a' <= r && r <= '\u202e', '\u2066' <= r && r <= '\u2069':
		return true
	}
	return false
}
