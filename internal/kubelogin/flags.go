package kubelogin

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// UsageError is a bad command line: the command exits 2 with its message.
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &UsageError{msg: fmt.Sprintf(format, args...)} }

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("must not be empty")
	}
	*s = append(*s, v)
	return nil
}

// providerFlags are the flags login and setup share: setup writes them
// into the kubeconfig, login reads them back.
type providerFlags struct {
	issuer, clientID, clientSecret, caFile, tokenType, listen string
	scopes                                                    stringList
	deviceCode                                                bool
}

func (p *providerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.issuer, "issuer", "", "OpenID Connect issuer URL (required)")
	fs.StringVar(&p.clientID, "client-id", "", "OAuth client ID registered at the provider (required)")
	fs.StringVar(&p.clientSecret, "client-secret", "", "client secret, for providers that have no public clients (PKCE needs none)")
	fs.Var(&p.scopes, "scope", "extra scope to request, e.g. groups (repeatable)")
	fs.StringVar(&p.caFile, "ca-file", "", "PEM file of CAs trusted for the issuer's TLS, on top of the system's")
	fs.StringVar(&p.tokenType, "token-type", TokenTypeID, "token kubectl sends: id_token or access_token")
	fs.StringVar(&p.listen, "listen", DefaultListen, "loopback address of the redirect listener; a fixed port such as 127.0.0.1:8000 for providers that need the exact redirect URI http://127.0.0.1:8000/callback")
	fs.BoolVar(&p.deviceCode, "device-code", false, "sign in with a device code (RFC 8628) instead of a browser on this machine")
}

func (p *providerFlags) check() error {
	switch {
	case p.issuer == "":
		return usagef("--issuer is required")
	case !strings.HasPrefix(p.issuer, "https://") && !strings.HasPrefix(p.issuer, "http://"):
		return usagef("--issuer %q must be an http(s) URL", p.issuer)
	case p.clientID == "":
		return usagef("--client-id is required")
	case p.tokenType != TokenTypeID && p.tokenType != TokenTypeAccess:
		return usagef("--token-type must be %s or %s, not %q", TokenTypeID, TokenTypeAccess, p.tokenType)
	}
	if !p.deviceCode {
		if err := checkLoopback(p.listen); err != nil {
			return usagef("%v", err)
		}
	}
	return nil
}

func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// Usage prints the flags of fs (for -h).
func usage(fs *flag.FlagSet, w io.Writer, synopsis string) {
	fmt.Fprintf(w, "usage: %s\n\nflags:\n", synopsis)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

const (
	loginSynopsis = "sekisho kube login --issuer URL --client-id ID [flags]"
	setupSynopsis = "sekisho kube setup --issuer URL --client-id ID [--name USER] [--cluster NAME --server URL [--certificate-authority FILE]] [flags]"
)

// ParseLogin reads `sekisho kube login` flags into Options (without the
// writers, clock and KUBERNETES_EXEC_INFO, which the caller adds). A bad
// command line is a *UsageError; -h is flag.ErrHelp after the usage is
// printed on help.
func ParseLogin(args []string, help io.Writer) (Options, error) {
	fs := flag.NewFlagSet("sekisho kube login", flag.ContinueOnError)
	var p providerFlags
	p.register(fs)
	var o Options
	fs.BoolVar(&o.NoBrowser, "no-browser", false, "print the sign-in URL on stderr instead of opening a browser")
	fs.StringVar(&o.BrowserCommand, "browser-command", "", "program that opens the sign-in URL (its one argument); default xdg-open, or open on macOS")
	fs.StringVar(&o.CacheDir, "cache-dir", "", "token cache directory (default: the user cache directory/sekisho/kube-login)")
	fs.DurationVar(&o.LoginTimeout, "timeout", DefaultLoginTimeout, "how long to wait for the browser or device sign-in")
	fs.BoolVar(&o.Logout, "logout", false, "remove the cached tokens for this issuer, client and scopes, and print nothing")
	if err := parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(fs, help, loginSynopsis)
		}
		return Options{}, err
	}
	if err := p.check(); err != nil {
		return Options{}, err
	}
	if o.LoginTimeout <= 0 {
		return Options{}, usagef("--timeout must be positive")
	}
	o.Issuer, o.ClientID, o.ClientSecret = p.issuer, p.clientID, p.clientSecret
	o.ExtraScopes, o.CAFile, o.TokenType = p.scopes, p.caFile, p.tokenType
	o.Listen, o.DeviceCode = p.listen, p.deviceCode
	return o, nil
}
