package policy

import (
	"path"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
)

// The CEL schema. Field names come from the json tags of the structs below
// (ext.ParseStructTag("json")), so a policy says command.sql.has_where just
// as the recorded JSON does. identity.Identity, protocol.Target and the
// protocol parts are used as they are; the session and the command get
// policy-side structs whose protocol parts are values rather than pointers,
// so that an absent part reads as its zero value (see the package doc).

// sessionVars is the CEL view of protocol.SessionInfo (the identity and
// target are variables of their own).
type sessionVars struct {
	ID         string    `json:"id"`
	ClientAddr string    `json:"client_addr"`
	Start      time.Time `json:"start"`
}

// commandVars is the CEL view of protocol.Command: every protocol part is
// present, zero when the command has none.
type commandVars struct {
	Protocol string            `json:"protocol"`
	Kind     string            `json:"kind"`
	Text     string            `json:"text"`
	Attrs    map[string]string `json:"attrs"`
	SQL      protocol.SQL      `json:"sql"`
	HTTP     protocol.HTTP     `json:"http"`
	MCP      protocol.MCP      `json:"mcp"`
	K8s      protocol.K8s      `json:"k8s"`
	SSH      protocol.SSH      `json:"ssh"`
}

// CEL type names of the variables.
const (
	typeIdentity = "sluice.Identity"
	typeTarget   = "sluice.Target"
	typeSession  = "sluice.Session"
	typeCommand  = "sluice.Command"
)

var celEnv = sync.OnceValues(newEnv)

func newEnv() (*cel.Env, error) {
	var adapter types.Adapter = types.DefaultTypeAdapter
	env, err := cel.NewEnv(
		ext.NativeTypes(
			ext.ParseStructTag("json"),
			types.NativeTypeFor[identity.Identity](types.NativeTypeAlias(typeIdentity)),
			types.NativeTypeFor[protocol.Target](types.NativeTypeAlias(typeTarget)),
			types.NativeTypeFor[sessionVars](types.NativeTypeAlias(typeSession)),
			types.NativeTypeFor[commandVars](types.NativeTypeAlias(typeCommand)),
		),
		cel.Variable("identity", cel.ObjectType(typeIdentity)),
		cel.Variable("target", cel.ObjectType(typeTarget)),
		cel.Variable("session", cel.ObjectType(typeSession)),
		cel.Variable("command", cel.ObjectType(typeCommand)),
		cel.Variable("now", cel.TimestampType),
		ext.Strings(),
		ext.Lists(),
		cel.OptionalTypes(),
		cel.Function("glob",
			cel.Overload("glob_string_string", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(globBinding))),
		sqlFunction(&adapter),
	)
	if err != nil {
		return nil, err
	}
	adapter = env.CELTypeAdapter()
	return env, nil
}

func globBinding(p, s ref.Val) ref.Val {
	ps, ok1 := p.(types.String)
	ss, ok2 := s.(types.String)
	if !ok1 || !ok2 {
		return types.NewErr("glob: want (string, string)")
	}
	ok, err := Glob(string(ps), string(ss))
	if err != nil {
		return types.NewErr("glob(%q): %v", string(ps), err)
	}
	return types.Bool(ok)
}

// Glob reports whether name matches pattern, as the CEL function
// glob(pattern, name) does: path.Match semantics per "/"-separated segment
// (* matches within a segment, ? one character, [a-z] a class), plus a
// segment that is exactly ** matching zero or more whole segments, so
// "/api/**" matches "/api", "/api/v1" and "/api/v1/pods/x". The only error
// is path.ErrBadPattern.
func Glob(pattern, name string) (bool, error) {
	if !strings.Contains(pattern, "**") {
		return path.Match(pattern, name)
	}
	if err := validGlob(pattern); err != nil {
		return false, err
	}
	return globPath(pattern, name), nil
}

func validGlob(pattern string) error {
	for seg := range strings.SplitSeq(pattern, "/") {
		if _, err := path.Match(seg, ""); err != nil {
			return err
		}
	}
	return nil
}

// globPath matches pattern p against name n segment by segment, without
// allocating; the pattern is known to be valid.
func globPath(p, n string) bool {
	nDone := false // n has no segments left
	for {
		pseg, prest, pmore := strings.Cut(p, "/")
		if pseg == "**" {
			if !pmore {
				return true
			}
			if nDone {
				return globEmpty(prest)
			}
			// Let ** take zero, one, ... segments of n.
			for {
				if globPath(prest, n) {
					return true
				}
				_, nrest, nmore := strings.Cut(n, "/")
				if !nmore {
					return globEmpty(prest)
				}
				n = nrest
			}
		}
		if nDone {
			return false
		}
		nseg, nrest, nmore := strings.Cut(n, "/")
		if ok, _ := path.Match(pseg, nseg); !ok {
			return false
		}
		if !pmore {
			return !nmore
		}
		nDone = !nmore
		p, n = prest, nrest
	}
}

// globEmpty reports whether pattern p matches no segments at all: it is
// made of ** only.
func globEmpty(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if seg != "**" {
			return false
		}
	}
	return true
}

// activation holds the variables for one Decide. It implements
// interpreter.Activation with a switch, so resolving a variable allocates
// nothing; the struct itself is pooled.
type activation struct {
	identity *identity.Identity
	target   *protocol.Target
	session  sessionVars
	command  commandVars
	now      ref.Val
}

var (
	zeroIdentity identity.Identity
	zeroTarget   protocol.Target
)

var activations = sync.Pool{New: func() any { return new(activation) }}

func newActivation(in *Input) *activation {
	a := activations.Get().(*activation)
	a.identity = in.Identity
	if a.identity == nil {
		a.identity = &zeroIdentity
	}
	a.target = in.Target
	if a.target == nil {
		a.target = in.Session.Target
	}
	if a.target == nil {
		a.target = &zeroTarget
	}
	a.session = sessionVars{ID: in.Session.ID, ClientAddr: in.Session.ClientAddr, Start: in.Session.Start}
	c := in.Command
	a.command = commandVars{Protocol: c.Protocol, Kind: string(c.Kind), Text: c.Text, Attrs: c.Attrs}
	if c.SQL != nil {
		a.command.SQL = *c.SQL
	}
	if c.HTTP != nil {
		a.command.HTTP = *c.HTTP
	}
	if c.MCP != nil {
		a.command.MCP = *c.MCP
	}
	if c.K8s != nil {
		a.command.K8s = *c.K8s
	}
	if c.SSH != nil {
		a.command.SSH = *c.SSH
	}
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	a.now = types.Timestamp{Time: now}
	return a
}

// release returns a to the pool without keeping the caller's data alive.
func (a *activation) release() {
	*a = activation{}
	activations.Put(a)
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "identity":
		return a.identity, true
	case "target":
		return a.target, true
	case "session":
		return &a.session, true
	case "command":
		return &a.command, true
	case "now":
		return a.now, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }
