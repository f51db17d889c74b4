package config

import (
	"fmt"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/sekisho/sekisho/internal/authn/jwtauth"
	"github.com/sekisho/sekisho/internal/authz"
	"github.com/sekisho/sekisho/internal/decision/decisionconf"
	"github.com/sekisho/sekisho/internal/devidp"
	"github.com/sekisho/sekisho/internal/listen"
	"github.com/sekisho/sekisho/internal/login"
	"github.com/sekisho/sekisho/internal/tracing"
)

// File is the YAML configuration as the user writes it. It is only the
// source: the gateway runs on the compiled Snapshot.
type File struct {
	Listen         Listen   `yaml:"listen"`
	Admin          Admin    `yaml:"admin"`
	TrustedProxies []string `yaml:"trusted_proxies"`
	Log            Log      `yaml:"log"`

	// Realm is the realm of WWW-Authenticate challenges.
	Realm            string                 `yaml:"realm"`
	JWT              []jwtauth.IssuerConfig `yaml:"jwt"`
	APITokens        *APITokens             `yaml:"api_tokens"`
	Credentials      Credentials            `yaml:"credentials"`
	UpstreamIdentity UpstreamIdentity       `yaml:"upstream_identity"`

	// Providers enable browser login (OIDC authorization code flow).
	Providers []Provider `yaml:"providers"`
	Session   Session    `yaml:"session"`
	Login     Login      `yaml:"login"`

	// Decision runs the decision service for other proxies (ext_authz,
	// auth_request, forward-auth).
	Decision *Decision `yaml:"decision"`

	// Kube runs the Kubernetes modes (the TokenReview webhook).
	Kube *Kube `yaml:"kube"`

	// Tracing sends OpenTelemetry traces to an OTLP collector. Without
	// it, the OTEL_* variables decide (internal/tracing).
	Tracing *Tracing `yaml:"tracing"`

	// Caches bounds the verified-token and decoded-session caches.
	Caches Caches `yaml:"caches"`

	Routes []Route `yaml:"routes"`
}

// Tracing is the tracing section; the tracing package owns the type.
type Tracing = tracing.Config

// Decision configures the decision service listeners; the decision stage
// owns the type and its rules.
type Decision = decisionconf.Config

// DecisionTLS serves the decision listeners over TLS, optionally requiring
// client certificates (mTLS).
type DecisionTLS = decisionconf.TLS

// Provider is an OIDC provider for browser login, or, with builtin, the
// development provider served by sekisho itself.
type Provider struct {
	login.ProviderConfig `yaml:",inline"`
	Builtin              *Builtin `yaml:"builtin"`
}

// Builtin configures the built-in development identity provider.
type Builtin struct {
	devidp.Config `yaml:",inline"`
	// Issuer is the URL browsers reach the provider at; by default it is
	// derived from the loopback listener (http://127.0.0.1:8080/.sekisho/dev/NAME).
	Issuer string `yaml:"issuer"`
}

