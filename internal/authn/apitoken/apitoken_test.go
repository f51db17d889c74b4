package apitoken

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/identity"
)

const (
	ciSecret     = "skt_ci-bot-secret-value-0123456789abcdefghijklmnop"
	deploySecret = "fANtLRTszYAayjtmLFllSHBrt2zRyoqV" // seed 002's style of token
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func mustParse(t testing.TB, data string) *Store {
	t.Helper()
	s, err := Parse([]byte(data), "tokens.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

func testFile() string {
	return `
- name: ci-bot
  hash: ` + Hash([]byte(ciSecret)) + `
  groups: [ci, deployers]
- name: deploy
  hash: sha256:` + strings.ToUpper(Hash([]byte(deploySecret))[len("sha256:"):]) + `
  expires: 2026-06-01T12:00:00Z
`
}

func TestAuthenticate(t *testing.T) {
	s := mustParse(t, testFile()) // deploy's digest is in upper-case hex

	tests := []struct {
		name    string
		token   string
		at      time.Time
		want    *identity.Identity
		wantErr error
	}{
		{
			name: "valid", token: ciSecret, at: now,
			want: &identity.Identity{
				Subject: "token:ci-bot", Username: "token:ci-bot", Groups: []string{"ci", "deployers"},
				Method: identity.MethodAPIToken, Kind: identity.KindService, TokenName: "ci-bot",
			},
		},
		{
			name: "valid before expiry", token: deploySecret, at: now.Add(-time.Second),
			want: &identity.Identity{
				Subject: "token:deploy", Username: "token:deploy", Groups: []string{},
				Method: identity.MethodAPIToken, Kind: identity.KindService, TokenName: "deploy",
			},
		},
		{name: "expired at the instant", token: deploySecret, at: now, wantErr: ErrExpired},
		{name: "expired after", token: deploySecret, at: now.Add(time.Hour), wantErr: ErrExpired},
		{name: "wrong token", token: "skt_not-a-known-token", at: now, wantErr: ErrUnknownToken},
		{name: "token with trailing newline", token: ciSecret + "\n", at: now, wantErr: ErrUnknownToken},
		{name: "empty token", token: "", at: now, wantErr: ErrUnknownToken},
		{name: "hash presented as token", token: Hash([]byte(ciSecret)), at: now, wantErr: ErrUnknownToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Authenticate(tc.token, tc.at)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil && tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Errorf("error %q contains the token", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("identity = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestExpiresForms(t *testing.T) {
	tests := []struct {
		expires string
		valid   bool
	}{
		{"", true}, // null: never expires
		{"2026-06-02", true},
		{"2026-06-01", false},
		{"2026-06-01T20:00:00+09:00", false}, // 11:00 UTC
		{"2026-06-01T12:00:01Z", true},
	}
	for _, tc := range tests {
		s := mustParse(t, "- name: a\n  hash: "+Hash([]byte(ciSecret))+"\n  expires: "+tc.expires+"\n")
		_, err := s.Authenticate(ciSecret, now)
		if (err == nil) != tc.valid {
			t.Errorf("expires %q: err = %v, want valid=%v", tc.expires, err, tc.valid)
		}
	}
}

func TestAuthenticateExpiredNamesToken(t *testing.T) {
	s := mustParse(t, testFile())
	_, err := s.Authenticate(deploySecret, now)
	if err == nil || !strings.Contains(err.Error(), `"deploy" expired at 2026-06-01T12:00:00Z`) {
		t.Errorf("err = %v, want it to name the token and expiry", err)
	}
}

// An entry whose digest shares the indexed prefix with the presented
// token's but differs afterwards must be refused by the full comparison.
func TestAuthenticateComparesFullDigest(t *testing.T) {
	const secret = "skt_presented"
	digest := sha256.Sum256([]byte(secret))
	digest[sha256.Size-1] ^= 1
	s := mustParse(t, "- name: near\n  hash: sha256:"+hex.EncodeToString(digest[:])+"\n")
	if id, err := s.Authenticate(secret, now); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("Authenticate = %v, %v; want ErrUnknownToken", id, err)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, data := range []string{"", "# no tokens yet\n", "[]", "~"} {
		s := mustParse(t, data)
		if _, err := s.Authenticate(ciSecret, now); !errors.Is(err, ErrUnknownToken) {
			t.Errorf("%q: Authenticate err = %v, want ErrUnknownToken", data, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	ci := Hash([]byte(ciSecret))
	digest := sha256.Sum256([]byte(deploySecret))
	prefixTwin := digest
	prefixTwin[sha256.Size-1] ^= 1
	tests := []struct {
		name string
		data string
		want []string // substrings of the error
	}{
		{
			name: "unknown key with line",
			data: "- name: ci-bot\n  hash: " + ci + "\n- name: other\n  hash: " + Hash([]byte("x")) + "\n  expiry: 2026-01-01\n",
			want: []string{"tokens.yaml", "line 5", "field expiry not found"},
		},
		{
			name: "plaintext token under an unknown key",
			data: "- name: ci-bot\n  token: " + ciSecret + "\n",
			want: []string{"line 2", "field token not found"},
		},
		{
			name: "duplicate names",
			data: "- name: ci-bot\n  hash: " + ci + "\n- name: ci-bot\n  hash: " + Hash([]byte("other")) + "\n",
			want: []string{"tokens.yaml:3: tokens[1] (ci-bot): duplicate name, first at line 1"},
		},
		{
			name: "bare hex digest",
			data: "- name: b\n  hash: " + ci[7:] + "\n",
			want: []string{"tokens.yaml:1: tokens[0] (b)", "hash looks like a plaintext token"},
		},
		{
			name: "duplicate hashes across case",
			data: "- name: a\n  hash: " + ci + "\n- name: b\n  hash: sha256:" + strings.ToUpper(ci[7:]) + "\n",
			want: []string{`tokens.yaml:3: tokens[1] (b): same hash as token "a"`},
		},
		{
			name: "indexed prefix clash",
			data: "- name: a\n  hash: sha256:" + hex.EncodeToString(digest[:]) + "\n- name: b\n  hash: sha256:" + hex.EncodeToString(prefixTwin[:]) + "\n",
			want: []string{`tokens[1] (b): hash shares its first 8 bytes with token "a"`},
		},
		{name: "plaintext in hash", data: "- name: ci-bot\n  hash: " + ciSecret + "\n", want: []string{"tokens.yaml:1: tokens[0] (ci-bot): hash looks like a plaintext token", "sekisho token hash"}},
		{name: "missing hash", data: "- name: ci-bot\n", want: []string{"hash is missing"}},
		{name: "short hex", data: "- name: a\n  hash: sha256:abcd\n", want: []string{"64 hex digits"}},
		{name: "non-hex", data: "- name: a\n  hash: sha256:" + strings.Repeat("zz", 32) + "\n", want: []string{"hex digits (0-9, a-f)"}},
		{name: "bcrypt", data: "- name: a\n  hash: $2y$10$abcdefghijklmnopqrstuv\n", want: []string{"unsupported hash"}},
		{name: "other algorithm", data: "- name: a\n  hash: sha512:abcd\n", want: []string{"unsupported hash"}},
		{name: "missing name", data: "- hash: " + ci + "\n", want: []string{"tokens.yaml:1: tokens[0]: name must be"}},
		{name: "bad name", data: "- name: ci bot\n  hash: " + ci + "\n", want: []string{"name must be letters"}},
		{name: "empty group", data: "- name: a\n  hash: " + ci + "\n  groups: [\"\"]\n", want: []string{"empty group name"}},
		{name: "not a list", data: "tokens:\n  - name: a\n", want: []string{"tokens.yaml:1: expected a list of tokens"}},
		{name: "bad expiry", data: "- name: a\n  hash: " + ci + "\n  expires: next tuesday\n", want: []string{"tokens.yaml:3: tokens[0]: expires must be a date"}},
		{name: "two documents", data: "- name: a\n  hash: " + ci + "\n---\n- name: b\n", want: []string{"more than one YAML document"}},
		{name: "list expiry", data: "- name: a\n  hash: " + ci + "\n  expires: [1]\n", want: []string{"tokens.yaml:3: tokens[0]: expires"}},
		{name: "bad yaml", data: "- name: [a\n", want: []string{"tokens.yaml: yaml:"}},
		{name: "list of bare tokens", data: "- " + ciSecret + "\n- " + deploySecret + "\n", want: []string{"line 1", "(value hidden)"}},
		{
			name: "every problem reported",
			data: "- name: a\n  hash: nope\n- name: a\n  hash: " + ci + "\n",
			want: []string{"tokens.yaml:1: tokens[0] (a): hash looks like", "tokens.yaml:3: tokens[1] (a): duplicate name"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse([]byte(tc.data), "tokens.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded (%v), want error", s)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			for _, secret := range []string{ciSecret, deploySecret, "nope"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q leaks %q", err, secret)
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(path, []byte(testFile()), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if _, err := s.Authenticate(ciSecret, now); err != nil {
		t.Errorf("Authenticate: %v", err)
	}
	if err := os.WriteFile(path, []byte("- name: a\n  hash: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path+":1:") {
		t.Errorf("Load(bad) err = %v, want it to name %s:1", err, path)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) err = %v, want ErrNotExist", err)
	}
}

func TestHash(t *testing.T) {
	tests := []struct{ secret, want string }{
		{"", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	}
	for _, tc := range tests {
		if got := Hash([]byte(tc.secret)); got != tc.want {
			t.Errorf("Hash(%q) = %s, want %s", tc.secret, got, tc.want)
		}
	}
}

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		tok, err := Generate()
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		if !strings.HasPrefix(tok, "skt_") || len(tok) != len("skt_")+43 {
			t.Fatalf("token %q: want skt_ and 43 base64url characters", tok)
		}
		if seen[tok] {
			t.Fatalf("Generate repeated %q", tok)
		}
		seen[tok] = true
	}
	// A generated token round-trips through the stored form.
	tok, _ := Generate()
	s := mustParse(t, "- name: gen\n  hash: "+Hash([]byte(tok))+"\n")
	if id, err := s.Authenticate(tok, now); err != nil || id.TokenName != "gen" {
		t.Errorf("Authenticate(generated) = %v, %v", id, err)
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	var file strings.Builder
	var last string
	for i := range 1000 {
		tok, err := Generate()
		if err != nil {
			b.Fatal(err)
		}
		last = tok
		file.WriteString("- name: t" + strings.Repeat("x", i%3) + "-" + hex.EncodeToString([]byte{byte(i >> 8), byte(i)}) + "\n  hash: " + Hash([]byte(tok)) + "\n")
	}
	s := mustParse(b, file.String())
	for _, bc := range []struct{ name, token string }{{"valid", last}, {"unknown", "skt_unknown-token"}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = s.Authenticate(bc.token, now)
			}
		})
	}
}

// FuzzParse checks that no tokens file makes Parse panic, and that a store
// it accepts answers Authenticate.
func FuzzParse(f *testing.F) {
	f.Add([]byte(testFile()))
	f.Add([]byte("- name: a\n  hash: sha256:zz\n"))
	f.Add([]byte("- name: [a\n"))
	f.Add([]byte("- *x\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		if _, err := s.Authenticate(ciSecret, now); err != nil && !errors.Is(err, ErrUnknownToken) && !errors.Is(err, ErrExpired) {
			t.Fatalf("Authenticate: unexpected error %v", err)
		}
	})
}
