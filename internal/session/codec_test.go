package session

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	keyA = bytes.Repeat([]byte{0xA1}, KeySize)
	keyB = bytes.Repeat([]byte{0xB2}, KeySize)
)

func newCodec(t testing.TB, o CodecOptions) *Codec {
	t.Helper()
	if o.Name == "" {
		o.Name = "_sekisho"
	}
	if o.Keys == nil {
		o.Keys = [][]byte{keyA}
	}
	c, err := NewCodec(o)
	if err != nil {
		t.Fatalf("NewCodec: %v", err)
	}
	return c
}

// encode runs Encode on a request carrying prev and returns the cookies set.
func encode(t testing.TB, c *Codec, plaintext []byte, prev ...*http.Cookie) []*http.Cookie {
	t.Helper()
	cookies, err := c.Encode(requestWith(prev...), plaintext)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return cookies
}

// requestWith is the request a browser sends after receiving cookies:
// expired ones are dropped.
func requestWith(cookies ...*http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for _, c := range cookies {
		if c.MaxAge >= 0 {
			r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	return r
}

func plaintextOf(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte('a' + i%26)
	}
	return p
}

// noLeak fails when an error message contains secret material.
func noLeak(t *testing.T, err error, secrets ...[]byte) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range secrets {
		for _, form := range []string{string(s), hex.EncodeToString(s), base64.StdEncoding.EncodeToString(s), base64.RawURLEncoding.EncodeToString(s)} {
			if len(form) >= 8 && strings.Contains(msg, form) {
				t.Fatalf("error %q leaks secret material", msg)
			}
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	// Plaintext sizes whose encodings end just below, at and above chunk boundaries.
	atBoundary := chunkSize*3/4 - 40
	tests := []struct {
		size   int
		chunks int
	}{
		{0, 1},
		{1, 1},
		{atBoundary, 1},
		{atBoundary + 1, 2},
		{2*chunkSize*3/4 - 40, 2},
		{5*chunkSize*3/4 - 40, 5},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			c := newCodec(t, CodecOptions{})
			want := plaintextOf(tt.size)
			cookies := encode(t, c, want)
			if len(cookies) != tt.chunks {
				t.Fatalf("got %d cookies, want %d", len(cookies), tt.chunks)
			}
			for i, ck := range cookies {
				if ck.Name != c.chunkName(i) || len(ck.Value) > chunkSize {
					t.Fatalf("cookie %d: name %q, %d bytes", i, ck.Name, len(ck.Value))
				}
			}
			got, err := c.Decode(requestWith(cookies...))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("Decode returned other bytes than were encoded")
			}
		})
	}
}

func TestCodecNoSession(t *testing.T) {
	c := newCodec(t, CodecOptions{})
	r := requestWith(&http.Cookie{Name: "other", Value: "x"}, &http.Cookie{Name: "_sekisho_1", Value: "x"})
	if _, err := c.Decode(r); !errors.Is(err, ErrNoSession) {
		t.Fatalf("got %v, want ErrNoSession", err)
	}
}

func TestCodecKeyRotation(t *testing.T) {
	p := []byte("rotation")
	tests := []struct {
		name       string
		encodeWith [][]byte
		decodeWith [][]byte
		wantErr    error
	}{
		{"old key still decodes", [][]byte{keyA}, [][]byte{keyB, keyA}, nil},
		{"retired key refused", [][]byte{keyA}, [][]byte{keyB}, ErrInvalid},
		{"first key encrypts", [][]byte{keyB, keyA}, [][]byte{keyA}, ErrInvalid},
		{"new key decodes", [][]byte{keyB, keyA}, [][]byte{keyB}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cookies := encode(t, newCodec(t, CodecOptions{Keys: tt.encodeWith}), p)
			got, err := newCodec(t, CodecOptions{Keys: tt.decodeWith}).Decode(requestWith(cookies...))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if err == nil && !bytes.Equal(got, p) {
				t.Fatal("wrong plaintext")
			}
			noLeak(t, err, keyA, keyB, p)
		})
	}
}

// resplit cuts an encoded value into cookies the way Encode does.
func resplit(name string, value string) []*http.Cookie {
	var out []*http.Cookie
	for i := 0; i*chunkSize < len(value); i++ {
		n := name
		if i > 0 {
			n = fmt.Sprintf("%s_%d", name, i)
		}
		out = append(out, &http.Cookie{Name: n, Value: value[i*chunkSize : min(len(value), (i+1)*chunkSize)]})
	}
	return out
}

func joined(cookies []*http.Cookie) string {
	var b strings.Builder
	for _, c := range cookies {
		b.WriteString(c.Value)
	}
	return b.String()
}

