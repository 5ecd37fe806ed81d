package policytest_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/policy"
	"github.com/sluicegw/sluice/policy/policytest"
)

const examplesDir = "../../examples/policies"

// TestExamplePolicies runs the tests of every example policy through the
// real classifier and engine.
func TestExamplePolicies(t *testing.T) {
	policytest.RunT(t, nil, examplesDir)
}

// TestExamplePoliciesAreCovered holds the examples to their promise: every
// policy has a test file with at least six cases that names it, and every
// rule is matched by some case.
func TestExamplePoliciesAreCovered(t *testing.T) {
	policies, tests, err := policytest.Discover(examplesDir)
	require.NoError(t, err)
	require.NotEmpty(t, policies)
	for _, want := range []string{"read-only-agent.yaml", "no-destructive.yaml", "prod-writes-approval.yaml", "baseline.yaml", "demo.yaml", "mcp.yaml"} {
		assert.Contains(t, policies, filepath.Join(examplesDir, want))
	}
	for _, p := range policies {
		test := strings.TrimSuffix(p, ".yaml") + policytest.TestFileSuffix
		require.Contains(t, tests, test, "%s has no test file", p)
		cases, err := policytest.LoadCases(test)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, len(cases), 6, "%s: at least six cases", test)
		for _, c := range cases {
			require.Equal(t, []string{p}, c.Policies, "%s: the test file names its policy", test)
		}
		e, err := policy.Load(p)
		require.NoError(t, err)
		r := policytest.Run(e, cases)
		assert.True(t, r.OK(), "%s: %s", test, r.Summary())
		assert.Empty(t, r.Unmatched, "%s: rules without a case", p)
	}

	r, err := policytest.RunFiles(examplesDir)
	require.NoError(t, err)
	assert.True(t, r.OK(), r.Summary())
	assert.Empty(t, r.Unmatched)
}
