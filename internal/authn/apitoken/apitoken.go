// Package apitoken authenticates bearer API tokens against a file of token
// hashes, so that the file holding them grants nothing if it leaks.
//
// Tokens are stored as unsalted SHA-256 digests. That is right for API
// tokens, which are high-entropy random values (Generate makes 256-bit
// ones): guessing a preimage is as hard as guessing the token, and a fast
// hash keeps authentication off the hot path's budget. It is wrong for
// passwords: a low-entropy secret such as a password must never be used as
// a token, because its SHA-256 digest is cheap to brute-force.
package apitoken

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/sekisho/sekisho/internal/identity"
)

// Entry is one token in the tokens file.
type Entry struct {
	// Name identifies the token in policies (tokens: [name]) and logs.
	Name string `yaml:"name"`
	// Hash is "sha256:<64 hex digits>", the output of `sekisho token hash`.
	Hash   string   `yaml:"hash"`
	Groups []string `yaml:"groups"`
	// Expires, when set, is the instant from which the token is refused.
	Expires *time.Time `yaml:"expires"`
}

// Errors Authenticate returns; neither says anything about the token.
var (
	ErrUnknownToken = errors.New("unknown api token")
	ErrExpired      = errors.New("api token expired")
)

const (
	hashPrefix = "sha256:"
	// indexLen is how many leading digest bytes the lookup index uses; the
	// rest of the digest is compared in constant time.
	indexLen = 8
)

var (
	validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	// otherHash recognises other hash formats ("$2y$...", "argon2id:...").
	otherHash = regexp.MustCompile(`^(\$|[a-z0-9-]+:)`)
	// yamlValue is how YAML decoding errors quote the offending value.
	yamlValue = regexp.MustCompile("`[^`]*`")
)

type token struct {
	digest  [sha256.Size]byte
	expires *time.Time
	id      *identity.Identity
}

// Store is an immutable set of tokens, safe for concurrent use.
type Store struct {
	byPrefix map[[indexLen]byte]*token
}

// Load reads a tokens file; see Parse.
func Load(path string) (*Store, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading api tokens: %w", err)
	}
	return Parse(data, path)
}

