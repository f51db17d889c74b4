package vault

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// The ways the provider authenticates to Vault or OpenBao.
const (
	// AuthToken uses a token as given: $BAO_TOKEN or $VAULT_TOKEN, or the
	// contents of a file (a Vault Agent sink, a mounted Secret).
	AuthToken = "token"
	// AuthKubernetes logs in with the pod's service-account token at
	// auth/kubernetes/login; the server checks it with the cluster's
	// TokenReview API.
	AuthKubernetes = "kubernetes"
	// AuthJWT logs in with a JWT (a projected service-account token) at
	// auth/jwt/login; the server checks its signature with the issuer's
	// keys, without calling the cluster.
	AuthJWT = "jwt"
)

// DefaultJWTFile is where Kubernetes mounts a pod's service-account token,
// the JWT the kubernetes and jwt methods log in with unless told otherwise.
const DefaultJWTFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// DefaultTimeout bounds each request to the server (and a login).
const DefaultTimeout = 10 * time.Second

// Options configure a Provider. OptionsFromEnv reads them from the
// environment variables Vault's and OpenBao's own tools read.
type Options struct {
	// Address is the server's URL (https://vault.example:8200).
	Address string
	// CACert is a PEM file of CA certificates to verify the server with,
	// CAPath a directory of them; neither: the system's roots.
	CACert, CAPath string
	// TLSServerName is the name to verify the server's certificate for,
	// when it differs from Address's host.
	TLSServerName string
	// Namespace is the Vault Enterprise or OpenBao namespace of the
	// secrets and the auth method.
	Namespace string

	// Auth is AuthToken, AuthKubernetes or AuthJWT. Empty picks: token
	// when Token or TokenFile is set, else kubernetes when Role is.
	Auth string
	// Token is the token for AuthToken.
	Token string
	// TokenFile holds the token for AuthToken; it is read once, at the
	// first secret.
	TokenFile string
	// Role is the role to log in as (AuthKubernetes, AuthJWT).
	Role string
	// AuthMount is where the login method is mounted, under auth/; it
	// defaults to the method's name ("kubernetes", "jwt").
	AuthMount string
	// JWTFile holds the JWT to log in with; DefaultJWTFile if empty. It
	// is read at each login: projected tokens are rotated by the kubelet.
	JWTFile string

	// Timeout bounds each request; DefaultTimeout if zero.
	Timeout time.Duration
	// Logger receives logins and renewals (never a token); slog.Default
	// if nil.
	Logger *slog.Logger
}

// OptionsFromEnv reads Options from the environment through getenv:
// BAO_ADDR or VAULT_ADDR, BAO_CACERT or VAULT_CACERT, BAO_CAPATH or
// VAULT_CAPATH, BAO_TLS_SERVER_NAME or VAULT_TLS_SERVER_NAME, BAO_NAMESPACE
// or VAULT_NAMESPACE, BAO_TOKEN or VAULT_TOKEN (the BAO_ name wins when
// both are set, as in OpenBao's own tools), and SEKISHO_VAULT_AUTH,
// SEKISHO_VAULT_TOKEN_FILE, SEKISHO_VAULT_ROLE, SEKISHO_VAULT_AUTH_MOUNT,
// SEKISHO_VAULT_JWT_FILE. Nothing is checked here: New says what is wrong.
func OptionsFromEnv(getenv func(string) string) Options {
	either := func(name string) string {
		if v := getenv("BAO_" + name); v != "" {
			return v
		}
		return getenv("VAULT_" + name)
	}
	return Options{
		Address:       either("ADDR"),
		CACert:        either("CACERT"),
		CAPath:        either("CAPATH"),
		TLSServerName: either("TLS_SERVER_NAME"),
		Namespace:     either("NAMESPACE"),
		Token:         either("TOKEN"),
		Auth:          getenv("SEKISHO_VAULT_AUTH"),
		TokenFile:     getenv("SEKISHO_VAULT_TOKEN_FILE"),
		Role:          getenv("SEKISHO_VAULT_ROLE"),
		AuthMount:     getenv("SEKISHO_VAULT_AUTH_MOUNT"),
		JWTFile:       getenv("SEKISHO_VAULT_JWT_FILE"),
	}
}

// check fills in defaults and reports what is missing or contradictory,
// in the words of the environment variables.
func (o *Options) check() error {
	if o.Address == "" {
		return errors.New("no server address: set BAO_ADDR or VAULT_ADDR (https://vault.example:8200)")
	}
	// The address is quoted only once it is known to hold no password.
	u, err := url.Parse(o.Address)
	if err != nil {
		return errors.New("the server address (BAO_ADDR, VAULT_ADDR) is not a URL")
	}
	if u.User != nil {
		return errors.New("the server address (BAO_ADDR, VAULT_ADDR) holds a user name or password: give a token in BAO_TOKEN or VAULT_TOKEN instead")
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("server address %q is not an http:// or https:// URL without query (BAO_ADDR, VAULT_ADDR)", o.Address)
	}
	if o.Auth == "" {
		switch {
		case o.Token != "" || o.TokenFile != "":
			o.Auth = AuthToken
		case o.Role != "":
			o.Auth = AuthKubernetes
		default:
			return errors.New("no credentials: set BAO_TOKEN or VAULT_TOKEN, or SEKISHO_VAULT_TOKEN_FILE, or SEKISHO_VAULT_ROLE to log in with the service-account token (SEKISHO_VAULT_AUTH=kubernetes or jwt)")
		}
	}
	switch o.Auth {
	case AuthToken:
		if o.Token != "" && o.TokenFile != "" {
			return errors.New("both a token (BAO_TOKEN or VAULT_TOKEN) and SEKISHO_VAULT_TOKEN_FILE are set: set one")
		}
		if o.Token == "" && o.TokenFile == "" {
			return errors.New("SEKISHO_VAULT_AUTH=token needs BAO_TOKEN, VAULT_TOKEN or SEKISHO_VAULT_TOKEN_FILE")
		}
		if o.Token != "" && !printable(o.Token) {
			return errors.New("the token (BAO_TOKEN or VAULT_TOKEN) has spaces or control characters")
		}
	case AuthKubernetes, AuthJWT:
		if o.Role == "" {
			return fmt.Errorf("SEKISHO_VAULT_AUTH=%s needs SEKISHO_VAULT_ROLE, the role to log in as", o.Auth)
		}
		if o.AuthMount == "" {
			o.AuthMount = o.Auth
		}
		o.AuthMount = strings.Trim(o.AuthMount, "/")
		if o.AuthMount == "" || strings.Contains(o.AuthMount, "..") {
			return fmt.Errorf("SEKISHO_VAULT_AUTH_MOUNT %q is not a mount path", o.AuthMount)
		}
		if o.JWTFile == "" {
			o.JWTFile = DefaultJWTFile
		}
	default:
		return fmt.Errorf("SEKISHO_VAULT_AUTH %q is not %s, %s or %s", o.Auth, AuthToken, AuthKubernetes, AuthJWT)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// printable reports whether a token or JWT read from the environment or a
// file is all visible ASCII: anything else is a mistake (a stray newline
// inside, a binary file), and would be refused by the HTTP client anyway.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
