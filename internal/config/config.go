// Package config turns the YAML file a user writes into an immutable,
// compiled snapshot.Snapshot (route table, upstream pools, trust settings). A snapshot
// is built and validated entirely off the request path and then swapped in
// atomically; a file that does not compile never replaces a working one.
package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/sekisho/sekisho/internal/authz"
	"github.com/sekisho/sekisho/internal/decision/decisionconf"
	"github.com/sekisho/sekisho/internal/devidp"
	"github.com/sekisho/sekisho/internal/listen"
	"github.com/sekisho/sekisho/internal/normalize"
	"github.com/sekisho/sekisho/internal/proxy"
	"github.com/sekisho/sekisho/internal/reuse"
	"github.com/sekisho/sekisho/internal/route"
	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// MaxFileBytes bounds the config file size: a config is small, and an
// accidental multi-gigabyte file must not take the process down.
const MaxFileBytes = 8 << 20

// Options are the process-level hooks a snapshot's parts report to.
type Options struct {
	Logger *slog.Logger
	// OnUpstreamError is called by the proxy stage (metrics).
	OnUpstreamError func(route, backend, kind string)
	// OnJWTUnknownKID and OnJWKSRefresh are called by the JWT verifier
	// (metrics): see jwtauth.Options.
	OnJWTUnknownKID func(issuer string)
	OnJWKSRefresh   func(issuer, result string)
	// OnTokenCache and OnSessionCache are called for every hit, miss and
	// eviction of the verified-token and decoded-session caches
	// (metrics): "hit", "miss", "eviction". They run on the request path.
	OnTokenCache   func(event string)
	OnSessionCache func(event string)
	// Reuse shares parts between the snapshots compiled with it: a part
	// whose configuration section and secret files did not change (the JWT
	// verifier with its fetched keys and verified-token cache, the login
	// service with its sessions, the assertion key, a route's upstream pool
	// with its warm connections) is the very same one in the next snapshot,
	// so a reload never empties a cache or changes a key. The process that
	// reloads owns one pool for its lifetime. When nil, the snapshot gets a
	// pool of its own and shares nothing.
	Reuse *reuse.Pool
	// Warn receives the warnings of a file that compiles: settings that
	// are valid but deserve a second look (a Kubernetes mapping allowed to
	// produce system: names). Default: logged by Logger.
	Warn func(Problem)
	// Builtins serves the built-in providers in-process to the JWT verifier,
	// so a jwt issuer that is sekisho's own built-in provider needs no
	// network, not even sekisho's own listener. The process that reloads
	// owns one for its lifetime (a reload may rebuild a provider while the
	// verifier is kept). When nil, each compile has its own.
	Builtins *devidp.Router
	// Resources returns the routes of the Route objects the watcher sees,
	// compiled besides the file's when it has kube.resources. A resource
	// that does not compile, or loses a conflict, is reported in the
	// snapshot's Resources and left out; it never fails the compile.
	Resources func() []ResourceRoute
	// HTTPClient fetches OIDC discovery documents and JWKS (tests).
	HTTPClient *http.Client
	// SecretFile, when set, lets every file setting be a Kubernetes
	// Secret reference (sekisho+k8s://NAMESPACE/SECRET/KEY): it returns
	// the path of a file holding that key, kept current as the Secret
	// changes, read through kube.resources.kubeconfig when the file has
	// one (resolved), else through kubeconfig "" (the pod's account, else
	// $KUBECONFIG). Its errors become problems at the setting's key, so
	// they must name the reference and never a value. When nil, a
	// reference is a problem.
	SecretFile func(ctx context.Context, kubeconfig string, ref secretref.Ref) (string, error)
	// Context bounds the background work of the parts a compile starts
	// (JWT key refresh, provider discovery, built-in providers, the Redis
	// session client). Each part also runs on a context of its own that
	// its close cancels when its last reference is released, so a part
	// shared by later snapshots outlives the one that built it. It must
	// live as long as Reuse: serve passes its process context. Default:
	// context.Background().
	Context context.Context
}

// watchFiles lists the files besides the config whose change should reload
// it: API tokens, and the secret files, so that a rotated key takes effect.
func watchFiles(f *File) []string {
	files := []string{f.Session.SecretFile}
	if f.APITokens != nil {
		files = append(files, f.APITokens.File)
	}
	for _, p := range f.Providers {
		files = append(files, p.ClientSecretFile)
	}
	for _, j := range f.JWT {
		files = append(files, j.HMACSecretFile, j.CAFile)
		if k := j.Kubernetes; k != nil {
			files = append(files, k.CAFile)
		}
	}
	if a := f.UpstreamIdentity.Assertion; a != nil {
		files = append(files, a.KeyFile)
	}
	for _, r := range f.Routes {
		if t := r.UpstreamTLS; t != nil {
			files = append(files, t.CAFile, t.CertFile, t.KeyFile)
		}
	}
	return slices.DeleteFunc(files, func(name string) bool { return name == "" })
}

