package baotest

import (
	"strings"
	"testing"
)

// TestSpec: bao is built from the tools module with the release the
// pinned pseudo-version is in its ldflags (else it reports 0.0.0-dev).
func TestSpec(t *testing.T) {
	s, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Bins) != 1 || s.Bins[0].Name != "bao" || s.Bins[0].Pkg != "github.com/openbao/openbao" || s.CacheEnv != CacheEnv {
		t.Fatalf("spec %+v", s)
	}
	if flags := strings.Join(s.Bins[0].LDFlags, " "); !strings.Contains(flags, "version.fullVersion=2.4.0") {
		t.Errorf("bao ldflags %q; want the release of tools/openbao/go.mod", flags)
	}
}
