package devidp

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestLoginPage(t *testing.T) {
	f := newFixture(t)
	l := f.mustStartLogin(t)
	if !strings.HasPrefix(l.form.Path, issuerPath+"/login") {
		t.Fatalf("login form served at %s, want under the issuer path", l.form)
	}
	for _, want := range []string{
		"Development identity provider — not for production",
		`<label for="email">`, `id="email"`,
		`<label for="password">`, `id="password"`, `type="password"`,
		`<label for="otp">`, `id="otp"`,
		`<html lang="en">`,
		`action="` + issuerPath + `/login"`,
	} {
		if !strings.Contains(l.body, want) {
			t.Errorf("login page lacks %q", want)
		}
	}
	for _, external := range []string{"<script", "<link", "src=", "http://", "https://"} {
		if strings.Contains(l.body, external) {
			t.Errorf("login page loads or links something external: %q", external)
		}
	}
	resp, _ := f.get(t, f.browser, l.form.String())
	h := resp.Header
	if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") || h.Get("Cache-Control") != "no-store" || h.Get("X-Frame-Options") != "DENY" {
		t.Errorf("login page headers: %v", h)
	}
	// A browser without the cookie gets one scoped to the form, out of
	// reach of scripts and not sent with cross-site POSTs.
	resp, _ = f.get(t, &http.Client{}, l.form.String())
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == csrfCookie {
			cookie = c
		}
	}
	if cookie == nil || cookie.Path != issuerPath+"/login" || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Secure {
		t.Fatalf("login cookie: %+v", cookie)
	}
	// A browser that has it keeps it: several tabs can sign in at once.
	resp, _ = f.get(t, f.browser, l.form.String())
	if len(resp.Cookies()) != 0 {
		t.Fatalf("cookie reset for a browser that had one: %v", resp.Cookies())
	}
}

func TestWrongPasswordIsGeneric(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ name, email, password string }{
		{"wrong password", "alice@example.com", "nope"},
		{"unknown email", "mallory@example.com", alicePassword},
		{"empty password", "alice@example.com", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := f.mustStartLogin(t)
			resp, body := f.submit(t, l, tc.email, tc.password, "")
			if resp.StatusCode != http.StatusUnauthorized || resp.Request.URL.Path != l.form.Path {
				t.Fatalf("status %d at %s", resp.StatusCode, resp.Request.URL)
			}
			if !strings.Contains(body, msgBadLogin) || !strings.Contains(body, `role="alert"`) {
				t.Fatalf("no generic error on the page:\n%s", body)
			}
			if tc.password != "" && strings.Contains(body, tc.password) {
				t.Fatal("page echoes the password")
			}
			// The same form still works: the error page carries valid hidden fields.
			l.id, l.csrf = hiddenID.FindStringSubmatch(body)[1], hiddenCSRF.FindStringSubmatch(body)[1]
			resp, body = f.submit(t, l, "alice@example.com", alicePassword, "")
			f.code(t, l, resp, body)
		})
	}
	if strings.Contains(f.logs.String(), "nope") || strings.Contains(f.logs.String(), alicePassword) {
		t.Fatal("a password reached the logs")
	}
}

func TestLoginFormRejects(t *testing.T) {
	f := newFixture(t)

	t.Run("unknown auth request", func(t *testing.T) {
		resp, body := f.get(t, f.browser, f.p.Issuer()+"/login?authRequestID=made-up")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "expired") || strings.Contains(body, "<form") {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
	t.Run("no cookie", func(t *testing.T) {
		l := f.mustStartLogin(t)
		jar, _ := cookiejar.New(nil)
		resp, body := f.post(t, &http.Client{Jar: jar}, l.form.String(),
			url.Values{"id": {l.id}, "csrf": {l.csrf}, "email": {"alice@example.com"}, "password": {alicePassword}})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "sign-in page") {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		l := f.mustStartLogin(t)
		l.csrf = "AAAA" + l.csrf[4:]
		if resp, _ := f.submit(t, l, "alice@example.com", alicePassword, ""); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("token of another auth request", func(t *testing.T) {
		l1, l2 := f.mustStartLogin(t), f.mustStartLogin(t)
		l1.csrf = l2.csrf
		if resp, _ := f.submit(t, l1, "alice@example.com", alicePassword, ""); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("already completed", func(t *testing.T) {
		l, _ := f.loginAs(t, "alice@example.com", alicePassword, "")
		resp, _ := f.submit(t, l, "alice@example.com", alicePassword, "")
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("expired auth request", func(t *testing.T) {
		l := f.mustStartLogin(t)
		f.clock.Advance(authRequestTTL + 1)
		defer f.clock.Advance(-authRequestTTL - 1)
		if resp, _ := f.submit(t, l, "alice@example.com", alicePassword, ""); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("oversized form", func(t *testing.T) {
		l := f.mustStartLogin(t)
		resp, _ := f.post(t, f.browser, l.form.String(), url.Values{"id": {l.id}, "pad": {strings.Repeat("x", maxFormBytes)}})
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("method", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPut, f.p.Issuer()+"/login", nil)
		resp, err := f.browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

func TestLoginRateLimit(t *testing.T) {
	f := newFixture(t)
	l := f.mustStartLogin(t)
	for i := range failureBurst {
		if resp, _ := f.submit(t, l, "alice@example.com", "wrong", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d", i+1, resp.StatusCode)
		}
	}
	resp, body := f.submit(t, l, "ALICE@example.com", alicePassword, "")
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, msgTooMany) {
		t.Fatalf("after %d failures the right password got status %d", failureBurst, resp.StatusCode)
	}
	// Other users are not affected.
	if resp, _ := f.submit(t, l, "bob@example.com", "wrong", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bob: status %d", resp.StatusCode)
	}
	// Unknown emails are limited the same way, so the limit reveals nothing.
	for range failureBurst {
		f.submit(t, l, "mallory@example.com", "wrong", "")
	}
	if resp, _ := f.submit(t, l, "mallory@example.com", "wrong", ""); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("unknown email: status %d", resp.StatusCode)
	}

	f.clock.Advance(failureEvery)
	resp, body = f.submit(t, l, "alice@example.com", alicePassword, "")
	f.code(t, l, resp, body)
}

func TestFailureTableIsBounded(t *testing.T) {
	fl := failures{m: map[string]*rate.Limiter{}}
	now := time.Now()
	for i := range maxTracked {
		fl.record(strconv.Itoa(i), now)
	}
	fl.record("fresh", now) // every entry is still draining: none may go
	if len(fl.m) != maxTracked+1 {
		t.Fatalf("entries = %d, want %d", len(fl.m), maxTracked+1)
	}
	later := now.Add(time.Minute)
	for range failureBurst {
		fl.record("hot", later)
	}
	if len(fl.m) != 1 || !fl.blocked("hot", later) {
		t.Fatalf("after refill: %d entries, hot blocked = %v; want only the hot one, blocked", len(fl.m), fl.blocked("hot", later))
	}
}
