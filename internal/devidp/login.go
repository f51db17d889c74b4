package devidp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/sekisho/sekisho/internal/httperr"
)

const (
	csrfCookie = "sekisho_devidp_login"
	// Failed logins per email: a burst of 5, refilled at 5 a minute.
	failureBurst = 5
	failureEvery = time.Minute / failureBurst
	// maxTracked bounds the failure table; full buckets are dropped first.
	maxTracked   = 10000
	maxFormBytes = 16 << 10
)

// Messages shown on the login page. The failure message is the same for an
// unknown email, a wrong password and a wrong code: no user enumeration.
const (
	msgBadLogin   = "Wrong email, password or one-time code."
	msgTooMany    = "Too many failed sign-in attempts for this email. Wait a minute and try again."
	msgExpired    = "This sign-in request is unknown, expired or already used. Go back to the application and sign in again."
	msgCSRF       = "This form was not submitted from the sign-in page in this browser. Go back to the application and sign in again."
	msgUnreadable = "The sign-in form could not be read."
)

// loginHandler is the page op redirects to for authentication (the client's
// LoginURL). On success it marks the auth request done and sends the browser
// to op's callback, which issues the code.
type loginHandler struct {
	st       *storage
	users    *userDB
	log      *slog.Logger
	now      func() time.Time
	callback func(context.Context, string) string
	action   string // the form's own path
	secure   bool   // issuer is https: the cookie gets Secure
	csrfKey  []byte
	failures failures
}

func newLoginHandler(st *storage, users *userDB, log *slog.Logger, now func() time.Time,
	callback func(context.Context, string) string, action string, secure bool) *loginHandler {
	key := make([]byte, 32)
	rand.Read(key)
	return &loginHandler{st: st, users: users, log: log, now: now, callback: callback,
		action: action, secure: secure, csrfKey: key, failures: failures{m: map[string]*rate.Limiter{}}}
}

type loginPage struct {
	Action, ID, CSRF, Email, Error string
}

func (h *loginHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.show(w, r)
	case http.MethodPost:
		h.submit(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		httperr.Write(w, r, http.StatusMethodNotAllowed, "")
	}
}

func (h *loginHandler) show(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("authRequestID")
	if _, err := h.st.pendingAuthRequest(id); err != nil {
		httperr.Write(w, r, http.StatusBadRequest, msgExpired)
		return
	}
	// The cookie binds the form to this browser; it is reused across tabs
	// and, being SameSite=Lax, is not sent with a cross-site POST.
	browser := ""
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 16 {
		browser = c.Value
	} else {
		browser = rand.Text()
		http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: browser, Path: h.action,
			HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteLaxMode})
	}
	h.render(w, http.StatusOK, loginPage{ID: id, CSRF: h.csrfToken(id, browser)})
}

func (h *loginHandler) submit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		httperr.Write(w, r, http.StatusBadRequest, msgUnreadable)
		return
	}
	id := r.PostFormValue("id")
	if _, err := h.st.pendingAuthRequest(id); err != nil {
		httperr.Write(w, r, http.StatusBadRequest, msgExpired)
		return
	}
	if !h.csrfOK(r, id) {
		httperr.Write(w, r, http.StatusForbidden, msgCSRF)
		return
	}
	email := strings.TrimSpace(r.PostFormValue("email"))
	key := strings.ToLower(email)
	page := loginPage{ID: id, CSRF: r.PostFormValue("csrf"), Email: email}
	now := h.now()
	if h.failures.blocked(key, now) {
		h.log.WarnContext(r.Context(), "devidp: login refused: too many failed attempts", "email", email)
		page.Error = msgTooMany
		h.render(w, http.StatusTooManyRequests, page)
		return
	}
	u, amr, ok := h.users.authenticate(email, r.PostFormValue("password"), r.PostFormValue("otp"), now)
	if !ok {
		h.failures.record(key, now)
		h.log.InfoContext(r.Context(), "devidp: login failed", "email", email)
		page.Error = msgBadLogin
		h.render(w, http.StatusUnauthorized, page)
		return
	}
	if err := h.st.completeLogin(id, u, amr); err != nil {
		httperr.Write(w, r, http.StatusBadRequest, msgExpired)
		return
	}
	h.log.InfoContext(r.Context(), "devidp: login", "sub", u.sub, "amr", amr)
	http.Redirect(w, r, h.callback(r.Context(), id), http.StatusSeeOther)
}

