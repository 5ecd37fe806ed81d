package policytest_test

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/policy/policytest"
	"github.com/sluicegw/sluice/protocol"
)

const docPath = "../../docs/policy.md"

// variableFields lists every field path a policy can read, derived from the
// Go types the engine declares to CEL (ext.NativeTypes over their json
// names): identity.Identity, protocol.Target, the session part of
// protocol.SessionInfo and protocol.Command with its protocol parts. List
// elements are written path[].field.
func variableFields() []string {
	paths := []string{"identity", "target", "session", "command", "now"}
	var walk func(prefix string, t reflect.Type, skip ...string)
	walk = func(prefix string, t reflect.Type, skip ...string) {
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "" || name == "-" || contains(skip, name) {
				continue
			}
			path := prefix + "." + name
			paths = append(paths, path)
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch {
			case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]():
				walk(path, ft)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(path+"[]", ft.Elem())
			}
		}
	}
	walk("identity", reflect.TypeFor[identity.Identity]())
	walk("target", reflect.TypeFor[protocol.Target]())
	// The session variable is SessionInfo without the identity and target,
	// which are variables of their own.
	walk("session", reflect.TypeFor[protocol.SessionInfo](), "identity", "target")
	walk("command", reflect.TypeFor[protocol.Command]())
	return paths
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var overloadRE = regexp.MustCompile(`applied to '\((.*), bytes\)'`)

// celType asks the engine for the type of path: comparing it with bytes
// fails type-checking with a message that names the type, unless the type
// is dyn. ok is false when the engine does not know the field.
func celType(t *testing.T, path string) (typ string, ok bool) {
	t.Helper()
	expr := strings.ReplaceAll(path, "[]", "[0]")
	_, err := policy.Parse("probe.yaml", fmt.Appendf(nil, "rules:\n  - name: probe\n    match: '%s == b\"\"'\n    action: deny\n", expr))
	if err == nil {
		return "dyn", true
	}
	if strings.Contains(err.Error(), "undefined field") {
		return "", false
	}
	m := overloadRE.FindStringSubmatch(err.Error())
	require.NotNil(t, m, "unexpected error for %s: %v", path, err)
	return m[1], true
}

var docRowRE = regexp.MustCompile("(?m)^\\|\\s*`([^`]+)`\\s*\\|\\s*`([^`]+)`\\s*\\|")

// TestDocsDocumentEveryVariable fails when a field a policy can read is not
// in the variables table of docs/policy.md with its CEL type, or the table
// lists a field the engine does not have.
func TestDocsDocumentEveryVariable(t *testing.T) {
	b, err := os.ReadFile(docPath)
	require.NoError(t, err)
	_, table, ok := strings.Cut(string(b), "<!-- variables -->")
	require.True(t, ok, "docs/policy.md has no <!-- variables --> table")
	table, _, ok = strings.Cut(table, "<!-- /variables -->")
	require.True(t, ok, "docs/policy.md: the variables table has no end marker")
	documented := map[string]string{}
	for _, m := range docRowRE.FindAllStringSubmatch(table, -1) {
		documented[m[1]] = m[2]
	}

	fields := variableFields()
	require.Greater(t, len(fields), 40)
	for _, path := range fields {
		typ, ok := celType(t, path)
		if !assert.True(t, ok, "%s is a field of the Go type but not of the CEL environment", path) {
			continue
		}
		doc, ok := documented[path]
		if !assert.True(t, ok, "docs/policy.md does not document %s (CEL type %s)", path, typ) {
			continue
		}
		assert.Equal(t, typ, doc, "docs/policy.md gives %s the wrong CEL type", path)
	}
	for path := range documented {
		assert.True(t, contains(fields, path), "docs/policy.md documents %s, which policies cannot read", path)
	}
}

// TestDocsExamplesRun compiles every policy in docs/policy.md and runs each
// block of cases against the policy block before it.
func TestDocsExamplesRun(t *testing.T) {
	b, err := os.ReadFile(docPath)
	require.NoError(t, err)
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(b), -1)
	require.NotEmpty(t, blocks)
	var (
		last    *policy.Engine
		lastSrc string
		ran     int
	)
	for i, m := range blocks {
		src := m[1]
		name := fmt.Sprintf("docs/policy.md yaml block #%d", i+1)
		switch {
		case strings.HasPrefix(src, "rules:"):
			last, err = policy.Parse(name, []byte(src))
			require.NoError(t, err, src)
			lastSrc = src
		case strings.Contains(src, "\ncases:") || strings.HasPrefix(src, "cases:"):
			cases, err := policytest.ParseCases(name, []byte(src))
			require.NoError(t, err, src)
			if !strings.HasPrefix(src, "cases:") {
				continue // a format example, not a test of the block before
			}
			require.NotNil(t, last, "%s: cases without a policy before them", name)
			r := policytest.Run(last, cases)
			for _, res := range r.Results {
				assert.True(t, res.Passed(), "%s: case %q against\n%s\ndiff: %v\ngot: %s", name, res.Case.Name, lastSrc, res.Diff, policytest.DescribeDecision(res.Decision))
			}
			ran += len(r.Results)
		}
	}
	assert.GreaterOrEqual(t, ran, 20, "the worked examples' cases")
}
