package baotest

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
)

// KVMount is the KV version 2 mount every dev server has.
const KVMount = "secret"

// Put writes a new version of the KV v2 secret at mount/path and returns
// its version number: writing the same path again makes version 2, 3, …
func (s *Server) Put(tb testing.TB, mount, path string, data map[string]any) int {
	tb.Helper()
	v, err := s.Root.KVv2(mount).Put(tb.Context(), path, data)
	if err != nil {
		tb.Fatalf("baotest: put %s/%s: %v", mount, path, err)
	}
	return v.VersionMetadata.Version
}

// Delete soft-deletes versions of mount/path (undeletable; reads of them
// answer 404 with deletion_time set).
func (s *Server) Delete(tb testing.TB, mount, path string, versions ...int) {
	tb.Helper()
	if err := s.Root.KVv2(mount).DeleteVersions(tb.Context(), path, versions); err != nil {
		tb.Fatalf("baotest: delete %s/%s %v: %v", mount, path, versions, err)
	}
}

// Destroy destroys versions of mount/path for good (reads of them answer
// 404 with destroyed set).
func (s *Server) Destroy(tb testing.TB, mount, path string, versions ...int) {
	tb.Helper()
	if err := s.Root.KVv2(mount).Destroy(tb.Context(), path, versions); err != nil {
		tb.Fatalf("baotest: destroy %s/%s %v: %v", mount, path, versions, err)
	}
}

// Write writes data to an API path with the root token (mounts, auth
// methods, roles) and returns the answer's data.
func (s *Server) Write(tb testing.TB, path string, data map[string]any) map[string]any {
	tb.Helper()
	sec, err := s.Root.Logical().WriteWithContext(tb.Context(), path, data)
	if err != nil {
		tb.Fatalf("baotest: write %s: %v", path, err)
	}
	if sec == nil {
		return nil
	}
	return sec.Data
}

// ReadPolicy is the policy a reader of the KV v2 secret mount/path needs:
// read on its data path, which serves every version.
func ReadPolicy(mount, path string) string {
	return fmt.Sprintf("path %q {\n  capabilities = [\"read\"]\n}\n", mount+"/data/"+path)
}

// Policy creates (or replaces) the ACL policy name.
func (s *Server) Policy(tb testing.TB, name, hcl string) {
	tb.Helper()
	if err := s.Root.Sys().PutPolicyWithContext(tb.Context(), name, hcl); err != nil {
		tb.Fatalf("baotest: policy %s: %v", name, err)
	}
}

// Token is a token the root token created, and its accessor, which names
// the token to lookups and revocation without being able to use it.
type Token struct {
	Token, Accessor string
}

// NewToken creates a token with the default policy and policies, valid for
// ttl (0: the server's default, 32 days in dev mode).
func (s *Server) NewToken(tb testing.TB, ttl time.Duration, policies ...string) Token {
	tb.Helper()
	req := map[string]any{"policies": policies}
	if ttl > 0 {
		req["ttl"] = ttl.String()
	}
	sec, err := s.Root.Logical().WriteWithContext(tb.Context(), "auth/token/create", req)
	if err != nil || sec == nil || sec.Auth == nil {
		tb.Fatalf("baotest: create token: %v", err)
	}
	return Token{Token: sec.Auth.ClientToken, Accessor: sec.Auth.Accessor}
}

// ReadToken creates a policy allowing read on the KV v2 secret mount/path
// only, and a token holding it.
func (s *Server) ReadToken(tb testing.TB, mount, path string) Token {
	tb.Helper()
	name := "read-" + strings.NewReplacer("/", "-", ".", "-").Replace(mount+"/"+path)
	s.Policy(tb, name, ReadPolicy(mount, path))
	return s.NewToken(tb, 0, name)
}

// Revoke revokes the token named by accessor (and its children).
func (s *Server) Revoke(tb testing.TB, accessor string) {
	tb.Helper()
	if err := s.Root.Auth().Token().RevokeAccessorWithContext(tb.Context(), accessor); err != nil {
		tb.Fatalf("baotest: revoke: %v", err)
	}
}

// LookupAccessor returns what the server knows of the token named by
// accessor (policies, ttl, last_renewal_time, …).
func (s *Server) LookupAccessor(tb testing.TB, accessor string) map[string]any {
	tb.Helper()
	sec, err := s.Root.Logical().WriteWithContext(tb.Context(), "auth/token/lookup-accessor", map[string]any{"accessor": accessor})
	if err != nil || sec == nil {
		tb.Fatalf("baotest: lookup accessor: %v", err)
	}
	return sec.Data
}

