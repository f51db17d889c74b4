package config

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/sekisho/sekisho/internal/assertion"
	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/authn/apitoken"
	"github.com/sekisho/sekisho/internal/authn/jwtauth"
	"github.com/sekisho/sekisho/internal/authz"
	"github.com/sekisho/sekisho/internal/cache"
	"github.com/sekisho/sekisho/internal/normalize"
	"github.com/sekisho/sekisho/internal/snapshot"
	"golang.org/x/net/http/httpguts"
)

// Default names of the identity headers set on forwarded requests.
const (
	DefaultUserHeader   = "X-Forwarded-User"
	DefaultEmailHeader  = "X-Forwarded-Email"
	DefaultGroupsHeader = "X-Forwarded-Groups"
)

// jwtClient fetches discovery documents and keys for the JWT verifier:
// Options.HTTPClient (or the default), with the built-in providers served
// in-process.
func (c *compiler) jwtClient() *http.Client {
	base := c.opts.HTTPClient
	if base == nil {
		base = &http.Client{}
	}
	next := base.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	client := *base
	client.Transport = c.opts.Builtins.Transport(next)
	return &client
}

// compileAuth builds the credential chain, the upstream identity headers
// and the assertion signer.
func (c *compiler) compileAuth(s *snapshot.Snapshot, f *File) {
	s.Realm = f.Realm
	if s.Realm == "" {
		s.Realm = "sekisho"
	}
	chain := &authn.Chain{Header: f.Credentials.Header, Cookie: f.Credentials.Cookie}
	if h := f.Credentials.Header; h != "" && !httpguts.ValidHeaderFieldName(h) {
		c.addf([]any{"credentials", "header"}, "%q is not a valid header name", h)
	}

	// The files whose content the verifier is built from, so a reload
	// with a changed secret or CA builds a new one. A service-account
	// token file is not among them: it rotates, and is read at each use.
	var jwtFiles []string
	for i := range f.JWT {
		e := &f.JWT[i]
		e.HMACSecretFile = c.path(e.HMACSecretFile)
		e.CAFile = c.path(e.CAFile)
		jwtFiles = append(jwtFiles, e.HMACSecretFile, e.CAFile)
		if k := e.Kubernetes; k != nil {
			k.CAFile, k.TokenFile = c.path(k.CAFile), c.path(k.TokenFile)
			jwtFiles = append(jwtFiles, orDefault(k.CAFile, jwtauth.DefaultKubernetesCAFile))
		}
	}
	if len(f.JWT) > 0 {
		// The cache bounds are part of the verifier: changing them builds
		// a new one.
		section := struct {
			Issuers []jwtauth.IssuerConfig
			Cache   cache.Limits
		}{f.JWT, f.Caches.tokenLimits()}
		a, err := share(c.refs, "jwt", section, jwtFiles, func() (*jwtauth.Authenticator, func(), error) {
			// Its own context, cancelled by its close when the last
			// snapshot sharing it is closed.
			ctx, cancel := context.WithCancel(c.opts.Context)
			a, err := jwtauth.New(ctx, f.JWT, jwtauth.Options{
				HTTPClient:   c.jwtClient(),
				Logger:       c.opts.Logger,
				OnUnknownKID: c.opts.OnJWTUnknownKID,
				OnKeyRefresh: c.opts.OnJWKSRefresh,
				CacheSize:    section.Cache.MaxEntries,
				CacheBytes:   section.Cache.MaxBytes,
				OnCache:      c.opts.OnTokenCache,
			})
			if err != nil {
				cancel()
				return nil, nil, err
			}
			return a, func() { a.Close(); cancel() }, nil
		})
		if err != nil {
			c.jwtErrors(err)
		} else {
			chain.JWT = a
		}
	}

	if f.APITokens != nil {
		if f.APITokens.File == "" {
			c.addf([]any{"api_tokens", "file"}, "api_tokens needs file: (a YAML list of {name, hash, groups})")
		} else {
			f.APITokens.File = c.path(f.APITokens.File)
			store, err := apitoken.Load(f.APITokens.File)
			if err != nil {
				c.addf([]any{"api_tokens", "file"}, "%v", err)
			}
			chain.Tokens = store
		}
	}
	s.Authn = chain

	ui := &f.UpstreamIdentity
	h := &ui.Headers
	h.User = orDefault(h.User, DefaultUserHeader)
	h.Email = orDefault(h.Email, DefaultEmailHeader)
	h.Groups = orDefault(h.Groups, DefaultGroupsHeader)
	s.Headers = snapshot.IdentityHeaders{User: h.User, Email: h.Email, Groups: h.Groups}
	for _, hn := range []struct{ key, name string }{{"user", h.User}, {"email", h.Email}, {"groups", h.Groups}} {
		if !httpguts.ValidHeaderFieldName(hn.name) {
			c.addf([]any{"upstream_identity", "headers", hn.key}, "%q is not a valid header name", hn.name)
		}
	}
	for i, name := range ui.Strip {
		if !httpguts.ValidHeaderFieldName(name) {
			c.addf([]any{"upstream_identity", "strip", i}, "%q is not a valid header name", name)
		}
	}
	strip := append([]string{h.User, h.Email, h.Groups}, ui.Strip...)
	if a := ui.Assertion; a != nil {
		a.Header = orDefault(a.Header, assertion.DefaultHeader)
		a.Issuer = orDefault(a.Issuer, "sekisho")
		a.KeyFile = c.path(a.KeyFile)
		strip = append(strip, a.Header)
		s.AssertionHeader = a.Header
		if a.TTL < 0 {
			// Reported here at its key; the signer would refuse it again.
			c.addf([]any{"upstream_identity", "assertion", "ttl"}, "must not be negative")
		} else {
			// Without a key_file the key is made here, and kept as long as
			// the settings are unchanged.
			signer, err := share(c.refs, "assertion", a, []string{a.KeyFile}, func() (*assertion.Signer, func(), error) {
				signer, err := assertion.NewSigner(a.KeyFile, a.Issuer, a.TTL)
				return signer, nil, err
			})
			if err != nil {
				c.addf([]any{"upstream_identity", "assertion"}, "%v", err)
			}
			s.Assertion = signer
		}
	}
	s.Strip = s.Strip.With(strip...)
	// Forwarding headers are stripped by the proxy stage, so the client's
	// values would be decided on but never forwarded: hidden as well.
	s.Hidden = s.Strip.With(append([]string{f.Credentials.Header}, normalize.ForwardingHeaders...)...)
}

