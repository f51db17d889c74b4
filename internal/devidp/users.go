package devidp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/bcrypt"

	"github.com/sekisho/sekisho/internal/expset"
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
	// usedCodes holds (user, one-time code) pairs already accepted, until
	// the code can no longer validate, so that each code signs in once.
	usedCodes *expset.Set
}

// usedCodesSize bounds the remembered one-time codes; each stays for
// usedCodeTTL, so this is far more than a development provider sees.
const usedCodesSize = 10000

// usedCodeTTL is how long an accepted code could still validate: its own
// step and the allowed skew on either side.
var usedCodeTTL = time.Duration(totpOpts.Period) * time.Second * time.Duration(2*totpOpts.Skew+1)

// totpOpts are the Google Authenticator defaults, allowing one 30 s step of
// clock drift either way.
var totpOpts = totp.ValidateOpts{Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

func newUserDB(ctx context.Context, users []User, log *slog.Logger, now func() time.Time) (*userDB, error) {
	if len(users) == 0 {
		return nil, errors.New("devidp: no users configured: add at least one under builtin.users")
	}
	db := &userDB{byEmail: map[string]*user{}, bySub: map[string]*user{}, usedCodes: expset.New(usedCodesSize, now)}
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
	code = strings.TrimSpace(code)
	if ok, err := totp.ValidateCustom(code, u.totpSecret, now, totpOpts); err != nil || !ok {
		return nil, nil, false
	}
	// A code is single-use: one seen over someone's shoulder, or replayed
	// from a captured form post, does not sign in a second time.
	if fresh, _ := db.usedCodes.AddNew(u.sub+"\x00"+code, now.Add(usedCodeTTL)); !fresh {
		return nil, nil, false
	}
	return u, []string{"pwd", "otp"}, true
}
