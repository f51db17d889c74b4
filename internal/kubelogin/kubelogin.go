// Package kubelogin is `sekisho kube login`: a client-go exec credential
// plugin that signs kubectl users in to an OpenID Connect provider (any,
// or sekisho's built-in one) and hands kubectl the ID token.
//
// It logs in with the authorization code flow and PKCE through the
// user's browser and a loopback redirect (RFC 8252), or with the device
// authorization grant (RFC 8628) on machines without a browser. Tokens are
// cached per issuer, client and scopes in the user's cache directory;
// a cached unexpired token is printed without any network call, and an
// expired one is renewed silently with the refresh token. The protocol
// work is golang.org/x/oauth2's and github.com/coreos/go-oidc's.
package kubelogin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientauthv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
)

// Token types: which of the provider's tokens kubectl sends.
const (
	TokenTypeID     = "id_token"
	TokenTypeAccess = "access_token"
)

// Defaults.
const (
	DefaultListen       = "127.0.0.1:0"
	DefaultLoginTimeout = 5 * time.Minute
	// RenewBefore is how long before its expiry a cached token is renewed,
	// so that kubectl never sends one that expires on the way.
	RenewBefore = time.Minute
)

// ErrNotInteractive is returned when a login is needed but kubectl runs
// the plugin without a terminal (KUBERNETES_EXEC_INFO spec.interactive
// false): a browser tab opened from a background process would surprise.
var ErrNotInteractive = errors.New("a sign-in is needed, but kubectl runs this plugin without a terminal; " +
	"sign in once from a terminal (any kubectl command, e.g. kubectl get ns), and if the kubeconfig's exec interactiveMode is Never, set it to IfAvailable")

// Options configure one run of the plugin. Issuer and ClientID are
// required; the zero value of every other field is usable.
type Options struct {
	Issuer       string
	ClientID     string
	ClientSecret string // optional: public clients with PKCE need none
	// ExtraScopes are requested on top of openid (and offline_access when
	// the provider advertises it).
	ExtraScopes []string
	// CAFile is a PEM bundle trusted for the issuer's TLS, on top of the
	// system roots.
	CAFile string
	// TokenType is TokenTypeID (default) or TokenTypeAccess.
	TokenType string
	// Listen is the loopback address of the redirect listener; port 0 picks
	// a free one. A fixed port is for providers that want the exact
	// redirect URI registered.
	Listen string
	// DeviceCode logs in with the device authorization grant instead of
	// a browser on this machine.
	DeviceCode bool
	// NoBrowser prints the URL on stderr instead of opening a browser.
	NoBrowser bool
	// BrowserCommand opens the URL (its one argument) instead of xdg-open
	// or open.
	BrowserCommand string
	// OpenBrowser, when set, replaces every way above of opening the URL:
	// tests (and embedders) act as the browser through it.
	OpenBrowser func(ctx context.Context, url string) error
	// CacheDir defaults to os.UserCacheDir()/sekisho/kube-login.
	CacheDir string
	// Logout removes the cache entry instead of printing a credential.
	Logout bool
	// LoginTimeout bounds a browser or device login (default 5 minutes).
	LoginTimeout time.Duration
	// ExecInfo is KUBERNETES_EXEC_INFO as kubectl set it; empty means the
	// plugin runs by hand in a terminal, hence interactively.
	ExecInfo string
	// HTTPClient talks to the provider; nil builds one from CAFile.
	HTTPClient *http.Client
	Stdout     io.Writer
	Stderr     io.Writer
	Now        func() time.Time
}

