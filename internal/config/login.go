package config

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sekisho/sekisho/internal/devidp"
	"github.com/sekisho/sekisho/internal/login"
	"github.com/sekisho/sekisho/internal/reuse"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// loginPart is the browser-login part being built, with what closing it
// takes besides the snapshot.Login the snapshot sees.
type loginPart struct {
	login  *snapshot.Login
	cancel context.CancelFunc // ends discovery, the built-in providers and Redis
	redis  *session.RedisStore
	// refs hold the cookie stores' revocations, shared with the login
	// part this one replaces and the one that replaces it.
	refs *reuse.Refs
	// unroute take the built-in providers out of Options.Builtins.
	unroute []func()
}

// loginSection is the configuration an Auth is built from.
type loginSection struct {
	Providers []Provider
	Session   Session
	Login     Login
	Listen    Listen
	// Cache is the decoded-session cache's bounds (caches.sessions).
	Cache CacheLimits
}

func (a *loginPart) close() {
	for _, f := range a.unroute {
		f()
	}
	a.cancel()
	if a.redis != nil {
		_ = a.redis.Close()
	}
	a.refs.Release()
}

// compileLogin builds the login service, or shares the running one.
func (c *compiler) compileLogin(s *snapshot.Snapshot, f *File) {
	if len(f.Providers) == 0 {
		for _, key := range []string{"session", "login"} {
			if n := nodeAt(c.root, key); n != nil && n != nodeAt(c.root) {
				c.addf([]any{key}, "is set but no providers: are configured (browser login is off)")
			}
		}
		return
	}
	f.Session.SecretFile = c.path(f.Session.SecretFile)
	secretFiles := []string{f.Session.SecretFile}
	for i := range f.Providers {
		f.Providers[i].ClientSecretFile = c.path(f.Providers[i].ClientSecretFile)
		secretFiles = append(secretFiles, f.Providers[i].ClientSecretFile)
	}
	section := loginSection{Providers: f.Providers, Session: f.Session, Login: f.Login, Listen: f.Listen, Cache: f.Caches.Sessions}
	l, err := share(c.refs, "login", section, secretFiles, func() (*snapshot.Login, func(), error) {
		a := c.buildLogin(f)
		if a == nil {
			return nil, nil, errProblems
		}
		return a.login, a.close, nil
	})
	if err != nil {
		if !errors.Is(err, errProblems) {
			c.providerErrors(err)
		}
		return
	}
	s.Login = l
}

// buildLogin builds the login service; nil when it recorded problems.
func (c *compiler) buildLogin(f *File) (built *loginPart) {
	n := len(c.problems)
	// The part's own context: its close cancels it when the last snapshot
	// sharing it is closed, not when the one that built it is.
	ctx, cancel := context.WithCancel(c.opts.Context)
	a := &loginPart{login: &snapshot.Login{DevIDPs: map[string]http.Handler{}}, cancel: cancel, refs: c.opts.Reuse.NewRefs()}
	defer func() {
		if len(c.problems) > n || built == nil {
			a.close()
		}
	}()

	for i, d := range f.Login.AllowedRedirectDomains {
		if _, err := login.ParseRedirectDomain(d); err != nil {
			c.addf([]any{"login", "allowed_redirect_domains", i}, "%q %v", d, err)
		}
	}
	codec := c.sessionCodec(f, sessionSecure(f))
	store := c.sessionStore(ctx, f, codec, a)
	transport := http.DefaultTransport
	providers := make([]login.ProviderConfig, len(f.Providers))
	for i := range f.Providers {
		p := f.Providers[i]
		at := []any{"providers", i}
		if p.Builtin != nil {
			dev, ok := c.builtin(ctx, f, &p, at, f.Listen.HTTPS != "")
			if !ok {
				continue
			}
			a.login.DevIDPs[snapshot.DevIDPPrefix+p.Name+"/"] = dev.Handler()
			a.unroute = append(a.unroute, c.opts.Builtins.Add(dev))
			transport = dev.Transport(transport)
		}
		providers[i] = p.ProviderConfig
	}
	if len(c.problems) > n || codec == nil || store == nil {
		return nil
	}
	svc, err := login.New(ctx, providers, login.Options{
		PathPrefix:             f.Login.PathPrefix,
		AllowedRedirectDomains: f.Login.AllowedRedirectDomains,
		PostLogoutRedirect:     f.Login.PostLogoutRedirect,
		Store:                  store,
		Codec:                  codec,
		SessionTTL:             f.Session.TTL,
		IdleTimeout:            f.Session.IdleTimeout,
		HTTPClient:             &http.Client{Transport: transport, Timeout: 15 * time.Second},
		Logger:                 c.opts.Logger,
	})
	if err != nil {
		c.providerErrors(err)
		return nil
	}
	a.login.Service, a.login.Store = svc, store
	return a
}

