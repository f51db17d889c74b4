package login

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// loginState is what the callback needs to finish a login it started. It
// travels in a sealed cookie, so nothing is kept server-side between the
// redirect to the provider and the callback.
type loginState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"` // PKCE code verifier
	Provider string `json:"p"`
	Return   string `json:"r"` // where to go after the login
	Redirect string `json:"u"` // the redirect_uri sent; the exchange must repeat it
	Created  int64  `json:"t"` // unix seconds
}

// stateTTL bounds how long a login may take at the provider.
const stateTTL = 10 * time.Minute

// stateCookiePrefix starts every login state cookie's name. Each login has
// its own cookie, named after a short hash of its state, so that logins
// started in several tabs do not overwrite each other's state: the
// callback finds its cookie by the state it receives.
const stateCookiePrefix = "_sekisho_login_"

func stateCookieName(state string) string {
	sum := sha256.Sum256([]byte(state))
	return stateCookiePrefix + hex.EncodeToString(sum[:6])
}

// setStateCookie seals st into its cookie, scoped to the callback path.
func (s *Service) setStateCookie(w http.ResponseWriter, st *loginState, secure bool) error {
	plain, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding login state: %w", err)
	}
	value, err := s.codec.Seal(plain)
	if err != nil {
		return fmt.Errorf("sealing login state: %w", err)
	}
	http.SetCookie(w, &http.Cookie{
		Name:     stateCookieName(st.State),
		Value:    value,
		Path:     s.callbackPath,
		MaxAge:   int(stateTTL / time.Second),
		Secure:   secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	return nil
}

// stateError says what is wrong with a callback's state, for the page.
type stateError string

func (e stateError) Error() string { return string(e) }

const (
	errStateMissing  stateError = "The sign-in response has no state."
	errStateNoCookie stateError = "This sign-in was not started in this browser, or it took longer than 10 minutes."
	errStateInvalid  stateError = "The sign-in state is not valid."
	errStateExpired  stateError = "This sign-in took longer than 10 minutes."
)

// openState returns the login state the callback's state parameter points
// to. The cookie is found by the state's hash, and the state sealed inside
// must equal the parameter too, so a cookie copied under another login's
// name does not match.
func (s *Service) openState(r *http.Request, state string) (*loginState, error) {
	if state == "" {
		return nil, errStateMissing
	}
	ck, err := r.Cookie(stateCookieName(state))
	if err != nil {
		return nil, errStateNoCookie
	}
	st, err := s.decodeState(ck.Value)
	if err != nil {
		return nil, errStateInvalid
	}
	if subtle.ConstantTimeCompare([]byte(st.State), []byte(state)) != 1 {
		return nil, errStateInvalid
	}
	if s.stateExpired(st) {
		return nil, errStateExpired
	}
	return st, nil
}

func (s *Service) decodeState(value string) (*loginState, error) {
	plain, err := s.codec.Open(value)
	if err != nil {
		return nil, err
	}
	var st loginState
	if err := json.Unmarshal(plain, &st); err != nil {
		return nil, fmt.Errorf("decoding login state: %w", err)
	}
	return &st, nil
}

func (s *Service) stateExpired(st *loginState) bool {
	age := s.now().Sub(time.Unix(st.Created, 0))
	return age < -time.Minute || age > stateTTL
}

// clearStateCookies expires the callback's own state cookie and every other
// one that is stale (unreadable or expired), so that abandoned logins do
// not pile up cookies; other logins still in progress are left alone.
// Only the callback can do this: the cookies are scoped to its path.
func (s *Service) clearStateCookies(w http.ResponseWriter, r *http.Request, state string) {
	scheme, _ := origin(r)
	own := ""
	if state != "" {
		own = stateCookieName(state)
	}
	for _, ck := range r.Cookies() {
		if !strings.HasPrefix(ck.Name, stateCookiePrefix) {
			continue
		}
		if ck.Name != own {
			if st, err := s.decodeState(ck.Value); err == nil && !s.stateExpired(st) {
				continue
			}
		}
		http.SetCookie(w, &http.Cookie{
			Name: ck.Name, Value: "", Path: s.callbackPath, MaxAge: -1,
			Secure: scheme == "https", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		})
	}
}
