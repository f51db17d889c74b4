package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// signingKey is the one key the provider signs with; it serves both as op's
// SigningKey (private half) and as the JWKS entry (public half, via
// publicKey).
type signingKey struct {
	id      string
	alg     jose.SignatureAlgorithm
	private crypto.Signer
}

func newSigningKey(s crypto.Signer) (*signingKey, error) {
	if s == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("devidp: generating signing key: %w", err)
		}
		s = k
	}
	var alg jose.SignatureAlgorithm
	switch k := s.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("devidp: RSA signing key has %d bits, want at least 2048", k.N.BitLen())
		}
		alg = jose.RS256
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("devidp: ECDSA signing key must use P-256, not %s", k.Curve.Params().Name)
		}
		alg = jose.ES256
	default:
		return nil, fmt.Errorf("devidp: unsupported signing key type %T: use an RSA or P-256 ECDSA private key", s)
	}
	// The key id is the RFC 7638 thumbprint, so it changes exactly when the key does.
	thumb, err := (&jose.JSONWebKey{Key: s.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("devidp: signing key thumbprint: %w", err)
	}
	return &signingKey{id: base64.RawURLEncoding.EncodeToString(thumb), alg: alg, private: s}, nil
}

func (k *signingKey) ID() string                                  { return k.id }
func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *signingKey) Key() any                                    { return k.private }

// publicKey is the JWKS view of a signingKey.
type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return p.k.alg }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return p.k.private.Public() }
