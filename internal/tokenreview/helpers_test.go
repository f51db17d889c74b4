package tokenreview

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"

	"github.com/sekisho/sekisho/internal/configtest"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// apiToken is the API token the fixture's token file holds, mapped by the
// rule "ci".
const apiToken = "skt_deployer_0123456789abcdef0123456789abcdef"

// fixture is a running webhook on loopback, on a snapshot compiled from a
// real config with a real JWT issuer.
type fixture struct {
	env  *configtest.Env
	snap *snapshot.Snapshot
	srv  *Server
	url  string
}

// webhookConfig is a file that runs only the webhook: a Cognito-style
// issuer whose groups are in cognito:groups, an API token, and rules in
// the style of an EKS aws-auth ConfigMap. extra is appended to the
// kube.webhook section (indented by 4).
func webhookConfig(env *configtest.Env, extra string) string {
	return fmt.Sprintf(`
jwt:
  - issuer: %s
    audiences: [api]
    claims: {groups: "cognito:groups"}
api_tokens: {file: %s}
kube:
  webhook:
    listen: 127.0.0.1:0
    rules:
      - name: ci
        match: {tokens: [deployer]}
        username: "ci:{{token_name}}"
        groups: [deployers]
      - name: cognito
        match: {issuers: [%[1]s]}
        username: "{{email}}"
        groups: ["gid:{{groups}}"]
%[3]s`, env.Issuer().URL, env.TokenFile("deployer", apiToken), extra)
}

func start(t testing.TB, extra string) *fixture {
	t.Helper()
	env := configtest.New(t)
	return startConfig(t, env, webhookConfig(env, extra))
}

func startConfig(t testing.TB, env *configtest.Env, src string) *fixture {
	t.Helper()
	return serveSnapshot(t, env, env.Snapshot(src), Config{Listen: "127.0.0.1:0"})
}

func serveSnapshot(t testing.TB, env *configtest.Env, snap *snapshot.Snapshot, cfg Config) *fixture {
	t.Helper()
	srv, err := New(cfg, func() *snapshot.Snapshot { return snap }, env.Log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	scheme := "http"
	if srv.svc.TLS != nil {
		scheme = "https"
	}
	return &fixture{env: env, snap: snap, srv: srv, url: scheme + "://" + srv.Addr() + Path}
}

// reviewBody is a TokenReview request as kube-apiserver sends it.
func reviewBody(t testing.TB, version, token string, audiences ...string) []byte {
	t.Helper()
	tr := authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token, Audiences: audiences}}
	tr.APIVersion, tr.Kind = version, "TokenReview"
	b, err := json.Marshal(&tr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post sends body and returns the status code and the body.
func post(t *testing.T, client *http.Client, url string, body []byte) (int, []byte) {
	t.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// review posts a v1 review of token and decodes the answer.
func (f *fixture) review(t *testing.T, token string, audiences ...string) authnv1.TokenReview {
	t.Helper()
	code, body := post(t, nil, f.url, reviewBody(t, V1, token, audiences...))
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if token != "" && bytes.Contains(body, []byte(token)) {
		t.Fatalf("the answer repeats the token: %s", body)
	}
	var tr authnv1.TokenReview
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatalf("answer is not a TokenReview: %v: %s", err, body)
	}
	if tr.APIVersion != V1 || tr.Kind != "TokenReview" {
		t.Fatalf("answer is %s %s", tr.APIVersion, tr.Kind)
	}
	return tr
}

// noSecretsLogged fails when the logs hold any of the secrets.
func noSecretsLogged(t *testing.T, env *configtest.Env, secrets ...string) {
	t.Helper()
	logs := env.Logs.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain a token: %s", logs)
		}
	}
}