// Parse reads a YAML list of Entry. It is strict, because a mistyped key
// (expiry: for expires:) must not silently make a token immortal: unknown
// keys, duplicate names or hashes and malformed hashes are errors, reported
// with source and line. An empty document is an empty store.
func Parse(data []byte, source string) (*Store, error) {
	entries, lines, err := decode(data, source)
	if err != nil {
		return nil, err
	}
	s := &Store{byPrefix: make(map[[indexLen]byte]*token, len(entries))}
	var errs []error
	names := map[string]int{} // name → line
	for i, e := range entries {
		where := fmt.Sprintf("%s:%d: tokens[%d]", source, lines[i], i)
		if e.Name != "" {
			where += fmt.Sprintf(" (%s)", e.Name)
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
		}
		switch first, dup := names[e.Name]; {
		case !validName.MatchString(e.Name):
			bad("name must be letters, digits, '.', '_' or '-', starting with a letter or digit")
		case dup:
			bad("duplicate name, first at line %d", first)
		default:
			names[e.Name] = lines[i]
		}
		for _, g := range e.Groups {
			if g == "" {
				bad("empty group name")
			}
		}
		digest, err := parseHash(e.Hash)
		if err != nil {
			bad("%v", err)
			continue
		}
		key := [indexLen]byte(digest[:indexLen])
		switch other, clash := s.byPrefix[key]; {
		case clash && other.digest == digest:
			bad("same hash as token %q; every token needs its own secret", other.id.TokenName)
		case clash:
			bad("hash shares its first %d bytes with token %q; generate a new token", indexLen, other.id.TokenName)
		default:
			s.byPrefix[key] = newToken(e, digest)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// decode strictly decodes the entries and returns the line each starts on.
func decode(data []byte, source string) ([]Entry, []int, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", source, err)
	}
	if len(root.Content) == 0 || root.Content[0].Tag == "!!null" {
		return nil, nil, nil
	}
	list := root.Content[0]
	if list.Kind != yaml.SequenceNode {
		return nil, nil, fmt.Errorf("%s:%d: expected a list of tokens (- name: ..., hash: sha256:...)", source, list.Line)
	}
	lines := make([]int, len(list.Content))
	// time.Time reports a bad value without its line and with the value
	// itself, so expiry times are checked here first.
	var errs []error
	for i, item := range list.Content {
		lines[i] = item.Line
		if line, ok := badExpiry(item); ok {
			errs = append(errs, fmt.Errorf("%s:%d: tokens[%d]: expires must be a date or RFC 3339 time, e.g. 2026-12-31 or 2026-12-31T09:00:00Z", source, line, i))
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var entries []Entry
	if err := dec.Decode(&entries); err != nil {
		// The offending value may be a plaintext token (a list of bare
		// tokens is a likely mistake), so it is not repeated.
		return nil, nil, fmt.Errorf("%s: %s", source, yamlValue.ReplaceAllString(err.Error(), "(value hidden)"))
	}
	if err := dec.Decode(new(yaml.Node)); err != io.EOF {
		return nil, nil, fmt.Errorf("%s: more than one YAML document; put every token in one list", source)
	}
	return entries, lines, nil
}

// badExpiry returns the line of an entry's expires value that does not
// decode as a time.
func badExpiry(item *yaml.Node) (int, bool) {
	if item.Kind != yaml.MappingNode {
		return 0, false
	}
	for i := 0; i+1 < len(item.Content); i += 2 {
		if k, v := item.Content[i], item.Content[i+1]; k.Value == "expires" {
			var t time.Time
			if err := v.Decode(&t); err != nil {
				return v.Line, true
			}
		}
	}
	return 0, false
}

func newToken(e Entry, digest [sha256.Size]byte) *token {
	groups := append([]string{}, e.Groups...)
	name := "token:" + e.Name
	return &token{
		digest:  digest,
		expires: e.Expires,
		id: &identity.Identity{
			Subject:   name,
			Username:  name,
			Groups:    groups,
			Method:    identity.MethodAPIToken,
			Kind:      identity.KindService,
			TokenName: e.Name,
		},
	}
}

// parseHash decodes "sha256:<hex>". Its errors never repeat the value: a
// value that is not a hash is most likely the token itself.
func parseHash(h string) ([sha256.Size]byte, error) {
	var digest [sha256.Size]byte
	hexDigits, ok := strings.CutPrefix(h, hashPrefix)
	switch {
	case h == "":
		return digest, errors.New("hash is missing; put the output of `sekisho token hash` here")
	case !ok && otherHash.MatchString(h):
		return digest, errors.New(`unsupported hash: only "sha256:<64 hex digits>" from ` + "`sekisho token hash`" + ` is accepted`)
	case !ok:
		return digest, errors.New("hash looks like a plaintext token: never store tokens in plaintext; " +
			"rotate this token, then put the output of `sekisho token hash` here")
	}
	if len(hexDigits) != hex.EncodedLen(sha256.Size) {
		return digest, fmt.Errorf("hash must be sha256: followed by %d hex digits", hex.EncodedLen(sha256.Size))
	}
	if _, err := hex.Decode(digest[:], []byte(hexDigits)); err != nil {
		return digest, errors.New("hash must be sha256: followed by hex digits (0-9, a-f)")
	}
	return digest, nil
}

// Authenticate returns the identity of a presented token: Method api_token,
// Kind service, Username and Subject "token:<name>" (the prefix keeps token
// names apart from people's usernames in policy and upstream headers),
// TokenName the name and Groups from the file. The identity is shared
// between requests and must not be modified.
//
// The lookup indexes on a prefix of the token's digest and confirms the full
// digest in constant time, so timing reveals at most which digest prefixes
// exist, nothing about any token.
func (s *Store) Authenticate(token string, now time.Time) (*identity.Identity, error) {
	digest := sha256.Sum256([]byte(token))
	t, ok := s.byPrefix[[indexLen]byte(digest[:indexLen])]
	if !ok || subtle.ConstantTimeCompare(digest[:], t.digest[:]) != 1 {
		return nil, ErrUnknownToken
	}
	if t.expires != nil && !now.Before(*t.expires) {
		return nil, fmt.Errorf("api token %q expired at %s: %w", t.id.TokenName, t.expires.UTC().Format(time.RFC3339), ErrExpired)
	}
	return t.id, nil
}

// Hash returns the form a token is stored in, "sha256:<hex>". The caller
// (`sekisho token hash`) reads the secret from stdin and trims one trailing
// newline first.
func Hash(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hashPrefix + hex.EncodeToString(sum[:])
}

// Generate returns a new random token: "skt_" and 32 random bytes in
// base64url. The prefix lets secret scanners recognise leaked tokens.
func Generate() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating api token: %w", err)
	}
	return "skt_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}
