package login

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/testutil"
)

// The provider in these tests is zitadel/oidc's example OP (exampleop and
// its in-memory storage), served in-process by httptest: a real, third-party
// OpenID Provider with PKCE S256, refresh-token rotation, userinfo and
// end_session. Two things are wrapped around it: its user store (so tests
// can change a user's email between login and refresh) and its client
// lookup (its example clients register no post-logout redirect URIs).

func TestMain(m *testing.M) {
	// The example OP logs every request through the default logger.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

const (
	testClientID = "web"
	testSecret   = "s3cret-client"
	testPassword = "correct horse"
)

// users is a thread-safe storage.UserStore whose users tests may edit.
type users struct {
	mu sync.Mutex
	m  map[string]storage.User
}

func (u *users) GetUserByID(id string) *storage.User {
	u.mu.Lock()
	defer u.mu.Unlock()
	if usr, ok := u.m[id]; ok {
		return &usr
	}
	return nil
}

func (u *users) GetUserByUsername(name string) *storage.User {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, usr := range u.m {
		if usr.Username == name {
			return &usr
		}
	}
	return nil
}

func (u *users) ExampleClientID() string { return "service" }

func (u *users) setEmail(id, email string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	usr := u.m[id]
	usr.Email = email
	u.m[id] = usr
}

// opStorage adds post-logout redirect URIs to the example's clients.
type opStorage struct {
	*storage.Storage
	postLogout []string
}

func (s *opStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return logoutClient{c, s.postLogout}, nil
}

type logoutClient struct {
	op.Client
	postLogout []string
}

func (c logoutClient) PostLogoutRedirectURIs() []string { return c.postLogout }

// fakeClock is the service's and the store's clock; the OP keeps real time.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// setup tunes a harness before its service is built.
type setup struct {
	// providers replaces the single provider "corp" on the test OP.
	providers func(h *harness) []ProviderConfig
	// opMiddleware wraps the OP's handler.
	opMiddleware func(http.Handler) http.Handler
	// store replaces the cookie store.
	store func(t *testing.T, c *session.Codec, now func() time.Time) session.Store
	opts  func(*Options)
	// lateDiscovery skips waiting for the test OP's discovery.
	lateDiscovery bool
}

// harness is a gateway (login service plus one protected handler) and the
// test OP, each on its own loopback server.
type harness struct {
	t       *testing.T
	gw      *httptest.Server
	op      *httptest.Server
	issuer  string
	opStore *opStorage
	users   *users
	svc     *Service
	store   session.Store
	clock   *fakeClock
	logs    *testutil.SyncBuffer
	secret  string // path of the client secret file

	localhostCallback string
}

func newHarness(t *testing.T, su setup) *harness {
	t.Helper()
	h := &harness{t: t, clock: &fakeClock{t: time.Now()}, logs: &testutil.SyncBuffer{}}

	h.gw = httptest.NewUnstartedServer(nil)
	t.Cleanup(h.gw.Close)
	gwURL := "http://" + h.gw.Listener.Addr().String()

	h.op = httptest.NewUnstartedServer(nil)
	t.Cleanup(h.op.Close)
	h.issuer = "http://" + h.op.Listener.Addr().String()
	h.users = &users{m: map[string]storage.User{
		"alice-id": {
			ID: "alice-id", Username: "alice", Password: testPassword, FirstName: "Alice", LastName: "Liddell",
			Email: "alice@example.com", EmailVerified: true,
		},
	}}
	// The second redirect URI is for the fixed redirect_url test.
	h.localhostCallback = fmt.Sprintf("http://localhost:%d/.sekisho/callback", h.gw.Listener.Addr().(*net.TCPAddr).Port)
	clients := map[string]*storage.Client{
		testClientID: storage.WebClient(testClientID, testSecret, gwURL+"/.sekisho/callback", h.localhostCallback),
	}
	h.opStore = &opStorage{
		Storage:    storage.NewStorageWithClients(h.users, clients),
		postLogout: []string{gwURL + "/.sekisho/signed_out"},
	}
	var opHandler http.Handler = exampleop.SetupServer(h.issuer, h.opStore, nil, false)
	if su.opMiddleware != nil {
		opHandler = su.opMiddleware(opHandler)
	}
	h.op.Config.Handler = opHandler
	h.op.Start()

	h.secret = filepath.Join(t.TempDir(), "client-secret")
	if err := os.WriteFile(h.secret, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	codec, err := session.NewCodec(session.CodecOptions{Name: "_sekisho", Keys: [][]byte{bytes.Repeat([]byte{7}, session.KeySize)}})
	if err != nil {
		t.Fatal(err)
	}
	h.store = session.NewCookieStore(codec, session.StoreOptions{Now: h.clock.Now})
	if su.store != nil {
		h.store = su.store(t, codec, h.clock.Now)
	}
	providers := []ProviderConfig{h.provider("corp")}
	if su.providers != nil {
		providers = su.providers(h)
	}
	o := Options{
		Store:  h.store,
		Codec:  codec,
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    h.clock.Now,
	}
	if su.opts != nil {
		su.opts(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h.svc, err = New(ctx, providers, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.gw.Config.Handler = http.HandlerFunc(h.serveGateway)
	h.gw.Start()
	for _, p := range h.svc.providers {
		if p.issuer == h.issuer && !su.lateDiscovery {
			h.waitDiscovered(p.name)
		}
	}
	return h
}

// provider is a ProviderConfig for the test OP.
func (h *harness) provider(name string) ProviderConfig {
	return ProviderConfig{
		Name:             name,
		Issuer:           h.issuer,
		ClientID:         testClientID,
		ClientSecretFile: h.secret,
		// The example OP keeps profile and email claims out of ID tokens
		// issued with an access token, so they come from userinfo.
		Userinfo: true,
		// offline_access makes the example OP issue refresh tokens.
		Scopes: []string{"openid", "email", "profile", "offline_access"},
		Claims: identity.ClaimsConfig{Username: "email"},
	}
}

func (h *harness) waitDiscovered(name string) {
	h.t.Helper()
	select {
	case <-h.svc.byName[name].ready:
	case <-time.After(10 * time.Second):
		h.t.Fatalf("provider %s was not discovered; logs:\n%s", name, h.logs)
	}
}

// serveGateway is a protected application behind the login service.
func (h *harness) serveGateway(w http.ResponseWriter, r *http.Request) {
	if h.svc.Owns(r.URL.Path) {
		h.svc.ServeHTTP(w, r)
		return
	}
	id, cookies, err := h.svc.Authenticate(r.Context(), r)
	setCookies(w, cookies)
	switch {
	case errors.Is(err, session.ErrUnavailable):
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	case err != nil:
		h.svc.StartLogin(w, r)
		return
	}
	fmt.Fprintf(w, "hello %s at %s", id.Username, r.URL.RequestURI())
}

// browser is a cookie-holding client. Redirects to hosts in stopAt are not
// followed, so a test can look at (or tamper with) them.
type browser struct {
	*http.Client
	jar *cookiejar.Jar
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{Client: &http.Client{Jar: jar}, jar: jar}
}

// noFollow returns a client sharing b's cookies that stops at the first
// redirect.
func (b *browser) noFollow() *http.Client {
	return &http.Client{Jar: b.jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// stopAt returns a client sharing b's cookies that stops before visiting host.
func (b *browser) stopAt(host string) *http.Client {
	return &http.Client{Jar: b.jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host == host {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

// do sends a request and returns the response with its body read.
func do(t *testing.T, c *http.Client, method, target string, form url.Values, header ...string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// start asks the gateway for path without a session and returns the
// provider authorization URL it redirects to.
func (h *harness) start(b *browser, path string) *url.URL {
	h.t.Helper()
	resp, body := do(h.t, b.noFollow(), http.MethodGet, h.gw.URL+path, nil)
	if resp.StatusCode != http.StatusFound {
		h.t.Fatalf("GET %s: status %d, want 302; body: %s", path, resp.StatusCode, body)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(u.String(), h.issuer) {
		h.t.Fatalf("GET %s redirected to %q, want the provider", path, resp.Header.Get("Location"))
	}
	return u
}

// authorize signs in at the provider for authURL and returns the callback
// URL the provider sends the browser to, without visiting it.
func (h *harness) authorize(b *browser, authURL string) *url.URL {
	h.t.Helper()
	c := b.stopAt(h.gw.Listener.Addr().String())
	resp, body := do(h.t, c, http.MethodGet, authURL, nil)
	reqID := resp.Request.URL.Query().Get("authRequestID")
	if resp.StatusCode != http.StatusOK || reqID == "" {
		h.t.Fatalf("provider login page: status %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}
	form := url.Values{"id": {reqID}, "username": {"alice"}, "password": {testPassword}}
	resp, body = do(h.t, c, http.MethodPost, h.issuer+"/login/username", form)
	if resp.StatusCode != http.StatusFound {
		h.t.Fatalf("provider login: status %d: %s", resp.StatusCode, body)
	}
	cb, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || cb.Path != "/.sekisho/callback" {
		h.t.Fatalf("provider redirected to %q, want the callback", resp.Header.Get("Location"))
	}
	return cb
}

// login runs the whole browser flow for path and returns the final page.
func (h *harness) login(b *browser, path string) string {
	h.t.Helper()
	cb := h.authorize(b, h.start(b, path).String())
	resp, body := do(h.t, b.Client, http.MethodGet, cb.String(), nil)
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("callback: status %d: %s\nlogs:\n%s", resp.StatusCode, body, h.logs)
	}
	return body
}

// session returns the session the browser's cookies hold.
func (h *harness) session(b *browser) *session.Session {
	h.t.Helper()
	req := httptest.NewRequest(http.MethodGet, h.gw.URL+"/", nil)
	for _, c := range b.jar.Cookies(req.URL) {
		req.AddCookie(c)
	}
	s, err := h.store.Load(context.Background(), req)
	if err != nil {
		h.t.Fatalf("loading the browser's session: %v", err)
	}
	return s
}

// cookie returns the browser's cookie name for u, or nil.
func (b *browser) cookie(u, name string) *http.Cookie {
	pu, _ := url.Parse(u)
	for _, c := range b.jar.Cookies(pu) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// assertNotLogged fails when any secret appears in the service's logs.
func (h *harness) assertNotLogged(secrets ...string) {
	h.t.Helper()
	logs := h.logs.String()
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			h.t.Errorf("a secret (%.8s...) appears in the logs", s)
		}
	}
}

// rewriteJSON returns OP middleware that edits the JSON answers of path.
func rewriteJSON(path string, edit func(r *http.Request, m map[string]any)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != path {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			var m map[string]any
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &m) != nil {
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				_, _ = w.Write(rec.Body.Bytes())
				return
			}
			edit(r, m)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(m)
		})
	}
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