func (o *Options) defaults() error {
	if o.Issuer == "" || o.ClientID == "" {
		return errors.New("--issuer and --client-id are required")
	}
	if o.TokenType == "" {
		o.TokenType = TokenTypeID
	}
	if o.TokenType != TokenTypeID && o.TokenType != TokenTypeAccess {
		return fmt.Errorf("--token-type must be %s or %s, not %q", TokenTypeID, TokenTypeAccess, o.TokenType)
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.LoginTimeout <= 0 {
		o.LoginTimeout = DefaultLoginTimeout
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CacheDir == "" {
		d, err := defaultCacheDir()
		if err != nil {
			return err
		}
		o.CacheDir = d
	}
	if o.HTTPClient == nil {
		c, err := httpClient(o.CAFile)
		if err != nil {
			return err
		}
		o.HTTPClient = c
	}
	return nil
}

// httpClient trusts caFile on top of the system roots.
func httpClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// execInfo is what kubectl tells the plugin: whether it may interact, and
// which API version it wants back.
type execInfo struct {
	interactive bool
	apiVersion  string
}

func parseExecInfo(s string) (execInfo, error) {
	if s == "" {
		return execInfo{interactive: true, apiVersion: clientauthv1.SchemeGroupVersion.String()}, nil
	}
	var cred clientauthv1.ExecCredential
	if err := json.Unmarshal([]byte(s), &cred); err != nil {
		return execInfo{}, fmt.Errorf("KUBERNETES_EXEC_INFO is not an ExecCredential: %w", err)
	}
	v := cred.APIVersion
	switch v {
	case clientauthv1.SchemeGroupVersion.String(), "client.authentication.k8s.io/v1beta1":
	case "":
		v = clientauthv1.SchemeGroupVersion.String()
	default:
		return execInfo{}, fmt.Errorf("KUBERNETES_EXEC_INFO asks for %q; this plugin speaks client.authentication.k8s.io/v1 and v1beta1", v)
	}
	return execInfo{interactive: cred.Spec.Interactive, apiVersion: v}, nil
}

// Run prints an ExecCredential for kubectl on Stdout, logging in first if
// the cache has nothing usable. Diagnostics go to Stderr, never a token.
func Run(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	info, err := parseExecInfo(o.ExecInfo)
	if err != nil {
		return err
	}
	r := &run{o: o, info: info, key: newCacheKey(o.Issuer, o.ClientID, o.ExtraScopes), cache: cache{dir: o.CacheDir}}
	if err := r.cache.ensureDir(); err != nil {
		return err
	}
	unlock, err := lockFile(ctx, r.cache.lockPath(r.key))
	if err != nil {
		return err
	}
	defer unlock()
	if o.Logout {
		removed, err := r.cache.remove(r.key)
		if err != nil {
			return err
		}
		if removed {
			r.say("signed out: removed the cached tokens for %s", o.Issuer)
		} else {
			r.say("no cached tokens for %s", o.Issuer)
		}
		return nil
	}
	return r.credential(ctx)
}

type run struct {
	o     Options
	info  execInfo
	key   cacheKey
	cache cache
	prov  *oidc.Provider
}

func (r *run) say(format string, args ...any) {
	fmt.Fprintf(r.o.Stderr, "sekisho kube login: "+format+"\n", args...)
}

func (r *run) credential(ctx context.Context) error {
	e, err := r.cache.load(r.key)
	if err != nil {
		r.say("ignoring the cached tokens (%v); signing in again", err)
		e = nil
	}
	if e != nil {
		if tok, exp := e.token(r.o.TokenType); tok != "" && exp.After(r.o.Now().Add(RenewBefore)) {
			return r.print(tok, exp)
		}
		if e.RefreshToken != "" {
			ne, err := r.refresh(ctx, e)
			if err == nil {
				return r.saveAndPrint(ne)
			}
			r.say("could not renew the session (%v); signing in again", err)
		}
	}
	if !r.info.interactive {
		return ErrNotInteractive
	}
	ne, err := r.login(ctx)
	if err != nil {
		return err
	}
	return r.saveAndPrint(ne)
}

func (r *run) saveAndPrint(e *cacheEntry) error {
	if err := r.cache.save(e); err != nil {
		// The token is still good for this call; the next one logs in again.
		r.say("%v", err)
	}
	tok, exp := e.token(r.o.TokenType)
	if tok == "" {
		return fmt.Errorf("the provider returned no %s", r.o.TokenType)
	}
	return r.print(tok, exp)
}

// print writes the ExecCredential kubectl reads.
func (r *run) print(token string, exp time.Time) error {
	cred := clientauthv1.ExecCredential{Status: &clientauthv1.ExecCredentialStatus{Token: token}}
	cred.APIVersion = r.info.apiVersion
	cred.Kind = "ExecCredential"
	if !exp.IsZero() {
		t := metav1.NewTime(exp)
		cred.Status.ExpirationTimestamp = &t
	}
	b, err := json.Marshal(cred)
	if err != nil {
		return fmt.Errorf("encoding the ExecCredential: %w", err)
	}
	if _, err := r.o.Stdout.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing the ExecCredential: %w", err)
	}
	return nil
}

// provider discovers the issuer once per run, and only when needed: a
// cached token is printed without any network call.
func (r *run) provider(ctx context.Context) (*oidc.Provider, error) {
	if r.prov != nil {
		return r.prov, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, r.o.HTTPClient), r.o.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discovering %s: %w", r.o.Issuer, err)
	}
	r.prov = p
	return p, nil
}

