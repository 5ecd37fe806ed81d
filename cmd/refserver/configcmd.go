package main

import (
	_ "embed"
	"fmt"
)

// exampleConfig is the embedded default configuration: what `serve` runs
// without --config (the demo), and what `config example` prints.
//
//go:embed example.yaml
var exampleConfig []byte

// exampleConfigName names the embedded configuration in error messages.
const exampleConfigName = "embedded defaults"

func (c *cli) config(args []string) error {
	if len(args) == 0 {
		return usageErr("config needs a subcommand: validate FILE, or example")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "validate":
		fs := c.newFlags("config validate", "config validate FILE")
		pos, err := parseFlags(fs, rest)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usageErr("config validate needs exactly one FILE")
		}
		cfg, err := LoadConfig(pos[0])
		if err != nil {
			return err
		}
		e, err := cfg.CheckPolicy()
		if err != nil {
			return err
		}
		if e == nil {
			fmt.Fprintf(c.stdout, "%s: ok\n", pos[0])
		} else {
			fmt.Fprintf(c.stdout, "%s: ok (policy: %d rules in %d files, default %s)\n", pos[0], len(e.Rules()), len(e.Files()), e.Default())
		}
		return nil
	case "example":
		if len(rest) > 0 {
			return usageErr("config example takes no arguments")
		}
		_, err := c.stdout.Write(exampleConfig)
		return err
	default:
		return usageErr("unknown config subcommand %q (want validate or example)", sub)
	}
}
