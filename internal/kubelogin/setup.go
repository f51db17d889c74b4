package kubelogin

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// SetupOptions are what `sekisho kube setup` writes into kubectl commands.
type SetupOptions struct {
	// Name is the kubeconfig user (default "oidc").
	Name string
	// Command is the plugin program kubectl runs (default "sekisho"; an
	// absolute path when sekisho is not on kubectl's PATH).
	Command string
	// Cluster, Server and CertificateAuthority add set-cluster and
	// set-context lines when Cluster is given.
	Cluster, Server, CertificateAuthority string
	// LoginArgs are the `sekisho kube login` flags, in a stable order.
	LoginArgs []string
}

// ParseSetup reads `sekisho kube setup` flags.
func ParseSetup(args []string, help io.Writer) (SetupOptions, error) {
	fs := flag.NewFlagSet("sekisho kube setup", flag.ContinueOnError)
	var p providerFlags
	p.register(fs)
	var s SetupOptions
	fs.StringVar(&s.Name, "name", "oidc", "kubeconfig user name")
	fs.StringVar(&s.Command, "exec-command", "sekisho", "program kubectl runs as the credential plugin")
	fs.StringVar(&s.Cluster, "cluster", "", "also print set-cluster and set-context lines for this cluster name")
	fs.StringVar(&s.Server, "server", "", "the cluster's API server URL (with --cluster)")
	fs.StringVar(&s.CertificateAuthority, "certificate-authority", "", "the API server's CA file (with --cluster)")
	if err := parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(fs, help, setupSynopsis)
		}
		return SetupOptions{}, err
	}
	if err := p.check(); err != nil {
		return SetupOptions{}, err
	}
	switch {
	case s.Name == "":
		return SetupOptions{}, usagef("--name must not be empty")
	case s.Command == "":
		return SetupOptions{}, usagef("--exec-command must not be empty")
	case s.Cluster == "" && (s.Server != "" || s.CertificateAuthority != ""):
		return SetupOptions{}, usagef("--server and --certificate-authority need --cluster")
	case s.Cluster != "" && s.Server == "":
		return SetupOptions{}, usagef("--cluster needs --server")
	}
	s.LoginArgs = []string{"--issuer=" + p.issuer, "--client-id=" + p.clientID}
	if p.clientSecret != "" {
		s.LoginArgs = append(s.LoginArgs, "--client-secret="+p.clientSecret)
	}
	for _, sc := range p.scopes {
		s.LoginArgs = append(s.LoginArgs, "--scope="+sc)
	}
	if p.caFile != "" {
		s.LoginArgs = append(s.LoginArgs, "--ca-file="+p.caFile)
	}
	if p.tokenType != TokenTypeID {
		s.LoginArgs = append(s.LoginArgs, "--token-type="+p.tokenType)
	}
	if p.listen != DefaultListen {
		s.LoginArgs = append(s.LoginArgs, "--listen="+p.listen)
	}
	if p.deviceCode {
		s.LoginArgs = append(s.LoginArgs, "--device-code")
	}
	return s, nil
}

// WriteSetup prints the kubectl config commands, one per line, each word
// quoted for a POSIX shell.
func WriteSetup(w io.Writer, s SetupOptions) error {
	creds := []string{"kubectl", "config", "set-credentials", s.Name,
		"--exec-api-version=client.authentication.k8s.io/v1",
		"--exec-command=" + s.Command,
		"--exec-arg=kube", "--exec-arg=login"}
	for _, a := range s.LoginArgs {
		creds = append(creds, "--exec-arg="+a)
	}
	creds = append(creds, "--exec-interactive-mode=IfAvailable")
	lines := [][]string{creds}
	if s.Cluster != "" {
		cl := []string{"kubectl", "config", "set-cluster", s.Cluster, "--server=" + s.Server}
		if s.CertificateAuthority != "" {
			cl = append(cl, "--certificate-authority="+s.CertificateAuthority, "--embed-certs=true")
		}
		lines = append(lines,
			cl,
			[]string{"kubectl", "config", "set-context", s.Cluster, "--cluster=" + s.Cluster, "--user=" + s.Name})
	}
	for _, l := range lines {
		q := make([]string, len(l))
		for i, word := range l {
			q[i] = shellQuote(word)
		}
		if _, err := fmt.Fprintln(w, strings.Join(q, " ")); err != nil {
			return fmt.Errorf("writing the setup: %w", err)
		}
	}
	return nil
}

// shellQuote returns s as one POSIX shell word: unchanged when it holds
// only characters no shell treats specially, else in single quotes (a
// single quote inside becomes '\”).
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