// Load reads, validates and compiles the config file at path.
func Load(path string, opts Options) (*snapshot.Snapshot, error) {
	snap, _, err := LoadFile(path, opts)
	return snap, err
}

// LoadFile is Load that also returns the decoded file, for the settings a
// process reads once at start (listen, admin, log, decision).
func LoadFile(path string, opts Options) (*snapshot.Snapshot, *File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, nil, fmt.Errorf("read config %s: larger than %d bytes", path, MaxFileBytes)
	}
	return Compile(data, path, filepath.Dir(path), opts)
}

// Parse validates and compiles config bytes. name is used in error messages;
// relative file paths in the config are resolved against baseDir.
func Parse(data []byte, name, baseDir string, opts Options) (*snapshot.Snapshot, error) {
	snap, _, err := Compile(data, name, baseDir, opts)
	return snap, err
}

// Compile is Parse that also returns the decoded file, for the settings a
// process reads once at start (listen, admin, log, decision); the snapshot
// does not carry them.
func Compile(data []byte, name, baseDir string, opts Options) (*snapshot.Snapshot, *File, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Reuse == nil {
		opts.Reuse = reuse.NewPool(reuse.Options{})
	}
	if opts.Context == nil {
		opts.Context = context.Background()
	}
	if opts.Builtins == nil {
		opts.Builtins = devidp.NewRouter()
	}
	if opts.Warn == nil {
		log := opts.Logger
		opts.Warn = func(p Problem) { log.Warn("configuration warning", "at", p.String()) }
	}
	c := &compiler{name: name, baseDir: baseDir, opts: opts}
	file, err := c.decode(data)
	if err != nil {
		return nil, nil, err
	}
	snap := c.compile(file)
	if len(c.problems) > 0 {
		// Gives back what the compile took: parts it built are closed,
		// parts the running snapshot shares keep its references.
		snap.Close()
		return nil, nil, &Error{Problems: c.problems}
	}
	snap.Source = name
	snap.WatchFiles = watchFiles(file)
	return snap, file, nil
}

// Decode parses config bytes into a File without compiling it: for settings
// needed before the snapshot is built (the log format).
func Decode(data []byte, name string) (*File, error) {
	c := &compiler{name: name}
	return c.decode(data)
}

type compiler struct {
	name     string
	baseDir  string
	opts     Options
	refs     *reuse.Refs // the references the snapshot being compiled takes
	root     *yaml.Node
	problems []Problem
	// scope is set on the compiler of a route from a Kubernetes resource:
	// what that route may reach.
	scope *resourceScope
	// Set once the global sections are compiled, for compileRoute.
	env    *authz.Env
	file   *File
	hidden *normalize.HeaderSet
}

// addf records a problem located at the node for path.
func (c *compiler) addf(path []any, format string, args ...any) {
	line := 0
	if n := nodeAt(c.root, path...); n != nil {
		line = n.Line
	}
	c.problems = append(c.problems, Problem{File: c.name, Line: line, Key: keyString(path), Msg: fmt.Sprintf(format, args...)})
}

func keyString(path []any) string {
	var b strings.Builder
	for _, p := range path {
		switch p := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(p)
		case int:
			fmt.Fprintf(&b, "[%d]", p)
		}
	}
	return b.String()
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

func (c *compiler) decode(data []byte) (*File, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Problems: []Problem{{File: c.name, Msg: "the file is empty"}}}
		}
		return nil, &Error{Problems: []Problem{c.yamlProblem(err.Error())}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{Problems: []Problem{{File: c.name, Line: extra.Line, Msg: "more than one YAML document; put everything in one"}}}
	}
	c.root = &root
	checkKeys(&root, reflect.TypeFor[File](), "", func(line int, key, msg string) {
		c.problems = append(c.problems, Problem{File: c.name, Line: line, Key: key, Msg: msg})
	})
	var f File
	if err := root.Decode(&f); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, e := range te.Errors {
				c.problems = append(c.problems, c.yamlProblem(e))
			}
		} else {
			c.problems = append(c.problems, c.yamlProblem(err.Error()))
		}
	}
	if len(c.problems) > 0 {
		return nil, &Error{Problems: c.problems}
	}
	return &f, nil
}

