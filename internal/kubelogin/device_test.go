package kubelogin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
)

// The device code flow runs against the built-in provider and against
// zitadel/oidc's example OP (a confidential client there, with a secret in
// HTTP Basic), each on a loopback listener.

const (
	deviceClientID = "device"
	deviceSecret   = "device-client-secret"
)

// fastPolling lowers the poll interval the provider announces from 5 s to
// the protocol's minimum of 1 s, so the test's one wait is short.
func fastPolling(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/device_authorization") {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var m map[string]any
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &m) != nil {
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		m["interval"] = 1
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m)
	})
}

// deviceUsers is one user whose ID is its username: the example OP's
// device confirmation records the username as the subject.
type deviceUsers struct{}

var deviceUser = storage.User{ID: "dana", Username: "dana", Password: "dana-device-pw", Email: "dana@example.com", EmailVerified: true}

func (deviceUsers) GetUserByID(id string) *storage.User {
	if id != deviceUser.ID {
		return nil
	}
	u := deviceUser
	return &u
}
func (u deviceUsers) GetUserByUsername(name string) *storage.User { return u.GetUserByID(name) }
func (deviceUsers) ExampleClientID() string                       { return deviceClientID }

func newDeviceOP(t *testing.T) string {
	t.Helper()
	slog.SetDefault(slog.New(slog.DiscardHandler)) // the example OP logs every request
	srv := httptest.NewUnstartedServer(nil)
	t.Cleanup(srv.Close)
	issuer := "http://" + srv.Listener.Addr().String()
	st := storage.NewStorageWithClients(deviceUsers{},
		map[string]*storage.Client{deviceClientID: storage.DeviceClient(deviceClientID, deviceSecret)})
	srv.Config.Handler = fastPolling(exampleop.SetupServer(issuer, st, nil, false))
	srv.Start()
	return issuer
}

// approveDevice is the user on another device: it opens the verification
// URL, signs in and allows the request.
func approveDevice(t *testing.T, verification string) error {
	t.Helper()
	u, err := url.Parse(verification)
	if err != nil {
		return err
	}
	code := u.Query().Get("user_code")
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	base := u.Scheme + "://" + u.Host
	resp, err := c.PostForm(base+"/device/login", url.Values{"user_code": {code}, "username": {deviceUser.Username}, "password": {deviceUser.Password}})
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte("allowed")) {
		return &url.Error{Op: "device login", URL: base, Err: io.ErrUnexpectedEOF}
	}
	resp, err = c.PostForm(base+"/device/confirm", url.Values{"action": {"allowed"}})
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func TestDeviceCodeLogin(t *testing.T) {
	issuer := newDeviceOP(t)
	p := newPlugin(t, &idp{issuer: issuer})
	p.opts.ClientID, p.opts.ClientSecret, p.opts.DeviceCode = deviceClientID, deviceSecret, true
	approved := make(chan error, 1)
	var shown string
	p.opts.OpenBrowser = func(_ context.Context, u string) error {
		shown = u
		go func() { approved <- approveDevice(t, u) }()
		return nil
	}
	r := p.mustRun()
	if err := <-approved; err != nil {
		t.Fatalf("approving the device: %v", err)
	}
	if !strings.Contains(shown, "user_code=") {
		t.Errorf("verification URL %q has no user code", shown)
	}
	e := p.entry()
	if r.cred.Status.Token != e.IDToken || e.IDToken == "" {
		t.Error("device login did not print the cached ID token")
	}
	if !strings.Contains(r.stderr, "to sign in, open "+issuer+"/device") {
		t.Errorf("stderr does not tell where to sign in:\n%s", r.stderr)
	}
	noSecretsIn(t, "stderr", r.stderr, e)

	// The second run reuses the cache without the provider.
	p.opts.OpenBrowser = func(context.Context, string) error {
		t.Error("a cached device login asked for another")
		return nil
	}
	if again := p.mustRun(nonInteractive); again.cred.Status.Token != r.cred.Status.Token {
		t.Error("cached token not reused")
	}
}

var deviceCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// approveBuiltinDevice is the user on another device signing in on the
// built-in provider's device page.
func approveBuiltinDevice(verification string) error {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := c.Get(verification)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := deviceCSRF.FindSubmatch(body)
	u, _ := url.Parse(verification)
	if m == nil {
		return fmt.Errorf("no device form at %s: %d", verification, resp.StatusCode)
	}
	resp, err = c.PostForm(u.Scheme+"://"+u.Host+u.Path, url.Values{
		"csrf": {string(m[1])}, "user_code": {u.Query().Get("user_code")}, "email": {"alice@example.com"}, "password": {alicePassword},
	})
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("device sign-in: %d", resp.StatusCode)
	}
	return nil
}

func TestDeviceCodeLoginBuiltin(t *testing.T) {
	i := newIDP(t)
	p := newPlugin(t, i)
	p.opts.DeviceCode = true
	approved := make(chan error, 1)
	p.opts.OpenBrowser = func(_ context.Context, u string) error {
		go func() { approved <- approveBuiltinDevice(u) }()
		return nil
	}
	r := p.mustRun()
	if err := <-approved; err != nil {
		t.Fatal(err)
	}
	e := p.entry()
	if r.cred.Status.Token != e.IDToken || e.RefreshToken == "" {
		t.Fatal("device login did not print and cache the ID token and a refresh token")
	}
	noSecretsIn(t, "stderr", r.stderr, e)

	// Renewal works for device logins too.
	p.clock.Advance(10*time.Minute - RenewBefore + time.Second)
	if again := p.mustRun(nonInteractive); again.cred.Status.Token == r.cred.Status.Token {
		t.Error("not renewed")
	}
}
