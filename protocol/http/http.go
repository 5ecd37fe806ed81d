// Package http is the HTTP protocol plugin: a reverse proxy in front of one
// HTTP(S) backend that authenticates every request, checks it through the
// session before it reaches the backend, injects the gateway's own backend
// credential, masks what comes back and records the exchange. Its central
// type is Plugin; it registers itself as "http". Import it with a name of
// your own next to net/http:
//
//	import sluicehttp "github.com/sluicegw/sluice/protocol/http"
//
// # Clients
//
// A client connection is one session. The plugin serves HTTP/1.1 and
// HTTP/2 on it (HTTP/2 when TLS ALPN negotiates h2, or with prior
// knowledge on a plaintext connection that the target allows). The
// caller authenticates with "Authorization: Bearer <token>" (or a client
// certificate): the first request authenticates the session and opens it
// (a connect command), and every later request on the connection must
// carry the same token (compared by SHA-256 in constant time); another
// token is answered 401 and the connection is closed, since a session
// has one identity. A request without a token is answered 401 with
// "WWW-Authenticate: Bearer".
//
// # Requests
//
// Each request is a command of kind request with an http part: method,
// host, path, query (repeated parameters joined with ","), the selected
// headers (lower-case names; Content-Type, Content-Length and Accept,
// plus the target's headers option; never Authorization,
// Cookie, the credential header or Sluice-*), the content type, and for a
// JSON body within max_body the parsed body (command.http.body). Attributes
// say what happened to the body:
//
//	body_parsed  "true": command.http.body holds the JSON body;
//	             "false": the body is declared JSON but was not parsed
//	             (body_error says why: larger than max_body, not valid
//	             UTF-8, invalid JSON, a key given twice or in two cases)
//	body_sha256  the digest of a body read whole (up to max_body)
//	upgrade      "websocket" for a WebSocket upgrade request
//	raw_path     the path as sent, when it has escapes
//
// A rule that reads command.http.body of a request whose body was not
// parsed fails to evaluate, which denies (fail closed); write
// `command.attrs.body_parsed == "true" && ...` to decide on bodies
// explicitly. Requests whose path is not canonical (dot segments, "//"),
// whose query does not parse, and CONNECT and TRACE requests are refused
// with 400 or 405 before policy, and recorded as errors.
//
// A denial is answered 403 with an RFC 9457 problem body
// (application/problem+json) whose detail is the policy's message and
// whose rules member names the rules that matched.
//
// # Backend
//
// The target's address is host:port (with the scheme option) or a URL
// with an optional path prefix. The gateway strips the caller's
// Authorization, hop-by-hop headers and Sluice-* headers, sets
// X-Forwarded-For/-Host/-Proto, and injects the backend credential from
// the credential store: "Bearer <password>" in Authorization (or
// credential_header), basic auth, or the password as the value of a header
// of its own (an API key). A backend that echoes the credential (in a
// response header, or in an uncompressed body) has it replaced by
// asterisks of the same length before it reaches the caller; secrets
// shorter than 8 bytes are not searched for.
//
// # Responses
//
// Bodies stream: they are copied as they arrive, with bounded memory, and
// flushed to the client after every read when the backend's length is
// unknown (chunked) or the body is an event stream. When the decision
// carries masking, the gateway asks the backend for an identity encoding
// (and decodes gzip if it gets it anyway), drops Range, and masks JSON
// bodies (application/json, +json, NDJSON) with masking.JSONStream, event
// streams (text/event-stream) event by event (each event's data as JSON
// when it is JSON, else as text, flushed per event), and text bodies
// (text/*, XML, JavaScript, forms) with masking.TextStream, which holds
// back a few hundred bytes so that a value split across reads is still
// found. Any other content type, or an encoding other than gzip, is not
// passed on when masking applies (fail closed): 502 with a problem body.
// A body that turns out not to be what it claims (invalid JSON) ends the
// response abruptly: what was sent before is masked, and the client sees
// a truncated response, not a clean end.
//
// WebSocket streams pass through unmasked once the backend switches
// protocols (the client's frames are recorded as sent, that is masked
// with their RFC 6455 key; the server's as plain frames), recorded as
// stream bytes up to the cap per direction; an upgrade whose decision
// carries masking is refused with 403, since frames cannot be masked.
// Other upgrades (h2c among them) are ignored, so that the connection
// never becomes a tunnel whose requests go unchecked. HTTP/2 extended
// CONNECT (RFC 8441) is refused like every CONNECT: WebSocket clients
// use HTTP/1.1.
//
// # Approval
//
// A request that needs approval is held until approvers decide, up to the
// rule's timeout. With the target option approval: async the gateway
// answers 202 at once with the request id (in the Sluice-Approval header
// and the JSON body); the same request sent again with
// "Sluice-Approval: <id>" goes through once approved (the same method,
// path, query, selected headers and body; once). Requests whose body is
// too large to be read whole are held, not answered 202, since a retry
// could not be matched to them.
//
// # Recording
//
// The command entry holds the request line, the selected headers and the
// parsed JSON body; an output entry holds the request body when it was not
// parsed; the result entry holds the status ("200 OK"), the bytes sent,
// the duration, the masking counts and the response body as the client
// received it (masked), up to record_body_bytes, as one "body" column (an
// output entry instead when it is not UTF-8). Event streams and WebSocket
// traffic are recorded chunk by chunk as they pass, up to the cap per
// direction.
//
// # Extensions
//
// An application protocol carried in HTTP bodies (MCP, in package
// protocol/http/mcp) plugs in as an Extension registered with
// RegisterExtension and enabled per target with an option named after it
// ("mcp": "true"): it turns each request into the commands to check, may
// answer denials in its own form, and may take over the response body.
package http

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	nethttp "net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicegw/sluice/protocol"
)

