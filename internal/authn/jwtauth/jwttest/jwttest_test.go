package jwttest

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// get fetches url and returns the status, Cache-Control and body.
func get(t *testing.T, url string) (int, string, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var body json.RawMessage
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("GET %s: decode: %v", url, err)
		}
	}
	return resp.StatusCode, resp.Header.Get("Cache-Control"), body
}

func jwks(t *testing.T, i *Issuer) *jose.JSONWebKeySet {
	t.Helper()
	status, _, body := get(t, i.URL+"/keys")
	if status != http.StatusOK {
		t.Fatalf("JWKS status %d", status)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	return &set
}

// verify checks tok against the published JWKS and returns its claims.
func verify(t *testing.T, i *Issuer, tok string, alg jose.SignatureAlgorithm) map[string]any {
	t.Helper()
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{alg})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	var c map[string]any
	if err := parsed.Claims(jwks(t, i), &c); err != nil {
		t.Fatalf("verify against the JWKS: %v", err)
	}
	return c
}

func TestDiscovery(t *testing.T) {
	i := NewIssuer(t)
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	status, _, body := get(t, i.URL+"/.well-known/openid-configuration")
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Issuer != i.URL || doc.JWKSURI != i.URL+"/keys" {
		t.Errorf("discovery = %+v", doc)
	}
	i.SetDiscoveryIssuer("https://evil.example")
	_, _, body = get(t, i.URL+"/.well-known/openid-configuration")
	if err := json.Unmarshal(body, &doc); err != nil || doc.Issuer != "https://evil.example" {
		t.Errorf("issuer after SetDiscoveryIssuer = %q (%v)", doc.Issuer, err)
	}
	if i.DiscoveryHits() != 2 || i.JWKSHits() != 0 {
		t.Errorf("hits: discovery %d, jwks %d; want 2, 0", i.DiscoveryHits(), i.JWKSHits())
	}
}

func TestTokenVerifiesWithDefaultKey(t *testing.T) {
	i := NewIssuer(t)
	if k := i.Key(); k.Kid != "k1" || k.Alg != jose.RS256 {
		t.Fatalf("default key %s/%s, want k1/RS256", k.Kid, k.Alg)
	}
	before := time.Now().Unix()
	c := verify(t, i, i.Token(t, "groups", []string{"dev"}, "email_verified", nil), jose.RS256)
	if c["iss"] != i.URL || c["aud"] != "api" || c["sub"] != "alice-id" || c["email"] != "alice@example.com" {
		t.Errorf("claims = %v", c)
	}
	if !reflect.DeepEqual(c["groups"], []any{"dev"}) {
		t.Errorf("groups = %v, want the override", c["groups"])
	}
	if _, ok := c["email_verified"]; ok {
		t.Error("nil override did not delete email_verified")
	}
	if iat, _ := c["iat"].(float64); int64(iat) < before {
		t.Errorf("iat %v is not now", c["iat"])
	}
	if i.JWKSHits() != 1 {
		t.Errorf("JWKS hits %d, want 1", i.JWKSHits())
	}
}

func TestClaims(t *testing.T) {
	i := NewIssuer(t)
	now := time.Unix(1_800_000_000, 0)
	want := map[string]any{
		"iss": i.URL, "aud": "api", "sub": "alice-id", "email": "alice@example.com",
		"email_verified": true, "groups": []string{"admin", "dev"},
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	if got := i.Claims(now); !reflect.DeepEqual(got, want) {
		t.Errorf("Claims = %v, want %v", got, want)
	}
	got := i.Claims(now, "aud", nil, "sub", "bob", "amr", []string{"mfa"})
	if _, ok := got["aud"]; ok || got["sub"] != "bob" || !reflect.DeepEqual(got["amr"], []string{"mfa"}) {
		t.Errorf("overridden Claims = %v", got)
	}
}

func TestKeysPublishedAndSigned(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS384, jose.PS256, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			i := NewIssuer(t)
			k := NewKey(t, "k-"+string(alg), alg)
			tok := Sign(t, k, i.Claims(time.Now()))
			parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{alg})
			if err != nil {
				t.Fatal(err)
			}
			var c map[string]any
			if err := parsed.Claims(jwks(t, i), &c); err == nil {
				t.Fatal("verified before Publish")
			}
			i.Publish(k)
			verify(t, i, tok, alg)
			i.Unpublish(k.Kid)
			if got := jwks(t, i).Key(k.Kid); len(got) != 0 {
				t.Errorf("key still published after Unpublish: %v", got)
			}
			if got := jwks(t, i).Key("k1"); len(got) != 1 {
				t.Errorf("Unpublish removed other keys: %d left with kid k1", len(got))
			}
		})
	}
}

