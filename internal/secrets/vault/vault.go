// Package vault reads secrets from the KV version 2 engine of HashiCorp
// Vault or OpenBao for references such as
// `sekisho+vault://secret/app?version=3#password`: MOUNT is the first
// segment of the path (secret), PATH the rest (app).
//
// It authenticates with a token given as is, or logs in with the pod's
// service-account token through the kubernetes or jwt auth method: once
// per process, shared by every secret, and renewed (or logged in again)
// when two thirds of the token's lifetime have passed, never per secret.
// It talks to the server's HTTP API through OpenBao's API client, which
// speaks to Vault as well.
package vault

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	bao "github.com/openbao/openbao/api/v2"
	"golang.org/x/sync/singleflight"

	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/secrets"
)

// Errors a Resolve may wrap besides secrets.ErrNotFound, so that a caller
// can tell "fix the policy" from "try again later".
var (
	// ErrPermissionDenied: the server refused the token (invalid, expired,
	// revoked) or its policies do not allow reading the secret, or it
	// refused the login.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnavailable: the server could not be reached, is sealed, or
	// answered with a server error.
	ErrUnavailable = errors.New("server unavailable")
)

// Provider resolves sekisho+vault:// references. It is safe for concurrent
// use; one Provider holds one token for every reference.
type Provider struct {
	opts Options
	// client reads secrets with the current token; loginClient holds no
	// token, so a login never presents a stale one.
	client, loginClient *bao.Client
	now                 func() time.Time

	mu  sync.RWMutex
	cur *lease // nil until the first secret
	// flight makes concurrent callers that need a token share one login
	// or renewal.
	flight singleflight.Group
}

// lease is the token the provider holds and when to refresh it.
type lease struct {
	token string
	// ttl is the lifetime the login granted; renewals ask for it again.
	ttl       time.Duration
	renewable bool
	// refreshAt is when to renew or log in again; zero: never (a token
	// given as is, or one that does not expire).
	refreshAt time.Time
}

// New returns a provider for opts. It checks the options and builds the
// client but does not contact the server: the first Resolve logs in (or
// reads the token file), so a process that has no vault reference never
// needs the server.
func New(_ context.Context, opts Options) (*Provider, error) {
	if err := opts.check(); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	transport := cleanhttp.DefaultPooledTransport()
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	cfg := &bao.Config{
		Address: opts.Address,
		HttpClient: &http.Client{
			Transport: transport,
			// The API client follows one redirect itself (to the active
			// node), refusing a downgrade to http.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Timeout: opts.Timeout,
		// A connection refused or a 5xx is retried twice, briefly: a
		// standby taking over, not an outage, which fails the program's
		// start within the timeout instead.
		MaxRetries:   2,
		MinRetryWait: 100 * time.Millisecond,
		MaxRetryWait: 400 * time.Millisecond,
	}
	if opts.CACert != "" || opts.CAPath != "" || opts.TLSServerName != "" {
		err := cfg.ConfigureTLS(&bao.TLSConfig{CACert: opts.CACert, CAPath: opts.CAPath, TLSServerName: opts.TLSServerName})
		if err != nil {
			return nil, fmt.Errorf("vault: CA certificates (BAO_CACERT, VAULT_CACERT, BAO_CAPATH, VAULT_CAPATH): %w", err)
		}
	}
	client, err := bao.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault: client for %s: %w", opts.Address, err)
	}
	// NewClient reads BAO_TOKEN and BAO_NAMESPACE from the process
	// environment itself; only opts count.
	client.ClearToken()
	client.ClearNamespace()
	if opts.Namespace != "" {
		client.SetNamespace(opts.Namespace)
	}
	loginClient, err := client.Clone()
	if err != nil {
		return nil, fmt.Errorf("vault: client for %s: %w", opts.Address, err)
	}
	loginClient.ClearToken()
	loginClient.ClearNamespace()
	if opts.Namespace != "" {
		loginClient.SetNamespace(opts.Namespace)
	}
	return &Provider{opts: opts, client: client, loginClient: loginClient, now: time.Now}, nil
}

// Resolve reads the KV v2 secret ref names: its current version, or
// ref.Version. A KV v2 secret is a set of keys, so a reference must name
// one (ref.Key): Resolve returns the secret's keys as a JSON object, and
// the caller selects ref.Key from it. Errors name ref.Raw and the reason,
// never a value or the token.
func (p *Provider) Resolve(ctx context.Context, ref secretref.Ref) ([]byte, error) {
	v, err := p.resolve(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref.Raw, err)
	}
	return v, nil
}

