package login

import "testing"

// BenchmarkSafeRedirect is the check every sign-in, callback and decision
// login redirect runs on its return address.
func BenchmarkSafeRedirect(b *testing.B) {
	allowed := mustDomains("example.com", "partner.org:8443")
	for _, bc := range []struct{ name, target string }{
		{"path", "/app/page?x=1&y=two"},
		{"same-origin", "https://app.example.com:8443/app/page?x=1"},
		{"allowed-domain", "https://www.partner.org:8443/cb?x=1"},
		{"refused", "https://evil.example/x"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				SafeRedirect(bc.target, "https", "app.example.com:8443", allowed)
			}
		})
	}
}
