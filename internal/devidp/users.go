package devidp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/bcrypt"
)

// user is a compiled User: immutable after newUserDB, so read without locks.
type user struct {
	sub        string
	email      string
	name       string
	groups     []string
	hash       []byte
	totpSecret string
}

type userDB struct {
	byEmail map[string]*user // lower-case email
	bySub   map[string]*user
	// dummyHash is compared against when the email is unknown, so a wrong
	// email costs the same bcrypt time as a wrong password.
	dummyHash []byte
	// lastStep is, per user sub, the time step of the last one-time code
	// that signed in: a code is accepted only for a newer step (RFC 6238
	// section 5.2), so each code signs in once and an older code still
	// inside the skew window is refused after a newer one was used. One
	// entry per configured user, so it is bounded by the config.
	stepMu   sync.Mutex
	lastStep map[string]uint64
}

// totpOpts are the Google Authenticator defaults, allowing one 30 s step of
// clock drift either way.
var totpOpts = totp.ValidateOpts{Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

func newUserDB(ctx context.Context, users []User, log *slog.Logger) (*userDB, error) {
	if len(users) == 0 {
		return nil, errors.New("devidp: no users configured: add at least one under builtin.users")
	}
	db := &userDB{byEmail: map[string]*user{}, bySub: map[string]*user{}, lastStep: map[string]uint64{}}
	maxCost := bcrypt.MinCost
	for i, u := range users {
		email := strings.TrimSpace(u.Email)
		key := strings.ToLower(email)
		if key == "" {
			return nil, fmt.Errorf("devidp: users[%d]: email is required", i)
		}
		if _, dup := db.byEmail[key]; dup {
			return nil, fmt.Errorf("devidp: users[%d]: duplicate email %q", i, email)
		}
		hash, err := userHash(ctx, u, log)
		if err != nil {
			return nil, fmt.Errorf("devidp: users[%d] (%s): %w", i, email, err)
		}
		cost, _ := bcrypt.Cost(hash) // checked by userHash
		maxCost = max(maxCost, cost)
		// Authenticator apps show secrets in groups separated by spaces.
		secret := strings.ReplaceAll(u.TOTPSecret, " ", "")
		if secret != "" {
			if _, err := totp.GenerateCodeCustom(secret, time.Time{}, totpOpts); err != nil {
				return nil, fmt.Errorf("devidp: users[%d] (%s): totp_secret is not base32", i, email)
			}
		}
		nu := &user{
			sub:        "dev|" + key,
			email:      email,
			name:       u.Name,
			groups:     append([]string(nil), u.Groups...),
			hash:       hash,
			totpSecret: secret,
		}
		db.byEmail[key] = nu
		db.bySub[nu.sub] = nu
	}
	var err error
	if db.dummyHash, err = bcrypt.GenerateFromPassword([]byte(rand.Text()), maxCost); err != nil {
		return nil, fmt.Errorf("devidp: dummy password hash: %w", err)
	}
	return db, nil
}

// userHash returns the bcrypt hash for u, hashing a plaintext password.
func userHash(ctx context.Context, u User, log *slog.Logger) ([]byte, error) {
	switch {
	case u.Password != "" && u.PasswordHash != "":
		return nil, errors.New("set password or password_hash, not both")
	case u.PasswordHash != "":
		hash := []byte(u.PasswordHash)
		if _, err := bcrypt.Cost(hash); err != nil {
			return nil, errors.New("password_hash is not a bcrypt hash")
		}
		return hash, nil
	case u.Password != "":
		log.WarnContext(ctx, "devidp: plaintext password in config; use password_hash outside throwaway development setups", "email", u.Email)
		hash, err := bcrypt.GenerateFromPassword([]byte(u.Password), bcrypt.DefaultCost)
		if err != nil {
			return nil, fmt.Errorf("hashing password: %w", err)
		}
		return hash, nil
	default:
		return nil, errors.New("password or password_hash is required")
	}
}

// authenticate checks a login attempt and returns the user and the amr
// values proving how. Every failure looks the same to the caller so the form
// cannot be used to learn which emails exist.
func (db *userDB) authenticate(email, password, code string, now time.Time) (*user, []string, bool) {
	u := db.byEmail[strings.ToLower(strings.TrimSpace(email))]
	hash := db.dummyHash
	if u != nil {
		hash = u.hash
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || u == nil {
		return nil, nil, false
	}
	if u.totpSecret == "" {
		return u, []string{"pwd"}, true
	}
	step, ok := totpStep(strings.TrimSpace(code), u.totpSecret, now)
	if !ok {
		return nil, nil, false
	}
	// A code is single-use, and never older than the last one used: one
	// seen over someone's shoulder, or replayed from a captured form post,
	// does not sign in a second time, nor does the previous window's code
	// once the current one has signed in.
	db.stepMu.Lock()
	defer db.stepMu.Unlock()
	if last, seen := db.lastStep[u.sub]; seen && step <= last {
		return nil, nil, false
	}
	db.lastStep[u.sub] = step
	return u, []string{"pwd", "otp"}, true
}

// totpStep returns the time step (counter) code is valid for at now,
// within totpOpts.Skew steps either side, the newest when several match.
// It checks as totp.ValidateCustom does, which does not say which step
// matched.
func totpStep(code, secret string, now time.Time) (uint64, bool) {
	opts := hotp.ValidateOpts{Digits: totpOpts.Digits, Algorithm: totpOpts.Algorithm}
	cur := uint64(now.Unix()) / uint64(totpOpts.Period)
	for i := int64(totpOpts.Skew); i >= -int64(totpOpts.Skew); i-- {
		step := uint64(int64(cur) + i)
		if ok, err := hotp.ValidateCustom(code, step, secret, opts); err == nil && ok {
			return step, true
		}
	}
	return 0, false
}