// yamlProblem turns a yaml library message ("yaml: line 3: ...") into a Problem.
func (c *compiler) yamlProblem(msg string) Problem {
	msg = strings.TrimPrefix(msg, "yaml: ")
	p := Problem{File: c.name, Msg: msg}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		fmt.Sscan(m[1], &p.Line)
		p.Msg = m[2]
	}
	return p
}

func (c *compiler) compile(f *File) *snapshot.Snapshot {
	c.refs = c.opts.Reuse.NewRefs()
	s := snapshot.New(c.refs)
	if !c.resolveSecretFiles(f) {
		// The settings left as references would be reported again as
		// files that cannot be read.
		return s
	}
	c.checkListen(f)
	c.checkDecision(f)
	c.checkKubeWebhook(f)
	c.checkKubeInjector(f)
	c.checkKubeResources(f)
	c.checkTracing(f)
	c.checkCaches(f)
	c.defaults(f)

	trust, err := normalize.NewTrust(f.TrustedProxies)
	if err != nil {
		c.addf([]any{"trusted_proxies"}, "%v", err)
	}
	s.Trust = trust
	// Method-override headers are stripped like identity headers (and so
	// hidden from policies), except on routes that decide on them.
	s.Strip = normalize.DefaultIdentityHeaders().With(normalize.MethodOverrideHeaders...)
	// Login first: its built-in providers are served in-process to the JWT
	// verifier (Options.Builtins) before it fetches their keys.
	c.compileLogin(s, f)
	c.compileAuth(s, f)
	if s.Login != nil && s.Authn != nil {
		s.Authn.Session, s.Authn.SessionCookie = s.Login.Service, orDefault(f.Session.Cookie, session.DefaultCookieName)
	}
	env, err := authz.NewEnv()
	if err != nil {
		c.addf(nil, "policy engine: %v", err)
		return s
	}

	c.compileKubeWebhook(s, f, env)
	if webhookOnly(f) {
		return s
	}
	c.env, c.file, c.hidden = env, f, s.Hidden
	if len(f.Routes) == 0 && (f.Kube == nil || f.Kube.Resources == nil) {
		c.addf([]any{"routes"}, "no routes: add at least one (every request would get 404)")
	}
	names := make(map[string]int, len(f.Routes))
	rules := make([]route.Rule[*snapshot.Route], 0, len(f.Routes))
	for i := range f.Routes {
		r := &f.Routes[i]
		at := []any{"routes", i}
		if r.Name == "" {
			c.addf(at, "a route needs a name (it appears in logs, metrics and error pages)")
		} else if j, dup := names[r.Name]; dup {
			c.addf(append(at, "name"), "route name %q is already used by routes[%d]", r.Name, j)
		} else {
			names[r.Name] = i
		}
		rules = append(rules, compileRoute(c, r, at))
	}
	if len(c.problems) > 0 {
		return s
	}
	if c.opts.Resources != nil && f.Kube != nil && f.Kube.Resources != nil {
		if table, ok := c.compileResources(s, f, rules, compileRoute); ok {
			s.Routes = table
		}
		return s
	}
	table, err := route.New(rules)
	if err != nil {
		c.routeErrors(err)
		return s
	}
	s.Routes = table
	return s
}

// compileRoute compiles one route (of the file, or of a resource, whose
// compiler has a scope) into its rule of the route table, recording
// problems at paths under at.
func compileRoute(c *compiler, r *Route, at []any) route.Rule[*snapshot.Route] {
	for name := range r.Match.Headers {
		if c.hidden.Matches(name) {
			c.addf(append(at, "match", "headers", name), "%s is an identity, credential, method-override or forwarding header a client can forge (sekisho strips or consumes it; the client address is request.client_ip); a route cannot match on it", name)
		}
	}
	compiled := &snapshot.Route{Name: r.Name, Public: r.Public, AllowEncodedSlash: r.AllowEncodedSlash, PassCredentials: r.PassCredentials, NoLoginRedirect: r.API, AllowPathParams: r.AllowPathParams,
		AllowExtensionMethods: r.AllowExtensionMethods, AllowMethodOverride: r.AllowMethodOverride}
	compiled.Upgrades = c.upgrades(r, at)
	c.compilePolicy(c.env, r, compiled, at)
	compiled.Upstream = c.pool(c.file, r, at)
	return route.Rule[*snapshot.Route]{
		Name:       r.Name,
		Hosts:      r.Match.hostList(),
		Path:       r.Match.Path,
		PathPrefix: r.Match.PathPrefix,
		PathRegex:  r.Match.PathRegex,
		Methods:    r.Match.Methods,
		Headers:    headerMatches(r.Match.Headers),
		Value:      compiled,
	}
}