// Accessors lists the accessors of every live service token: a login
// creates one, so counting them counts logins.
func (s *Server) Accessors(tb testing.TB) []string {
	tb.Helper()
	sec, err := s.Root.Logical().ListWithContext(tb.Context(), "auth/token/accessors")
	if err != nil || sec == nil {
		tb.Fatalf("baotest: list accessors: %v", err)
	}
	raw, _ := sec.Data["keys"].([]any)
	out := make([]string, 0, len(raw))
	for _, k := range raw {
		if s, ok := k.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// Seal seals the server: every request but health and unseal answers 503
// until it is unsealed, which a dev server cannot be by a test.
func (s *Server) Seal(tb testing.TB) {
	tb.Helper()
	if err := s.Root.Sys().SealWithContext(tb.Context()); err != nil {
		tb.Fatalf("baotest: seal: %v", err)
	}
}

// JWT is a JWT auth method set up with a test signing key, the way a
// cluster's service-account issuer is trusted: tokens it signs log in.
type JWT struct {
	// Mount is the auth method's path under auth/ ("jwt").
	Mount string
	// Issuer is the iss the method requires (bound_issuer).
	Issuer string
	// Key signs the tokens; its public half is the method's only
	// validation key.
	Key *jwttest.Key
	srv *Server
}

// EnableJWT enables JWT auth at auth/mount, trusting a fresh RS256 key for
// tokens issued by issuer.
func (s *Server) EnableJWT(tb testing.TB, mount, issuer string) *JWT {
	tb.Helper()
	key := jwttest.NewKey(tb, "baotest", jose.RS256)
	pub, err := x509.MarshalPKIXPublicKey(key.Private.Public())
	if err != nil {
		tb.Fatalf("baotest: %v", err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	s.Write(tb, "sys/auth/"+mount, map[string]any{"type": "jwt"})
	s.Write(tb, "auth/"+mount+"/config", map[string]any{
		"jwt_validation_pubkeys": []string{pemKey},
		"bound_issuer":           issuer,
	})
	return &JWT{Mount: mount, Issuer: issuer, Key: key, srv: s}
}

// Role creates a JWT role that logs in tokens for subject sub with
// audience aud, granting policies for ttl (0: the server default).
func (j *JWT) Role(tb testing.TB, name, sub, aud string, ttl time.Duration, policies ...string) {
	tb.Helper()
	role := map[string]any{
		"role_type":       "jwt",
		"user_claim":      "sub",
		"bound_subject":   sub,
		"bound_audiences": []string{aud},
		"token_policies":  policies,
	}
	if ttl > 0 {
		role["token_ttl"] = int(ttl.Seconds())
		role["token_max_ttl"] = int((4 * ttl).Seconds())
	}
	j.srv.Write(tb, "auth/"+j.Mount+"/role/"+name, role)
}

// Sign returns a token for sub and aud from the method's issuer, valid for
// an hour.
func (j *JWT) Sign(tb testing.TB, sub, aud string) string {
	tb.Helper()
	now := time.Now()
	return jwttest.Sign(tb, j.Key, map[string]any{
		"iss": j.Issuer, "sub": sub, "aud": aud,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
}

// Kubernetes is a Kubernetes auth method: OpenBao checks the
// service-account tokens it is given with the cluster's TokenReview API,
// calling it with a reviewer token of its own.
type Kubernetes struct {
	// Mount is the auth method's path under auth/ ("kubernetes").
	Mount string
	srv   *Server
}

// EnableKubernetes enables Kubernetes auth at auth/mount against the API
// server at host, verified with caPEM, reviewing tokens with reviewerJWT
// (a service account bound to system:auth-delegator). The dev server does
// not run in a pod, so it reads no local service-account files.
func (s *Server) EnableKubernetes(tb testing.TB, mount, host string, caPEM []byte, reviewerJWT string) *Kubernetes {
	tb.Helper()
	s.Write(tb, "sys/auth/"+mount, map[string]any{"type": "kubernetes"})
	s.Write(tb, "auth/"+mount+"/config", map[string]any{
		"kubernetes_host":      host,
		"kubernetes_ca_cert":   string(caPEM),
		"token_reviewer_jwt":   reviewerJWT,
		"disable_local_ca_jwt": true,
	})
	return &Kubernetes{Mount: mount, srv: s}
}

// Role creates a role for the service account namespace/name, granting
// policies.
func (k *Kubernetes) Role(tb testing.TB, role, namespace, name string, policies ...string) {
	tb.Helper()
	k.srv.Write(tb, "auth/"+k.Mount+"/role/"+role, map[string]any{
		"bound_service_account_names":      []string{name},
		"bound_service_account_namespaces": []string{namespace},
		"token_policies":                   policies,
	})
}