func TestSignWith(t *testing.T) {
	i := NewIssuer(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	tok := SignWith(t, jose.HS256, secret, i.Claims(time.Now()), func(o *jose.SignerOptions) { o.WithHeader("kid", "mac") })
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.HS256})
	if err != nil {
		t.Fatal(err)
	}
	if kid := parsed.Headers[0].KeyID; kid != "mac" {
		t.Errorf("kid header %q, want the one set by mod", kid)
	}
	var c map[string]any
	if err := parsed.Claims(secret, &c); err != nil {
		t.Errorf("HS256 token does not verify with its secret: %v", err)
	}
}

func TestSetDown(t *testing.T) {
	i := NewIssuer(t)
	i.SetDown(true)
	for _, p := range []string{"/.well-known/openid-configuration", "/keys"} {
		if status, _, _ := get(t, i.URL+p); status != http.StatusServiceUnavailable {
			t.Errorf("%s while down: status %d, want 503", p, status)
		}
	}
	i.SetDown(false)
	for _, p := range []string{"/.well-known/openid-configuration", "/keys"} {
		if status, _, _ := get(t, i.URL+p); status != http.StatusOK {
			t.Errorf("%s after coming up: status %d, want 200", p, status)
		}
	}
	if i.DiscoveryHits() != 2 || i.JWKSHits() != 2 {
		t.Errorf("failed requests not counted: discovery %d, jwks %d", i.DiscoveryHits(), i.JWKSHits())
	}
}

func TestSetCacheControl(t *testing.T) {
	i := NewIssuer(t)
	if _, cc, _ := get(t, i.URL+"/keys"); cc != "" {
		t.Errorf("default Cache-Control %q, want none", cc)
	}
	i.SetCacheControl("public, max-age=1")
	if _, cc, _ := get(t, i.URL+"/keys"); cc != "public, max-age=1" {
		t.Errorf("Cache-Control %q", cc)
	}
}

// TestHold: only the next JWKS request is held, others pass, and Release
// lets it finish.
func TestHold(t *testing.T) {
	i := NewIssuer(t)
	entered := i.Hold()
	held := make(chan int, 1)
	go func() {
		resp, err := http.Get(i.URL + "/keys")
		if err != nil {
			held <- 0
			return
		}
		resp.Body.Close()
		held <- resp.StatusCode
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("held request never arrived")
	}
	if status, _, _ := get(t, i.URL+"/keys"); status != http.StatusOK {
		t.Errorf("request after the held one: status %d", status)
	}
	select {
	case s := <-held:
		t.Fatalf("held request finished before Release (status %d)", s)
	default:
	}
	i.Release()
	select {
	case s := <-held:
		if s != http.StatusOK {
			t.Errorf("held request: status %d", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("held request not released")
	}

	i.Hold()
	i.Release() // disarms the hold no request reached
	if status, _, _ := get(t, i.URL+"/keys"); status != http.StatusOK {
		t.Errorf("request after a disarmed hold: status %d", status)
	}
}

// TestCleanupReleasesHold: a request still held when the test ends must not
// keep the server from closing.
func TestCleanupReleasesHold(t *testing.T) {
	done := make(chan struct{})
	t.Run("inner", func(t *testing.T) {
		i := NewIssuer(t)
		entered := i.Hold()
		go func() {
			defer close(done)
			if resp, err := http.Get(i.URL + "/keys"); err == nil {
				resp.Body.Close()
			}
		}()
		<-entered
	})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("held request still blocked after cleanup")
	}
}
