package credstore

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSecretNeverPrints(t *testing.T) {
	s := NewSecret("hunter2")
	c := Credential{Username: "app", Password: s}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("cred", "secret", s, "cred", c)
	j, err := json.Marshal(c)
	require.NoError(t, err)
	for _, out := range []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", c, c, c, s, s), string(j), logged.String(),
	} {
		assert.NotContains(t, out, "hunter2")
	}
	assert.Equal(t, "hunter2", s.Reveal())
	assert.False(t, s.IsZero())
	assert.True(t, Secret{}.IsZero())
}

func TestDefaultResolve(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(file, []byte("from-file\n"), 0o600))
	t.Setenv("SLUICE_TEST_PW", "from-env")
	ctx := context.Background()

	tests := []struct {
		ref     string
		inline  bool
		want    string
		wantErr string
	}{
		{ref: "", want: ""},
		{ref: "env:SLUICE_TEST_PW", want: "from-env"},
		{ref: "file:" + file, want: "from-file"},
		{ref: "inline:lit", inline: true, want: "lit"},
		{ref: "inline:lit", wantErr: "inline secrets are disabled"},
		{ref: "env:SLUICE_TEST_UNSET_VAR", wantErr: "environment variable SLUICE_TEST_UNSET_VAR: credential not found"},
		{ref: "file:" + filepath.Join(dir, "none"), wantErr: "credential not found"},
		{ref: "vault:secret/pg", wantErr: "vault: references need a store built by credstore.New"},
		{ref: "exec:/bin/true", wantErr: "exec: references need a store built by credstore.New"},
		{ref: "bogus:x", wantErr: `unknown reference scheme "bogus"`},
		{ref: "plain-password", wantErr: "password reference must be"},
		{ref: "Plain-Password1:with:colons", wantErr: "unknown reference scheme (want"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			c, err := Default{AllowInline: tt.inline}.Resolve(ctx, Ref{Username: "u", Password: tt.ref})
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.NotContains(t, strings.ToLower(err.Error()), "plain-password", "a mistaken literal password is not echoed")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "u", c.Username)
			assert.Equal(t, tt.want, c.Password.Reveal())
		})
	}
}

func TestValidateRef(t *testing.T) {
	for _, ok := range []string{
		"", "env:X", "file:/run/secrets/pg", "inline:x",
		"exec:/usr/bin/get-secret --name 'orders db'", "exec:get-secret",
		"vault:secret/data/pg#password", "vault:secret/pg", "vault:kv/team/data/app/db?version=3#pw",
	} {
		assert.NoError(t, ValidateRef(Ref{Password: ok}), ok)
	}
	for ref, want := range map[string]string{
		"env:":                      "password reference must be",
		"s3cret":                    "password reference must be",
		"bogus:x":                   `unknown reference scheme "bogus"`,
		"vault:x":                   `vault reference "x": needs a mount and a path`,
		"vault:secret/pg?v=1":       "only one ?version=N is understood",
		"exec:'unterminated":        "exec reference: unterminated single quote",
		"exec:   ":                  "exec reference: no command",
		"My P@ss:word":              "unknown reference scheme (want env, file, exec, vault or inline)",
		"vault:secret/pg#":          "empty field",
		"vault:secret/pg?version=0": "version must be a whole number from 1",
	} {
		err := ValidateRef(Ref{Password: ref})
		if assert.Error(t, err, ref) {
			assert.Contains(t, err.Error(), want, ref)
			assert.NotContains(t, err.Error(), "P@ss", "a literal password is not echoed")
		}
	}
}