func TestCodecBitFlips(t *testing.T) {
	c := newCodec(t, CodecOptions{})
	p := plaintextOf(2 * chunkSize) // three chunks
	cookies := encode(t, c, p)
	if len(cookies) != 3 {
		t.Fatalf("want 3 chunks, got %d", len(cookies))
	}
	sealed, err := base64.RawURLEncoding.DecodeString(joined(cookies))
	if err != nil {
		t.Fatal(err)
	}
	// Every byte of nonce, ciphertext and tag, in every chunk; a different
	// bit of each byte in turn.
	for i := range sealed {
		bit := i % 8
		flipped := bytes.Clone(sealed)
		flipped[i] ^= 1 << bit
		_, err := c.Decode(requestWith(resplit(c.name, base64.RawURLEncoding.EncodeToString(flipped))...))
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("byte %d bit %d flipped: got %v, want ErrInvalid", i, bit, err)
		}
	}
	// And at the cookie text level, where a flip may also break base64.
	for ci := range cookies {
		for _, pos := range []int{0, len(cookies[ci].Value) / 2, len(cookies[ci].Value) - 1} {
			damaged := make([]*http.Cookie, len(cookies))
			copy(damaged, cookies)
			v := []byte(cookies[ci].Value)
			v[pos] ^= 1
			damaged[ci] = &http.Cookie{Name: cookies[ci].Name, Value: string(v)}
			if _, err := c.Decode(requestWith(damaged...)); !errors.Is(err, ErrInvalid) {
				t.Fatalf("chunk %d char %d flipped: got %v, want ErrInvalid", ci, pos, err)
			}
		}
	}
}

