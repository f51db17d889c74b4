package kubelogin

import (
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseLogin(t *testing.T) {
	o, err := ParseLogin([]string{
		"--issuer=https://idp.example.com", "--client-id=kubectl", "--scope=groups", "--scope=email",
		"--ca-file=/etc/ca.pem", "--token-type=access_token", "--listen=127.0.0.1:8000", "--no-browser",
		"--browser-command=firefox", "--cache-dir=/tmp/c", "--timeout=2m",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := Options{
		Issuer: "https://idp.example.com", ClientID: "kubectl", ExtraScopes: []string{"groups", "email"},
		CAFile: "/etc/ca.pem", TokenType: TokenTypeAccess, Listen: "127.0.0.1:8000", NoBrowser: true,
		BrowserCommand: "firefox", CacheDir: "/tmp/c", LoginTimeout: 2 * time.Minute,
	}
	if !reflect.DeepEqual(o, want) {
		t.Fatalf("ParseLogin =\n%+v\nwant\n%+v", o, want)
	}
}

func TestBadFlags(t *testing.T) {
	base := []string{"--issuer=https://idp.example.com", "--client-id=kubectl"}
	for _, tc := range []struct {
		name    string
		args    []string
		setup   bool
		wantErr string
	}{
		{"no issuer", []string{"--client-id=x"}, false, "--issuer is required"},
		{"no client", []string{"--issuer=https://idp.example.com"}, false, "--client-id is required"},
		{"issuer not a URL", []string{"--issuer=idp.example.com", "--client-id=x"}, false, "must be an http(s) URL"},
		{"unknown flag", append(base, "--nope"), false, "flag provided but not defined: -nope"},
		{"stray argument", append(base, "extra"), false, `unexpected argument "extra"`},
		{"token type", append(base, "--token-type=refresh_token"), false, "--token-type must be"},
		{"remote listener", append(base, "--listen=0.0.0.0:8000"), false, "loopback"},
		{"listener without port", append(base, "--listen=127.0.0.1"), false, "--listen"},
		{"empty scope", append(base, "--scope="), false, "must not be empty"},
		{"zero timeout", append(base, "--timeout=0s"), false, "--timeout must be positive"},
		{"setup: server without cluster", append(base, "--server=https://k8s:6443"), true, "need --cluster"},
		{"setup: cluster without server", append(base, "--cluster=prod"), true, "--cluster needs --server"},
		{"setup: empty name", append(base, "--name="), true, "--name must not be empty"},
		{"setup: no issuer", []string{"--client-id=x"}, true, "--issuer is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.setup {
				_, err = ParseSetup(tc.args, io.Discard)
			} else {
				_, err = ParseLogin(tc.args, io.Discard)
			}
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want a usage error mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var out strings.Builder
	if _, err := ParseLogin([]string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"usage: sekisho kube login", "-device-code", "-logout", "127.0.0.1:8000/callback"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestSetupOutput(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{
			"minimal",
			[]string{"--issuer=https://idp.example.com", "--client-id=kubectl"},
			"kubectl config set-credentials oidc --exec-api-version=client.authentication.k8s.io/v1 --exec-command=sekisho " +
				"--exec-arg=kube --exec-arg=login --exec-arg=--issuer=https://idp.example.com --exec-arg=--client-id=kubectl " +
				"--exec-interactive-mode=IfAvailable\n",
		},
		{
			"everything, with quoting",
			[]string{
				"--issuer=https://idp.example.com/realms/my realm", "--client-id=kube's", "--client-secret=s$cret",
				"--scope=groups", "--ca-file=/etc/idp ca.pem", "--token-type=access_token", "--listen=127.0.0.1:8000",
				"--name=alice", "--exec-command=/usr/local/bin/sekisho", "--cluster=prod",
				"--server=https://k8s.example.com:6443", "--certificate-authority=/etc/k8s/ca.crt",
			},
			"kubectl config set-credentials alice --exec-api-version=client.authentication.k8s.io/v1 " +
				"--exec-command=/usr/local/bin/sekisho --exec-arg=kube --exec-arg=login " +
				"'--exec-arg=--issuer=https://idp.example.com/realms/my realm' '--exec-arg=--client-id=kube'\\''s' " +
				"'--exec-arg=--client-secret=s$cret' --exec-arg=--scope=groups '--exec-arg=--ca-file=/etc/idp ca.pem' " +
				"--exec-arg=--token-type=access_token --exec-arg=--listen=127.0.0.1:8000 --exec-interactive-mode=IfAvailable\n" +
				"kubectl config set-cluster prod --server=https://k8s.example.com:6443 --certificate-authority=/etc/k8s/ca.crt --embed-certs=true\n" +
				"kubectl config set-context prod --cluster=prod --user=alice\n",
		},
		{
			"device code",
			[]string{"--issuer=https://idp.example.com", "--client-id=kubectl", "--device-code"},
			"kubectl config set-credentials oidc --exec-api-version=client.authentication.k8s.io/v1 --exec-command=sekisho " +
				"--exec-arg=kube --exec-arg=login --exec-arg=--issuer=https://idp.example.com --exec-arg=--client-id=kubectl " +
				"--exec-arg=--device-code --exec-interactive-mode=IfAvailable\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSetup(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			if err := WriteSetup(&out, s); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Fatalf("output:\n%s\nwant:\n%s", out.String(), tc.want)
			}
		})
	}
}

// TestShellQuoteRoundTrip has a real shell split the quoted words back.
func TestShellQuoteRoundTrip(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	words := []string{"plain", "", "with space", "it's", `back\slash`, "$HOME", "`id`", "a;b|c&d", "tab\there", "new\nline", "*?[x]", "~user", "--exec-arg=--issuer=https://x/y z"}
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = shellQuote(w)
	}
	script := filepath.Join(t.TempDir(), "args.sh")
	if err := os.WriteFile(script, []byte(`for a in "$@"; do printf '%s\0' "$a"; done`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sh, "-c", sh+" "+script+" "+strings.Join(q, " ")).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if !reflect.DeepEqual(got, words) {
		t.Fatalf("the shell split %q into %q", strings.Join(q, " "), got)
	}
}
