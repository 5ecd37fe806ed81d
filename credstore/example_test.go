package credstore_test

import (
	"context"
	"fmt"
	"os"

	"github.com/sluicegw/sluice/credstore"
)

// A target names its credential by reference; the store resolves it when
// the gateway dials the backend. Printing the credential never shows the
// secret.
func ExampleDefault() {
	os.Setenv("PG_APP_PASSWORD", "correct horse")
	c, err := credstore.Default{}.Resolve(context.Background(), credstore.Ref{Username: "app", Password: "env:PG_APP_PASSWORD"})
	fmt.Println(c.Username, c.Password, err)
	// Output: app [redacted] <nil>
}
