package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/authn/apitoken"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/explain"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// loadForTool loads a config for a one-shot command and waits briefly for
// JWT keys, so a --token can be verified.
func loadForTool(path string, stderr io.Writer) (*snapshot.Snapshot, bool) {
	// The parts read their files while the configuration compiles and
	// while they become ready; the Secrets' files go once they are.
	opts, done := withSecrets(config.Options{})
	defer done()
	snap, err := config.Load(path, opts)
	if err != nil {
		printConfigError(stderr, err)
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !snap.WaitReady(ctx) {
		fmt.Fprintln(stderr, "warning: some JWT issuers' keys could not be fetched; their tokens will not verify")
	}
	return snap, true
}

func printConfigError(stderr io.Writer, err error) {
	var cerr *config.Error
	if errors.As(err, &cerr) {
		for _, p := range cerr.Problems {
			fmt.Fprintln(stderr, p.String())
		}
		fmt.Fprintf(stderr, "%d problem(s) found\n", len(cerr.Problems))
		return
	}
	fmt.Fprintf(stderr, "sekisho: %v\n", err)
}

func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("config", "", "config file")
	token := fs.String("token", "", "credential to authenticate (sent as a Bearer token)")
	ident := fs.String("identity", "", `identity as JSON instead of a token, e.g. {"email":"alice@example.com","groups":["admin"],"mfa":true}`)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	var headers headerFlags
	fs.Var(&headers, "H", "extra request header \"Name: value\" (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfg == "" || fs.NArg() != 2 {
		fmt.Fprintln(stderr, "usage: sekisho explain --config FILE [--token T | --identity JSON] [-H 'Name: value'] [--json] METHOD URL")
		return 2
	}
	if *token != "" && *ident != "" {
		fmt.Fprintln(stderr, "sekisho explain: give --token or --identity, not both")
		return 2
	}
	req := explain.Request{Method: fs.Arg(0), URL: fs.Arg(1), Token: *token, Headers: headers.m}
	if *ident != "" {
		var id identity.Identity
		dec := json.NewDecoder(strings.NewReader(*ident))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&id); err != nil {
			fmt.Fprintf(stderr, "sekisho explain: --identity: %v\n", err)
			return 2
		}
		req.Identity = &id
	}
	snap, ok := loadForTool(*cfg, stderr)
	if !ok {
		return 1
	}
	defer snap.Close()
	rep, err := explain.Explain(context.Background(), snap, req)
	if err != nil {
		fmt.Fprintf(stderr, "sekisho explain: %v\n", err)
		return 2
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		rep.WriteText(stdout)
	}
	return 0
}

// headerFlags collects repeated -H "Name: value" flags.
type headerFlags struct{ m map[string]string }

func (h *headerFlags) String() string { return "" }

func (h *headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("header %q: want \"Name: value\"", v)
	}
	if h.m == nil {
		h.m = map[string]string{}
	}
	h.m[strings.TrimSpace(name)] = strings.TrimSpace(value)
	return nil
}

func cmdPolicyTest(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("policy test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("config", "", "config file (default: the suite's config: key)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: sekisho policy test [--config FILE] TESTS.yaml")
		return 2
	}
	suite, err := explain.LoadSuite(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "sekisho policy test: %v\n", err)
		return 2
	}
	path := suite.Config
	if *cfg != "" {
		path = *cfg
	}
	if path == "" {
		fmt.Fprintln(stderr, "sekisho policy test: no config: give --config or a config: key in the test file")
		return 2
	}
	snap, ok := loadForTool(path, stderr)
	if !ok {
		return 1
	}
	defer snap.Close()
	fails := suite.Run(context.Background(), snap)
	for _, f := range fails {
		fmt.Fprintf(stdout, "FAIL %s: expected %s\n", f.Case.Name, f.Case.Expect)
		if f.Err != nil {
			fmt.Fprintf(stdout, "  error: %v\n", f.Err)
			continue
		}
		f.Report.WriteText(indent{stdout})
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", len(suite.Cases)-len(fails), len(fails))
	if len(fails) > 0 {
		return 1
	}
	return 0
}

// indent prefixes every line written through it.
type indent struct{ w io.Writer }

func (i indent) Write(p []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(p), "\n") {
		if line == "" {
			continue
		}
		if _, err := io.WriteString(i.w, "  "+line); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func cmdToken(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: sekisho token hash < token   |   sekisho token new")
		return 2
	}
	switch args[0] {
	case "hash":
		line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintf(stderr, "sekisho token hash: read stdin: %v\n", err)
			return 1
		}
		secret := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if secret == "" {
			fmt.Fprintln(stderr, "sekisho token hash: no token on stdin")
			return 2
		}
		fmt.Fprintln(stdout, apitoken.Hash([]byte(secret)))
		return 0
	case "new":
		tok, err := apitoken.Generate()
		if err != nil {
			fmt.Fprintf(stderr, "sekisho token new: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "token: %s\nhash:  %s\n", tok, apitoken.Hash([]byte(tok)))
		return 0
	default:
		fmt.Fprintf(stderr, "sekisho token: unknown subcommand %q (hash, new)\n", args[0])
		return 2
	}
}
