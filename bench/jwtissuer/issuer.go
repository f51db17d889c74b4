package main

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// issuer signs tokens with its current key and publishes every key it has
// had, as a provider rotating its keys does: tokens signed before a
// rotation stay valid, tokens signed after it carry a kid a verifier has
// not seen yet.
type issuer struct {
	url  string
	disc []byte

	mu     sync.Mutex
	signer jose.Signer
	kid    string
	jwks   []byte
	public []jose.JSONWebKey
}

func newIssuer(url string) (*issuer, error) {
	disc, err := json.Marshal(map[string]any{
		"issuer": url, "jwks_uri": url + "/keys",
		"authorization_endpoint": url + "/auth", "token_endpoint": url + "/token",
		"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
	if err != nil {
		return nil, fmt.Errorf("discovery document: %w", err)
	}
	is := &issuer{url: url, disc: disc}
	if _, err := is.rotate(); err != nil {
		return nil, err
	}
	return is, nil
}

// rotate makes a new RSA key the signing key, publishes it next to the old
// ones, and returns its kid.
func (is *issuer) rotate() (string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", fmt.Errorf("generate a signing key: %w", err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	kid := fmt.Sprintf("bench-%d", len(is.public)+1)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("signer: %w", err)
	}
	public := append(is.public, jose.JSONWebKey{Key: key.Public(), KeyID: kid, Algorithm: "RS256", Use: "sig"})
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: public})
	if err != nil {
		return "", fmt.Errorf("JWKS: %w", err)
	}
	is.signer, is.kid, is.public, is.jwks = signer, kid, public, jwks
	return kid, nil
}

// token signs a token for user i with the current key: user 0 is the
// bench user every same-token scenario sends, others differ in subject,
// email and ID (same groups and domain, so the same policy admits them).
func (is *issuer) token(i int) (string, error) {
	is.mu.Lock()
	signer := is.signer
	is.mu.Unlock()
	sub, email := "bench-user", "bench@example.com"
	if i > 0 {
		sub, email = fmt.Sprintf("bench-user-%d", i), fmt.Sprintf("bench%d@example.com", i)
	}
	now := time.Now()
	tok, err := jwt.Signed(signer).Claims(map[string]any{
		"iss": is.url, "aud": "bench", "sub": sub, "email": email, "email_verified": true,
		"jti": fmt.Sprintf("bench-%d", i), "groups": []string{"admin"}, "amr": []string{"pwd", "mfa"},
		"iat": now.Unix(), "exp": now.Add(2 * time.Hour).Unix(),
	}).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign a token: %w", err)
	}
	return tok, nil
}

// mint writes n distinct tokens (users 1..n), one per line, signing on
// every core: RS256 signing is the slow part.
func (is *issuer) mint(w io.Writer, n int) error {
	toks := make([]string, n)
	errs := make(chan error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for g := range cap(errs) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += cap(errs) {
				t, err := is.token(i + 1)
				if err != nil {
					errs <- err
					return
				}
				toks[i] = t
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	for _, t := range toks {
		bw.WriteString(t)
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write the tokens: %w", err)
	}
	return nil
}

// handler serves discovery and the JWKS, and POST /rotate: a new signing
// key, answered with a token signed by it.
func (is *issuer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(is.disc)
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		is.mu.Lock()
		jwks := is.jwks
		is.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	})
	mux.HandleFunc("POST /rotate", func(w http.ResponseWriter, _ *http.Request) {
		kid, err := is.rotate()
		var tok string
		if err == nil {
			tok, err = is.token(0)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Kid", kid)
		io.WriteString(w, tok)
	})
	return mux
}