// compilePolicy compiles a route's allow/deny rules. A route is public or
// has at least one allow rule: anything else could only ever deny, which is
// almost always a mistake (a typo'd or forgotten rule).
func (c *compiler) compilePolicy(env *authz.Env, r *Route, out *snapshot.Route, at []any) {
	hasRules := len(r.Allow) > 0 || len(r.Deny) > 0
	switch {
	case r.Public && hasRules:
		c.addf(at, "route %q is public (no authentication), so its allow/deny rules would never apply: remove public: true or the rules", r.Name)
		return
	case r.Public:
		return
	case len(r.Allow) == 0:
		c.addf(at, "route %q has no allow rule: it would deny every request. Add allow: rules, or set public: true to serve it without authentication", r.Name)
		return
	}
	p, err := authz.Compile(env, r.Name, r.Allow, r.Deny)
	if err != nil {
		c.policyErrors(err, at)
		return
	}
	out.Policy = p
}

func (c *compiler) policyErrors(err error, at []any) {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var re *authz.RuleError
		if errors.As(e, &re) {
			path := append(append([]any(nil), at...), re.List, re.Index)
			if name, i, ok := indexedField(re.Field); ok {
				path = append(path, name, i) // "paths[1]": the line of that entry
			} else if re.Field != "" {
				path = append(path, re.Field)
			}
			c.addf(path, "%v", re.Err)
			continue
		}
		c.addf(at, "%v", e)
	}
}

// jwtErrors records jwtauth.New's errors at the jwt: entry each is about.
func (c *compiler) jwtErrors(err error) {
	for _, e := range unjoin(err) {
		var ie *jwtauth.IssuerError
		if errors.As(e, &ie) {
			c.addEntry([]any{"jwt", ie.Index}, ie.Err)
			continue
		}
		c.addf([]any{"jwt"}, "%v", e)
	}
}

// unjoin returns the errors joined in err (errors.Join), or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// leadingKey matches a message that starts with the key it is about:
// "audiences: at least one is required".
var leadingKey = regexp.MustCompile(`^([a-z_]+(?:\.[a-z_]+)*): (.+)$`)

// addEntry records the problem err of a list entry at (a fresh slice)
// at, and at the entry's key when the message starts with one, so that
// check points at the line the user wrote it on.
func (c *compiler) addEntry(at []any, err error) {
	msg := err.Error()
	if m := leadingKey.FindStringSubmatch(msg); m != nil {
		c.addf(append(at, splitKey(m[1])...), "%s", m[2])
		return
	}
	c.addf(at, "%s", msg)
}

// indexedField splits a rule field like "client_ips[1]" into its key and
// index.
func indexedField(f string) (string, int, bool) {
	name, rest, ok := strings.Cut(f, "[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return "", 0, false
	}
	i, err := strconv.Atoi(strings.TrimSuffix(rest, "]"))
	if err != nil {
		return "", 0, false
	}
	return name, i, true
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
