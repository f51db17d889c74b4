package kubelogin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
)

// The built-in provider has no device flow, so the device code tests run
// against zitadel/oidc's example OP (its in-memory storage implements the
// device grant): a real third-party provider on a loopback listener.

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
