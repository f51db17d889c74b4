package tokenreview

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/configtest"
)

// TestReview: every outcome of a review of a well-formed request is a 200
// TokenReview; only the status says whether the token is someone's.
func TestReview(t *testing.T) {
	f := start(t, "    audiences: [https://kubernetes.default.svc.cluster.local]\n")
	admin := f.env.Token("cognito:groups", []string{"admin"})
	staff := f.env.Token("cognito:groups", []string{"staff"}, "sub", "bob-id", "email", "bob@example.com")
	expired := f.env.Token("cognito:groups", []string{"admin"}, "iat", time.Now().Add(-2*time.Hour).Unix(), "exp", time.Now().Add(-time.Hour).Unix())
	otherAud := f.env.Token("cognito:groups", []string{"admin"}, "aud", "another-service")
	for _, tt := range []struct {
		name       string
		token      string
		audiences  []string
		wantUser   string
		wantGroups []string
		wantAuds   []string
		wantErr    string // substring of status.error when unauthenticated
	}{
		{name: "cognito admin", token: admin, wantUser: "alice@example.com", wantGroups: []string{"gid:admin"}},
		{name: "cognito staff", token: staff, wantUser: "bob@example.com", wantGroups: []string{"gid:staff"}},
		{name: "api token by rule", token: apiToken, wantUser: "ci:deployer", wantGroups: []string{"deployers"}},
		{name: "api server audience configured", token: admin, audiences: []string{"https://kubernetes.default.svc.cluster.local"}, wantUser: "alice@example.com", wantGroups: []string{"gid:admin"}, wantAuds: []string{"https://kubernetes.default.svc.cluster.local"}},
		{name: "token's own audience", token: admin, audiences: []string{"api", "other"}, wantUser: "alice@example.com", wantGroups: []string{"gid:admin"}, wantAuds: []string{"api"}},
		{name: "no audience in common", token: admin, audiences: []string{"https://other-cluster"}, wantErr: "not valid for the requested audiences"},
		{name: "expired", token: expired, wantErr: "expired"},
		{name: "audience the issuer does not accept", token: otherAud, wantErr: "audience"},
		{name: "garbage", token: "not-a-token", wantErr: "invalid credentials"},
		{name: "empty", token: "", wantErr: "empty token"},
		{name: "forged signature", token: admin[:len(admin)-4] + "AAAA", wantErr: "signature"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := f.review(t, tt.token, tt.audiences...)
			st := tr.Status
			if tt.wantErr != "" {
				if st.Authenticated || !strings.Contains(st.Error, tt.wantErr) || st.User.Username != "" {
					t.Fatalf("status %+v, want unauthenticated with %q", st, tt.wantErr)
				}
				return
			}
			if !st.Authenticated || st.User.Username != tt.wantUser || !slices.Equal(st.User.Groups, tt.wantGroups) || !slices.Equal(st.Audiences, tt.wantAuds) {
				t.Fatalf("status %+v, want %s %v audiences %v", st, tt.wantUser, tt.wantGroups, tt.wantAuds)
			}
			if st.User.UID == "" || len(st.User.Extra["sekisho.io/method"]) != 1 || len(st.User.Extra["sekisho.io/rule"]) != 1 {
				t.Errorf("uid/extra missing: %+v", st.User)
			}
		})
	}
	noSecretsLogged(t, f.env, admin, staff, expired, apiToken)
}

