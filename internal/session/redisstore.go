package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis key prefixes. Keys hold hashes, never tickets: a dump of Redis does
// not hand out cookies.
const (
	sessionPrefix = "sekisho:session:"
	sidPrefix     = "sekisho:sid:"
	subPrefix     = "sekisho:sub:"
	ticketSize    = 32
)

// RedisStore keeps sessions in Redis behind an opaque ticket in the cookie:
// cookies stay small and sessions can be revoked (sign-out everywhere,
// back-channel logout). Every Redis failure is ErrUnavailable, and each
// request tries again, so Redis coming back needs no restart.
type RedisStore struct {
	client *redis.Client
	codec  *Codec
	opts   StoreOptions
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore connects to a redis:// or rediss:// URL and checks that
// Redis answers; when it does not, the store is returned anyway with an
// error wrapping ErrUnavailable, and works once Redis is up. Timeouts are short (dial 1s, read/write 500ms) unless the
// URL sets them, and failures are not retried, so a dead Redis costs a
// request at most about a second.
func NewRedisStore(ctx context.Context, rawURL string, c *Codec, o StoreOptions) (*RedisStore, error) {
	// The URL may hold a password: no error below may quote it.
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return nil, errors.New("session: store URL must look like redis://[user:password@]host:port/db (or rediss:// for TLS)")
	}
	ro, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("session: store URL: %w", err)
	}
	if ro.DialTimeout == 0 {
		ro.DialTimeout = time.Second
	}
	if ro.ReadTimeout == 0 {
		ro.ReadTimeout = 500 * time.Millisecond
	}
	if ro.WriteTimeout == 0 {
		ro.WriteTimeout = 500 * time.Millisecond
	}
	if ro.PoolTimeout == 0 {
		ro.PoolTimeout = time.Second
	}
	if ro.MaxRetries == 0 {
		// Fail fast: the next request tries again, and the pool already
		// drops connections Redis closed.
		ro.MaxRetries = -1
	}
	if ro.DialerRetries == 0 {
		ro.DialerRetries = 1
	}
	client := redis.NewClient(ro)
	store := &RedisStore{client: client, codec: c, opts: o.withDefaults()}
	if err := client.Ping(ctx).Err(); err != nil {
		// The store is usable as soon as Redis answers: a gateway starting
		// before its Redis must not refuse to start, only fail closed.
		return store, unavailable("connecting to "+ro.Addr, err)
	}
	return store, nil
}

// Shared reports that sessions live server-side, visible to every replica:
// the login service then stores refreshed sessions at once.
func (s *RedisStore) Shared() bool { return true }

// Close releases the connections.
func (s *RedisStore) Close() error { return s.client.Close() }

func unavailable(op string, err error) error {
	return fmt.Errorf("session: redis %s: %w: %w", op, ErrUnavailable, err)
}

func sessionKey(ticket []byte) string {
	h := sha256.Sum256(ticket)
	return sessionPrefix + hex.EncodeToString(h[:])
}

func indexKey(prefix, issuer, value string) string {
	h := sha256.Sum256([]byte(issuer + "|" + value))
	return prefix + hex.EncodeToString(h[:])
}

// indexKeys are the revocation sets a session belongs to.
func indexKeys(sess *Session) []string {
	var keys []string
	if sess.SID != "" {
		keys = append(keys, indexKey(sidPrefix, sess.Identity.Issuer, sess.SID))
	}
	if sess.Identity.Subject != "" {
		keys = append(keys, indexKey(subPrefix, sess.Identity.Issuer, sess.Identity.Subject))
	}
	return keys
}

// ticket returns the request's authenticated ticket and the ID of the
// session it was issued for. The ID rides along (encrypted) so that Save
// can tell an update of the same login from a new one without asking Redis.
func (s *RedisStore) ticket(r *http.Request) (ticket []byte, id string, err error) {
	plain, err := s.codec.Decode(r)
	if err != nil {
		return nil, "", err
	}
	if len(plain) <= ticketSize {
		return nil, "", ErrInvalid
	}
	return plain[:ticketSize], string(plain[ticketSize:]), nil
}

// get reads a session; a genuine ticket whose session is gone was revoked,
// signed out or has expired.
func (s *RedisStore) get(ctx context.Context, key string) (*Session, error) {
	data, err := s.client.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrRevoked
	}
	if err != nil {
		return nil, unavailable("get", err)
	}
	var sess Session
	if err := json.Unmarshal(data, &sess); err != nil {
		return nil, ErrInvalid
	}
	return &sess, nil
}

// Load returns the session the request's ticket points to. A valid ticket
// whose session is no longer in Redis is ErrRevoked.
func (s *RedisStore) Load(ctx context.Context, r *http.Request) (*Session, error) {
	ticket, id, err := s.ticket(r)
	if err != nil {
		return nil, err
	}
	sess, err := s.get(ctx, sessionKey(ticket))
	if err != nil {
		return nil, err
	}
	if sess.ID != id {
		return nil, ErrInvalid
	}
	if err := s.opts.check(sess); err != nil {
		return nil, err
	}
	return sess, nil
}

