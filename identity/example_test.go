package identity_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluicegw/sluice/identity"
)

// Static tokens are configured by their SHA-256; the token itself is only
// ever presented by the caller.
func ExampleStaticTokens() {
	auth, err := identity.NewStaticTokens([]identity.StaticToken{{
		Subject: "report-agent",
		Groups:  []string{"agents"},
		SHA256:  identity.HashToken("s3cret-agent-token"),
	}})
	if err != nil {
		panic(err)
	}
	id, err := auth.Authenticate(context.Background(), identity.Credentials{Token: "s3cret-agent-token"})
	fmt.Println(id.Subject, id.Groups, id.Method, err)

	_, err = auth.Authenticate(context.Background(), identity.Credentials{Token: "guess"})
	fmt.Println(errors.Is(err, identity.ErrUnauthenticated), err)
	// Output:
	// report-agent [agents] token <nil>
	// true identity: token not recognised: authentication failed
}
