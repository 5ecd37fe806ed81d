package credstore

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseVaultRef(t *testing.T) {
	tests := []struct {
		in   string
		want VaultRef
	}{
		{"secret/data/pg#password", VaultRef{Mount: "secret", Path: "pg", Field: "password"}},
		{"secret/pg", VaultRef{Mount: "secret", Path: "pg", Field: "password"}},
		{"secret/app/db#user", VaultRef{Mount: "secret", Path: "app/db", Field: "user"}},
		{"team/kv/data/app/db?version=4#pw", VaultRef{Mount: "team/kv", Path: "app/db", Field: "pw", Version: 4}},
		{"secret/data/app/data/x", VaultRef{Mount: "secret", Path: "app/data/x", Field: "password"}},
		{"secret/data", VaultRef{Mount: "secret", Path: "data", Field: "password"}},
		{"secret/pg#a#b", VaultRef{Mount: "secret", Path: "pg", Field: "a#b"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseVaultRef(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			again, err := ParseVaultRef(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, again, "String is a reference that parses to the same")
		})
	}
	for _, bad := range []string{"", "secret", "secret/", "/secret/pg", "secret//pg", "secret/../pg", "secret/pg#", "secret/pg?version=-1", "secret/pg?version=1&version=2", "secret/pg?ver=1", "secret/data/"} {
		_, err := ParseVaultRef(bad)
		assert.Error(t, err, bad)
	}
}