// Session configures browser sessions.
type Session struct {
	Cookie string `yaml:"cookie"`
	// SecretFile holds the cookie encryption keys, one per line, the first
	// current (rotation). Without it a random key is made at start.
	SecretFile  string        `yaml:"secret_file"`
	TTL         time.Duration `yaml:"ttl"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// Store is "cookie" (default) or a redis:// or rediss:// URL.
	Store  string `yaml:"store"`
	Domain string `yaml:"domain"`
	// Secure marks cookies Secure; default: when listen.https is set. Set it
	// true behind a proxy that terminates TLS.
	Secure *bool `yaml:"secure"`
}

// Login configures the login endpoints.
type Login struct {
	PathPrefix             string   `yaml:"path_prefix"`
	AllowedRedirectDomains []string `yaml:"allowed_redirect_domains"`
	PostLogoutRedirect     string   `yaml:"post_logout_redirect"`
}

// APITokens points at the file of hashed API tokens (name, hash, groups,
// expires). It is re-read whenever the configuration is.
type APITokens struct {
	File string `yaml:"file"`
}

// Credentials names places besides "Authorization: Bearer" where clients
// may send a token.
type Credentials struct {
	Header string `yaml:"header"`
	Cookie string `yaml:"cookie"`
}

// UpstreamIdentity says how the caller's identity is passed upstream.
type UpstreamIdentity struct {
	Headers   IdentityHeaderNames `yaml:"headers"`
	Strip     []string            `yaml:"strip"`
	Assertion *Assertion          `yaml:"assertion"`
}

// IdentityHeaderNames are the headers set on forwarded requests.
type IdentityHeaderNames struct {
	User   string `yaml:"user"`
	Email  string `yaml:"email"`
	Groups string `yaml:"groups"`
}

// Assertion configures the signed JWT sent upstream.
type Assertion struct {
	Header  string        `yaml:"header"`
	KeyFile string        `yaml:"key_file"`
	TTL     time.Duration `yaml:"ttl"`
	Issuer  string        `yaml:"issuer"`
}

// Listen configures the client-facing listeners. Changing it needs a restart:
// a reload keeps the listeners it started with.
type Listen struct {
	HTTP              string        `yaml:"http"`
	HTTPS             string        `yaml:"https"`
	TLS               *TLS          `yaml:"tls"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`
	RedirectPort      int           `yaml:"redirect_port"`
}

// Config is the listen stage's view of these settings: the one conversion,
// used by the config compiler to check them and by serve to start them.
func (l *Listen) Config() listen.Config {
	cfg := listen.Config{
		HTTP:              l.HTTP,
		HTTPS:             l.HTTPS,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		RedirectPort:      l.RedirectPort,
	}
	if l.TLS != nil {
		cfg.CertFile, cfg.KeyFile = l.TLS.CertFile, l.TLS.KeyFile
		if a := l.TLS.ACME; a != nil {
			cfg.ACME = &listen.ACME{Email: a.Email, Domains: a.Domains, CacheDir: a.CacheDir, DirectoryURL: a.DirectoryURL}
		}
	}
	return cfg
}

// TLS is either a certificate and key from files or ACME.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	ACME     *ACME  `yaml:"acme"`
}

// ACME obtains certificates automatically (HTTP-01 on the plain listener).
type ACME struct {
	Email        string   `yaml:"email"`
	Domains      []string `yaml:"domains"`
	CacheDir     string   `yaml:"cache_dir"`
	DirectoryURL string   `yaml:"directory_url"`
}

// Admin is the operator listener: health, readiness, metrics, profiling.
type Admin struct {
	Listen string `yaml:"listen"`
	Pprof  bool   `yaml:"pprof"`
}

// Log selects the log format and what is logged.
type Log struct {
	Format string `yaml:"format"` // json (default) or text
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Access *bool  `yaml:"access"` // one line per request; default true
}

// Route is one entry of routes:.
type Route struct {
	Name        string        `yaml:"name"`
	Match       Match         `yaml:"match"`
	To          Upstreams     `yaml:"to"`
	Timeout     time.Duration `yaml:"timeout"`
	Retries     *int          `yaml:"retries"`
	RewriteHost bool          `yaml:"rewrite_host"`
	// UpstreamTransport picks the HTTP/1.1 client for http:// upstreams:
	// "lean" (default) or "standard" (Go's http.Transport), an escape hatch
	// should an upstream depend on something only the standard one does.
	UpstreamTransport string `yaml:"upstream_transport"`
	AllowEncodedSlash bool   `yaml:"allow_encoded_slash"`
	AllowPathParams   bool   `yaml:"allow_path_params"`
	Public            bool   `yaml:"public"`
	PassCredentials   bool   `yaml:"pass_credentials"`
	// UpstreamTLS verifies https upstreams against a private CA and/or
	// presents a client certificate to them (mTLS).
	UpstreamTLS *UpstreamTLS `yaml:"upstream_tls"`
	// Upgrades lists the protocols a client may switch to with Upgrade
	// (default [websocket]; [] allows none). h2c is never allowed.
	Upgrades []string `yaml:"upgrades"`
	// API marks a route for programs: no login redirect, always 401.
	API   bool         `yaml:"api"`
	Allow []authz.Rule `yaml:"allow"`
	Deny  []authz.Rule `yaml:"deny"`

	// AllowExtensionMethods accepts methods other than the standard nine
	// (WebDAV's PROPFIND, for example); they get 400 elsewhere.
	AllowExtensionMethods bool `yaml:"allow_extension_methods"`
	// AllowMethodOverride decides a POST carrying X-HTTP-Method-Override
	// (or a spelling of it) as the overriding method and forwards the
	// header; elsewhere override headers are stripped.
	AllowMethodOverride bool `yaml:"allow_method_override"`
}

// UpstreamTLS configures the TLS client side towards a route's https
// upstreams. The files are read when the configuration is loaded, and again
// on every reload, so a renewed certificate takes effect without a restart.
type UpstreamTLS struct {
	// CAFile holds the PEM certificates that may sign the upstream's
	// certificate, instead of the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client certificate (PEM, chain allowed)
	// and its key, presented when the upstream asks for one.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the upstream's certificate must carry (and
	// the SNI sent), when it differs from the host in the upstream URL.
	ServerName string `yaml:"server_name"`
}

// Match selects the requests a route serves. All given conditions must hold.
type Match struct {
	Host       string            `yaml:"host"`
	Hosts      []string          `yaml:"hosts"`
	Path       string            `yaml:"path"`
	PathPrefix string            `yaml:"path_prefix"`
	PathRegex  string            `yaml:"path_regex"`
	Methods    []string          `yaml:"methods"`
	Headers    map[string]string `yaml:"headers"`
}

// Upstream is one backend of a route, with its share of the traffic.
type Upstream struct {
	URL    string `yaml:"url"`
	Weight *int   `yaml:"weight"`
}

// Upstreams accepts both `to: http://svc:8080` and a weighted list
// `to: [{url: ..., weight: 90}, ...]`.
type Upstreams []Upstream

// UnmarshalYAML implements the two accepted forms, checking keys itself
// because nested decoders do not inherit strictness.
func (u *Upstreams) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*u = Upstreams{{URL: n.Value}}
		return nil
	case yaml.SequenceNode:
		out := make(Upstreams, 0, len(n.Content))
		for _, item := range n.Content {
			switch item.Kind {
			case yaml.ScalarNode:
				out = append(out, Upstream{URL: item.Value})
			case yaml.MappingNode:
				var up Upstream
				for i := 0; i+1 < len(item.Content); i += 2 {
					k, v := item.Content[i], item.Content[i+1]
					switch k.Value {
					case "url":
						if err := v.Decode(&up.URL); err != nil {
							return fmt.Errorf("line %d: url: %w", v.Line, err)
						}
					case "weight":
						var w int
						if err := v.Decode(&w); err != nil {
							return fmt.Errorf("line %d: weight must be a whole number", v.Line)
						}
						up.Weight = &w
					default:
						return fmt.Errorf("line %d: unknown key %q in an upstream (known keys: url, weight)", k.Line, k.Value)
					}
				}
				out = append(out, up)
			default:
				return fmt.Errorf("line %d: an upstream is a URL or {url, weight}", item.Line)
			}
		}
		*u = out
		return nil
	default:
		return fmt.Errorf("line %d: to: must be a URL or a list of {url, weight}", n.Line)
	}
}

// hostList merges host and hosts.
func (m Match) hostList() []string {
	hosts := append([]string(nil), m.Hosts...)
	if m.Host != "" {
		hosts = append(hosts, m.Host)
	}
	for i, h := range hosts {
		hosts[i] = strings.ToLower(strings.TrimSuffix(h, "."))
	}
	return hosts
}
