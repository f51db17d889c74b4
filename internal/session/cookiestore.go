package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/sekisho/sekisho/internal/expset"
)

// CookieStore keeps the whole session, encrypted, in the browser's
// cookies, so that replicas share nothing. Signing out revokes the session
// in this process (a bounded list of revoked session IDs, each kept until
// the session would have expired), so a copy of the cookie stops working
// here; other replicas do not know of it, and back-channel logout cannot
// find cookies by OIDC session: use a RedisStore when that is needed.
type CookieStore struct {
	codec   *Codec
	opts    StoreOptions
	decoded *decodedCache
	revoked *expset.Set
	log     *slog.Logger
}

var _ Store = (*CookieStore)(nil)

// NewCookieStore returns a store writing sessions through c.
func NewCookieStore(c *Codec, o StoreOptions) *CookieStore {
	o = o.withDefaults()
	return &CookieStore{
		codec:   c,
		opts:    o,
		decoded: newDecodedCache(o.Cache, o.Now, o.OnCache),
		revoked: expset.New(revokedSetSize, o.Now),
		log:     o.Logger,
	}
}

// Revocations is the list of sessions signed out at a cookie store. A
// reload that builds a new store hands it the list of the store it
// replaces (UseRevocations), so that signed-out cookies, sealed with the
// same keys, do not become valid again.
type Revocations struct{ set *expset.Set }

// Revocations returns the list of sessions signed out at s.
func (s *CookieStore) Revocations() *Revocations {
	return &Revocations{set: s.revoked}
}

// UseRevocations makes s honour the sign-outs in r and record later ones
// there, shared with every store using r. Call it before s is used.
func (s *CookieStore) UseRevocations(r *Revocations) {
	if r != nil {
		s.revoked = r.set
	}
}

// Load decrypts the request's session and enforces its lifetime.
func (s *CookieStore) Load(_ context.Context, r *http.Request) (*Session, error) {
	// The same Cookie header always decrypts to the same session: remember
	// it, so a browser's requests cost a hash and a compare instead of
	// cookie parsing, an AEAD open and a JSON decode.
	raw := r.Header["Cookie"]
	sess, ok := s.decoded.get(raw)
	if !ok {
		values, err := s.codec.chunkValues(r)
		if err != nil {
			return nil, err
		}
		plain, err := s.codec.openChunks(values)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(plain, &sess); err != nil {
			return nil, ErrInvalid
		}
		if cacheable(raw, values) {
			s.decoded.put(raw, sess)
		}
	}
	if err := s.opts.check(&sess); err != nil {
		return nil, err
	}
	// After the decoded cache, so a cached entry never outlives sign-out.
	if s.revoked.Has(sess.ID) {
		return nil, ErrRevoked
	}
	return &sess, nil
}

// maxOtherCookieBytes is how much of a cached Cookie header may be other
// cookies than the session's own.
const maxOtherCookieBytes = 4 << 10

// cacheable reports whether a Cookie header is small enough, next to the
// session chunks it carries, to be kept as a decoded-cache key: the cache
// holds whole headers, and one signed-in browser padding its Cookie header
// with junk that changes per request must not make every entry tens of KB.
func cacheable(raw, chunks []string) bool {
	size := 0
	for _, v := range raw {
		size += len(v)
	}
	for _, v := range chunks {
		size -= len(v)
	}
	return size <= maxOtherCookieBytes
}

// Save fills in missing timestamps on sess and returns it as cookies.
func (s *CookieStore) Save(_ context.Context, r *http.Request, sess *Session) ([]*http.Cookie, error) {
	if err := s.opts.prepare(sess); err != nil {
		return nil, err
	}
	plain, err := json.Marshal(sess)
	if err != nil {
		return nil, fmt.Errorf("session: encoding: %w", err)
	}
	cookies, err := s.codec.Encode(r, plain)
	if err != nil {
		return nil, fmt.Errorf("session: writing cookie: %w", err)
	}
	return cookies, nil
}

// Delete clears the session cookies and revokes the request's session in
// this process until it would have expired, so that a copy of the cookie
// is refused from now on.
func (s *CookieStore) Delete(ctx context.Context, r *http.Request) ([]*http.Cookie, error) {
	cookies := s.codec.Clear(r)
	sess, err := s.Load(ctx, r)
	if err != nil {
		return cookies, nil // nothing valid to revoke
	}
	if s.revoked.Add(sess.ID, s.opts.end(sess)) {
		s.log.Warn("the list of signed-out sessions is full; the one closest to expiry was dropped and its cookie works again until it expires",
			"size", revokedSetSize)
	}
	return cookies, nil
}

// revokedSetSize bounds the signed-out session IDs a cookie store
// remembers (a few MB); only signed-in users add to it, one entry per
// sign-out, each kept until the session would have expired anyway.
const revokedSetSize = 65536

// errCannotRevoke tells a back-channel logout that it has no effect here.
var errCannotRevoke = fmt.Errorf("session: the cookie store cannot revoke sessions (use a redis:// session store): %w", errors.ErrUnsupported)

// RevokeSID fails with errors.ErrUnsupported: cookies cannot be recalled.
func (s *CookieStore) RevokeSID(context.Context, string, string) error { return errCannotRevoke }

// RevokeSubject fails with errors.ErrUnsupported: cookies cannot be recalled.
func (s *CookieStore) RevokeSubject(context.Context, string, string) error { return errCannotRevoke }
