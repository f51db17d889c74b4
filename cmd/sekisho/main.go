// Command sekisho is the identity-aware access gateway. This file only parses
// flags and hands off to the internal packages.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/sekisho/sekisho"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/kubesecret"
	"github.com/sekisho/sekisho/internal/serve"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `sekisho: identity-aware access gateway

Usage:
  sekisho serve [--config FILE]   run the gateway (without --config: the embedded quickstart)
  sekisho check --config FILE     validate a config file; errors carry file:line and key
  sekisho explain --config FILE [--token T | --identity JSON] [--json] METHOD URL
                                  show the route, identity, every rule and the decision for a request
  sekisho policy test [--config FILE] TESTS.yaml
                                  check a table of expected decisions; exit 1 on a mismatch
  sekisho token hash              read an API token on stdin, print the hash for the tokens file
  sekisho token new               print a new random API token and its hash
  sekisho exec [--supervise] [--] CMD ARGS...
                                  replace secret references in the environment, then run CMD
  sekisho kube webhook-config|login|setup
                                  Kubernetes: TokenReview webhook kubeconfig, kubectl sign-in
  sekisho version                 print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "explain":
		return cmdExplain(args[1:], stdout, stderr)
	case "policy":
		if len(args) < 2 || args[1] != "test" {
			fmt.Fprint(stderr, "usage: sekisho policy test [--config FILE] TESTS.yaml\n")
			return 2
		}
		return cmdPolicyTest(args[2:], stdout, stderr)
	case "token":
		return cmdToken(args[1:], os.Stdin, stdout, stderr)
	case "exec":
		return cmdExec(args[1:], stderr)
	case "kube":
		return cmdKube(args[1:], os.Stdin, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "sekisho: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func cmdServe(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("config", "", "config file (default: the embedded quickstart)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := serve.Run(ctx, serve.Options{ConfigPath: *cfg, DefaultConfig: sekisho.QuickstartConfig, LogOutput: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "sekisho: %v\n", err)
		return 1
	}
	return 0
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("config", "", "config file to validate")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfg == "" {
		fmt.Fprintln(stderr, "sekisho check: --config FILE is required")
		return 2
	}
	warnings := 0
	// Check sees what serve sees: Secret references are read through the
	// API server, and one that cannot be read is a problem.
	opts, done := withSecrets(config.Options{Warn: func(p config.Problem) {
		warnings++
		fmt.Fprintf(stderr, "warning: %s\n", p)
	}})
	defer done()
	snap, err := config.Load(*cfg, opts)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	defer snap.Close()
	if warnings > 0 {
		fmt.Fprintf(stdout, "%s: ok with %d warning(s) (%d routes)\n", *cfg, warnings, snap.Routes.Len())
		return 0
	}
	fmt.Fprintf(stdout, "%s: ok (%d routes)\n", *cfg, snap.Routes.Len())
	return 0
}

// withSecrets is opts reading the Kubernetes Secrets that file settings
// reference as serve reads them (into files of a private directory); done
// removes those files.
func withSecrets(opts config.Options) (_ config.Options, done func()) {
	m := kubesecret.New(kubesecret.Options{})
	opts.SecretFile = m.Use().File
	return opts, func() { _ = m.Close() }
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		return fmt.Sprintf("sekisho %s (%s)", v, bi.GoVersion)
	}
	return "sekisho " + v
}
