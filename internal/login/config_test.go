package login

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
)

func testDeps(t *testing.T) (session.Store, *session.Codec, string) {
	t.Helper()
	codec, err := session.NewCodec(session.CodecOptions{Name: "_sekisho", Keys: [][]byte{bytes.Repeat([]byte{1}, session.KeySize)}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return session.NewCookieStore(codec, session.StoreOptions{}), codec, dir
}

func TestNewValidates(t *testing.T) {
	store, codec, dir := testDeps(t)
	good := func() ProviderConfig {
		return ProviderConfig{Name: "corp", Issuer: "https://idp.example.com", ClientID: "id"}
	}
	tests := []struct {
		name string
		p    func(*ProviderConfig)
		o    func(*Options)
		want string
	}{
		{"no name", func(p *ProviderConfig) { p.Name = "" }, nil, "providers[0] (): name: is required"},
		{"bad name", func(p *ProviderConfig) { p.Name = "a b" }, nil, `providers[0] (a b): name: "a b" must be`},
		{"no issuer", func(p *ProviderConfig) { p.Issuer = "" }, nil, "providers[0] (corp): issuer: is required"},
		{"http issuer", func(p *ProviderConfig) { p.Issuer = "http://idp.example.com" }, nil, "providers[0] (corp): issuer: \"http://idp.example.com\": keys must be fetched over https"},
		{"relative issuer", func(p *ProviderConfig) { p.Issuer = "idp.example.com" }, nil, "issuer: \"idp.example.com\" is not an absolute URL"},
		{"no client_id", func(p *ProviderConfig) { p.ClientID = "" }, nil, "providers[0] (corp): client_id: is required"},
		{"missing secret file", func(p *ProviderConfig) { p.ClientSecretFile = filepath.Join(dir, "nope") }, nil, "providers[0] (corp): client_secret_file: open"},
		{"empty secret file", func(p *ProviderConfig) { p.ClientSecretFile = filepath.Join(dir, "empty") }, nil, "client_secret_file: " + filepath.Join(dir, "empty") + " is empty"},
		{"bad scope", func(p *ProviderConfig) { p.Scopes = []string{"openid", "a b"} }, nil, `providers[0] (corp): scopes: "a b" is not a valid scope`},
		{"reserved state", func(p *ProviderConfig) { p.AuthParams = map[string]string{"state": "x"} }, nil, `providers[0] (corp): auth_params: "state" is set by the login flow`},
		{"reserved nonce", func(p *ProviderConfig) { p.AuthParams = map[string]string{"nonce": "x"} }, nil, `auth_params: "nonce"`},
		{"reserved code_challenge_method", func(p *ProviderConfig) { p.AuthParams = map[string]string{"code_challenge_method": "plain"} }, nil, `auth_params: "code_challenge_method"`},
		{"reserved code_challenge", func(p *ProviderConfig) { p.AuthParams = map[string]string{"code_challenge": "x"} }, nil, `auth_params: "code_challenge"`},
		{"reserved redirect_uri", func(p *ProviderConfig) { p.AuthParams = map[string]string{"redirect_uri": "x"} }, nil, `auth_params: "redirect_uri"`},
		{"reserved client_id", func(p *ProviderConfig) { p.AuthParams = map[string]string{"client_id": "x"} }, nil, `auth_params: "client_id"`},
		{"reserved response_type any case", func(p *ProviderConfig) { p.AuthParams = map[string]string{"Response_Type": "token"} }, nil, `auth_params: "Response_Type"`},
		{"reserved response_mode", func(p *ProviderConfig) { p.AuthParams = map[string]string{"response_mode": "fragment"} }, nil, `auth_params: "response_mode"`},
		{"reserved scope", func(p *ProviderConfig) { p.AuthParams = map[string]string{"scope": "x"} }, nil, `auth_params: "scope"`},
		{"redirect_url wrong path", func(p *ProviderConfig) { p.RedirectURL = "https://gw.example.com/cb" }, nil, `providers[0] (corp): redirect_url: path "/cb" must be the callback path "/.sekisho/callback"`},
		{"redirect_url relative", func(p *ProviderConfig) { p.RedirectURL = "/.sekisho/callback" }, nil, "redirect_url: \"/.sekisho/callback\" must be an absolute http(s) URL"},
		{"bad rule", func(p *ProviderConfig) { p.Rules = []identity.Rule{{Expr: "claims.("}} }, nil, "providers[0] (corp): rules[0]"},
		{"no store", nil, func(o *Options) { o.Store = nil }, "a session store is required"},
		{"no codec", nil, func(o *Options) { o.Codec = nil }, "a cookie codec is required"},
		{"bad prefix", nil, func(o *Options) { o.PathPrefix = "auth/" }, `path prefix "auth/" must start with '/'`},
		{"bad allowed domain", nil, func(o *Options) { o.AllowedRedirectDomains = []string{"https://x.com"} }, `allowed redirect domain [0] "https://x.com"`},
		{"bad post-logout redirect", nil, func(o *Options) { o.PostLogoutRedirect = "//evil.com" }, `post-logout redirect "//evil.com"`},
		{"negative ttl", nil, func(o *Options) { o.SessionTTL = -1 }, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good()
			if tt.p != nil {
				tt.p(&p)
			}
			o := Options{Store: store, Codec: codec}
			if tt.o != nil {
				tt.o(&o)
			}
			_, err := New(t.Context(), []ProviderConfig{p}, o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %v, want it to contain %q", err, tt.want)
			}
		})
	}

	if _, err := New(t.Context(), nil, Options{Store: store, Codec: codec}); err == nil || !strings.Contains(err.Error(), "at least one") {
		t.Errorf("New without providers = %v", err)
	}
	if _, err := New(t.Context(), []ProviderConfig{good(), good()}, Options{Store: store, Codec: codec}); err == nil || !strings.Contains(err.Error(), "providers[1] (corp): name: is used twice") {
		t.Errorf("New with a duplicate name = %v", err)
	}
}

func TestNewDefaults(t *testing.T) {
	store, codec, _ := testDeps(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := New(ctx, []ProviderConfig{
		{Name: "a", Issuer: "https://idp.example.com", ClientID: "id"},
		{Name: "b", Issuer: "http://127.0.0.1:9", ClientID: "id", Scopes: []string{"email", "groups", "email"}},
	}, Options{Store: store, Codec: codec, AllowedRedirectDomains: []string{".Example.COM"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.byName["a"].scopes; !slices.Equal(got, []string{"openid", "email", "profile"}) {
		t.Errorf("default scopes = %v", got)
	}
	if got := s.byName["b"].scopes; !slices.Equal(got, []string{"openid", "email", "groups"}) {
		t.Errorf("scopes = %v, want openid added and duplicates dropped", got)
	}
	if s.prefix != "/.sekisho" || s.postLogout != "/.sekisho/signed_out" || s.ttl != session.DefaultTTL {
		t.Errorf("defaults: prefix %q, post-logout %q, ttl %s", s.prefix, s.postLogout, s.ttl)
	}
	if !slices.Equal(s.allowed, []RedirectDomain{{Host: "example.com"}}) {
		t.Errorf("allowed domains = %v, want normalized", s.allowed)
	}
}

func TestAuthStyle(t *testing.T) {
	tests := []struct {
		secret    bool
		supported []string
		want      oauth2.AuthStyle
	}{
		{false, []string{"client_secret_basic"}, oauth2.AuthStyleInParams},
		{true, nil, oauth2.AuthStyleInHeader},
		{true, []string{"client_secret_basic", "client_secret_post"}, oauth2.AuthStyleInHeader},
		{true, []string{"client_secret_post"}, oauth2.AuthStyleInParams},
		{true, []string{"private_key_jwt"}, oauth2.AuthStyleInHeader},
	}
	for _, tt := range tests {
		if got := authStyle(tt.secret, tt.supported); got != tt.want {
			t.Errorf("authStyle(%v, %v) = %v, want %v", tt.secret, tt.supported, got, tt.want)
		}
	}
}