// oauthConfig is the client for p; redirect is empty for the device flow
// and refreshes.
func (r *run) oauthConfig(ctx context.Context, p *oidc.Provider, redirect string) oauth2.Config {
	scopes := []string{oidc.ScopeOpenID}
	var meta struct {
		Scopes      []string `json:"scopes_supported"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}
	_ = p.Claims(&meta) // a document that does not decode just advertises nothing
	// A refresh token needs offline_access at most providers; asking for a
	// scope the provider does not list would fail the login at some.
	if slices.Contains(meta.Scopes, oidc.ScopeOfflineAccess) {
		scopes = append(scopes, oidc.ScopeOfflineAccess)
	}
	for _, s := range r.key.Scopes {
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	ep := p.Endpoint()
	// The client authentication is chosen, not probed: x/oauth2's probing
	// retries a failed request the other way, which turns the device
	// flow's "authorization_pending" into a client error at some providers.
	switch {
	case r.o.ClientSecret == "":
		ep.AuthStyle = oauth2.AuthStyleInParams // a public client sends only its ID
	case !slices.Contains(meta.AuthMethods, "client_secret_basic") && slices.Contains(meta.AuthMethods, "client_secret_post"):
		ep.AuthStyle = oauth2.AuthStyleInParams
	default:
		ep.AuthStyle = oauth2.AuthStyleInHeader // the default of RFC 6749 and OpenID discovery
	}
	return oauth2.Config{ClientID: r.o.ClientID, ClientSecret: r.o.ClientSecret, Endpoint: ep, RedirectURL: redirect, Scopes: scopes}
}

func (r *run) verifier(p *oidc.Provider) *oidc.IDTokenVerifier {
	return p.Verifier(&oidc.Config{ClientID: r.o.ClientID, Now: r.o.Now})
}

// entry turns a token response into a cache entry, verifying its ID
// token (signature, issuer, audience, expiry) and, after a browser login,
// its nonce.
func (r *run) entry(ctx context.Context, p *oidc.Provider, tok *oauth2.Token, nonce string, previous *cacheEntry) (*cacheEntry, error) {
	e := &cacheEntry{
		cacheKey:          r.key,
		AccessToken:       tok.AccessToken,
		AccessTokenExpiry: tok.Expiry,
		RefreshToken:      tok.RefreshToken,
	}
	if e.RefreshToken == "" && previous != nil {
		e.RefreshToken = previous.RefreshToken // providers that do not rotate it
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		if r.o.TokenType == TokenTypeID {
			return nil, errors.New("the provider returned no ID token")
		}
	} else {
		idt, err := r.verifier(p).Verify(oidc.ClientContext(ctx, r.o.HTTPClient), raw)
		if err != nil {
			return nil, fmt.Errorf("verifying the ID token: %w", err)
		}
		if nonce != "" && idt.Nonce != nonce {
			return nil, errors.New("the ID token's nonce does not match this login: refusing it")
		}
		e.IDToken, e.IDTokenExpiry = raw, idt.Expiry
	}
	if e.AccessTokenExpiry.IsZero() {
		// No expires_in: the access token is assumed to last as the ID token.
		e.AccessTokenExpiry = e.IDTokenExpiry
	}
	return e, nil
}

func (r *run) refresh(ctx context.Context, e *cacheEntry) (*cacheEntry, error) {
	p, err := r.provider(ctx)
	if err != nil {
		return nil, err
	}
	cfg := r.oauthConfig(ctx, p, "")
	ctx = oidc.ClientContext(ctx, r.o.HTTPClient)
	tok, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: e.RefreshToken}).Token()
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", describe(err))
	}
	return r.entry(ctx, p, tok, "", e)
}

func (r *run) login(ctx context.Context) (*cacheEntry, error) {
	p, err := r.provider(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.o.LoginTimeout)
	defer cancel()
	if r.o.DeviceCode {
		return r.deviceLogin(ctx, p)
	}
	return r.browserLogin(ctx, p)
}

// describe keeps an OAuth error's code and description and drops the
// response body x/oauth2 puts in its message.
func describe(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode != "" {
		if re.ErrorDescription != "" {
			return fmt.Errorf("%s: %s", re.ErrorCode, re.ErrorDescription)
		}
		return errors.New(re.ErrorCode)
	}
	return err
}