// routeErrors locates each route-table error at the route it names.
func (c *compiler) routeErrors(err error) {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var re *route.RuleError
		if errors.As(e, &re) {
			c.addf([]any{"routes", re.Index, "match"}, "%v", re.Err)
			continue
		}
		c.addf([]any{"routes"}, "%v", e)
	}
}

func headerMatches(h map[string]string) []route.HeaderMatch {
	if len(h) == 0 {
		return nil
	}
	out := make([]route.HeaderMatch, 0, len(h))
	for k, v := range h {
		out = append(out, route.HeaderMatch{Name: k, Value: v})
	}
	return out
}

// pool compiles a route's upstreams into a proxy pool.
func (c *compiler) pool(f *File, r *Route, at []any) *proxy.Pool {
	if len(r.To) == 0 {
		if f.Decision == nil {
			c.addf(append(at, "to"), "route %q has no upstream (to:); only routes used by the decision service may leave it out", r.Name)
		}
		return nil
	}
	backends := make([]proxy.Backend, 0, len(r.To))
	for j, up := range r.To {
		u, err := c.upstreamURL(f, up.URL)
		if err != nil {
			c.addf(append(at, "to", j), "%v", err)
			continue
		}
		w := 1
		if up.Weight != nil {
			w = *up.Weight
			if w < 0 {
				c.addf(append(at, "to", j, "weight"), "weight must be 0 or more")
				continue
			}
		}
		backends = append(backends, proxy.Backend{URL: u, Weight: w})
	}
	if len(backends) != len(r.To) {
		return nil
	}
	retries := -1
	if r.Retries != nil {
		retries = *r.Retries
	}
	standard := false
	switch r.UpstreamTransport {
	case "", "lean":
	case "standard":
		standard = true
	default:
		c.addf(append(at, "upstream_transport"), "%q is not an upstream transport: want lean or standard", r.UpstreamTransport)
		return nil
	}
	tlsConf, ok := c.upstreamTLS(r, backends, at)
	if !ok {
		return nil
	}
	// A route whose upstream settings did not change keeps its pool across
	// a reload: warm upstream connections and passive health state survive.
	// Upstream TLS files count by content, so a renewed certificate or a
	// new CA behind the same path builds a new pool.
	section := poolSection{Route: r.Name, Timeout: r.Timeout, Retries: retries, RewriteHost: r.RewriteHost, TLS: r.UpstreamTLS,
		Standard: standard}
	var files []string
	for _, be := range backends {
		section.Backends = append(section.Backends, backendSection{URL: be.URL.String(), Weight: be.Weight})
	}
	if t := r.UpstreamTLS; t != nil {
		files = []string{t.CAFile, t.CertFile, t.KeyFile}
	}
	p, err := share(c.refs, "upstream pool", section, files, func() (*proxy.Pool, func(), error) {
		name := r.Name
		var onErr func(string, string)
		if c.opts.OnUpstreamError != nil {
			onErr = func(backend, kind string) { c.opts.OnUpstreamError(name, backend, kind) }
		}
		p, err := proxy.New(r.Name, backends, proxy.Options{
			Timeout:     r.Timeout,
			Retries:     retries,
			RewriteHost: r.RewriteHost,
			TLS:         tlsConf,
			// The lean path is proxy's default; standard turns it off.
			StandardTransport: standard,
			Logger:            c.opts.Logger,
			OnUpstreamError:   onErr,
		})
		if err != nil {
			return nil, nil, err
		}
		return p, p.Close, nil
	})
	if err != nil {
		c.addf(append(at, "to"), "%v", err)
		return nil
	}
	return p
}

// poolSection is everything a route's upstream pool is built from.
type poolSection struct {
	Route       string
	Timeout     time.Duration
	Retries     int
	RewriteHost bool
	Standard    bool // upstream_transport: standard
	Backends    []backendSection
	TLS         *UpstreamTLS
}

// backendSection is one backend of a poolSection; the URL is a string so
// that every part of it (user info too) counts.
type backendSection struct {
	URL    string
	Weight int
}

// errProblems is returned by a build that recorded its problems itself.
var errProblems = errors.New("the configuration has problems")

// share returns the shared part of the given kind built from section and
// the secret files it names: the one a running snapshot holds when both
// are unchanged, else a new one from build. refs (those of the snapshot
// being compiled) take a reference on it, given back by the snapshot's
// Close, or at once if the compile fails.
func share[T any](refs *reuse.Refs, kind string, section any, files []string, build func() (T, func(), error)) (T, error) {
	key, err := reuse.KeyOf(kind, section, files...)
	if err != nil {
		var zero T
		return zero, err
	}
	v, _, err := reuse.Get(refs, key, build)
	return v, err
}

