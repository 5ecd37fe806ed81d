package credstore_test

import (
	"context"
	"fmt"
	"os"
	"time"

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

// New builds the store a configuration describes. exec: runs a command
// that prints the secret; its output is cached for exec.ttl.
func ExampleNew() {
	store, err := credstore.New(credstore.Config{
		Exec: credstore.ExecConfig{Timeout: 5 * time.Second},
	}, credstore.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	c, err := store.Resolve(context.Background(), credstore.Ref{Username: "app", Password: "exec:/bin/echo from-a-command"})
	fmt.Println(c.Username, c.Password, err, c.Password.Reveal() == "from-a-command")
	// Output: app [redacted] <nil> true
}