func (p *Provider) resolve(ctx context.Context, ref secretref.Ref) ([]byte, error) {
	if ref.Scheme != secretref.Vault {
		return nil, fmt.Errorf("not a %s reference (store %q)", secretref.Vault, ref.Scheme)
	}
	mount, path, err := splitPath(ref.Path)
	if err != nil {
		return nil, err
	}
	if ref.Key == "" {
		return nil, errors.New("name the key to use with #KEY: a KV version 2 secret is a set of keys (sekisho+vault://MOUNT/PATH#KEY)")
	}
	var query map[string][]string
	if ref.Version != "" {
		if n, err := strconv.ParseUint(ref.Version, 10, 31); err != nil || n == 0 {
			return nil, fmt.Errorf("version %q is not a positive number", ref.Version)
		}
		query = map[string][]string{"version": {ref.Version}}
	}
	if err := p.ensureToken(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	apiPath := mount + "/data/" + path
	resp, err := p.client.Logical().ReadRawWithDataWithContext(ctx, apiPath, query)
	if resp != nil {
		defer resp.Body.Close()
	}
	var body kvResponse
	if resp != nil {
		// On an error status the client has buffered the body; a 404
		// for a deleted version still carries the version's metadata.
		body = decodeKV(resp.Body)
	}
	if err != nil {
		return nil, p.readError(ctx, err, body, mount, path, ref.Version)
	}
	if body.Data == nil || body.Data.Data == nil {
		return nil, missing(body, mount, path, ref.Version)
	}
	return object(body.Data.Data, describe(mount, path, ref.Version, body.Data.Metadata.Version))
}

// maxBody bounds what is read of an answer: KV v2 values are limited to
// about 1 MiB by default.
const maxBody = 32 << 20

// kvResponse is a KV v2 read's answer.
type kvResponse struct {
	Data *struct {
		Data     map[string]any `json:"data"`
		Metadata kvMetadata     `json:"metadata"`
	} `json:"data"`
	Errors []string `json:"errors"`
}

// decodeKV reads a KV v2 answer; what does not decode is left empty, and
// the caller reports a missing secret or the status.
func decodeKV(r io.Reader) kvResponse {
	var body kvResponse
	dec := json.NewDecoder(io.LimitReader(r, maxBody))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		return kvResponse{}
	}
	return body
}

type kvMetadata struct {
	Version      json.Number `json:"version"`
	DeletionTime string      `json:"deletion_time"`
	Destroyed    bool        `json:"destroyed"`
}

// splitPath cuts MOUNT/PATH at the first slash.
func splitPath(p string) (mount, path string, err error) {
	mount, path, ok := strings.Cut(p, "/")
	if !ok || mount == "" || path == "" {
		return "", "", fmt.Errorf("path %q is not MOUNT/PATH", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", "", fmt.Errorf("path %q has an empty, '.' or '..' segment", p)
		}
	}
	return mount, path, nil
}

// describe names the secret in messages: "secret/app" or "version 3 of
// secret/app".
func describe(mount, path, asked string, got json.Number) string {
	switch {
	case asked != "":
		return "version " + asked + " of " + mount + "/" + path
	case got != "":
		return mount + "/" + path + " (version " + got.String() + ")"
	}
	return mount + "/" + path
}

// missing explains a read that found no data: no such secret or version,
// or a version deleted or destroyed (KV v2 answers 404 with the version's
// metadata).
func missing(body kvResponse, mount, path, version string) error {
	if body.Data != nil {
		m := body.Data.Metadata
		what := describe(mount, path, version, "")
		if version == "" && m.Version != "" {
			what = "the current version (" + m.Version.String() + ") of " + mount + "/" + path
		}
		switch {
		case m.Destroyed:
			return fmt.Errorf("%w: %s is destroyed; name another version with ?version=N", secrets.ErrNotFound, what)
		case m.DeletionTime != "":
			return fmt.Errorf("%w: %s is deleted (undelete it, or name another version with ?version=N)", secrets.ErrNotFound, what)
		}
	}
	if version != "" {
		return fmt.Errorf("%w: no version %s of %s/%s", secrets.ErrNotFound, version, mount, path)
	}
	return fmt.Errorf("%w: no secret %s/%s (is %s a KV version 2 mount?)", secrets.ErrNotFound, mount, path, mount)
}

