package vault

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/secretref"
)

// refFor builds the Ref the reference parser makes of raw, for the few
// shapes these tests use.
func refFor(t testing.TB, raw string) secretref.Ref {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("refFor %q: %v", raw, err)
	}
	return secretref.Ref{
		Raw:     raw,
		Scheme:  secretref.Scheme(strings.TrimPrefix(u.Scheme, "sekisho+")),
		Path:    u.Host + u.Path,
		Version: u.Query().Get("version"),
		Key:     u.Fragment,
	}
}

// setNow replaces the provider's clock, so tests move time forward to a
// token's refresh instead of waiting for it.
func setNow(p *Provider, now func() time.Time) { p.now = now }
