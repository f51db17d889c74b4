package kubelogin

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testutil"
)

func TestCacheKeyIsPerIssuerClientAndScopes(t *testing.T) {
	base := newCacheKey("https://a.example", "kubectl", []string{"groups", "email"})
	if same := newCacheKey("https://a.example", "kubectl", []string{"email", "groups", "email"}); same.file() != base.file() {
		t.Error("scope order or duplicates changed the key")
	}
	for _, other := range []cacheKey{
		newCacheKey("https://b.example", "kubectl", []string{"groups", "email"}),
		newCacheKey("https://a.example", "other", []string{"groups", "email"}),
		newCacheKey("https://a.example", "kubectl", []string{"groups"}),
		newCacheKey("https://a.example", "kubectl\x00groups", []string{"email"}),
	} {
		if other.file() == base.file() {
			t.Errorf("%+v shares the file of %+v", other, base)
		}
	}
}

func TestDecodeCacheEntry(t *testing.T) {
	key := newCacheKey("https://a.example", "kubectl", nil)
	good := cacheEntry{Version: cacheVersion, cacheKey: key, IDToken: "x", IDTokenExpiry: time.Unix(100, 0).UTC()}
	enc := func(e cacheEntry) string { b, _ := json.Marshal(e); return string(b) }
	other := good
	other.cacheKey = newCacheKey("https://b.example", "kubectl", nil)
	old := good
	old.Version = 0
	empty := good
	empty.IDToken = ""
	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{"good", enc(good), ""},
		{"truncated", enc(good)[:20], "not valid JSON"},
		{"trailing", enc(good) + "{}", "trailing"},
		{"other key", enc(other), "another issuer"},
		{"old version", enc(old), "version"},
		{"no token", enc(empty), "no token"},
		{"huge", strings.Repeat(" ", maxCacheFile+1), "too large"},
		{"wrong types", `{"version":"1"}`, "not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := decodeCacheEntry([]byte(tc.in), key)
			switch {
			case tc.wantErr == "" && (err != nil || e.IDToken != "x"):
				t.Fatalf("decode = %+v, %v", e, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func FuzzDecodeCacheEntry(f *testing.F) {
	key := newCacheKey("https://a.example", "kubectl", []string{"groups"})
	b, _ := json.Marshal(cacheEntry{Version: cacheVersion, cacheKey: key, IDToken: "a.b.c", RefreshToken: "r", IDTokenExpiry: time.Unix(1e9, 0)})
	f.Add(b)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"issuer":"https://a.example","client_id":"kubectl","scopes":null,"id_token":"x","id_token_expiry":"9999-99-99"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := decodeCacheEntry(in, key)
		if err != nil {
			return
		}
		// An accepted entry is for this key and survives a save and load.
		if !e.cacheKey.equal(key) {
			t.Fatalf("accepted an entry for %+v", e.cacheKey)
		}
		c := cache{dir: t.TempDir()}
		if err := c.save(e); err != nil {
			t.Fatal(err)
		}
		back, err := c.load(key)
		if err != nil || back == nil || back.IDToken != e.IDToken || back.RefreshToken != e.RefreshToken {
			t.Fatalf("round trip: %+v, %v", back, err)
		}
	})
}

func TestCAFileIsTrustedForTheIssuer(t *testing.T) {
	ca := testutil.NewCA(t)
	leaf := ca.Server(t, "127.0.0.1")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := testutil.WriteFile(t, t.TempDir(), "ca.pem", ca.PEM)

	c, err := httpClient(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := c.Get(srv.URL); err != nil {
		t.Fatalf("with --ca-file: %v", err)
	} else {
		resp.Body.Close()
	}
	plain, _ := httpClient("")
	if _, err := plain.Get(srv.URL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without --ca-file: err = %v, want an unknown authority", err)
	}
	if _, err := httpClient(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Error("a missing CA file was accepted")
	}
	notPEM := testutil.WriteFile(t, t.TempDir(), "x.pem", []byte("not a certificate"))
	if _, err := httpClient(notPEM); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("err = %v", err)
	}
}
