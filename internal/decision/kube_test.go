package decision

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
	"github.com/sekisho/sekisho/internal/configtest"
	"github.com/sekisho/sekisho/internal/gateway"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// TestServiceAccountsInEveryMode: Kubernetes service-account tokens, with
// keys from the API server's discovery and with TokenReview, get the same
// answers from the gateway and the decision service for a route only the
// payments namespace may call. An API server that cannot review a token
// is 503, and sekisho's own token never shows in a log or an answer.
func TestServiceAccountsInEveryMode(t *testing.T) {
	jwks := jwttest.NewKubeAPIServer(t)
	review := jwttest.NewKubeAPIServer(t)
	review.SetIssuer("https://review.cluster.example")
	env := configtest.New(t)
	env.Level.Set(slog.LevelDebug)
	snap := env.Snapshot(fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
jwt:
  - kubernetes: {api_server: %s, ca_file: %s, token_file: %s}
    audiences: [sekisho]
  - kubernetes: {api_server: %s, ca_file: %s, token_file: %s, token_review: true}
    issuer: https://review.cluster.example
    audiences: [sekisho]
routes:
  - name: payments-api
    match: {path_prefix: /pay}
    to: builtin:echo
    allow: [{when: "identity.kube.namespace == 'payments'"}]
`, jwks.URL, jwks.CAFile, jwks.TokenFile, review.URL, review.CAFile, review.TokenFile))

	gw := gateway.New(env.Log, nil, false)
	gw.Swap(snap)
	gwSrv := httptest.NewServer(gw)
	t.Cleanup(gwSrv.Close)
	dec, err := New(Config{Listen: "127.0.0.1:0"}, func() *snapshot.Snapshot { return snap }, env.Log)
	if err != nil {
		t.Fatal(err)
	}
	decSrv := httptest.NewServer(dec.Handler())
	t.Cleanup(decSrv.Close)
	grpcClient := startGRPC(t, dec)

	past := time.Now().Add(-2 * time.Hour).Unix()
	type tcase struct {
		name, cred string
		want       int
		wantUser   string
	}
	var cases []tcase
	for _, api := range []*jwttest.KubeAPIServer{jwks, review} {
		mode := "jwks"
		if api == review {
			mode = "tokenreview"
		}
		cases = append(cases,
			tcase{mode + ": payments service account", api.SAToken(t, "payments", "api", "sekisho"), 200, "system:serviceaccount:payments:api"},
			tcase{mode + ": another namespace", api.SAToken(t, "shop", "api", "sekisho"), 403, ""},
			tcase{mode + ": another audience", api.SAToken(t, "payments", "api", "vault"), 401, ""},
			tcase{mode + ": expired", api.SAToken(t, "payments", "api", "sekisho", "iat", past, "nbf", past, "exp", past+600), 401, ""},
		)
	}

	modes := []struct {
		name string
		do   func(t *testing.T, cred string) modeResult
	}{
		{"gateway", func(t *testing.T, cred string) modeResult {
			resp, _ := raw(t, gwSrv.Listener.Addr().String(), "GET", "/pay/x", append([]string{"Host", "gw.test"}, bearer(cred)...)...)
			user := ""
			if resp.StatusCode == 200 {
				user = "(echo)"
			}
			return modeResult{status: resp.StatusCode, user: user}
		}},
		{"envoy-http", func(t *testing.T, cred string) modeResult {
			resp, _ := raw(t, decSrv.Listener.Addr().String(), "GET", "/envoy/pay/x", append([]string{"Host", "gw.test"}, bearer(cred)...)...)
			return modeResult{status: resp.StatusCode, user: resp.Header.Get("X-Forwarded-User")}
		}},
		{"forward-auth", func(t *testing.T, cred string) modeResult {
			resp, _ := raw(t, decSrv.Listener.Addr().String(), "GET", "/forward-auth", append([]string{"X-Forwarded-Method", "GET",
				"X-Forwarded-Proto", "https", "X-Forwarded-Host", "gw.test", "X-Forwarded-Uri", "/pay/x"}, bearer(cred)...)...)
			return modeResult{status: resp.StatusCode, user: resp.Header.Get("X-Forwarded-User")}
		}},
		{"envoy-grpc", func(t *testing.T, cred string) modeResult {
			headers := map[string]string{":authority": "gw.test", ":path": "/pay/x", ":method": "GET"}
			if cred != "" {
				headers["authorization"] = "Bearer " + cred
			}
			resp, err := grpcClient.Check(context.Background(), envoyCheck("GET", "gw.test", "/pay/x", headers))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			return grpcResult(t, resp)
		}},
	}
	check := func(t *testing.T, cred string, want int, wantUser string) {
		t.Helper()
		for _, m := range modes {
			got := m.do(t, cred)
			if got.status != want {
				t.Errorf("%s: status %d, want %d", m.name, got.status, want)
			}
			if m.name == "gateway" {
				continue // builtin:echo reports no identity header
			}
			if got.user != wantUser {
				t.Errorf("%s: user %q, want %q", m.name, got.user, wantUser)
			}
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { check(t, c.cred, c.want, c.wantUser) })
	}

	t.Run("tokenreview: API server unreachable", func(t *testing.T) {
		review.SetDown(true)
		defer review.SetDown(false)
		check(t, review.SAToken(t, "payments", "worker", "sekisho"), 503, "")
	})

	for _, secret := range []string{jwks.ReaderToken, review.ReaderToken} {
		if strings.Contains(env.Logs.String(), secret) {
			t.Errorf("sekisho's own service-account token is in the log")
		}
	}
	for _, c := range cases {
		if strings.Contains(env.Logs.String(), c.cred) {
			t.Errorf("%s: the caller's token is in the log", c.name)
		}
	}
	if !strings.Contains(env.Logs.String(), "credential check unavailable") {
		t.Errorf("the 503 is not explained in the log:\n%s", env.Logs)
	}
}
