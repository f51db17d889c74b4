package testutil

import (
	"crypto/x509"
	"slices"
	"testing"
)

// TestClientOrganizations checks that a client certificate carries its
// common name and organizations, which Kubernetes reads as user and groups.
func TestClientOrganizations(t *testing.T) {
	ca := NewCA(t)
	for _, orgs := range [][]string{nil, {"system:masters"}, {"a", "b"}} {
		leaf := ca.Client(t, "admin", orgs...)
		cert, err := x509.ParseCertificate(leaf.TLS.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.CommonName != "admin" || !slices.Equal(cert.Subject.Organization, orgs) {
			t.Errorf("subject = %q %q; want admin %q", cert.Subject.CommonName, cert.Subject.Organization, orgs)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("verify: %v", err)
		}
	}
}
