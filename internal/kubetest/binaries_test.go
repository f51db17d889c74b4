package kubetest

import (
	"strings"
	"testing"
)

// TestSpec: the binaries are kube-apiserver with the Kubernetes version of
// tools/kube/go.mod in its ldflags (else it reports v0.0.0-master), and etcd.
func TestSpec(t *testing.T) {
	s, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Bins) != 2 || s.Bins[0].Name != "kube-apiserver" || s.Bins[1].Name != "etcd" || s.CacheEnv != CacheEnv {
		t.Fatalf("spec %+v", s)
	}
	if flags := strings.Join(s.Bins[0].LDFlags, " "); !strings.Contains(flags, "k8s.io/component-base/version.gitVersion=v1.37.2") || !strings.Contains(flags, "gitMinor=37") {
		t.Errorf("kube-apiserver ldflags %q; want the version of tools/kube/go.mod", flags)
	}
}
