package vault

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/sekisho/sekisho/internal/baotest"
	"github.com/sekisho/sekisho/internal/testutil"
)

// BenchmarkLoginAndResolve10 is what a `sekisho exec` with ten vault
// references costs the store: a new provider, one JWT login, and ten
// secrets read in parallel from a real OpenBao on loopback.
func BenchmarkLoginAndResolve10(b *testing.B) {
	srv := baotest.Start(b)
	srv.Policy(b, "read-all", `path "secret/data/*" { capabilities = ["read"] }`)
	j := srv.EnableJWT(b, "jwt", "https://kubernetes.default.svc.cluster.local")
	j.Role(b, "app", "system:serviceaccount:shop:app", "vault", 0, "read-all")
	file := testutil.WriteFile(b, b.TempDir(), "token", []byte(j.Sign(b, "system:serviceaccount:shop:app", "vault")))
	refs := make([]string, 10)
	for i := range refs {
		srv.Put(b, baotest.KVMount, fmt.Sprintf("bench/s%d", i), map[string]any{"v": "x"})
		refs[i] = fmt.Sprintf("sekisho+vault://secret/bench/s%d#v", i)
	}
	opts := Options{Address: srv.Addr, Auth: AuthJWT, Role: "app", JWTFile: file, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	b.ResetTimer()
	for b.Loop() {
		p, err := New(b.Context(), opts)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, r := range refs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := p.Resolve(b.Context(), refFor(b, r)); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
	}
}