// Name is the protocol name targets use.
const Name = "http"

func init() { protocol.Register(Name, New) }

// Option keys read from Target.Options.
const (
	// OptScheme is the backend's scheme when the address is host:port:
	// https (default) or http.
	OptScheme = "scheme"
	// OptCAFile is a PEM file of the CAs that sign the backend's
	// certificate; default: the system's roots.
	OptCAFile = "ca_file"
	// OptServerName is the name the backend's certificate is verified
	// against; default: the address's host.
	OptServerName = "server_name"
	// OptH2C speaks HTTP/2 without TLS (prior knowledge) to an http
	// backend: "true" or "false" (default).
	OptH2C = "h2c"
	// OptCredentialScheme is how the backend credential is presented:
	// bearer (default: "Bearer <password>"), basic (user name and
	// password), header (the password as the header's value, an API key),
	// or none.
	OptCredentialScheme = "credential_scheme"
	// OptCredentialHeader is the header the credential goes in; default
	// Authorization. A header of that name sent by the caller is dropped.
	OptCredentialHeader = "credential_header"
	// OptApproval is sync (default: hold the request until decided) or
	// async (answer 202 with the approval id; see the package doc).
	OptApproval = "approval"
	// OptMaxBody bounds the request body read whole for policy (parsed
	// when JSON) and for the approval digest: bytes, or with a KiB, MiB
	// or GiB suffix; default 1MiB.
	OptMaxBody = "max_body"
	// OptRecordBodyBytes caps each recorded body (request, response, each
	// direction of a stream); default the target's record_bytes limit.
	OptRecordBodyBytes = "record_body_bytes"
	// OptHeaders lists, comma-separated, request headers to select into
	// command.http.headers besides the default ones.
	OptHeaders = "headers"
	// OptIdleTimeout closes a client connection idle this long (a Go
	// duration); default 2m.
	OptIdleTimeout = "idle_timeout"
)

// Defaults of the options.
const (
	DefaultMaxBody     = 1 << 20
	DefaultIdleTimeout = 2 * time.Minute
)

// defaultHeaders are selected into every command. Selected headers are
// part of what an async approval binds a retry to, so the default leaves
// out what changes between equivalent requests (User-Agent differs between
// a client's HTTP/1.1 and HTTP/2 requests).
var defaultHeaders = []string{"Accept", "Content-Length", "Content-Type"}

// neverSelected are request headers never copied into a command (and so
// never recorded), whatever the headers option says.
var neverSelected = []string{"Authorization", "Proxy-Authorization", "Cookie"}

// Credential schemes.
const (
	credBearer = "bearer"
	credBasic  = "basic"
	credHeader = "header"
	credNone   = "none"
)

// options is a target's parsed options.
type options struct {
	base        *url.URL // scheme, host, path prefix
	h2c         bool
	backendTLS  *tls.Config
	credScheme  string
	credHeader  string // canonical header name
	async       bool
	maxBody     int64
	recordBody  int // 0: the session's Limits.RecordBytes
	headers     []string
	idleTimeout time.Duration
	ext         Extension
	extName     string
}

