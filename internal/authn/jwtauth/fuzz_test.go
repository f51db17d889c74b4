package jwtauth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
	"github.com/sekisho/sekisho/internal/identity"
)

// FuzzAuthenticate feeds random and mutated tokens. Nothing may panic, every
// failure must be ErrInvalidToken without echoing the token, and a success
// is only allowed for the valid token itself: same header and payload text,
// same signature bytes (base64 without strict padding bits can spell the
// same bytes in more than one way).
func FuzzAuthenticate(f *testing.F) {
	ti := jwttest.NewIssuer(f)
	key := ti.Key() // RS256 "k1"
	h := newHarness(f, []IssuerConfig{issuerConfig(ti)}, Options{MaxTokenBytes: 8192, KIDRetryMin: time.Hour, KIDRetryMax: time.Hour})
	h.mustRefreshOK(f)
	valid := jwttest.Sign(f, key, ti.Claims(t0))
	parts := strings.Split(valid, ".")
	wantSig, _ := base64.RawURLEncoding.DecodeString(parts[2])

	f.Add(valid)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","kid":"k1"}`)) + "." + parts[1] + "." + parts[2])
	f.Add(jwttest.Sign(f, key, ti.Claims(t0, "aud", []any{1, "x"})))
	f.Add("..")
	f.Add("")
	f.Add("\x00\xff.\x80")

	f.Fuzz(func(t *testing.T, token string) {
		id, err := h.Authenticate(context.Background(), token)
		if err != nil {
			if id != nil || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("bad failure: id=%v err=%v", id, err)
			}
			if len(token) > 16 && strings.Contains(err.Error(), token) {
				t.Fatalf("error echoes the token: %v", err)
			}
			return
		}
		got := strings.Split(token, ".")
		if len(got) != 3 || got[0] != parts[0] || got[1] != parts[1] {
			t.Fatalf("altered token accepted: %q", token)
		}
		sig, err := base64.RawURLEncoding.DecodeString(got[2])
		if err != nil || !bytes.Equal(sig, wantSig) {
			t.Fatalf("token with an altered signature accepted: %q", token)
		}
	})
}

// FuzzKubeClaim feeds arbitrary "kubernetes.io" claims of a verified
// token: nothing may panic, and an accepted claim must name the subject's
// service account with names that are safe in groups and logs.
func FuzzKubeClaim(f *testing.F) {
	f.Add(`{"namespace":"payments","serviceaccount":{"name":"api","uid":"u"},"pod":{"name":"p","uid":"x"}}`, "system:serviceaccount:payments:api")
	f.Add(`{"namespace":"a:b","serviceaccount":{"name":"c"}}`, "system:serviceaccount:a:b:c")
	f.Add(`{"namespace":["x"]}`, "system:serviceaccount::")
	f.Fuzz(func(t *testing.T, claim, sub string) {
		var v any
		if json.Unmarshal([]byte(claim), &v) != nil {
			return
		}
		id := &identity.Identity{Subject: sub}
		if err := withKube(id, map[string]any{"kubernetes.io": v}, ""); err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error %v is not ErrInvalidToken", err)
			}
			return
		}
		k := id.Kube
		if sub != "system:serviceaccount:"+k.Namespace+":"+k.ServiceAccount || strings.Contains(k.Namespace, ":") || hasControlOrSpace(id.Groups) {
			t.Fatalf("accepted %q for %q: %+v %v", claim, sub, k, id.Groups)
		}
	})
}

func hasControlOrSpace(ss []string) bool {
	for _, s := range ss {
		if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return true
		}
	}
	return false
}

// FuzzReviewIdentity feeds arbitrary TokenReview users: nothing may
// panic, and an accepted one is a service account whose names are safe
// in groups, headers and logs.
func FuzzReviewIdentity(f *testing.F) {
	mapper, err := identity.NewMapper(identity.ClaimsConfig{}, identity.PrefixConfig{}, nil, identity.MappingConfig{})
	if err != nil {
		f.Fatal(err)
	}
	iss := &issuer{name: "https://kubernetes.default.svc.cluster.local", mapper: mapper}
	f.Add(`{"username":"system:serviceaccount:payments:api","uid":"u1","groups":["system:serviceaccounts","system:authenticated"],"extra":{"authentication.kubernetes.io/pod-name":["api-1"]}}`)
	f.Add(`{"username":"system:serviceaccount:a:b:c"}`)
	f.Add(`{"username":"alice","groups":["x\n"]}`)
	f.Fuzz(func(t *testing.T, user string) {
		var u authv1.UserInfo
		if json.Unmarshal([]byte(user), &u) != nil {
			return
		}
		id, err := reviewIdentity(iss, u, map[string]any{"sub": u.Username})
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error %v is not ErrInvalidToken", err)
			}
			return
		}
		k := id.Kube
		if id.Username != "system:serviceaccount:"+k.Namespace+":"+k.ServiceAccount || controlIn(id.Groups) || !validKube(k) {
			t.Fatalf("accepted %q: %+v %+v", user, id, k)
		}
	})
}
