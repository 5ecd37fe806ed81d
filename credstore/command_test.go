package credstore

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"/bin/echo hello", []string{"/bin/echo", "hello"}},
		{"  /bin/echo\t a   b ", []string{"/bin/echo", "a", "b"}},
		{`/bin/echo 'a b' "c d" e\ f`, []string{"/bin/echo", "a b", "c d", "e f"}},
		{`/bin/echo 'it''s' "say \"hi\" \\ \n"`, []string{"/bin/echo", "its", `say "hi" \ \n`}},
		{`/bin/echo $HOME *`, []string{"/bin/echo", "$HOME", "*"}},
		{`/bin/echo ''`, []string{"/bin/echo", ""}},
		{`/bin/sh -c 'echo "$X" | tr a b'`, []string{"/bin/sh", "-c", `echo "$X" | tr a b`}},
	}
	for _, tt := range tests {
		got, err := SplitCommand(tt.in)
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
	for _, bad := range []string{"", "   ", "'", `"abc`, `abc\`, "a\nb", "'' x"} {
		_, err := SplitCommand(bad)
		assert.Error(t, err, bad)
	}
}