// Plugin proxies HTTP for one target.
type Plugin struct {
	target *protocol.Target
	opts   options

	conns protocol.Conns[*clientConn]
}

// New builds the plugin for a target from its address and options.
func New(t *protocol.Target) (protocol.Plugin, error) {
	o, err := parseOptions(t)
	if err != nil {
		return nil, fmt.Errorf("http: target %s: %w", t.Name, err)
	}
	return &Plugin{target: t, opts: o}, nil
}

// Name implements protocol.Plugin.
func (p *Plugin) Name() string { return Name }

// Drain implements protocol.Drainer: keep-alive stops, idle connections
// close at once, and a connection with requests in flight closes when
// they are done (HTTP/2: GOAWAY).
func (p *Plugin) Drain(s protocol.Session, reason string) {
	if c, ok := p.conns.Get(s); ok {
		c.drain(reason)
	}
}

func parseOptions(t *protocol.Target) (options, error) {
	o := options{
		credScheme:  credBearer,
		credHeader:  "Authorization",
		maxBody:     DefaultMaxBody,
		idleTimeout: DefaultIdleTimeout,
		headers:     slices.Clone(defaultHeaders),
	}
	known := map[string]bool{OptScheme: true, OptCAFile: true, OptServerName: true, OptH2C: true,
		OptCredentialScheme: true, OptCredentialHeader: true, OptApproval: true, OptMaxBody: true,
		OptRecordBodyBytes: true, OptHeaders: true, OptIdleTimeout: true}
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("options.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	opt := t.Options

	// Extensions: an option named after a registered extension enables it;
	// options prefixed with its name and "_" are its own.
	for _, name := range extensionNames() {
		v, ok := opt[name]
		if !ok {
			continue
		}
		on, err := parseBool(v)
		if err != nil {
			bad(name, "%v", err)
			continue
		}
		if !on {
			continue
		}
		if o.ext != nil {
			bad(name, "only one extension per target (%s is enabled too)", o.extName)
			continue
		}
		ext, err := newExtension(name, t)
		if err != nil {
			bad(name, "%v", err)
			continue
		}
		o.ext, o.extName = ext, name
	}
	for k := range opt {
		if known[k] || isExtensionOption(k) {
			continue
		}
		if k == "mcp" {
			bad(k, "no extension %q is registered: import github.com/sluicegw/sluice/protocol/http/mcp", k)
			continue
		}
		bad(k, "unknown option (known: %s)", strings.Join(sortedKeys(known), ", "))
	}

	scheme := strings.ToLower(opt[OptScheme])
	switch scheme {
	case "", "https", "http":
	default:
		bad(OptScheme, "%q: want https or http", opt[OptScheme])
	}
	base, err := backendURL(t.Address, scheme)
	if err != nil {
		errs = append(errs, fmt.Errorf("address: %w", err))
	}
	o.base = base
	if v := opt[OptH2C]; v != "" {
		if o.h2c, err = parseBool(v); err != nil {
			bad(OptH2C, "%v", err)
		}
		if o.h2c && base != nil && base.Scheme != "http" {
			bad(OptH2C, "only applies to an http backend (HTTP/2 over TLS is negotiated by itself)")
		}
	}
	if base != nil && base.Scheme == "https" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
		cfg.ServerName = base.Hostname()
		if sn := opt[OptServerName]; sn != "" {
			cfg.ServerName = sn
		}
		if f := opt[OptCAFile]; f != "" {
			pem, err := os.ReadFile(f)
			if err != nil {
				bad(OptCAFile, "%v", err)
			} else {
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					bad(OptCAFile, "%s holds no PEM certificate", f)
				}
				cfg.RootCAs = pool
			}
		}
		o.backendTLS = cfg
	} else {
		for _, k := range []string{OptCAFile, OptServerName} {
			if opt[k] != "" {
				bad(k, "only applies to an https backend")
			}
		}
	}

	switch v := strings.ToLower(opt[OptCredentialScheme]); v {
	case "":
	case credBearer, credBasic, credHeader, credNone:
		o.credScheme = v
	default:
		bad(OptCredentialScheme, "%q: want bearer, basic, header or none", opt[OptCredentialScheme])
	}
	if h := opt[OptCredentialHeader]; h != "" {
		if !validHeaderName(h) {
			bad(OptCredentialHeader, "%q is not a header name", h)
		} else {
			o.credHeader = nethttp.CanonicalHeaderKey(h)
		}
		if o.credScheme == credNone {
			bad(OptCredentialHeader, "credential_scheme none sends no credential")
		}
	} else if o.credScheme == credHeader {
		bad(OptCredentialHeader, "required with credential_scheme header (the API key's header, e.g. X-Api-Key)")
	}
	if isHopByHop(o.credHeader) || strings.HasPrefix(o.credHeader, "Sluice-") {
		bad(OptCredentialHeader, "%s cannot carry the credential", o.credHeader)
	}

	switch v := strings.ToLower(opt[OptApproval]); v {
	case "", "sync":
	case "async":
		o.async = true
	default:
		bad(OptApproval, "%q: want sync or async", opt[OptApproval])
	}
	if v := opt[OptMaxBody]; v != "" {
		n, err := parseSize(v)
		switch {
		case err != nil:
			bad(OptMaxBody, "%v", err)
		case n < 1 || n > 64<<20:
			bad(OptMaxBody, "%s: want 1 byte to 64MiB", v)
		default:
			o.maxBody = n
		}
	}
	if v := opt[OptRecordBodyBytes]; v != "" {
		n, err := parseSize(v)
		switch {
		case err != nil:
			bad(OptRecordBodyBytes, "%v", err)
		case n < 0 || n > 64<<20:
			bad(OptRecordBodyBytes, "%s: want 0 to 64MiB", v)
		default:
			o.recordBody = int(n)
		}
	}
	if v := opt[OptHeaders]; v != "" {
		for h := range strings.SplitSeq(v, ",") {
			h = strings.TrimSpace(h)
			if h == "" {
				continue
			}
			ch := nethttp.CanonicalHeaderKey(h)
			switch {
			case !validHeaderName(h):
				bad(OptHeaders, "%q is not a header name", h)
			case slices.Contains(neverSelected, ch) || ch == o.credHeader || strings.HasPrefix(ch, "Sluice-"):
				bad(OptHeaders, "%s is never recorded or shown to policy", ch)
			case !slices.Contains(o.headers, ch):
				o.headers = append(o.headers, ch)
			}
		}
	}
	if v := opt[OptIdleTimeout]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			bad(OptIdleTimeout, "%q: want a positive Go duration (2m)", v)
		} else {
			o.idleTimeout = d
		}
	}
	return o, errors.Join(errs...)
}

