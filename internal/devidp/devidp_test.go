package devidp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestCheckListener(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		allow   bool
		wantErr string // substring; "" means allowed
	}{
		{"127.0.0.1:8080", false, ""},
		{"127.1.2.3:8080", false, ""},
		{"[::1]:8080", false, ""},
		{"localhost:8080", false, ""},
		{"LocalHost:0", false, ""},
		{":8080", false, "all interfaces"},
		{"0.0.0.0:8080", false, "0.0.0.0"},
		{"[::]:8080", false, "::"},
		{"192.168.1.10:8080", false, "allow_non_loopback"},
		{"example.com:443", false, "loopback"},
		{"localhost.evil.example:80", false, "loopback"},
		{":8080", true, ""},
		{"10.0.0.1:8080", true, ""},
		{"127.0.0.1", false, "missing port"},
		{"127.0.0.1", true, "missing port"},
	} {
		err := CheckListener(tc.addr, tc.allow)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("CheckListener(%q, %v) = %v, want nil", tc.addr, tc.allow, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("CheckListener(%q, %v) = %v, want an error mentioning %q", tc.addr, tc.allow, err, tc.wantErr)
		}
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	good := func() (string, Config, []Client, Options) {
		return "http://127.0.0.1:8080/.sekisho/dev",
			Config{Users: []User{{Email: "a@example.com", PasswordHash: minHash(t, "pw")}}},
			[]Client{{ID: "sekisho", Secret: "s", RedirectURIs: []string{"http://127.0.0.1:8080/.sekisho/callback"}}},
			Options{SigningKey: testKey()}
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)

	for _, tc := range []struct {
		name    string
		mutate  func(*string, *Config, *[]Client, *Options)
		wantErr string
	}{
		{"issuer scheme", func(i *string, _ *Config, _ *[]Client, _ *Options) { *i = "ftp://127.0.0.1/dev" }, "scheme"},
		{"issuer host", func(i *string, _ *Config, _ *[]Client, _ *Options) { *i = "http:///dev" }, "host"},
		{"issuer query", func(i *string, _ *Config, _ *[]Client, _ *Options) { *i = "http://127.0.0.1/dev?x=1" }, "query"},
		{"issuer unparsable", func(i *string, _ *Config, _ *[]Client, _ *Options) { *i = "http://[::1" }, "issuer"},
		{"no users", func(_ *string, c *Config, _ *[]Client, _ *Options) { c.Users = nil }, "no users"},
		{"no email", func(_ *string, c *Config, _ *[]Client, _ *Options) { c.Users[0].Email = " " }, "email is required"},
		{"duplicate email", func(_ *string, c *Config, _ *[]Client, _ *Options) {
			c.Users = append(c.Users, User{Email: "A@example.com", PasswordHash: c.Users[0].PasswordHash})
		}, "duplicate email"},
		{"no password", func(_ *string, c *Config, _ *[]Client, _ *Options) { c.Users[0].PasswordHash = "" }, "password or password_hash is required"},
		{"both passwords", func(_ *string, c *Config, _ *[]Client, _ *Options) { c.Users[0].Password = "hunter2-secret" }, "not both"},
		{"bad hash", func(_ *string, c *Config, _ *[]Client, _ *Options) { c.Users[0].PasswordHash = "hunter2-secret" }, "not a bcrypt hash"},
		{"bad totp", func(_ *string, c *Config, _ *[]Client, _ *Options) { c.Users[0].TOTPSecret = "not base32!" }, "totp_secret"},
		{"no clients", func(_ *string, _ *Config, cl *[]Client, _ *Options) { *cl = nil }, "no clients"},
		{"client id", func(_ *string, _ *Config, cl *[]Client, _ *Options) { (*cl)[0].ID = "" }, "id is required"},
		{"duplicate client", func(_ *string, _ *Config, cl *[]Client, _ *Options) { *cl = append(*cl, (*cl)[0]) }, "duplicate id"},
		{"client secret", func(_ *string, _ *Config, cl *[]Client, _ *Options) { (*cl)[0].Secret = "" }, "secret is required"},
		{"no redirect", func(_ *string, _ *Config, cl *[]Client, _ *Options) { (*cl)[0].RedirectURIs = nil }, "redirect URI"},
		{"relative redirect", func(_ *string, _ *Config, cl *[]Client, _ *Options) { (*cl)[0].RedirectURIs = []string{"/cb"} }, "absolute"},
		{"bad logout redirect", func(_ *string, _ *Config, cl *[]Client, _ *Options) {
			(*cl)[0].PostLogoutRedirectURIs = []string{"javascript:alert(1)"}
		}, "absolute"},
		{"public client with secret", func(_ *string, _ *Config, cl *[]Client, _ *Options) {
			*cl = append(*cl, Client{ID: "cli", Public: true, Secret: "s", RedirectURIs: []string{"http://127.0.0.1/callback"}})
		}, "public client has no secret"},
		{"public client, remote redirect", func(_ *string, _ *Config, cl *[]Client, _ *Options) {
			*cl = append(*cl, Client{ID: "cli", Public: true, RedirectURIs: []string{"http://example.com/callback"}})
		}, "loopback"},
		{"small RSA key", func(_ *string, _ *Config, _ *[]Client, o *Options) { o.SigningKey = small }, "1024 bits"},
		{"P-384 key", func(_ *string, _ *Config, _ *[]Client, o *Options) { o.SigningKey = p384 }, "P-256"},
		{"Ed25519 key", func(_ *string, _ *Config, _ *[]Client, o *Options) { o.SigningKey = edKey }, "unsupported signing key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			issuer, cfg, clients, opts := good()
			tc.mutate(&issuer, &cfg, &clients, &opts)
			_, err := New(t.Context(), issuer, cfg, clients, opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2-secret") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}

	issuer, cfg, clients, opts := good()
	if _, err := New(t.Context(), issuer, cfg, clients, opts); err != nil {
		t.Fatalf("the good config was refused: %v", err)
	}
}

func TestPlaintextPasswordIsHashedWithWarning(t *testing.T) {
	var logs bytes.Buffer
	const plain = "plaintext-dev-password"
	p, err := New(t.Context(), "http://127.0.0.1:8080/dev/",
		Config{Users: []User{{Email: "dev@example.com", Password: plain}}},
		[]Client{{ID: "c", Secret: "s", RedirectURIs: []string{"http://127.0.0.1:8080/cb"}}},
		Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), SigningKey: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	if p.Issuer() != "http://127.0.0.1:8080/dev" {
		t.Errorf("Issuer() = %q, want the trailing slash trimmed", p.Issuer())
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "plaintext password") ||
		!strings.Contains(logs.String(), "dev@example.com") || strings.Contains(logs.String(), plain) {
		t.Fatalf("startup log: %s", logs.String())
	}
	db, err := newUserDB(t.Context(), []User{{Email: "dev@example.com", Password: plain}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	u := db.byEmail["dev@example.com"]
	if string(u.hash) == plain || !strings.HasPrefix(string(u.hash), "$2") {
		t.Fatal("plaintext password was not bcrypt-hashed")
	}
	if _, _, ok := db.authenticate("dev@example.com", plain, "", time.Now()); !ok {
		t.Fatal("the plaintext password does not log in")
	}
}

func TestHandlerStaysUnderIssuerPath(t *testing.T) {
	p, err := New(t.Context(), "http://127.0.0.1:8080/.sekisho/dev",
		Config{Users: []User{{Email: "a@example.com", PasswordHash: minHash(t, "pw")}}},
		[]Client{{ID: "c", Secret: "s", RedirectURIs: []string{"http://127.0.0.1:8080/cb"}}},
		Options{SigningKey: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{
		"/.sekisho/dev/.well-known/openid-configuration": http.StatusOK,
		"/.sekisho/dev/keys":                             http.StatusOK,
		"/.well-known/openid-configuration":              http.StatusNotFound,
		"/login":                                         http.StatusNotFound,
		"/.sekisho/dev/nothing-here":                     http.StatusNotFound,
	} {
		rec := httptest.NewRecorder()
		p.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8080"+path, nil))
		if rec.Code != want {
			t.Errorf("GET %s = %d, want %d", path, rec.Code, want)
		}
	}
}