// readError explains a failed read.
func (p *Provider) readError(ctx context.Context, err error, body kvResponse, mount, path, version string) error {
	var re *bao.ResponseError
	if !errors.As(err, &re) {
		return p.transportError(ctx, err)
	}
	switch re.StatusCode {
	case http.StatusNotFound:
		return missing(body, mount, path, version)
	case http.StatusForbidden:
		return fmt.Errorf("%w: the server refused the token for %s/data/%s: it is invalid, expired or revoked, or none of its policies allows read on that path%s",
			ErrPermissionDenied, mount, path, p.redact(serverSays(re.Errors)))
	}
	return p.statusError(re)
}

// statusError explains an error status other than 403 and 404.
func (p *Provider) statusError(re *bao.ResponseError) error {
	says := p.redact(serverSays(re.Errors))
	switch {
	case re.StatusCode == http.StatusServiceUnavailable && strings.Contains(strings.Join(re.Errors, " "), "sealed"):
		return fmt.Errorf("%w: the server at %s is sealed", ErrUnavailable, p.opts.Address)
	case re.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("%w: the server at %s is rate limiting requests (429)%s", ErrUnavailable, p.opts.Address, says)
	case re.StatusCode >= 500:
		return fmt.Errorf("%w: the server at %s answered %d%s", ErrUnavailable, p.opts.Address, re.StatusCode, says)
	}
	return fmt.Errorf("the server at %s answered %d%s", p.opts.Address, re.StatusCode, says)
}

// transportError explains a request that got no answer.
func (p *Provider) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: no answer from %s in time: %w", ErrUnavailable, p.opts.Address, ctx.Err())
	}
	return fmt.Errorf("%w: cannot reach %s: %s", ErrUnavailable, p.opts.Address, p.redact(err.Error()))
}