// backendURL parses a target address: host:port (scheme from the option,
// https by default) or a URL with a path prefix.
func backendURL(addr, scheme string) (*url.URL, error) {
	if addr == "" {
		return nil, errors.New("required: host:port or an http(s) URL")
	}
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", addr, err)
		}
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			return nil, fmt.Errorf("%q: the scheme must be http or https", addr)
		case u.Host == "" || u.Port() == "" && strings.HasSuffix(u.Host, ":"):
			return nil, fmt.Errorf("%q: no host", addr)
		case u.User != nil:
			return nil, fmt.Errorf("the URL must not hold credentials; use the target's credential")
		case u.RawQuery != "" || u.Fragment != "":
			return nil, fmt.Errorf("%q: a query or fragment is not allowed", addr)
		case scheme != "" && scheme != u.Scheme:
			return nil, fmt.Errorf("%q: options.scheme %s contradicts the URL", addr, scheme)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawPath = strings.TrimSuffix(u.RawPath, "/")
		return u, nil
	}
	if scheme == "" {
		scheme = "https"
	}
	i := strings.LastIndexByte(addr, ':')
	if i <= 0 || i == len(addr)-1 {
		return nil, fmt.Errorf("%q is not host:port", addr)
	}
	if _, err := strconv.ParseUint(addr[i+1:], 10, 16); err != nil {
		return nil, fmt.Errorf("%q: the port is not a number", addr)
	}
	return &url.URL{Scheme: scheme, Host: addr}, nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true":
		return true, nil
	case "false", "":
		return false, nil
	}
	return false, fmt.Errorf("%q: want true or false", v)
}

// parseSize parses a byte count: 4096, 64KiB, 1MiB, 1GiB.
func parseSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q is not a size (bytes, or with KiB, MiB or GiB)", v)
	}
	return n * mult, nil
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