// providerErrors records login.New's errors at the providers: entry each
// is about.
func (c *compiler) providerErrors(err error) {
	for _, e := range unjoin(err) {
		var pe *login.ProviderError
		if errors.As(e, &pe) {
			c.addEntry([]any{"providers", pe.Index}, pe.Err)
			continue
		}
		c.addf([]any{"providers"}, "%v", e)
	}
}

// sessionSecure says whether session cookies are Secure: when sekisho serves
// HTTPS itself, or when told so (behind a TLS-terminating load balancer or
// ingress). The short-lived login state cookie follows each request's own
// (trusted) scheme instead.
func sessionSecure(f *File) bool {
	if f.Session.Secure != nil {
		return *f.Session.Secure
	}
	return f.Listen.HTTPS != ""
}

func (c *compiler) sessionCodec(f *File, secure bool) *session.Codec {
	var keys [][]byte
	if f.Session.SecretFile != "" {
		k, err := session.LoadKeys(f.Session.SecretFile)
		if err != nil {
			c.addf([]any{"session", "secret_file"}, "%v", err)
			return nil
		}
		keys = k
	} else {
		k := make([]byte, session.KeySize)
		if _, err := rand.Read(k); err != nil {
			c.addf([]any{"session"}, "generate a session key: %v", err)
			return nil
		}
		keys = [][]byte{k}
		c.opts.Logger.Warn("session.secret_file is not set: sessions are encrypted with a random key made at start and end when sekisho restarts; replicas cannot share them")
	}
	ttl := f.Session.TTL
	if ttl < 0 {
		c.addf([]any{"session", "ttl"}, "must not be negative")
		return nil
	}
	if ttl == 0 {
		ttl = session.DefaultTTL
	}
	codec, err := session.NewCodec(session.CodecOptions{
		Name:   orDefault(f.Session.Cookie, session.DefaultCookieName),
		Keys:   keys,
		Secure: secure,
		Domain: f.Session.Domain,
		MaxAge: ttl,
	})
	if err != nil {
		c.addf([]any{"session"}, "%v", err)
		return nil
	}
	return codec
}

func (c *compiler) sessionStore(ctx context.Context, f *File, codec *session.Codec, a *loginPart) session.Store {
	if codec == nil {
		return nil
	}
	opts := session.StoreOptions{
		TTL: f.Session.TTL, IdleTimeout: f.Session.IdleTimeout, Logger: c.opts.Logger,
		Cache: f.Caches.sessionLimits(), OnCache: c.opts.OnSessionCache,
	}
	switch st := f.Session.Store; {
	case st == "" || st == "cookie":
		cs := session.NewCookieStore(codec, opts)
		// One list of signed-out sessions for as long as any login service
		// keeps sessions in cookies: a reload that builds a new store must
		// not make signed-out cookies valid again.
		rev, err := share(a.refs, "cookie revocations", nil, nil, func() (*session.Revocations, func(), error) {
			return cs.Revocations(), nil, nil
		})
		if err != nil {
			c.addf([]any{"session"}, "%v", err)
			return nil
		}
		cs.UseRevocations(rev)
		return cs
	default:
		rs, err := session.NewRedisStore(ctx, st, codec, opts)
		if rs == nil {
			c.addf([]any{"session", "store"}, "%v", err)
			return nil
		}
		if err != nil {
			c.opts.Logger.Warn("the session store does not answer yet; protected routes answer 503 until it does", "error", err.Error())
		}
		a.redis = rs
		return rs
	}
}

