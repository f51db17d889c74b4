package session

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// chunkSize is the longest cookie value written. Browsers keep about 4096
// bytes per cookie including the name and attributes; 3800 leaves room.
const chunkSize = 3800

// maxChunksLimit bounds MaxChunks: 16 chunks is already a 60 KB Cookie header.
const maxChunksLimit = 16

// cookieEncoding is strict so that a ciphertext has exactly one spelling:
// a cookie that differs in any bit is refused, not silently read the same.
var cookieEncoding = base64.RawURLEncoding.Strict()

// KeySize is the length of a session key. A key file holds keys of exactly
// this size so that a truncated or mistyped key is refused, not padded.
const KeySize = chacha20poly1305.KeySize

// ErrTooLarge means a value does not fit in MaxChunks cookies; the login
// must fail clearly rather than write a cookie the browser will drop.
var ErrTooLarge = errors.New("session: value too large for the cookie limit")

// CodecOptions configures the session cookies.
type CodecOptions struct {
	// Name is the cookie base name; chunks are Name, Name_1, Name_2, ...
	Name string
	// Keys are 32-byte keys: the first encrypts, all decrypt, so a key can
	// be rotated in without logging everyone out.
	Keys [][]byte
	// Secure marks the cookies HTTPS-only; set it on HTTPS listeners.
	Secure bool
	// Path defaults to "/".
	Path string
	// Domain is optional; empty means host-only cookies.
	Domain string
	// MaxAge is the cookie lifetime; zero makes browser-session cookies.
	MaxAge time.Duration
	// MaxChunks caps the number of cookies (default 5), bounding both what
	// Encode writes and what Decode is willing to read.
	MaxChunks int
}

// Codec encrypts values into chunked, authenticated cookies. The cookie
// name and chunk count are bound into the ciphertext, so a value cannot be
// moved to another cookie or have chunks dropped, swapped or reordered.
type Codec struct {
	name      string
	aeads     []cipher.AEAD
	secure    bool
	path      string
	domain    string
	maxAge    int
	maxChunks int
}

// NewCodec validates o and prepares the ciphers.
func NewCodec(o CodecOptions) (*Codec, error) {
	if (&http.Cookie{Name: o.Name, Value: "x"}).Valid() != nil {
		return nil, fmt.Errorf("session: invalid cookie name %q", o.Name)
	}
	if len(o.Keys) == 0 {
		return nil, errors.New("session: no cookie keys")
	}
	c := &Codec{
		name:      o.Name,
		secure:    o.Secure,
		path:      o.Path,
		domain:    o.Domain,
		maxAge:    int(o.MaxAge / time.Second),
		maxChunks: o.MaxChunks,
	}
	if c.path == "" {
		c.path = "/"
	}
	if c.maxChunks == 0 {
		c.maxChunks = 5
	}
	if c.maxChunks < 0 || o.MaxAge < 0 {
		return nil, errors.New("session: MaxChunks and MaxAge must not be negative")
	}
	if c.maxChunks > maxChunksLimit {
		return nil, fmt.Errorf("session: MaxChunks %d is over %d: proxies and servers refuse Cookie headers that large", c.maxChunks, maxChunksLimit)
	}
	if strings.HasPrefix(c.name, "__Secure-") && !c.secure {
		return nil, fmt.Errorf("session: cookie %q needs Secure (browsers drop it otherwise)", c.name)
	}
	if strings.HasPrefix(c.name, "__Host-") && (!c.secure || c.domain != "" || c.path != "/") {
		return nil, fmt.Errorf("session: cookie %q needs Secure, Path \"/\" and no Domain (browsers drop it otherwise)", c.name)
	}
	for i, k := range o.Keys {
		aead, err := chacha20poly1305.NewX(k)
		if err != nil {
			return nil, fmt.Errorf("session: key %d: must be %d bytes, got %d", i+1, KeySize, len(k))
		}
		c.aeads = append(c.aeads, aead)
	}
	return c, nil
}

// chunkName is the cookie name of chunk i (0 is the base name).
func (c *Codec) chunkName(i int) string {
	if i == 0 {
		return c.name
	}
	return c.name + "_" + strconv.Itoa(i)
}

