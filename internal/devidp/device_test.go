package devidp

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// deviceFixture starts a device authorization for the kubectl client.
func deviceFixture(t *testing.T) (*fixture, *oauth2.DeviceAuthResponse) {
	t.Helper()
	f := newFixture(t)
	f.oauth = oauth2.Config{
		ClientID: KubectlClientID,
		Endpoint: f.oidc.Endpoint(),
		Scopes:   []string{oidc.ScopeOpenID, "email", oidc.ScopeOfflineAccess},
	}
	f.oauth.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	f.verifier = f.oidc.Verifier(&oidc.Config{ClientID: KubectlClientID})
	da, err := f.oauth.DeviceAuth(f.ctx)
	if err != nil {
		t.Fatalf("device authorization: %v", err)
	}
	return f, da
}

// poll asks the token endpoint once, as the device does every interval.
func (f *fixture) poll(t *testing.T, deviceCode string) (int, map[string]any) {
	t.Helper()
	resp, body := f.post(t, &http.Client{}, f.oauth.Endpoint.TokenURL, url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {deviceCode}, "client_id": {KubectlClientID},
	})
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("token endpoint: %d %s", resp.StatusCode, body)
	}
	return resp.StatusCode, m
}

var deviceCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// devicePage opens the verification URL in the browser and returns the form's CSRF token.
func (f *fixture) devicePage(t *testing.T, u string) (string, string) {
	t.Helper()
	resp, body := f.get(t, f.browser, u)
	m := deviceCSRF.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("device page: %d\n%s", resp.StatusCode, body)
	}
	return m[1], body
}

func (f *fixture) submitDevice(t *testing.T, csrf, code, email, password string) (int, string) {
	t.Helper()
	resp, body := f.post(t, f.browser, f.p.Issuer()+devicePath, url.Values{
		"csrf": {csrf}, "user_code": {code}, "email": {email}, "password": {password},
	})
	return resp.StatusCode, body
}

func TestDeviceFlow(t *testing.T) {
	f, da := deviceFixture(t)
	if da.VerificationURI != f.p.Issuer()+devicePath || !strings.Contains(da.VerificationURIComplete, "user_code=") {
		t.Fatalf("verification URIs %q %q", da.VerificationURI, da.VerificationURIComplete)
	}
	if _, m := f.poll(t, da.DeviceCode); m["error"] != "authorization_pending" {
		t.Fatalf("poll before sign-in: %v", m)
	}
	csrf, page := f.devicePage(t, da.VerificationURIComplete)
	if !strings.Contains(page, `value="`+da.UserCode+`"`) {
		t.Errorf("the code is not filled in:\n%s", page)
	}
	if code, body := f.submitDevice(t, csrf, da.UserCode, "alice@example.com", "wrong"); code != http.StatusUnauthorized || !strings.Contains(body, msgBadLogin) {
		t.Fatalf("wrong password: %d", code)
	}
	if _, m := f.poll(t, da.DeviceCode); m["error"] != "authorization_pending" {
		t.Fatalf("poll after a failed sign-in: %v", m)
	}
	// The code as a person might type it.
	typed := strings.ToLower(strings.ReplaceAll(da.UserCode, "-", " "))
	if code, body := f.submitDevice(t, csrf, typed, "alice@example.com", alicePassword); code != http.StatusOK || !strings.Contains(body, "Go back to your device") {
		t.Fatalf("sign-in: %d\n%s", code, body)
	}
	status, m := f.poll(t, da.DeviceCode)
	raw, _ := m["id_token"].(string)
	if status != http.StatusOK || raw == "" || m["refresh_token"] == nil {
		t.Fatalf("poll after sign-in: %d %v", status, m)
	}
	idt, err := f.verifier.Verify(f.ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if c := claimsOf(t, idt); c.Email != "Alice@Example.com" || c.Sub == "" {
		t.Errorf("claims %+v", c)
	}
	if _, err := f.refresh(m["refresh_token"].(string)); err != nil {
		t.Errorf("refresh: %v", err)
	}
	// The device code is spent, and so is the user code.
	if status, m := f.poll(t, da.DeviceCode); status == http.StatusOK {
		t.Fatalf("a spent device code redeemed again: %v", m)
	}
	if code, _ := f.submitDevice(t, csrf, da.UserCode, "alice@example.com", alicePassword); code != http.StatusBadRequest {
		t.Errorf("a used user code: %d, want 400", code)
	}
}

func TestDeviceUserCodeGuessingIsRateLimited(t *testing.T) {
	f, da := deviceFixture(t)
	csrf, _ := f.devicePage(t, da.VerificationURI)
	for i := range failureBurst {
		if code, body := f.submitDevice(t, csrf, "BCDF-GHJK", "alice@example.com", alicePassword); code != http.StatusBadRequest || !strings.Contains(body, msgBadUserCode) {
			t.Fatalf("guess %d: %d", i, code)
		}
	}
	if code, _ := f.submitDevice(t, csrf, da.UserCode, "alice@example.com", alicePassword); code != http.StatusTooManyRequests {
		t.Fatalf("after %d wrong codes the right one got %d, want 429", failureBurst, code)
	}
	f.clock.Advance(failureEvery)
	if code, _ := f.submitDevice(t, csrf, da.UserCode, "alice@example.com", alicePassword); code != http.StatusOK {
		t.Fatalf("after waiting: %d", code)
	}
}

func TestDeviceFormNeedsCSRF(t *testing.T) {
	f, da := deviceFixture(t)
	f.devicePage(t, da.VerificationURI) // sets the browser cookie
	if code, _ := f.submitDevice(t, "forged", da.UserCode, "alice@example.com", alicePassword); code != http.StatusForbidden {
		t.Fatalf("forged CSRF token: %d, want 403", code)
	}
	if _, m := f.poll(t, da.DeviceCode); m["error"] != "authorization_pending" {
		t.Fatalf("poll: %v", m)
	}
}

func TestConfidentialClientHasNoDeviceFlow(t *testing.T) {
	f := newFixture(t)
	if _, err := f.oauth.DeviceAuth(f.ctx); err == nil || !strings.Contains(err.Error(), "unauthorized_client") {
		t.Fatalf("device authorization for the confidential client: %v", err)
	}
}

// FuzzNormalizeUserCode: whatever a user types, the normalized code has no
// separators, is upper case, and normalizing again changes nothing.
func FuzzNormalizeUserCode(f *testing.F) {
	for _, s := range []string{"BCDF-GHJK", "bcdf ghjk", " b-c-d-f ", "", "ß-ǆ", "\x00-\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := normalizeUserCode(s)
		if strings.ContainsAny(n, "- ") {
			t.Fatalf("normalizeUserCode(%q) = %q keeps a separator", s, n)
		}
		if again := normalizeUserCode(n); again != n {
			t.Fatalf("not idempotent: %q → %q → %q", s, n, again)
		}
	})
}