func TestCodecDamagedChunks(t *testing.T) {
	c := newCodec(t, CodecOptions{})
	cookies := encode(t, c, plaintextOf(2*chunkSize))
	ck := func(name, value string) *http.Cookie { return &http.Cookie{Name: name, Value: value} }
	v0, v1, v2 := cookies[0].Value, cookies[1].Value, cookies[2].Value
	// The encoding's last character carries unused bits, which Encode leaves zero.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	paddingSet := v2[:len(v2)-1] + string(alphabet[strings.IndexByte(alphabet, v2[len(v2)-1])|1])
	tests := []struct {
		name    string
		cookies []*http.Cookie
	}{
		{"middle chunk missing", []*http.Cookie{ck("_sekisho", v0), ck("_sekisho_2", v2)}},
		{"last chunk missing", []*http.Cookie{ck("_sekisho", v0), ck("_sekisho_1", v1)}},
		{"last chunk truncated by one", []*http.Cookie{ck("_sekisho", v0), ck("_sekisho_1", v1), ck("_sekisho_2", v2[:len(v2)-1])}},
		{"last chunk truncated by four", []*http.Cookie{ck("_sekisho", v0), ck("_sekisho_1", v1), ck("_sekisho_2", v2[:len(v2)-4])}},
		{"first chunk truncated", []*http.Cookie{ck("_sekisho", v0[:chunkSize-4]), ck("_sekisho_1", v1), ck("_sekisho_2", v2)}},
		{"chunks reordered", []*http.Cookie{ck("_sekisho", v1), ck("_sekisho_1", v0), ck("_sekisho_2", v2)}},
		{"extra chunk", []*http.Cookie{ck("_sekisho", v0), ck("_sekisho_1", v1), ck("_sekisho_2", v2), ck("_sekisho_3", v2)}},
		{"chunk too long", []*http.Cookie{ck("_sekisho", v0+v1[:4]), ck("_sekisho_1", v1[4:]), ck("_sekisho_2", v2)}},
		{"chunk boundaries moved", []*http.Cookie{ck("_sekisho", v0[:chunkSize-4]), ck("_sekisho_1", v0[chunkSize-4:]+v1[:chunkSize-4]), ck("_sekisho_2", v1[chunkSize-4:]+v2)}},
		{"unused bits set", []*http.Cookie{ck("_sekisho", v0), ck("_sekisho_1", v1), ck("_sekisho_2", paddingSet)}},
		{"not base64", []*http.Cookie{ck("_sekisho", "!!!!")}},
		{"empty", []*http.Cookie{ck("_sekisho", "")}},
		{"shorter than a nonce", []*http.Cookie{ck("_sekisho", "AAAA")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Decode(requestWith(tt.cookies...)); !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestCodecNameBinding(t *testing.T) {
	a := newCodec(t, CodecOptions{Name: "a"})
	b := newCodec(t, CodecOptions{Name: "b"})
	p := []byte("bound to a")

	renamed := encode(t, a, p)
	renamed[0].Name = "b"
	if _, err := b.Decode(requestWith(renamed...)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("cookie moved to another name: got %v, want ErrInvalid", err)
	}

	sealed, err := a.Seal(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Open(sealed); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("Open(Seal(p)) = %q, %v", got, err)
	}
	if _, err := b.Open(sealed); !errors.Is(err, ErrInvalid) {
		t.Fatalf("sealed value opened under another name: got %v", err)
	}
	if _, err := a.Decode(requestWith(&http.Cookie{Name: "a", Value: sealed})); !errors.Is(err, ErrInvalid) {
		t.Fatalf("sealed value accepted as a session cookie: got %v", err)
	}
	session := encode(t, a, p)[0].Value
	if _, err := a.Open(session); !errors.Is(err, ErrInvalid) {
		t.Fatalf("session cookie accepted by Open: got %v", err)
	}
	for _, bad := range []string{"", "!!", strings.Repeat("A", chunkSize+4)} {
		if _, err := a.Open(bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("Open(%.10q): got %v, want ErrInvalid", bad, err)
		}
	}
}

func TestCodecTooLarge(t *testing.T) {
	c := newCodec(t, CodecOptions{MaxChunks: 2})
	secret := plaintextOf(2 * chunkSize)
	cookies, err := c.Encode(requestWith(), secret)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	noLeak(t, err, secret, keyA)
	if len(cookies) != 0 {
		t.Fatalf("oversized Encode set cookies: %v", cookies)
	}
	if _, err := c.Seal(secret); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Seal: got %v, want ErrTooLarge", err)
	}

	// Decode refuses more chunks than MaxChunks, even if genuine.
	big := encode(t, newCodec(t, CodecOptions{}), plaintextOf(2*chunkSize))
	if _, err := c.Decode(requestWith(big...)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("3 chunks with MaxChunks 2: got %v, want ErrInvalid", err)
	}
}

func TestCodecClearsStaleChunks(t *testing.T) {
	c := newCodec(t, CodecOptions{})
	old := encode(t, c, plaintextOf(2*chunkSize))
	prev := append(old, &http.Cookie{Name: "other", Value: "keep"}, &http.Cookie{Name: "_sekisho_x", Value: "keep"})

	got := encode(t, c, []byte("small"), prev...)
	byName := map[string]*http.Cookie{}
	for _, ck := range got {
		byName[ck.Name] = ck
	}
	if len(got) != 3 || byName["_sekisho"] == nil || byName["_sekisho"].MaxAge < 0 {
		t.Fatalf("want the new base cookie and two expired chunks, got %v", got)
	}
	for _, n := range []string{"_sekisho_1", "_sekisho_2"} {
		if ck := byName[n]; ck == nil || ck.MaxAge >= 0 || ck.Value != "" {
			t.Fatalf("stale %s not expired: %v", n, ck)
		}
	}
	// What the browser then holds decodes to the new value.
	p, err := c.Decode(requestWith(append(got, prev[3:]...)...))
	if err != nil || string(p) != "small" {
		t.Fatalf("after rewrite: %q, %v", p, err)
	}
}

func TestCodecClear(t *testing.T) {
	c := newCodec(t, CodecOptions{})
	tests := []struct {
		name    string
		carried []*http.Cookie
		want    []string
	}{
		{"three chunks", encode(t, c, plaintextOf(2*chunkSize)), []string{"_sekisho", "_sekisho_1", "_sekisho_2"}},
		{"nothing carried", nil, []string{"_sekisho"}},
		{"stray chunk and others", []*http.Cookie{{Name: "_sekisho_4", Value: "x"}, {Name: "other", Value: "y"}, {Name: "_sekisho_01", Value: "z"}}, []string{"_sekisho", "_sekisho_4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, ck := range c.Clear(requestWith(tt.carried...)) {
				if ck.MaxAge >= 0 {
					t.Fatalf("%s not expired", ck.Name)
				}
				got = append(got, ck.Name)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("cleared %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCodecCookieAttributes(t *testing.T) {
	tests := []struct {
		name string
		opts CodecOptions
		want []string
		not  []string
	}{
		{"defaults", CodecOptions{}, []string{"Path=/", "HttpOnly", "SameSite=Lax"}, []string{"Secure", "Domain=", "Max-Age"}},
		{"secure with lifetime", CodecOptions{Secure: true, MaxAge: time.Hour, Path: "/app", Domain: "example.com"},
			[]string{"Path=/app", "Domain=example.com", "Max-Age=3600", "HttpOnly", "Secure", "SameSite=Lax"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCodec(t, tt.opts)
			cookies, err := c.Encode(requestWith(), []byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			var headers []string
			for _, ck := range append(cookies, c.Clear(requestWith())...) {
				headers = append(headers, ck.String())
			}
			if len(headers) != 2 {
				t.Fatalf("want 2 Set-Cookie headers, got %q", headers)
			}
			for i, h := range headers {
				for _, w := range tt.want {
					if i == 1 && strings.HasPrefix(w, "Max-Age=") {
						continue // the Clear header has Max-Age=0
					}
					if !strings.Contains(h, w) {
						t.Errorf("%q lacks %q", h, w)
					}
				}
				for _, n := range tt.not {
					if strings.Contains(h, n) && !(n == "Max-Age" && strings.Contains(h, "Max-Age=0")) {
						t.Errorf("%q has %q", h, n)
					}
				}
			}
			if !strings.Contains(headers[1], "Max-Age=0") {
				t.Errorf("Clear header %q does not expire the cookie", headers[1])
			}
		})
	}
}

func TestNewCodecErrors(t *testing.T) {
	short := []byte("secret-key-material-31-bytes-xx")
	tests := []struct {
		name string
		opts CodecOptions
		want string
	}{
		{"bad name", CodecOptions{Name: "a b", Keys: [][]byte{keyA}}, "invalid cookie name"},
		{"empty name", CodecOptions{Keys: [][]byte{keyA}}, "invalid cookie name"},
		{"no keys", CodecOptions{Name: "s"}, "no cookie keys"},
		{"short key", CodecOptions{Name: "s", Keys: [][]byte{keyA, short}}, "key 2: must be 32 bytes, got 31"},
		{"negative chunks", CodecOptions{Name: "s", Keys: [][]byte{keyA}, MaxChunks: -1}, "must not be negative"},
		{"too many chunks", CodecOptions{Name: "s", Keys: [][]byte{keyA}, MaxChunks: 17}, "over 16"},
		{"__Host- without Secure", CodecOptions{Name: "__Host-s", Keys: [][]byte{keyA}}, "needs Secure"},
		{"__Host- with Domain", CodecOptions{Name: "__Host-s", Keys: [][]byte{keyA}, Secure: true, Domain: "example.com"}, "no Domain"},
		{"__Secure- without Secure", CodecOptions{Name: "__Secure-s", Keys: [][]byte{keyA}}, "needs Secure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewCodec(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			noLeak(t, err, keyA, short)
		})
	}
	if _, err := NewCodec(CodecOptions{Name: "__Host-s", Keys: [][]byte{keyA}, Secure: true}); err != nil {
		t.Fatalf("valid __Host- cookie refused: %v", err)
	}
}

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	raw := write("raw", keyA)
	hexFile := write("hex", []byte(hex.EncodeToString(keyA)+"\n"))
	b64 := write("b64", []byte(base64.StdEncoding.EncodeToString(keyA)+"\r\n"))
	b64url := write("b64url", []byte(base64.RawURLEncoding.EncodeToString(keyB)))
	multi := write("multi", []byte("# current first\n"+base64.StdEncoding.EncodeToString(keyB)+"\n\n  "+hex.EncodeToString(keyA)+"  \n"))
	badLine := write("bad", []byte(base64.StdEncoding.EncodeToString(keyA)+"\n"+hex.EncodeToString(keyB[:31])+"\n"))
	empty := write("empty", []byte("# nothing\n\n"))

	tests := []struct {
		name    string
		files   []string
		want    [][]byte
		wantErr string
	}{
		{"raw bytes", []string{raw}, [][]byte{keyA}, ""},
		{"hex", []string{hexFile}, [][]byte{keyA}, ""},
		{"base64", []string{b64}, [][]byte{keyA}, ""},
		{"base64url", []string{b64url}, [][]byte{keyB}, ""},
		{"several per file, in order", []string{multi}, [][]byte{keyB, keyA}, ""},
		{"several files, in order", []string{b64url, raw}, [][]byte{keyB, keyA}, ""},
		{"wrong length", []string{badLine}, nil, "line 2: want 32 bytes"},
		{"no key", []string{empty}, nil, "holds no key"},
		{"missing file", []string{filepath.Join(dir, "nope")}, nil, "no such file"},
		{"no files", nil, nil, "no key files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadKeys(tt.files...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want error containing %q", err, tt.wantErr)
				}
				noLeak(t, err, keyA, keyB, keyB[:31])
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("keys differ from the expected ones (%d keys)", len(got))
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	c := newCodec(f, CodecOptions{})
	known := map[string]bool{}
	for _, n := range []int{0, 10, chunkSize} {
		p := plaintextOf(n)
		known[string(p)] = true
		r := requestWith(encode(f, c, p)...)
		f.Add(r.Header.Get("Cookie"))
	}
	f.Add("_sekisho=; _sekisho_1=AAAA")
	f.Add(`_sekisho="AAAA"; _sekisho_9=x`)
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", header)
		p, err := c.Decode(r)
		if err == nil && !known[string(p)] {
			t.Fatalf("Decode accepted a value Encode never produced: %q", header)
		}
		if err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNoSession) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}
