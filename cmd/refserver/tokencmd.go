package main

import (
	"fmt"
	"io"

	"github.com/sluicegw/sluice/identity"
)

// maxTokenLen bounds what `token hash` reads: tokens, even JWTs, are far
// smaller.
const maxTokenLen = 64 << 10

func (c *cli) token(args []string) error {
	if len(args) != 1 || args[0] != "hash" {
		if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintln(c.stdout, "Usage: refserver token hash < token-file\n\nReads one token on standard input and prints its hex SHA-256, the\nform identity.tokens[].sha256 and admin.token_sha256 take.")
			return nil
		}
		return usageErr("usage: refserver token hash (reads the token on standard input)")
	}
	b, err := io.ReadAll(io.LimitReader(c.stdin, maxTokenLen+1))
	if err != nil {
		return fmt.Errorf("token hash: read standard input: %w", err)
	}
	if len(b) > maxTokenLen {
		return fmt.Errorf("token hash: input is longer than %d bytes; give the token alone", maxTokenLen)
	}
	tok := trimSecret(string(b))
	if tok == "" {
		return fmt.Errorf("token hash: no token on standard input (try: printf %%s \"$TOKEN\" | refserver token hash)")
	}
	fmt.Fprintln(c.stdout, identity.HashToken(tok))
	return nil
}
