package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicegw/sluice/masking"
)

func TestPolicyDetectors(t *testing.T) {
	e, err := Parse("d.yaml", []byte(`
detectors:
  - name: employee_id
    pattern: '\bEMP-[0-9]{6}\b'
  - name: account_no
    pattern: '\b[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{4}\b'
    validate: luhn
rules:
  - name: r
    match: "true"
    action: allow
    mask: [employee_id, "account_no=partial:4", email]
`))
	require.NoError(t, err)
	gen, dets := e.Detectors()
	assert.NotZero(t, gen)
	require.Len(t, dets, 2)
	assert.Empty(t, e.UnknownDetectors())

	m, err := masking.Compile([]string{"employee_id", "account_no=partial:4"}, masking.Options{Custom: dets})
	require.NoError(t, err)
	vals := [][]byte{[]byte("ask EMP-123456 about 4111-1111-1111-1111 not 4111-1111-1111-1112")}
	n, err := m.MaskRow([]masking.Column{{Name: "note", TypeOID: 25}}, vals)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	got := string(vals[0])
	assert.NotContains(t, got, "EMP-123456")
	assert.NotContains(t, got, "4111-1111-1111-1111")
	assert.Contains(t, got, "4111-1111-1111-1112", "the validator rejects a number failing Luhn")

	e2, err := Parse("d.yaml", []byte("rules:\n  - name: r\n    match: 'true'\n    action: allow\n    mask: [employe_id, email]\n"))
	require.NoError(t, err)
	assert.Equal(t, []string{"employe_id"}, e2.UnknownDetectors())
	gen2, _ := e2.Detectors()
	assert.NotEqual(t, gen, gen2, "each compiled policy has its own generation")

	for _, bad := range []struct{ yaml, want string }{
		{"detectors:\n  - name: x\n    pattern: '('\n", `detector "x": error parsing regexp`},
		{"detectors:\n  - name: email\n    pattern: 'a'\n", "taken"},
		{"detectors:\n  - name: x\n    pattern: 'a'\n    validate: crc\n", `validate: "crc" is not one of iban, luhn`},
		{"detectors:\n  - name: x\n", "name and pattern are required"},
		{"detectors:\n  - name: x\n    pattern: a\n    flavour: y\n", `unknown key "flavour"`},
		{"detectors:\n  - {name: x, pattern: a}\n  - {name: x, pattern: b}\n", "defined twice"},
		{"detectors: nope\n", "want a list of detectors"},
	} {
		_, err := Parse("d.yaml", []byte(bad.yaml))
		require.Error(t, err, bad.yaml)
		assert.Contains(t, err.Error(), bad.want, bad.yaml)
		assert.Contains(t, err.Error(), "d.yaml:", "errors name the file")
	}
}