// Save writes sess. Saving the session the request's ticket was issued for
// (same ID) updates it in place, without a new cookie and without
// resurrecting it if it was revoked meanwhile (ErrRevoked). Any other save
// is a new login: it gets a fresh ticket, so a planted cookie is never
// promoted to a session (fixation), and the request's previous session is
// deleted.
func (s *RedisStore) Save(ctx context.Context, r *http.Request, sess *Session) ([]*http.Cookie, error) {
	if err := s.opts.prepare(sess); err != nil {
		return nil, err
	}
	data, err := json.Marshal(sess)
	if err != nil {
		return nil, fmt.Errorf("session: encoding: %w", err)
	}
	ttl := sess.ExpiresAt.Sub(s.opts.Now())

	if old, id, err := s.ticket(r); err == nil {
		key := sessionKey(old)
		if id == sess.ID {
			return nil, s.update(ctx, key, sess, data, ttl)
		}
		prev, err := s.get(ctx, key)
		if errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		if err == nil {
			if err := s.remove(ctx, key, prev); err != nil {
				return nil, err
			}
		}
	}

	ticket := make([]byte, ticketSize)
	rand.Read(ticket)
	key := sessionKey(ticket)
	_, err = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, data, ttl)
		for _, idx := range indexKeys(sess) {
			p.SAdd(ctx, idx, key)
			// Every member lives at most TTL from now, so the set outlives them.
			p.Expire(ctx, idx, s.opts.TTL)
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("save", err)
	}
	cookies, err := s.codec.Encode(r, append(ticket, sess.ID...))
	if err != nil {
		return nil, fmt.Errorf("session: writing cookie: %w", err)
	}
	return cookies, nil
}

// update rewrites a session in place (same ticket), never resurrecting
// one revoked meanwhile (ErrRevoked). When the session's revocation keys
// changed — a refresh brought a new OIDC sid — the indexes follow in the
// same transaction: the key joins the new sets and leaves the old, so a
// back-channel logout for the new sid finds it and one for the old sid no
// longer does.
func (s *RedisStore) update(ctx context.Context, key string, sess *Session, data []byte, ttl time.Duration) error {
	prev, err := s.get(ctx, key)
	if err != nil {
		return err // ErrRevoked when it is gone
	}
	oldIdx, newIdx := indexKeys(prev), indexKeys(sess)
	var set *redis.StatusCmd
	_, err = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		set = p.SetArgs(ctx, key, data, redis.SetArgs{Mode: "XX", TTL: ttl})
		for _, idx := range newIdx {
			if !slices.Contains(oldIdx, idx) {
				p.SAdd(ctx, idx, key)
				p.Expire(ctx, idx, s.opts.TTL)
			}
		}
		for _, idx := range oldIdx {
			if !slices.Contains(newIdx, idx) {
				p.SRem(ctx, idx, key)
			}
		}
		return nil
	})
	if set != nil && errors.Is(set.Err(), redis.Nil) {
		// Revoked between the read and the write; an index entry added
		// above points at nothing and is harmless.
		return ErrRevoked
	}
	if err != nil {
		return unavailable("set", err)
	}
	return nil
}

// remove deletes a session and its index entries.
func (s *RedisStore) remove(ctx context.Context, key string, sess *Session) error {
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		for _, idx := range indexKeys(sess) {
			p.SRem(ctx, idx, key)
		}
		return nil
	})
	if err != nil {
		return unavailable("delete", err)
	}
	return nil
}

// Delete clears the cookies first, so signing out always works in the
// browser, then deletes the session in Redis; an error means it may
// still be there.
func (s *RedisStore) Delete(ctx context.Context, r *http.Request) ([]*http.Cookie, error) {
	cookies := s.codec.Clear(r)
	ticket, _, err := s.ticket(r)
	if err != nil {
		return cookies, nil // no genuine ticket: nothing server-side to delete
	}
	key := sessionKey(ticket)
	sess, err := s.get(ctx, key)
	if errors.Is(err, ErrRevoked) {
		return cookies, nil
	}
	if err != nil {
		return cookies, err
	}
	return cookies, s.remove(ctx, key, sess)
}

// RevokeSID deletes every session of an OIDC session id (back-channel logout).
func (s *RedisStore) RevokeSID(ctx context.Context, issuer, sid string) error {
	return s.revoke(ctx, indexKey(sidPrefix, issuer, sid))
}

// RevokeSubject deletes every session of a subject.
func (s *RedisStore) RevokeSubject(ctx context.Context, issuer, subject string) error {
	return s.revoke(ctx, indexKey(subPrefix, issuer, subject))
}

func (s *RedisStore) revoke(ctx context.Context, idx string) error {
	keys, err := s.client.SMembers(ctx, idx).Result()
	if err != nil {
		return unavailable("revoke", err)
	}
	if len(keys) == 0 {
		return nil
	}
	members := make([]any, len(keys))
	for i, k := range keys {
		members[i] = k
	}
	_, err = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, keys...)
		// SREM, not DEL: a session saved since SMEMBERS stays indexed.
		p.SRem(ctx, idx, members...)
		return nil
	})
	if err != nil {
		return unavailable("revoke", err)
	}
	return nil
}

// SetRedisLogger sends go-redis's own log lines (dial failures) to log
// instead of stderr. go-redis has one logger per process, so the process
// owner calls this once.
func SetRedisLogger(log *slog.Logger) { redis.SetLogger(redisLogger{log}) }

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
}
