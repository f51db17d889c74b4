package kubelogin

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"time"
	"unicode"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// RedirectPath is the path of the loopback redirect URI:
// http://127.0.0.1:PORT/callback.
const RedirectPath = "/callback"

// callback is what the browser brought back to the loopback listener.
type callback struct {
	code string
	err  error
	done chan error // the login's outcome, shown on the browser's page
}

// checkLoopback refuses a listen address that is not a loopback one: the
// authorization code must not travel over the network (RFC 8252 section 8.3).
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--listen %q: the redirect listener must be on a loopback address such as 127.0.0.1", addr)
}

// browserLogin is the authorization code flow with PKCE (S256), state and
// nonce, answered on a loopback listener that takes one callback and closes.
func (r *run) browserLogin(ctx context.Context, p *oidc.Provider) (*cacheEntry, error) {
	if err := checkLoopback(r.o.Listen); err != nil {
		return nil, err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", r.o.Listen)
	if err != nil {
		return nil, fmt.Errorf("redirect listener on %s: %w", r.o.Listen, err)
	}
	host, _, _ := net.SplitHostPort(r.o.Listen)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	redirect := "http://" + net.JoinHostPort(host, port) + RedirectPath
	cfg := r.oauthConfig(ctx, p, redirect)
	state, nonce, verifier := rand.Text(), rand.Text(), oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))

	callbacks := make(chan callback, 1)
	over := make(chan struct{})
	srv := &http.Server{
		Handler:           callbackHandler(state, callbacks, over),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		close(over)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	if err := r.openBrowser(ctx, authURL); err != nil {
		r.say("could not open a browser (%v)", err)
	}
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("no browser login within %s: %w", r.o.LoginTimeout, ctx.Err())
	case cb := <-callbacks:
		e, err := r.finish(ctx, p, cfg, cb, verifier, nonce)
		cb.done <- err
		return e, err
	}
}

func (r *run) finish(ctx context.Context, p *oidc.Provider, cfg oauth2.Config, cb callback, verifier, nonce string) (*cacheEntry, error) {
	if cb.err != nil {
		return nil, cb.err
	}
	hctx := oidc.ClientContext(ctx, r.o.HTTPClient)
	tok, err := cfg.Exchange(hctx, cb.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("redeeming the authorization code: %w", describe(err))
	}
	return r.entry(ctx, p, tok, nonce, nil)
}

// callbackHandler takes the first request to RedirectPath: the browser's
// return from the provider. A wrong state ends the login (it is either a
// forged request or a stale tab); later requests are told it is over.
// over is closed when the login has ended without waiting for the answer.
func callbackHandler(state string, out chan<- callback, over <-chan struct{}) http.Handler {
	taken := make(chan struct{}, 1)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != RedirectPath {
			http.NotFound(w, req)
			return
		}
		select {
		case taken <- struct{}{}:
		default:
			page(w, http.StatusGone, "This sign-in is already over. You can close this tab.")
			return
		}
		q := req.URL.Query()
		cb := callback{code: q.Get("code"), done: make(chan error, 1)}
		switch {
		case q.Get("state") != state:
			cb.err = errors.New("the browser came back with a state that does not match this login: refusing it")
		case q.Get("error") != "":
			cb.err = fmt.Errorf("the provider refused the login: %s %s", printable(q.Get("error")), printable(q.Get("error_description")))
		case cb.code == "":
			cb.err = errors.New("the browser came back without an authorization code")
		}
		out <- cb
		select {
		case err := <-cb.done:
			if err != nil {
				page(w, http.StatusBadRequest, "Sign-in failed: "+err.Error())
				return
			}
			page(w, http.StatusOK, "Signed in. You can close this tab and return to kubectl.")
		case <-over:
			page(w, http.StatusGone, "This sign-in is already over. You can close this tab.")
		case <-req.Context().Done():
		}
	})
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>sekisho kube login</title></head>
<body><p>{{.}}</p></body></html>
`))

func page(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, msg)
}

// openBrowser shows url to the user: through Options.OpenBrowser, the
// --browser-command, or the desktop's opener. The URL carries no secret
// (state, nonce and the PKCE challenge only), so it is always printed too,
// for when no browser opens.
func (r *run) openBrowser(ctx context.Context, url string) error {
	r.say("open this URL to sign in:\n  %s", url)
	switch {
	case r.o.OpenBrowser != nil:
		return r.o.OpenBrowser(ctx, url)
	case r.o.NoBrowser:
		return nil
	}
	name := r.o.BrowserCommand
	if name == "" {
		switch runtime.GOOS {
		case "darwin":
			name = "open"
		case "windows":
			name = "explorer"
		default:
			name = "xdg-open"
		}
	}
	cmd := exec.Command(name, url)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

// printable drops control characters and bounds the length of text that
// came in a URL, before it reaches the user's terminal.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
