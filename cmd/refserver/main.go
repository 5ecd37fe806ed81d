// Command refserver is sluice's reference server: it turns one YAML file
// into a running gateway (targets, identity, policy, recording, credentials
// and an admin HTTP listener), and offers the operator's tools around it:
// replaying recordings, listing and ending sessions, deciding approvals, checking
// configurations, testing and explaining policies, and hashing tokens.
//
// Run `refserver -h` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = ""

const usageText = `refserver — the sluice reference server

Usage:
  refserver serve [--config FILE]
        Run the gateway. Without --config, run the embedded demo: prepare a
        demo database on the local PostgreSQL and print how to connect.
  refserver replay [--dir DIR | --config FILE] SESSION_ID
        Print a session's transcript and verify its hash chain; exit
        status 1 if the chain is broken.
  refserver replay [--dir DIR | --config FILE] --list
        List the recorded sessions.
  refserver sessions list [--admin URL] [--token T]
  refserver sessions kill ID [--admin URL] [--token T]
        List or end live sessions through the admin API
        (default http://127.0.0.1:9090; the token may also come from
        SLUICE_ADMIN_TOKEN).
  refserver approvals list [--all] [--admin URL] [--token T]
  refserver approvals show ID [--admin URL] [--token T]
  refserver approvals approve ID [--reason TEXT] [--admin URL] [--token T]
  refserver approvals deny ID [--reason TEXT] [--admin URL] [--token T]
        Decide commands waiting for approval, as yourself: the token is
        your own identity token (default $SLUICE_APPROVER_TOKEN), not the
        admin token. The web page is at <admin URL>/approvals.
  refserver config validate FILE
        Check a configuration file, and compile its policy files; every
        problem names its field (or policy file, line and rule).
  refserver config example
        Print the embedded default configuration (the demo's).
  refserver policy test PATH...
        Run policy tests: PATHs are policy files, test files (*_test.yaml)
        and directories of both. Prints PASS or FAIL per case, the summary
        and the rules no case matched; exit status 1 on any failure.
  refserver policy eval --policy PATH... (--sql TEXT | --http 'METHOD PATH' |
        --k8s verb=V,resource=R,... | --ssh COMMAND | --connect)
        [--subject S] [--groups a,b] [--target NAME] [--target-label k=v]...
        Decide one command and explain: each rule, matched or not, then
        the decision.
  refserver policy check PATH...
        Compile policy files (directories: their *.yaml, tests skipped).
  refserver token hash
        Read a token on standard input and print its SHA-256 for
        identity.tokens[].sha256 or admin.token_sha256.
  refserver version
        Print the version.

Run 'refserver COMMAND -h' for a command's flags.
`

// errUsage marks a command-line mistake: exit status 2 after the usage.
var errUsage = errors.New("usage")

// exitError carries an exit status without a further message (the command
// already said what went wrong).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli is what every command gets: its standard streams.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// run executes one refserver command and returns the process exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usageText)
		return 0
	case "serve":
		err = c.serve(ctx, rest)
	case "replay":
		err = c.replay(rest)
	case "sessions":
		err = c.sessions(ctx, rest)
	case "approvals":
		err = c.approvals(ctx, rest)
	case "config":
		err = c.config(rest)
	case "policy":
		err = c.policy(rest)
	case "token":
		err = c.token(rest)
	case "version", "--version", "-version":
		err = c.version(rest)
	default:
		fmt.Fprintf(stderr, "refserver: unknown command %q\n\n%s", cmd, usageText)
		return 2
	}
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "refserver: %v\n", err)
		return 2
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(stderr, "refserver: %v\n", err)
		return 1
	}
}

// usageErr builds an error that makes run exit with status 2.
func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
}

// newFlags returns a flag set that reports errors instead of exiting and
// prints its usage to the command's stderr.
func (c *cli) newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "Usage: refserver %s\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses flags wherever they appear among the arguments (the
// standard flag package stops at the first positional one) and returns the
// positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			// The flag package has printed the problem and the usage.
			return nil, exitError{code: 2}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (c *cli) version(args []string) error {
	if len(args) > 0 {
		return usageErr("version takes no arguments")
	}
	fmt.Fprintf(c.stdout, "refserver %s %s %s/%s\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// buildVersion is the link-time version, else the module version the
// binary was built from, else "devel".
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// trimSecret removes the line ending a shell or file adds to a secret.
func trimSecret(s string) string { return strings.TrimRight(s, "\r\n") }