// upstreamURL parses a `to:` entry: a Service (service/...), or a URL the
// proxy stage validates (scheme, host, no path), which a route from a
// resource may name only with kube.resources.allow_urls.
func (c *compiler) upstreamURL(f *File, raw string) (*url.URL, error) {
	if strings.HasPrefix(raw, "service/") {
		domain := DefaultClusterDomain
		if f.Kube != nil && f.Kube.Resources != nil {
			domain = f.Kube.Resources.ClusterDomain
		}
		return c.serviceUpstream(raw, domain)
	}
	if c.scope != nil && !c.scope.allowURLs {
		return nil, fmt.Errorf("upstream %q: a route from a resource sends to a Service of its namespace (service/NAME:PORT); other upstreams need kube.resources.allow_urls in the gateway's configuration", raw)
	}
	return parseUpstream(raw)
}

// parseUpstream parses a `to:` URL; the proxy stage validates it (scheme,
// host, no path).
func parseUpstream(raw string) (*url.URL, error) {
	if strings.HasPrefix(raw, "builtin:") {
		return &url.URL{Scheme: "builtin", Opaque: strings.TrimPrefix(raw, "builtin:")}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("upstream %q is not a URL", raw)
	}
	return u, nil
}

// checkListen resolves the listener's file paths, fills the ACME cache
// default, and reports what the listen stage would refuse (listen.Check),
// certificate files included.
func (c *compiler) checkListen(f *File) {
	l := &f.Listen
	if t := l.TLS; t != nil {
		t.CertFile, t.KeyFile = c.path(t.CertFile), c.path(t.KeyFile)
		if t.ACME != nil {
			if t.ACME.CacheDir == "" {
				t.ACME.CacheDir = "sekisho-acme"
			}
			t.ACME.CacheDir = c.path(t.ACME.CacheDir)
		}
	}
	if !webhookOnly(f) {
		lc := l.Config()
		c.addProblems([]any{"listen"}, listen.Check(&lc))
	}
	if f.Admin.Listen != "" {
		if err := listen.CheckAddr(f.Admin.Listen); err != nil {
			c.addf([]any{"admin", "listen"}, "%v", err)
		}
	}
	switch f.Log.Format {
	case "", "json", "text":
	default:
		c.addf([]any{"log", "format"}, "%q: use json or text", f.Log.Format)
	}
	switch strings.ToLower(f.Log.Level) {
	case "", "debug", "info", "warn", "error":
	default:
		c.addf([]any{"log", "level"}, "%q: use debug, info, warn or error", f.Log.Level)
	}
}

// checkDecision resolves the decision service's file paths and reports what
// it would refuse (decisionconf.Check), certificate and CA files included.
func (c *compiler) checkDecision(f *File) {
	d := f.Decision
	if d == nil {
		return
	}
	if t := d.TLS; t != nil {
		t.CertFile, t.KeyFile, t.ClientCAFile = c.path(t.CertFile), c.path(t.KeyFile), c.path(t.ClientCAFile)
	}
	c.addProblems([]any{"decision"}, decisionconf.Check(d))
}

// addProblems records a stage's problems under the section they belong to,
// located at the line of the key each names.
func (c *compiler) addProblems(section []any, ps []listen.Problem) {
	for _, p := range ps {
		c.addf(append(section[:len(section):len(section)], splitKey(p.Key)...), "%s", p.Msg)
	}
}

// splitKey turns a key path such as "tls.acme.domains[1]" into the path
// elements of addf: mapping keys and sequence indices.
func splitKey(key string) []any {
	var out []any
	for part := range strings.SplitSeq(key, ".") {
		name, rest, _ := strings.Cut(part, "[")
		if name != "" {
			out = append(out, name)
		}
		for rest != "" {
			idx, after, ok := strings.Cut(rest, "]")
			n, err := strconv.Atoi(idx)
			if !ok || err != nil {
				break
			}
			out = append(out, n)
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return out
}

func (c *compiler) defaults(f *File) {
	if f.Admin.Listen == "" {
		f.Admin.Listen = "127.0.0.1:9090"
	}
	if f.Listen.ShutdownTimeout == 0 {
		f.Listen.ShutdownTimeout = 30 * time.Second
	}
	if f.Log.Access == nil {
		t := true
		f.Log.Access = &t
	}
}

// path resolves a path relative to the config file's directory.
func (c *compiler) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.baseDir, p)
}
