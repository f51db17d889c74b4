package devidp

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/sekisho/sekisho/internal/httperr"
)

// The device authorization grant (RFC 8628), for public clients such as
// `sekisho kube login --device-code` on a machine without a browser: op
// serves the device authorization and token endpoints; this file keeps the
// pending requests and serves the page where the user enters the code.

const (
	deviceCodeTTL      = 5 * time.Minute
	devicePollInterval = 5 * time.Second // RFC 8628's default
	// deviceFailureKey rate-limits wrong user codes as a whole (not per
	// email): a user code is short, so guessing must stay slow.
	deviceFailureKey = "\x00device-user-code"
)

const (
	msgBadUserCode = "This code is unknown, expired or already used. Check the code your device shows, or start again there."
	msgDeviceDone  = "Signed in. Go back to your device: it continues by itself."
)

// deviceAuth is a pending device authorization.
type deviceAuth struct {
	clientID   string
	deviceCode string
	userCode   string
	scopes     []string
	expires    time.Time
	done       bool
	grant      grant
}

// normalizeUserCode makes "bcdf-ghjk" and "BCDF GHJK" the same code: no
// dashes, no white space, upper case.
func normalizeUserCode(s string) string {
	return strings.ToUpper(strings.Map(func(r rune) rune {
		if r == '-' || unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s))
}

// StoreDeviceAuthorization keeps a new device request (op.DeviceAuthorizationStorage).
func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(s.now())
	uc := normalizeUserCode(userCode)
	if _, taken := s.userCodes[uc]; taken {
		return op.ErrDuplicateUserCode
	}
	d := &deviceAuth{clientID: clientID, deviceCode: deviceCode, userCode: uc, scopes: append([]string(nil), scopes...), expires: expires}
	s.deviceCodes[deviceCode] = d
	s.userCodes[uc] = d
	return nil
}

// GetDeviceAuthorizatonState answers the device's polls. Once the user
// has signed in it hands the grant over exactly once: the device code is
// then spent, so a copy of it redeems nothing.
func (s *storage) GetDeviceAuthorizatonState(_ context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deviceCodes[deviceCode]
	if !ok || d.clientID != clientID {
		return nil, fmt.Errorf("device code: %w", errNotFound)
	}
	st := &op.DeviceAuthorizationState{ClientID: d.clientID, Audience: []string{d.clientID}, Scopes: d.scopes, Expires: d.expires}
	if !d.done {
		return st, nil
	}
	delete(s.deviceCodes, deviceCode)
	delete(s.userCodes, d.userCode)
	st.Done, st.Subject, st.AMR, st.AuthTime = true, d.grant.userID, d.grant.amr, d.grant.authTime
	s.deviceGrants[st] = deviceGrant{grant: d.grant, expires: s.now().Add(codeTTL)}
	return st, nil
}

// deviceGrant is a finished device login on its way to token creation:
// op hands the state back to CreateAccess(AndRefresh)Token(s).
type deviceGrant struct {
	grant
	expires time.Time
}

// pendingDevice returns the request a user code names, if it still waits.
func (s *storage) pendingDevice(userCode string) (*deviceAuth, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.userCodes[normalizeUserCode(userCode)]
	if !ok || d.done || s.now().After(d.expires) {
		return nil, false
	}
	return d, true
}

// completeDevice records that u signed in for the device request.
func (s *storage) completeDevice(userCode string, u *user, amr []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.userCodes[normalizeUserCode(userCode)]
	now := s.now()
	if !ok || d.done || now.After(d.expires) {
		return false
	}
	d.done = true
	d.grant = grant{userID: u.sub, clientID: d.clientID, sid: rand.Text(), scopes: d.scopes, amr: amr, authTime: now}
	return true
}

// deviceHandler is the page at the provider's device path where the user
// enters the code their device shows and signs in. It shares the login
// form's CSRF key, rate limits and users.
type deviceHandler struct {
	*loginHandler
	path string
}

type devicePage struct {
	Action, UserCode, CSRF, Email, Error, Done string
}

func (h *deviceHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		browser := h.browserCookie(w, r)
		h.renderDevice(w, http.StatusOK, devicePage{UserCode: r.URL.Query().Get("user_code"), CSRF: h.csrfToken("device", browser)})
	case http.MethodPost:
		h.submitDevice(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		httperr.Write(w, r, http.StatusMethodNotAllowed, "")
	}
}

// browserCookie returns the browser's CSRF cookie, setting one if needed.
func (h *deviceHandler) browserCookie(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 16 {
		return c.Value
	}
	v := rand.Text()
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: h.path,
		HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteLaxMode})
	return v
}

func (h *deviceHandler) submitDevice(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		httperr.Write(w, r, http.StatusBadRequest, msgUnreadable)
		return
	}
	if !h.csrfOK(r, "device") {
		httperr.Write(w, r, http.StatusForbidden, msgCSRF)
		return
	}
	email := strings.TrimSpace(r.PostFormValue("email"))
	code := r.PostFormValue("user_code")
	page := devicePage{UserCode: code, CSRF: r.PostFormValue("csrf"), Email: email}
	now := h.now()
	key := strings.ToLower(email)
	if h.failures.blocked(deviceFailureKey, now) || h.failures.blocked(key, now) {
		h.log.WarnContext(r.Context(), "devidp: device login refused: too many failed attempts", "email", email)
		page.Error = msgTooMany
		h.renderDevice(w, http.StatusTooManyRequests, page)
		return
	}
	if _, ok := h.st.pendingDevice(code); !ok {
		h.failures.record(deviceFailureKey, now)
		h.log.InfoContext(r.Context(), "devidp: device login with an unknown code")
		page.Error = msgBadUserCode
		h.renderDevice(w, http.StatusBadRequest, page)
		return
	}
	u, amr, ok := h.users.authenticate(email, r.PostFormValue("password"), r.PostFormValue("otp"), now)
	if !ok {
		h.failures.record(key, now)
		h.log.InfoContext(r.Context(), "devidp: device login failed", "email", email)
		page.Error = msgBadLogin
		h.renderDevice(w, http.StatusUnauthorized, page)
		return
	}
	if !h.st.completeDevice(code, u, amr) {
		page.Error = msgBadUserCode
		h.renderDevice(w, http.StatusBadRequest, page)
		return
	}
	h.log.InfoContext(r.Context(), "devidp: device login", "sub", u.sub, "amr", amr)
	h.renderDevice(w, http.StatusOK, devicePage{Done: msgDeviceDone})
}

func (h *deviceHandler) renderDevice(w http.ResponseWriter, status int, p devicePage) {
	p.Action = h.path
	setPageHeaders(w.Header())
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, "device", p); err != nil {
		h.log.Error("devidp: rendering device page", "error", err)
	}
}

// devicePath is the device page under the issuer: the verification_uri.
const devicePath = "/device"