// chunkIndex reports which chunk of ours a cookie name is, if any.
func (c *Codec) chunkIndex(name string) (int, bool) {
	if name == c.name {
		return 0, true
	}
	rest, ok := strings.CutPrefix(name, c.name+"_")
	if !ok || rest == "" || rest[0] == '0' || rest[0] == '+' {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	return i, err == nil && i > 0
}

func (c *Codec) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     c.path,
		Domain:   c.domain,
		MaxAge:   maxAge,
		Secure:   c.secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

// additionalData binds a ciphertext to its use: the cookie name and, for
// chunked cookies, the number of chunks.
func (c *Codec) additionalData(kind string, chunks int) []byte {
	return []byte("sekisho/" + kind + "/v1\x00" + c.name + "\x00" + strconv.Itoa(chunks))
}

func (c *Codec) seal(plaintext, ad []byte) []byte {
	aead := c.aeads[0]
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	rand.Read(out) // since Go 1.24 it cannot fail: it crashes the program instead
	return aead.Seal(out, out, plaintext, ad)
}

func (c *Codec) open(sealed, ad []byte) ([]byte, error) {
	for _, aead := range c.aeads {
		if len(sealed) < aead.NonceSize()+aead.Overhead() {
			return nil, ErrInvalid
		}
		nonce, ct := sealed[:aead.NonceSize()], sealed[aead.NonceSize():]
		if p, err := aead.Open(nil, nonce, ct, ad); err == nil {
			return p, nil
		}
	}
	return nil, ErrInvalid
}

// sealedLen is the base64 length of a sealed plaintext of n bytes.
func sealedLen(n int) int {
	return cookieEncoding.EncodedLen(chacha20poly1305.NonceSizeX + n + chacha20poly1305.Overhead)
}

// Encode encrypts plaintext into the session cookies for the response,
// followed by cookies that expire chunks left on the browser by an
// earlier, larger value. It returns them rather than writing them, so that
// every caller (the login handlers, the gateway, the decision service)
// relays them its own way.
func (c *Codec) Encode(r *http.Request, plaintext []byte) ([]*http.Cookie, error) {
	size := sealedLen(len(plaintext))
	n := (size + chunkSize - 1) / chunkSize
	if n > c.maxChunks {
		return nil, fmt.Errorf("%w: %d bytes encoded, limit %d cookies of %d bytes", ErrTooLarge, size, c.maxChunks, chunkSize)
	}
	value := cookieEncoding.EncodeToString(c.seal(plaintext, c.additionalData("chunks", n)))
	cookies := make([]*http.Cookie, 0, n+1)
	for i := range n {
		cookies = append(cookies, c.cookie(c.chunkName(i), value[i*chunkSize:min(len(value), (i+1)*chunkSize)], c.maxAge))
	}
	return c.clear(cookies, r, n), nil
}

// Decode returns the plaintext of the request's session cookies. It
// returns ErrNoSession when there is no session cookie and ErrInvalid for
// anything else that is wrong with them.
func (c *Codec) Decode(r *http.Request) ([]byte, error) {
	values, err := c.chunkValues(r)
	if err != nil {
		return nil, err
	}
	return c.openChunks(values)
}

// chunkValues returns the values of the request's session cookie chunks, in
// order, checked for count and size but not yet decrypted.
func (c *Codec) chunkValues(r *http.Request) ([]string, error) {
	// Parse the Cookie header once; chunks[i] is the first cookie named
	// like chunk i, up to one past the limit.
	chunks := make([]string, c.maxChunks+1)
	found := make([]bool, c.maxChunks+1)
	for _, ck := range r.Cookies() {
		if i, ok := c.chunkIndex(ck.Name); ok && i <= c.maxChunks && !found[i] {
			chunks[i], found[i] = ck.Value, true
		}
	}
	if !found[0] {
		return nil, ErrNoSession
	}
	n := 0
	for ; n <= c.maxChunks && found[n]; n++ {
		if len(chunks[n]) > chunkSize {
			return nil, ErrInvalid
		}
	}
	if n > c.maxChunks {
		return nil, ErrInvalid
	}
	return chunks[:n], nil
}

// openChunks decodes and decrypts chunk values.
func (c *Codec) openChunks(values []string) ([]byte, error) {
	n, size := len(values), 0
	for _, v := range values {
		size += len(v)
	}
	// Every chunk but the last is full, as Encode writes them, so each
	// decodes on its own.
	sealed := make([]byte, 0, cookieEncoding.DecodedLen(size))
	for i, v := range values {
		if i < n-1 && len(v) != chunkSize {
			return nil, ErrInvalid
		}
		var err error
		if sealed, err = cookieEncoding.AppendDecode(sealed, []byte(v)); err != nil {
			return nil, ErrInvalid
		}
	}
	return c.open(sealed, c.additionalData("chunks", n))
}

// Clear returns the cookies that expire every session cookie chunk the
// request carries.
func (c *Codec) Clear(r *http.Request) []*http.Cookie {
	return c.clear(nil, r, 0)
}

// clear appends to cookies the expiry of the request's chunks numbered
// from on, and of the base cookie when from is 0 even if the request does
// not carry it.
func (c *Codec) clear(cookies []*http.Cookie, r *http.Request, from int) []*http.Cookie {
	if from == 0 {
		cookies = append(cookies, c.cookie(c.name, "", -1))
	}
	seen := map[string]bool{c.name: true}
	for _, ck := range r.Cookies() {
		if i, ok := c.chunkIndex(ck.Name); ok && i >= from && !seen[ck.Name] {
			seen[ck.Name] = true
			cookies = append(cookies, c.cookie(ck.Name, "", -1))
		}
	}
	return cookies
}

// Seal encrypts a short value for a cookie of its own (login state). It is
// bound to this codec's name and cannot be replayed as a session cookie.
func (c *Codec) Seal(plaintext []byte) (string, error) {
	if size := sealedLen(len(plaintext)); size > chunkSize {
		return "", fmt.Errorf("%w: %d bytes encoded, limit %d", ErrTooLarge, size, chunkSize)
	}
	return cookieEncoding.EncodeToString(c.seal(plaintext, c.additionalData("seal", 1))), nil
}

// Open decrypts a value made by Seal; anything else is ErrInvalid.
func (c *Codec) Open(value string) ([]byte, error) {
	if len(value) > chunkSize {
		return nil, ErrInvalid
	}
	sealed, err := cookieEncoding.DecodeString(value)
	if err != nil {
		return nil, ErrInvalid
	}
	return c.open(sealed, c.additionalData("seal", 1))
}

// LoadKeys reads session keys from files, the first key of the first file
// being the current one. A file is either exactly 32 raw bytes or text
// with one key per line in base64 or hex (blank lines and #-comments are
// skipped), so keys can be rotated by prepending a line.
func LoadKeys(files ...string) ([][]byte, error) {
	var keys [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("session: reading key file: %w", err)
		}
		if len(data) == KeySize {
			keys = append(keys, data)
			continue
		}
		found := false
		for i, line := range bytes.Split(data, []byte("\n")) {
			line = bytes.TrimSpace(line)
			if len(line) == 0 || line[0] == '#' {
				continue
			}
			k, ok := parseKey(string(line))
			if !ok {
				return nil, fmt.Errorf("session: key file %s line %d: want %d bytes as raw bytes, base64 or hex; got %d characters that are none of these", f, i+1, KeySize, len(line))
			}
			keys = append(keys, k)
			found = true
		}
		if !found {
			return nil, fmt.Errorf("session: key file %s holds no key", f)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("session: no key files given")
	}
	return keys, nil
}

func parseKey(s string) ([]byte, bool) {
	for _, dec := range []func(string) ([]byte, error){
		hex.DecodeString,
		base64.StdEncoding.DecodeString,
		base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString,
		base64.RawURLEncoding.DecodeString,
	} {
		if k, err := dec(s); err == nil && len(k) == KeySize {
			return k, true
		}
	}
	return nil, false
}