// builtin starts a built-in development provider for p and fills in the
// issuer and client the login flow uses to reach it.
func (c *compiler) builtin(ctx context.Context, f *File, p *Provider, at []any, secure bool) (*devidp.Provider, bool) {
	if p.Issuer != "" || p.ClientID != "" || p.ClientSecretFile != "" {
		c.addf(at, "a builtin provider sets its own issuer and client: remove issuer, client_id and client_secret_file (or builtin.issuer for the URL)")
		return nil, false
	}
	if p.Name == "" {
		c.addf(at, "a provider needs a name")
		return nil, false
	}
	addr := f.Listen.HTTP
	scheme := "http"
	if secure {
		addr, scheme = f.Listen.HTTPS, "https"
	}
	if err := devidp.CheckListener(addr, p.Builtin.AllowNonLoopback); err != nil {
		c.addf(append(at, "builtin"), "%v", err)
		return nil, false
	}
	issuer := p.Builtin.Issuer
	var origins []string
	if issuer == "" {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "0" {
			c.addf(append(at, "builtin"), "set builtin.issuer to the URL browsers reach sekisho at (the listener %q does not name one)", addr)
			return nil, false
		}
		origins = []string{scheme + "://" + net.JoinHostPort(host, port)}
		if host == "127.0.0.1" || host == "localhost" {
			// Browsers use either name; register both callbacks.
			origins = []string{scheme + "://" + net.JoinHostPort("127.0.0.1", port), scheme + "://" + net.JoinHostPort("localhost", port)}
		}
		issuer = origins[0] + snapshot.DevIDPPrefix + p.Name
	} else {
		u, err := parseUpstream(issuer)
		if err != nil || u.Host == "" {
			c.addf(append(at, "builtin", "issuer"), "%q is not an absolute URL", issuer)
			return nil, false
		}
		origins = []string{u.Scheme + "://" + u.Host}
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		c.addf(at, "generate a client secret: %v", err)
		return nil, false
	}
	prefix := orDefault(f.Login.PathPrefix, login.DefaultPathPrefix)
	client := devidp.Client{ID: "sekisho", Secret: fmt.Sprintf("%x", secret)}
	for _, o := range origins {
		client.RedirectURIs = append(client.RedirectURIs, o+prefix+"/callback")
		client.PostLogoutRedirectURIs = append(client.PostLogoutRedirectURIs, o+orDefault(f.Login.PostLogoutRedirect, prefix+"/signed_out"))
	}
	// The kubectl client lets `sekisho kube login --client-id=kubectl` sign
	// in to the same provider from a terminal (loopback redirect, no secret).
	clients := []devidp.Client{client, devidp.KubectlClient()}
	dev, err := devidp.New(ctx, issuer, p.Builtin.Config, clients, devidp.Options{Logger: c.opts.Logger})
	if err != nil {
		c.addf(append(at, "builtin"), "%v", err)
		return nil, false
	}
	p.Issuer, p.ClientID, p.ClientSecret = dev.Issuer(), client.ID, client.Secret
	// A refresh token keeps the session for its configured lifetime.
	p.Scopes = devidp.WithOfflineAccess(p.Scopes)
	if p.Claims.Username == "" {
		p.Claims.Username = "email" // the built-in subjects ("dev|alice@…") are not for people
	}
	return dev, true
}
