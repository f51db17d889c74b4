package assertion

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/sekisho/sekisho/internal/identity"
)

var t0 = time.Unix(1_800_000_000, 0)

func alice() *identity.Identity {
	return &identity.Identity{Subject: "alice-id", Username: "alice", Email: "alice@example.com", Groups: []string{"admin"}}
}

func mustSigner(t *testing.T, keyFile string, ttl time.Duration) *Signer {
	t.Helper()
	s, err := NewSigner(keyFile, "https://gate.example", ttl)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	return s
}

// verifier checks assertions the way an upstream would: go-oidc fetching
// the key set over HTTP from JWKSHandler.
func verifier(t *testing.T, s *Signer, audience string, now time.Time) *oidc.IDTokenVerifier {
	t.Helper()
	srv := httptest.NewServer(s.JWKSHandler())
	t.Cleanup(srv.Close)
	keys := oidc.NewRemoteKeySet(context.Background(), srv.URL)
	return oidc.NewVerifier("https://gate.example", keys, &oidc.Config{
		ClientID:             audience,
		SupportedSigningAlgs: []string{"ES256"},
		Now:                  func() time.Time { return now },
	})
}

func TestSignVerifiesWithPublishedKeys(t *testing.T) {
	s := mustSigner(t, "", 0)
	tok, err := s.Sign(alice(), "orders", t0)
	if err != nil {
		t.Fatal(err)
	}
	v := verifier(t, s, "orders", t0.Add(59*time.Second))
	idt, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("upstream verification: %v", err)
	}
	var claims struct {
		Sub    string   `json:"sub"`
		Email  string   `json:"email"`
		Groups []string `json:"groups"`
		Iat    int64    `json:"iat"`
		Exp    int64    `json:"exp"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.Sub != "alice-id" || claims.Email != "alice@example.com" || !reflect.DeepEqual(claims.Groups, []string{"admin"}) ||
		claims.Iat != t0.Unix() || claims.Exp != t0.Add(DefaultTTL).Unix() {
		t.Errorf("claims = %+v", claims)
	}

	tests := []struct {
		name     string
		audience string
		now      time.Time
	}{
		{"other audience", "billing", t0},
		{"after ttl", "orders", t0.Add(DefaultTTL + time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := verifier(t, s, tt.audience, tt.now).Verify(context.Background(), tok); err == nil {
				t.Error("verified, want rejection")
			}
		})
	}
	t.Run("other signer's key", func(t *testing.T) {
		if _, err := verifier(t, mustSigner(t, "", 0), "orders", t0).Verify(context.Background(), tok); err == nil {
			t.Error("verified with another signer's JWKS")
		}
	})
}

func TestSignEmptyGroupsAndEmail(t *testing.T) {
	s := mustSigner(t, "", 0)
	tok, err := s.Sign(&identity.Identity{Subject: "svc"}, "orders", t0)
	if err != nil {
		t.Fatal(err)
	}
	payload := decodePayload(t, tok)
	if _, has := payload["email"]; has {
		t.Error("empty email sent")
	}
	if g, ok := payload["groups"].([]any); !ok || len(g) != 0 {
		t.Errorf("groups = %#v, want []", payload["groups"])
	}
}

func TestSignCache(t *testing.T) {
	s := mustSigner(t, "", 10*time.Second)
	id := alice()
	first, _ := s.Sign(id, "orders", t0)
	tests := []struct {
		name string
		id   *identity.Identity
		aud  string
		now  time.Time
		same bool
	}{
		{"same identity and audience", id, "orders", t0, true},
		{"within first half of ttl", id, "orders", t0.Add(4 * time.Second), true},
		{"at half ttl", id, "orders", t0.Add(5 * time.Second), false},
		{"clock went back", id, "orders", t0.Add(-time.Second), false},
		{"other audience", id, "billing", t0, false},
		{"another identity value with the same content", alice(), "orders", t0, true},
		{"same subject, other email", func() *identity.Identity { a := alice(); a.Email = "other@example.com"; return a }(), "orders", t0, false},
		{"same subject, other groups", func() *identity.Identity { a := alice(); a.Groups = []string{"x"}; return a }(), "orders", t0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Reset to the first assertion so each case starts from the same cache.
			s.cache = map[cacheKey]signed{{id.Subject, "orders"}: {token: first, iat: t0, email: id.Email, groups: id.Groups}}
			got, err := s.Sign(tt.id, tt.aud, tt.now)
			if err != nil {
				t.Fatal(err)
			}
			if (got == first) != tt.same {
				t.Errorf("reused = %v, want %v", got == first, tt.same)
			}
			if !tt.same {
				if iat := int64(decodePayload(t, got)["iat"].(float64)); iat != tt.now.Unix() {
					t.Errorf("re-signed iat = %d, want %d", iat, tt.now.Unix())
				}
			}
		})
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = s.Sign(id, "orders", t0) }); allocs > 0 {
		t.Errorf("cached Sign allocates %.0f times", allocs)
	}
}

func TestSignCacheBounded(t *testing.T) {
	s := mustSigner(t, "", 0)
	for i := range maxCached + 50 {
		id := alice()
		id.Subject = fmt.Sprint("user-", i) // distinct assertions
		if _, err := s.Sign(id, "orders", t0); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.cache); n > maxCached || n < maxCached/2 {
		t.Errorf("cache holds %d assertions, bound %d", n, maxCached)
	}
}

func TestSignConcurrent(t *testing.T) {
	s := mustSigner(t, "", 0)
	id := alice()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				if _, err := s.Sign(id, fmt.Sprint("aud", (i+j)%3), t0); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestSignBadInput(t *testing.T) {
	s := mustSigner(t, "", 0)
	if _, err := s.Sign(nil, "orders", t0); err == nil || !strings.Contains(err.Error(), "no identity") {
		t.Errorf("nil identity: %v", err)
	}
	if _, err := s.Sign(alice(), "", t0); err == nil || !strings.Contains(err.Error(), "audience is required") {
		t.Errorf("empty audience: %v", err)
	}
}

func TestKeyFile(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, _ := x509.MarshalECPrivateKey(key)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	// RFC 7638 thumbprint computed by hand, independent of go-jose.
	pad := func(b []byte) string {
		out := make([]byte, 32)
		copy(out[32-len(b):], b)
		return base64.RawURLEncoding.EncodeToString(out)
	}
	pubBytes, _ := key.PublicKey.Bytes() // 0x04 || X || Y
	canon := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, pad(pubBytes[1:33]), pad(pubBytes[33:]))
	sum := sha256.Sum256([]byte(canon))
	wantKid := base64.RawURLEncoding.EncodeToString(sum[:])

	for _, tt := range []struct {
		name string
		pem  []byte
	}{
		{"SEC1", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})},
		{"PKCS8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSigner(t, writeFile(t, tt.pem), 0)
			if kid := jwksKids(t, s); !reflect.DeepEqual(kid, []string{wantKid}) {
				t.Errorf("kids = %q, want [%q]", kid, wantKid)
			}
			tok, _ := s.Sign(alice(), "orders", t0)
			if _, err := verifier(t, s, "orders", t0).Verify(context.Background(), tok); err != nil {
				t.Errorf("verify: %v", err)
			}
		})
	}
	t.Run("ephemeral keys differ", func(t *testing.T) {
		a, b := jwksKids(t, mustSigner(t, "", 0)), jwksKids(t, mustSigner(t, "", 0))
		if reflect.DeepEqual(a, b) {
			t.Error("two ephemeral signers share a key")
		}
	})
}

func TestNewSignerErrors(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaPKCS8, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalECPrivateKey(p384)
	tests := []struct {
		name    string
		file    string
		issuer  string
		ttl     time.Duration
		wantErr string
	}{
		{"no issuer", "", "", 0, "issuer is required"},
		{"negative ttl", "", "iss", -time.Second, "must not be negative"},
		{"missing file", filepath.Join(t.TempDir(), "nope.pem"), "iss", 0, "key file"},
		{"not PEM", writeFile(t, []byte("hello")), "iss", 0, "no PEM block"},
		{"wrong PEM type", writeFile(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})), "iss", 0, `PEM type "CERTIFICATE"`},
		{"corrupt key", writeFile(t, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1, 2}})), "iss", 0, "key file"},
		{"RSA key", writeFile(t, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaPKCS8})), "iss", 0, "want a P-256 ECDSA key"},
		{"P-384 key", writeFile(t, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: p384DER})), "iss", 0, "want a P-256 ECDSA key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSigner(tt.file, tt.issuer, tt.ttl)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestJWKSHandler(t *testing.T) {
	s := mustSigner(t, "", 0)
	srv := httptest.NewServer(s.JWKSHandler())
	defer srv.Close()

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "max-age=") {
		t.Errorf("GET: %d %v", resp.StatusCode, resp.Header)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", body, err)
	}
	k := set.Keys[0]
	if k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" || k["use"] != "sig" || k["kid"] == "" {
		t.Errorf("key = %v", k)
	}
	if _, private := k["d"]; private {
		t.Fatal("JWKS leaks the private key")
	}

	resp, err = http.Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d Allow=%q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func BenchmarkSignCached(b *testing.B) {
	s, err := NewSigner("", "https://gate.example", 0)
	if err != nil {
		b.Fatal(err)
	}
	id := alice()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(id, "orders", t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignUncached(b *testing.B) {
	s, err := NewSigner("", "https://gate.example", 0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(alice(), "orders", t0); err != nil {
			b.Fatal(err)
		}
	}
}

func decodePayload(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func jwksKids(t *testing.T, s *Signer) []string {
	t.Helper()
	rec := httptest.NewRecorder()
	s.JWKSHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