// TestUnmappedIsUnauthenticated: a valid token whose identity no rule maps
// (and there is no default) is nobody in Kubernetes; with a default it is
// the prefixed identity.
func TestUnmappedIsUnauthenticated(t *testing.T) {
	env := configtest.New(t)
	src := fmt.Sprintf(`
jwt: [{issuer: %s, audiences: [api], claims: {groups: "cognito:groups"}}]
kube:
  webhook:
    listen: 127.0.0.1:0
    rules:
      - match: {groups: [admin]}
        groups: ["gid:{{groups}}"]
`, env.Issuer().URL)
	f := startConfig(t, env, src)
	staff := env.Token("cognito:groups", []string{"staff"})
	if tr := f.review(t, staff); tr.Status.Authenticated || !strings.Contains(tr.Status.Error, "no mapping rule") {
		t.Fatalf("unmapped identity: %+v", tr.Status)
	}
	if tr := f.review(t, env.Token("cognito:groups", []string{"admin"})); !tr.Status.Authenticated || tr.Status.User.Username != "alice-id" {
		t.Fatalf("mapped identity: %+v", tr.Status)
	}

	f = startConfig(t, env, src+"    default: {username_prefix: 'oidc:', groups_prefix: 'gid:'}\n")
	tr := f.review(t, staff)
	if !tr.Status.Authenticated || tr.Status.User.Username != "oidc:alice-id" || !slices.Equal(tr.Status.User.Groups, []string{"gid:staff"}) || tr.Status.User.Extra["sekisho.io/rule"][0] != "default" {
		t.Fatalf("default mapping: %+v", tr.Status)
	}
}

// TestV1beta1: older kube-apiservers (--authentication-token-webhook-version
// v1beta1) get their answer in their version.
func TestV1beta1(t *testing.T) {
	f := start(t, "")
	code, body := post(t, nil, f.url, reviewBody(t, V1beta1, apiToken))
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"apiVersion":"authentication.k8s.io/v1beta1"`)) || !bytes.Contains(body, []byte(`"username":"ci:deployer"`)) {
		t.Fatalf("v1beta1 review: %d %s", code, body)
	}
}

// TestBadRequests: what is not a TokenReview is refused with 400 and a
// message that says why, quoting nothing of the body.
func TestBadRequests(t *testing.T) {
	f := start(t, "")
	secret := "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.c2ln"
	huge := append([]byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`), bytes.Repeat([]byte("a"), MaxBodyBytes)...)
	huge = append(huge, `"}}`...)
	for _, tt := range []struct {
		name string
		body []byte
		want string
	}{
		{"malformed JSON", []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + secret + `"`), "not a JSON TokenReview"},
		{"not an object", []byte(`"` + secret + `"`), "not a JSON TokenReview"},
		{"empty", nil, "empty body"},
		{"unknown version", []byte(`{"apiVersion":"authentication.k8s.io/v2","kind":"TokenReview","spec":{"token":"` + secret + `"}}`), `apiVersion "authentication.k8s.io/v2" is not supported`},
		{"no version", []byte(`{"kind":"TokenReview","spec":{"token":"` + secret + `"}}`), "apiVersion is missing"},
		{"other kind", []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SubjectAccessReview","spec":{"token":"` + secret + `"}}`), `kind "SubjectAccessReview" is not TokenReview`},
		{"wrong type", []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":["` + secret + `"]}}`), "spec.token must be string"},
		{"trailing data", append(reviewBody(t, V1, secret), `{}`...), "data after"},
		{"huge", huge, "larger than"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(t, nil, f.url, tt.body)
			if code != http.StatusBadRequest || !strings.Contains(string(body), tt.want) {
				t.Fatalf("%d %q, want 400 with %q", code, body, tt.want)
			}
			if strings.Contains(string(body), secret) || strings.Contains(string(body), "aaaa") {
				t.Fatalf("the answer quotes the body: %s", body)
			}
		})
	}
	noSecretsLogged(t, f.env, secret)

	resp, err := http.Get(f.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d Allow=%q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if code, _ := post(t, nil, strings.TrimSuffix(f.url, Path)+"/authenticate", reviewBody(t, V1, apiToken)); code != http.StatusNotFound {
		t.Errorf("other path: %d, want 404", code)
	}
}

// TestNotConfigured: a snapshot without the webhook section (removed by a
// reload while the listener runs) answers nobody.
func TestNotConfigured(t *testing.T) {
	f := start(t, "")
	f.snap.KubeWebhook = nil
	tr := f.review(t, apiToken)
	if tr.Status.Authenticated || !strings.Contains(tr.Status.Error, "not configured") {
		t.Fatalf("status %+v", tr.Status)
	}
}
