package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// verify checks tok against the JWKS srv serves and returns its kid and
// claims, failing the test when the set has no key that verifies it.
func verify(t *testing.T, srv *httptest.Server, tok string) (string, map[string]any) {
	t.Helper()
	resp, err := http.Get(srv.URL + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatalf("decode the JWKS: %v", err)
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("parse %q: %v", tok, err)
	}
	kid := parsed.Headers[0].KeyID
	keys := set.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("JWKS has %d keys with kid %q, want 1", len(keys), kid)
	}
	var claims map[string]any
	if err := parsed.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("token with kid %q does not verify with the published key: %v", kid, err)
	}
	return kid, claims
}

func newTestIssuer(t *testing.T) (*issuer, *httptest.Server) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	is, err := newIssuer("http://" + srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = is.handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return is, srv
}

func TestRotateKeepsOldKeysAndSignsWithTheNew(t *testing.T) {
	is, srv := newTestIssuer(t)
	old, err := is.token(0)
	if err != nil {
		t.Fatal(err)
	}
	if kid, _ := verify(t, srv, old); kid != "bench-1" {
		t.Fatalf("first kid = %q, want bench-1", kid)
	}
	resp, err := http.Post(srv.URL+"/rotate", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /rotate: %s %s", resp.Status, body)
	}
	kid, claims := verify(t, srv, string(body))
	if kid != "bench-2" || resp.Header.Get("X-Kid") != "bench-2" {
		t.Fatalf("rotated token kid = %q (X-Kid %q), want bench-2", kid, resp.Header.Get("X-Kid"))
	}
	if claims["sub"] != "bench-user" || claims["aud"] != "bench" || claims["iss"] != is.url {
		t.Fatalf("rotated token claims = %v", claims)
	}
	if kid, _ := verify(t, srv, old); kid != "bench-1" {
		t.Fatalf("the token signed before the rotation no longer verifies with kid bench-1 (got %q)", kid)
	}
}

func TestRotateNeedsPost(t *testing.T) {
	_, srv := newTestIssuer(t)
	resp, err := http.Get(srv.URL + "/rotate")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /rotate: %s, want 405", resp.Status)
	}
}

func TestMintWritesDistinctValidTokens(t *testing.T) {
	is, srv := newTestIssuer(t)
	var buf bytes.Buffer
	const n = 7
	if err := is.mint(&buf, n); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("minted %d lines, want %d", len(lines), n)
	}
	subs := map[any]bool{}
	for _, tok := range lines {
		_, claims := verify(t, srv, tok)
		if subs[claims["sub"]] {
			t.Fatalf("subject %v minted twice", claims["sub"])
		}
		subs[claims["sub"]] = true
		if claims["sub"] == "bench-user" {
			t.Fatal("a distinct token has the same-token scenario's subject")
		}
	}
}

func TestDiscoveryNamesTheJWKS(t *testing.T) {
	is, srv := newTestIssuer(t)
	resp, err := http.Get(srv.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var disc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&disc); err != nil {
		t.Fatal(err)
	}
	if disc["issuer"] != is.url || disc["jwks_uri"] != is.url+"/keys" {
		t.Fatalf("discovery = %v", disc)
	}
}
