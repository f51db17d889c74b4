package kubelogin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// cacheVersion is bumped when the entry's meaning changes; an entry of
// another version is ignored (a new login replaces it).
const cacheVersion = 1

// maxCacheFile bounds what is read from disk: an entry is a few tokens.
const maxCacheFile = 1 << 20

// cacheKey names one cache entry: tokens are only reused for the same
// issuer, client and requested scopes.
type cacheKey struct {
	Issuer   string   `json:"issuer"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"`
}

func newCacheKey(issuer, clientID string, extraScopes []string) cacheKey {
	s := slices.Clone(extraScopes)
	slices.Sort(s)
	return cacheKey{Issuer: issuer, ClientID: clientID, Scopes: slices.Compact(s)}
}

// file is the entry's file name: a hash, so that issuer URLs need no escaping.
func (k cacheKey) file() string {
	h := sha256.New()
	for _, p := range append([]string{k.Issuer, k.ClientID}, k.Scopes...) {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (k cacheKey) equal(o cacheKey) bool {
	return k.Issuer == o.Issuer && k.ClientID == o.ClientID && slices.Equal(k.Scopes, o.Scopes)
}

// cacheEntry is what one login leaves on disk.
type cacheEntry struct {
	Version int `json:"version"`
	cacheKey
	IDToken           string    `json:"id_token,omitempty"`
	IDTokenExpiry     time.Time `json:"id_token_expiry"`
	AccessToken       string    `json:"access_token,omitempty"`
	AccessTokenExpiry time.Time `json:"access_token_expiry"`
	RefreshToken      string    `json:"refresh_token,omitempty"`
}

// token returns the credential of type tt and its expiry.
func (e *cacheEntry) token(tt string) (string, time.Time) {
	if tt == TokenTypeAccess {
		return e.AccessToken, e.AccessTokenExpiry
	}
	return e.IDToken, e.IDTokenExpiry
}

// decodeCacheEntry parses an entry read from disk. The file may be
// truncated, edited or written by another version: any error means "not
// cached", never a crash.
func decodeCacheEntry(b []byte, want cacheKey) (*cacheEntry, error) {
	if len(b) > maxCacheFile {
		return nil, errors.New("cache entry is too large")
	}
	var e cacheEntry
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("cache entry is not valid JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("cache entry has trailing data")
	}
	switch {
	case e.Version != cacheVersion:
		return nil, fmt.Errorf("cache entry has version %d, want %d", e.Version, cacheVersion)
	case !e.cacheKey.equal(want):
		return nil, errors.New("cache entry belongs to another issuer, client or scope set")
	case e.IDToken == "" && e.AccessToken == "" && e.RefreshToken == "":
		return nil, errors.New("cache entry holds no token")
	}
	return &e, nil
}

// cache is the directory of entries: one JSON file per key (0600), and a
// lock file beside it so that concurrent kubectl processes log in once.
type cache struct{ dir string }

func (c cache) path(k cacheKey) string { return filepath.Join(c.dir, k.file()+".json") }

// ensureDir creates the directory 0700, and narrows it to 0700 if it is
// wider: tokens are as good as a password for their lifetime.
func (c cache) ensureDir() error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	fi, err := os.Stat(c.dir)
	if err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(c.dir, 0o700); err != nil {
			return fmt.Errorf("token cache: narrowing %s to 0700: %w", c.dir, err)
		}
	}
	return nil
}

// load returns the entry for k, nil when there is none. A corrupt entry is
// reported as an error of its own so the caller can say why it logs in again.
func (c cache) load(k cacheKey) (*cacheEntry, error) {
	f, err := os.Open(c.path(k))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("token cache: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCacheFile+1))
	if err != nil {
		return nil, fmt.Errorf("token cache: reading %s: %w", f.Name(), err)
	}
	e, err := decodeCacheEntry(b, k)
	if err != nil {
		return nil, fmt.Errorf("token cache: %s: %w", f.Name(), err)
	}
	return e, nil
}

// save writes the entry atomically (a temporary file renamed over the old
// one), so a reader never sees half an entry.
func (c cache) save(e *cacheEntry) error {
	if err := c.ensureDir(); err != nil {
		return err
	}
	e.Version = cacheVersion
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	tmp, err := os.CreateTemp(c.dir, ".entry-*") // 0600
	if err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("token cache: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("token cache: writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("token cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.path(e.cacheKey)); err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	return nil
}

// remove deletes the entry for k; a missing entry is not an error.
func (c cache) remove(k cacheKey) (bool, error) {
	err := os.Remove(c.path(k))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("token cache: %w", err)
	}
	return true, nil
}

// lockPath is the lock file of k's entry; it stays on disk (removing it
// would let two processes lock two different files).
func (c cache) lockPath(k cacheKey) string {
	return filepath.Join(c.dir, k.file()+".lock")
}

// defaultCacheDir is os.UserCacheDir()/sekisho/kube-login.
func defaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("token cache: no user cache directory (set --cache-dir): %w", err)
	}
	return filepath.Join(d, "sekisho", "kube-login"), nil
}