// csrfToken binds the form to one auth request and one browser cookie.
func (h *loginHandler) csrfToken(id, browser string) string {
	m := hmac.New(sha256.New, h.csrfKey)
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write([]byte(browser))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (h *loginHandler) csrfOK(r *http.Request, id string) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil {
		return false
	}
	return hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(h.csrfToken(id, c.Value)))
}

func (h *loginHandler) render(w http.ResponseWriter, status int, p loginPage) {
	p.Action = h.action
	setPageHeaders(w.Header())
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, "login", p); err != nil {
		h.log.Error("devidp: rendering login page", "error", err)
	}
}

// failures rate-limits failed logins per lower-cased email, known or not,
// so the limit reveals nothing about which accounts exist.
type failures struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func (f *failures) blocked(key string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.m[key]
	return l != nil && l.TokensAt(now) < 1
}

func (f *failures) record(key string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.m[key]
	if l == nil {
		if len(f.m) >= maxTracked {
			for k, v := range f.m {
				if v.TokensAt(now) >= failureBurst {
					delete(f.m, k)
				}
			}
		}
		l = rate.NewLimiter(rate.Every(failureEvery), failureBurst)
		f.m[key] = l
	}
	l.AllowN(now, 1)
}

func setPageHeaders(h http.Header) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}} · sekisho development identity provider</title>
<style>
body{font-family:system-ui,sans-serif;background:#f6f6f4;color:#1d1d1b;margin:0}
main{max-width:24rem;margin:3rem auto;padding:1.5rem;background:#fff;border:1px solid #ccc;border-radius:.5rem}
.warning{background:#fff3cd;border:2px solid #b8860b;color:#5c4300;padding:.75rem;border-radius:.25rem;font-weight:bold;margin:0 0 1rem}
.error{background:#fde8e8;border-left:4px solid #b00020;color:#7a0016;padding:.5rem .75rem}
label{display:block;margin:1rem 0 .25rem;font-weight:600}
.hint{font-weight:normal;color:#555}
input{box-sizing:border-box;width:100%;padding:.5rem;font-size:1rem;border:1px solid #767676;border-radius:.25rem}
input:focus,button:focus{outline:3px solid #1a5fb4;outline-offset:1px}
button{margin-top:1.5rem;width:100%;padding:.6rem;font-size:1rem;background:#1a5fb4;color:#fff;border:0;border-radius:.25rem;cursor:pointer}
</style></head><body><main>
<p class="warning" role="note">Development identity provider — not for production</p>{{end}}

{{define "login"}}{{template "head" "Sign in"}}
<h1>Sign in</h1>
{{if .Error}}<p class="error" role="alert" id="login-error">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="id" value="{{.ID}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required autofocus value="{{.Email}}"{{if .Error}} aria-describedby="login-error"{{end}}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<label for="otp">One-time code <span class="hint">(only if your account has one)</span></label>
<input id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6">
<button type="submit">Sign in</button>
</form>
</main></body></html>
{{end}}

{{define "device"}}{{template "head" "Sign in a device"}}
<h1>Sign in a device</h1>
{{if .Done}}<p role="status">{{.Done}}</p>{{else}}
<p>Enter the code that a program you started (such as <code>sekisho kube login --device-code</code>) shows. Never enter a code someone sent you.</p>
{{if .Error}}<p class="error" role="alert" id="device-error">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="user_code">Code</label>
<input id="user_code" name="user_code" required autocomplete="off" value="{{.UserCode}}"{{if .Error}} aria-describedby="device-error"{{end}}>
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required value="{{.Email}}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<label for="otp">One-time code <span class="hint">(only if your account has one)</span></label>
<input id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6">
<button type="submit">Sign in</button>
</form>{{end}}
</main></body></html>
{{end}}

{{define "logged-out"}}{{template "head" "Signed out"}}
<h1>Signed out</h1>
<p>You have been signed out of the development identity provider.</p>
</main></body></html>
{{end}}
`))
