package jwtauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

func TestKeyFits(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name string
		key  jose.JSONWebKey
		alg  jose.SignatureAlgorithm
		want bool
	}{
		{"RSA for RS256", jose.JSONWebKey{Key: &rsaKey.PublicKey}, jose.RS256, true},
		{"RSA for PS512", jose.JSONWebKey{Key: &rsaKey.PublicKey}, jose.PS512, true},
		{"RSA with matching alg", jose.JSONWebKey{Key: &rsaKey.PublicKey, Algorithm: "RS256"}, jose.RS256, true},
		{"RSA whose JWK alg differs", jose.JSONWebKey{Key: &rsaKey.PublicKey, Algorithm: "RS512"}, jose.RS256, false},
		{"RSA for ES256", jose.JSONWebKey{Key: &rsaKey.PublicKey}, jose.ES256, false},
		{"RSA for HS256", jose.JSONWebKey{Key: &rsaKey.PublicKey}, jose.HS256, false},
		{"P-256 for ES256", jose.JSONWebKey{Key: &p256.PublicKey}, jose.ES256, true},
		{"P-256 for ES384", jose.JSONWebKey{Key: &p256.PublicKey}, jose.ES384, false},
		{"P-384 for ES384", jose.JSONWebKey{Key: &p384.PublicKey}, jose.ES384, true},
		{"P-384 for ES256", jose.JSONWebKey{Key: &p384.PublicKey}, jose.ES256, false},
		{"EC for RS256", jose.JSONWebKey{Key: &p256.PublicKey}, jose.RS256, false},
		{"Ed25519 for EdDSA", jose.JSONWebKey{Key: edPub}, jose.EdDSA, true},
		{"Ed25519 for ES256", jose.JSONWebKey{Key: edPub}, jose.ES256, false},
		{"symmetric key", jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef")}, jose.HS256, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keyFits(tt.key, tt.alg); got != tt.want {
				t.Errorf("keyFits = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNewKeySetKeepsOnlyPublicSignatureKeys(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "oct"},
		{Key: &rsaKey.PublicKey, KeyID: "enc", Use: "enc"},
		{Key: rsaKey, KeyID: "private"}, // published by mistake: only its public half is kept
		{Key: &p256.PublicKey, KeyID: "sig", Use: "sig"},
	}}
	ks, err := newKeySet(set)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.all) != 2 || len(ks.byKID["oct"]) != 0 || len(ks.byKID["enc"]) != 0 {
		t.Fatalf("kept %d keys: %v", len(ks.all), ks.byKID)
	}
	if _, ok := ks.byKID["private"][0].Key.(*rsa.PublicKey); !ok {
		t.Error("private key not reduced to its public half")
	}
	if got := ks.candidates("", jose.ES256); len(got) != 1 || got[0].KeyID != "sig" {
		t.Errorf("no-kid candidates for ES256 = %v", got)
	}
	if got := ks.candidates("missing", jose.ES256); len(got) != 0 {
		t.Errorf("unknown kid matched %v", got)
	}
	if _, err := newKeySet(jose.JSONWebKeySet{Keys: set.Keys[:2]}); err == nil {
		t.Error("a JWKS with no usable keys was accepted")
	}
}
