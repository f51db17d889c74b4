package vault

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func getenv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// TestOptionsFromEnv: the variables Vault's and OpenBao's tools read, the
// BAO_ name winning over the VAULT_ one, and sekisho's own.
func TestOptionsFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want Options
	}{
		{"vault names", map[string]string{
			"VAULT_ADDR": "https://v:8200", "VAULT_CACERT": "/ca.pem", "VAULT_CAPATH": "/cas",
			"VAULT_TLS_SERVER_NAME": "vault.internal", "VAULT_NAMESPACE": "team", "VAULT_TOKEN": "s.vault",
		}, Options{Address: "https://v:8200", CACert: "/ca.pem", CAPath: "/cas", TLSServerName: "vault.internal", Namespace: "team", Token: "s.vault"}},
		{"bao names win", map[string]string{
			"VAULT_ADDR": "https://v:8200", "BAO_ADDR": "https://b:8200",
			"VAULT_TOKEN": "s.vault", "BAO_TOKEN": "s.bao", "BAO_CACERT": "/bao.pem", "VAULT_CACERT": "/vault.pem",
		}, Options{Address: "https://b:8200", Token: "s.bao", CACert: "/bao.pem"}},
		{"sekisho's own", map[string]string{
			"BAO_ADDR": "https://b:8200", "SEKISHO_VAULT_AUTH": "jwt", "SEKISHO_VAULT_ROLE": "app",
			"SEKISHO_VAULT_AUTH_MOUNT": "kube-prod", "SEKISHO_VAULT_JWT_FILE": "/var/run/secrets/tokens/vault",
			"SEKISHO_VAULT_TOKEN_FILE": "/vault/token",
		}, Options{Address: "https://b:8200", Auth: "jwt", Role: "app", AuthMount: "kube-prod", JWTFile: "/var/run/secrets/tokens/vault", TokenFile: "/vault/token"}},
		{"nothing", nil, Options{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := OptionsFromEnv(getenv(tt.env)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestNewChecksOptions: New says what is missing or wrong in the words of
// the environment variables, and never quotes a token or a password.
func TestNewChecksOptions(t *testing.T) {
	const token = "s.SECRETTOKEN"
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no address", Options{Token: token}, "set BAO_ADDR or VAULT_ADDR"},
		{"address with a password", Options{Address: "https://user:hunter2@v:8200", Token: token}, "holds a user name or password"},
		{"address not a URL", Options{Address: "https://v:8200/%zz", Token: token}, "is not a URL"},
		{"address without scheme", Options{Address: "v:8200", Token: token}, "is not an http:// or https:// URL"},
		{"address with a query", Options{Address: "https://v:8200/?x=1", Token: token}, "without query"},
		{"no credentials", Options{Address: "https://v:8200"}, "no credentials: set BAO_TOKEN or VAULT_TOKEN"},
		{"token and token file", Options{Address: "https://v:8200", Token: token, TokenFile: "/t"}, "set one"},
		{"token auth without token", Options{Address: "https://v:8200", Auth: "token"}, "SEKISHO_VAULT_AUTH=token needs"},
		{"token with a newline", Options{Address: "https://v:8200", Token: token + "\nx"}, "spaces or control characters"},
		{"kubernetes without role", Options{Address: "https://v:8200", Auth: "kubernetes"}, "needs SEKISHO_VAULT_ROLE"},
		{"jwt without role", Options{Address: "https://v:8200", Auth: "jwt", Token: token}, "needs SEKISHO_VAULT_ROLE"},
		{"unknown method", Options{Address: "https://v:8200", Auth: "approle", Role: "r"}, `SEKISHO_VAULT_AUTH "approle" is not token, kubernetes or jwt`},
		{"bad mount", Options{Address: "https://v:8200", Auth: "jwt", Role: "r", AuthMount: "a/../b"}, "is not a mount path"},
		{"missing CA file", Options{Address: "https://v:8200", Token: token, CACert: filepath.Join(t.TempDir(), "none.pem")}, "CA certificates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(context.Background(), tt.opts)
			if err == nil {
				t.Fatalf("New = %v, want an error", p)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q; want it to say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "SECRETTOKEN") || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q quotes a credential", err)
			}
		})
	}
}

// TestNewPicksAuth: without SEKISHO_VAULT_AUTH, a token means token auth
// and a role means a Kubernetes login, with the method's default mount
// and the pod's service-account token.
func TestNewPicksAuth(t *testing.T) {
	tests := []struct {
		name                 string
		opts                 Options
		auth, mount, jwtFile string
	}{
		{"token", Options{Token: "t"}, AuthToken, "", ""},
		{"token file", Options{TokenFile: "/vault/token"}, AuthToken, "", ""},
		{"role", Options{Role: "app"}, AuthKubernetes, "kubernetes", DefaultJWTFile},
		{"jwt", Options{Auth: "jwt", Role: "app"}, AuthJWT, "jwt", DefaultJWTFile},
		{"jwt elsewhere", Options{Auth: "jwt", Role: "app", AuthMount: "/k8s-prod/", JWTFile: "/t"}, AuthJWT, "k8s-prod", "/t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Address = "http://127.0.0.1:8200"
			p, err := New(context.Background(), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if p.opts.Auth != tt.auth || p.opts.AuthMount != tt.mount || p.opts.JWTFile != tt.jwtFile || p.opts.Timeout != DefaultTimeout {
				t.Errorf("options %+v; want auth %q mount %q jwt file %q", p.opts, tt.auth, tt.mount, tt.jwtFile)
			}
		})
	}
}

// TestNewIgnoresProcessEnvironment: the API client reads BAO_TOKEN from
// the process environment by itself; the provider uses only its options,
// so a caller's getenv is the whole truth.
func TestNewIgnoresProcessEnvironment(t *testing.T) {
	t.Setenv("BAO_TOKEN", "s.FROMPROCESS")
	t.Setenv("BAO_NAMESPACE", "elsewhere")
	p, err := New(context.Background(), Options{Address: "http://127.0.0.1:8200", Auth: AuthJWT, Role: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if tok := p.client.Token(); tok != "" {
		t.Errorf("client token %q; want none before login", tok)
	}
	if ns := p.client.Namespace(); ns != "" {
		t.Errorf("client namespace %q; want none", ns)
	}
	if tok := p.loginClient.Token(); tok != "" {
		t.Errorf("login client token %q; want none", tok)
	}
}

// TestNotAVaultReference: a reference to another store is refused, naming
// it.
func TestNotAVaultReference(t *testing.T) {
	p, err := New(context.Background(), Options{Address: "http://127.0.0.1:1", Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Resolve(context.Background(), refFor(t, "sekisho+file:///etc/x"))
	if err == nil || !strings.Contains(err.Error(), "not a vault reference") || !strings.Contains(err.Error(), "sekisho+file:///etc/x") {
		t.Errorf("err %v", err)
	}
	if errors.Is(err, ErrUnavailable) {
		t.Error("no request should have been made")
	}
}