// serverSays quotes the server's error messages, which name paths and
// reasons ("permission denied", "Vault is sealed").
func serverSays(errs []string) string {
	var parts []string
	for _, e := range errs {
		if e = strings.TrimSpace(e); e != "" {
			parts = append(parts, e)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	s := strings.Join(parts, "; ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return " (server: " + s + ")"
}

// redact removes the current token from a message, should a server or
// proxy ever echo it.
func (p *Provider) redact(s string) string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.cur != nil && p.cur.token != "" {
		s = strings.ReplaceAll(s, p.cur.token, "[token]")
	}
	if p.opts.Token != "" {
		s = strings.ReplaceAll(s, p.opts.Token, "[token]")
	}
	return s
}

// object is what Resolve returns: the secret's keys as one JSON object.
// It never depends on ref.Key: references that differ only in #KEY share
// one read, and the caller selects each one's key.
func object(data map[string]any, what string) ([]byte, error) {
	out, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// ensureToken makes sure the client holds a token that is not due for
// refresh: the first call reads or logs in; later calls renew or log in
// again once two thirds of its lifetime have passed. Concurrent callers
// share one login.
func (p *Provider) ensureToken(ctx context.Context) error {
	if p.fresh() {
		return nil
	}
	// The login outlives a caller that gives up: the others wait for it.
	ch := p.flight.DoChan("token", func() (any, error) {
		return nil, p.refresh(context.WithoutCancel(ctx))
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for the login: %w", ErrUnavailable, ctx.Err())
	}
}

func (p *Provider) fresh() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.cur != nil && (p.cur.refreshAt.IsZero() || p.now().Before(p.cur.refreshAt))
}

func (p *Provider) set(l *lease) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur = l
	p.client.SetToken(l.token)
}

// refresh gets a token: the given one, a renewal of the current one, or a
// new login.
func (p *Provider) refresh(ctx context.Context) error {
	if p.fresh() { // refreshed by a flight that ended just before
		return nil
	}
	if p.opts.Auth == AuthToken {
		token := p.opts.Token
		if p.opts.TokenFile != "" {
			var err error
			if token, err = readCredential(p.opts.TokenFile, "token"); err != nil {
				return err
			}
		}
		p.set(&lease{token: token})
		return nil
	}
	p.mu.RLock()
	cur := p.cur
	p.mu.RUnlock()
	if cur != nil && cur.renewable {
		l, err := p.renew(ctx, cur)
		if err == nil {
			p.set(l)
			return nil
		}
		p.opts.Logger.Info("vault: token renewal failed; logging in again", "auth", p.opts.Auth, "mount", p.opts.AuthMount, "role", p.opts.Role, "reason", err.Error())
	}
	l, err := p.login(ctx)
	if err != nil {
		return err
	}
	p.set(l)
	return nil
}

// renew extends the current token by its original lifetime. A token near
// its maximum lifetime is granted less than a third of it: then a new
// login is better than a renewal that soon expires.
func (p *Provider) renew(ctx context.Context, cur *lease) (*lease, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	sec, err := p.client.Auth().Token().RenewSelfWithContext(ctx, int(cur.ttl/time.Second))
	if err != nil {
		var re *bao.ResponseError
		if errors.As(err, &re) {
			if re.StatusCode == http.StatusForbidden {
				return nil, fmt.Errorf("%w: the token is no longer valid%s", ErrPermissionDenied, p.redact(serverSays(re.Errors)))
			}
			return nil, p.statusError(re)
		}
		return nil, p.transportError(ctx, err)
	}
	if sec == nil || sec.Auth == nil {
		return nil, errors.New("the renewal answer holds no token")
	}
	granted := time.Duration(sec.Auth.LeaseDuration) * time.Second
	if granted < cur.ttl/3 {
		return nil, fmt.Errorf("the token is near its maximum lifetime (renewed for %s only)", granted)
	}
	p.opts.Logger.Debug("vault: token renewed", "ttl", granted)
	return &lease{token: cur.token, ttl: cur.ttl, renewable: sec.Auth.Renewable, refreshAt: p.refreshAt(granted)}, nil
}

// login logs in with the JWT file at auth/MOUNT/login.
func (p *Provider) login(ctx context.Context) (*lease, error) {
	jwt, err := readCredential(p.opts.JWTFile, "service-account token")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	where := fmt.Sprintf("log in at auth/%s/login as role %q", p.opts.AuthMount, p.opts.Role)
	sec, err := p.loginClient.Logical().WriteWithContext(ctx, "auth/"+p.opts.AuthMount+"/login", map[string]any{"role": p.opts.Role, "jwt": jwt})
	if err != nil {
		var re *bao.ResponseError
		if errors.As(err, &re) {
			says := strings.ReplaceAll(p.redact(serverSays(re.Errors)), jwt, "[service-account token]")
			switch {
			case re.StatusCode == http.StatusBadRequest || re.StatusCode == http.StatusForbidden:
				// The server answers 400 for a token or role it refuses.
				return nil, fmt.Errorf("%w: %s: the server refused the login%s", ErrPermissionDenied, where, says)
			case re.StatusCode == http.StatusNotFound:
				return nil, fmt.Errorf("%w: %s: no auth method at auth/%s (SEKISHO_VAULT_AUTH_MOUNT)%s", ErrPermissionDenied, where, p.opts.AuthMount, says)
			}
			return nil, fmt.Errorf("%s: %w", where, p.statusError(re))
		}
		return nil, fmt.Errorf("%s: %w", where, p.transportError(ctx, err))
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, fmt.Errorf("%s: the answer holds no token", where)
	}
	ttl := time.Duration(sec.Auth.LeaseDuration) * time.Second
	p.opts.Logger.Info("vault: logged in", "auth", p.opts.Auth, "mount", p.opts.AuthMount, "role", p.opts.Role, "ttl", ttl, "renewable", sec.Auth.Renewable)
	return &lease{token: sec.Auth.ClientToken, ttl: ttl, renewable: sec.Auth.Renewable, refreshAt: p.refreshAt(ttl)}, nil
}

// refreshAt is when a token granted for ttl is due: after two thirds of
// it, so a slow renewal still ends before the token does.
func (p *Provider) refreshAt(ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return p.now().Add(ttl * 2 / 3)
}

// readCredential reads a token or JWT file: one line of visible
// characters. Messages name the file, never its contents.
func readCredential(path, what string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read the %s: %w", what, err)
	}
	s := string(bytes.TrimSpace(data))
	if s == "" {
		return "", fmt.Errorf("the %s file %s is empty", what, path)
	}
	if !printable(s) {
		return "", fmt.Errorf("the %s file %s holds spaces or control characters", what, path)
	}
	return s, nil
}
