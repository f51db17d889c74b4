package kubelogin

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	clientauthv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"

	"github.com/sekisho/sekisho/internal/devidp"
	"github.com/sekisho/sekisho/internal/testutil"
)

const (
	alicePassword = "alice-wonderland-pw"
	issuerPath    = "/.sekisho/dev"
	webSecret     = "web-client-secret"
)

var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// idp is the built-in provider on a real loopback listener, with a count
// of the requests it answered so tests can say "no network call".
type idp struct {
	srv      *httptest.Server
	issuer   string
	requests atomic.Int64
	tokens   atomic.Int64 // token endpoint requests
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(alicePassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	i := &idp{}
	mux := http.NewServeMux()
	i.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i.requests.Add(1)
		if strings.HasSuffix(r.URL.Path, "/oauth/token") {
			i.tokens.Add(1)
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(i.srv.Close)
	p, err := devidp.New(t.Context(), i.srv.URL+issuerPath,
		devidp.Config{Users: []devidp.User{{Email: "alice@example.com", PasswordHash: string(hash), Groups: []string{"dev"}}}},
		[]devidp.Client{devidp.KubectlClient(), {ID: "web", Secret: webSecret, RedirectURIs: []string{"http://127.0.0.1:1/callback"}}},
		devidp.Options{Logger: slog.New(slog.DiscardHandler), SigningKey: testKey(), IDTokenTTL: 10 * time.Minute, AccessTokenTTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle(issuerPath+"/", fastPolling(p.Handler()))
	i.issuer = p.Issuer()
	return i
}

// browser acts as the user's browser: it follows the sign-in URL to the
// provider's login form, submits it, and follows the redirect to the
// plugin's loopback callback. edit, when set, changes the sign-in URL first
// (an attacker's rewrite, in the refusal tests).
type browser struct {
	t        *testing.T
	password string
	edit     func(u *url.URL)
	opens    atomic.Int64
	lastURL  atomic.Value // string: the last sign-in URL opened
	mu       sync.Mutex
	pages    []string // the final page of each sign-in: the plugin's answer
	errs     []error
	wg       sync.WaitGroup
}

var (
	hiddenID   = regexp.MustCompile(`name="id" value="([^"]+)"`)
	hiddenCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// open is Options.OpenBrowser. It returns at once, like xdg-open: the
// plugin answers the callback only after redeeming the code.
func (b *browser) open(_ context.Context, u string) error {
	b.opens.Add(1)
	b.lastURL.Store(u)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		page, err := b.signIn(u)
		b.mu.Lock()
		defer b.mu.Unlock()
		b.pages = append(b.pages, page)
		if err != nil {
			b.errs = append(b.errs, err)
		}
	}()
	return nil
}

func (b *browser) signIn(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if b.edit != nil {
		b.edit(u)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := c.Get(u.String())
	if err != nil {
		return "", err
	}
	body := readAll(resp)
	id, csrf := hiddenID.FindStringSubmatch(body), hiddenCSRF.FindStringSubmatch(body)
	if id == nil || csrf == nil {
		return body, fmt.Errorf("no login form at %s (%d)", resp.Request.URL, resp.StatusCode)
	}
	resp, err = c.PostForm(resp.Request.URL.String(), url.Values{
		"id": {id[1]}, "csrf": {csrf[1]}, "email": {"alice@example.com"}, "password": {b.password},
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, readAll(resp)), nil
}

// wait returns the pages the browser ended on, after every sign-in is over.
func (b *browser) wait() []string {
	b.t.Helper()
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, err := range b.errs {
		b.t.Errorf("browser: %v", err)
	}
	return append([]string(nil), b.pages...)
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// plugin is one kubectl user's plugin setup: a cache dir, a clock and a
// browser, run as often as a test wants.
type plugin struct {
	t       *testing.T
	idp     *idp
	browser *browser
	clock   *testutil.Clock
	opts    Options
}

func newPlugin(t *testing.T, i *idp) *plugin {
	t.Helper()
	p := &plugin{t: t, idp: i, browser: &browser{t: t, password: alicePassword}, clock: testutil.NewClock(time.Now())}
	p.opts = Options{
		Issuer:       i.issuer,
		ClientID:     devidp.KubectlClientID,
		CacheDir:     filepath.Join(t.TempDir(), "cache"),
		OpenBrowser:  p.browser.open,
		Now:          p.clock.Now,
		LoginTimeout: 30 * time.Second,
	}
	return p
}

// result is one run of the plugin.
type result struct {
	err    error
	stdout string
	stderr string
	cred   clientauthv1.ExecCredential
}

func (p *plugin) run(edit ...func(*Options)) result {
	p.t.Helper()
	var out, errb testutil.SyncBuffer
	o := p.opts
	o.Stdout, o.Stderr = &out, &errb
	for _, e := range edit {
		e(&o)
	}
	r := result{err: Run(p.t.Context(), o)}
	r.stdout, r.stderr = out.String(), errb.String()
	if r.err == nil && r.stdout != "" {
		if err := json.Unmarshal([]byte(r.stdout), &r.cred); err != nil {
			p.t.Fatalf("stdout is not an ExecCredential: %v\n%s", err, r.stdout)
		}
	}
	return r
}

// mustRun runs the plugin and expects a credential.
func (p *plugin) mustRun(edit ...func(*Options)) result {
	p.t.Helper()
	r := p.run(edit...)
	if r.err != nil {
		p.t.Fatalf("Run: %v\nstderr:\n%s", r.err, r.stderr)
	}
	if r.cred.Status == nil || r.cred.Status.Token == "" {
		p.t.Fatalf("no token in %s", r.stdout)
	}
	return r
}

// entry reads the cache entry as it is on disk.
func (p *plugin) entry() *cacheEntry {
	p.t.Helper()
	e, err := cache{dir: p.opts.CacheDir}.load(newCacheKey(p.opts.Issuer, p.opts.ClientID, p.opts.ExtraScopes))
	if err != nil || e == nil {
		p.t.Fatalf("cache entry: %v, %v", e, err)
	}
	return e
}

// noSecretsIn fails when s holds any token of e.
func noSecretsIn(t *testing.T, what, s string, e *cacheEntry) {
	t.Helper()
	for name, tok := range map[string]string{"ID token": e.IDToken, "access token": e.AccessToken, "refresh token": e.RefreshToken} {
		if tok != "" && strings.Contains(s, tok) {
			t.Errorf("%s contains the %s:\n%s", what, name, s)
		}
	}
}

func nonInteractive(o *Options) {
	o.ExecInfo = `{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}`
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}
