package normalize

import (
	"maps"
	"net/http"
	"slices"
	"testing"
)

func TestDefaultIdentityHeadersStrip(t *testing.T) {
	stripped := []string{
		"X-Forwarded-User",
		"X-Forwarded-Email",
		"X-Forwarded-Groups",
		"X-Forwarded-Preferred-Username",
		"X-Forwarded-Access-Token",
		"x-forwarded-email", // HTTP/2 spelling
		"X-FORWARDED-EMAIL", // case
		"X-Forwarded_Email", // CVE-2025-64484: underscore
		"x_forwarded_email", // all underscores
		"X_Forwarded-preferred_Username",
		"X-Auth-Request-User",  // prefix
		"x_auth_request_email", // prefix, underscores
		"X-Auth-Request-",      // the prefix itself
		"X-Sekisho-Identity",   // prefix
		"X_SEKISHO_ASSERTION",  // prefix, underscores and case
	}
	kept := []string{
		"Accept",
		"Authorization",
		"Cookie",
		"X-Forwarded-For",
		"X-Forwarded-Proto",
		"X-Forwarded-Host",
		"X-Forwarded-Users",   // longer than a name
		"X-Forwarded-Use",     // shorter than a name
		"X-Auth-Request",      // shorter than the prefix
		"X-Sekishoo-Identity", // not the prefix
		"X-Request-Id",
	}
	h := http.Header{}
	for _, k := range append(slices.Clone(stripped), kept...) {
		h[k] = []string{"v"} // set raw keys: the server does not canonicalize all of them
	}
	DefaultIdentityHeaders().Strip(h)
	got := slices.Sorted(maps.Keys(h))
	want := slices.Sorted(slices.Values(kept))
	if !slices.Equal(got, want) {
		t.Errorf("after Strip: %q; want %q", got, want)
	}
}

func TestHeaderSetWith(t *testing.T) {
	base := DefaultIdentityHeaders()
	withRemote := base.With("Remote-User", "x_webauth_user")

	h := http.Header{"Remote_user": {"v"}, "X-Webauth-User": {"v"}, "X-Forwarded-User": {"v"}, "Accept": {"v"}}
	withRemote.Strip(h)
	if want := (http.Header{"Accept": {"v"}}); !maps.EqualFunc(h, want, slices.Equal) {
		t.Errorf("With(...).Strip left %v; want %v", h, want)
	}

	// With returns a copy: the base set is unchanged.
	h = http.Header{"Remote-User": {"v"}}
	base.Strip(h)
	if len(h) != 1 {
		t.Errorf("base set stripped a name added only to its copy")
	}
}

func TestNewHeaderSetIgnoresEmptyEntries(t *testing.T) {
	s := NewHeaderSet([]string{"", "X-User"}, []string{""})
	h := http.Header{"Accept": {"v"}, "X-User": {"v"}}
	s.Strip(h)
	if want := (http.Header{"Accept": {"v"}}); !maps.EqualFunc(h, want, slices.Equal) {
		t.Errorf("Strip left %v; want %v", h, want)
	}
}

func TestStripDoesNotAllocateWhenNothingMatches(t *testing.T) {
	s := DefaultIdentityHeaders()
	h := typicalHeaders()
	allocs := testing.AllocsPerRun(100, func() { s.Strip(h) })
	if allocs != 0 {
		t.Errorf("Strip: %v allocs, want 0", allocs)
	}
	if len(h) != len(typicalHeaders()) {
		t.Errorf("Strip removed headers from a clean request")
	}
}

func typicalHeaders() http.Header {
	return http.Header{
		"Accept":            {"text/html"},
		"Accept-Encoding":   {"gzip, br"},
		"Accept-Language":   {"en"},
		"Authorization":     {"Bearer x"},
		"Cookie":            {"_sekisho=x"},
		"User-Agent":        {"Mozilla/5.0"},
		"X-Forwarded-For":   {"203.0.113.5"},
		"X-Forwarded-Proto": {"https"},
		"X-Request-Id":      {"abc"},
		"Sec-Fetch-Mode":    {"navigate"},
	}
}

func BenchmarkStrip(b *testing.B) {
	s := DefaultIdentityHeaders()
	b.Run("clean", func(b *testing.B) {
		h := typicalHeaders()
		b.ReportAllocs()
		for b.Loop() {
			s.Strip(h)
		}
	})
	b.Run("spoofed", func(b *testing.B) {
		// Includes putting the two spoofed headers back each time.
		h, v := typicalHeaders(), []string{"admin"}
		b.ReportAllocs()
		for b.Loop() {
			h["X-Forwarded_Email"] = v
			h["X-Auth-Request-User"] = v
			s.Strip(h)
		}
	})
}

func TestHeaderSetMatches(t *testing.T) {
	s := DefaultIdentityHeaders().With("X-Custom-Id")
	for name, want := range map[string]bool{
		"x-forwarded-email": true, "X-Forwarded_Email": true, "x-auth-request-user": true,
		"X-Custom-Id": true, "x_custom_id": true, "X-Forwarded-For": false, "": false, "content-type": false,
	} {
		if got := s.Matches(name); got != want {
			t.Errorf("Matches(%q) = %v, want %v", name, got, want)
		}
	}
}
