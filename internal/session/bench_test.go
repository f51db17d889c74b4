package session

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func BenchmarkCodecDecode(b *testing.B) {
	plain, err := json.Marshal(typicalSession("0123456789abcdef0123456789abcdef"))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		plain []byte
	}{
		{"typical-session", plain},
		{"redis-ticket", make([]byte, ticketSize+32)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := newCodec(b, CodecOptions{Keys: [][]byte{keyA, keyB}})
			r := requestWith(encode(b, c, bc.plain)...)
			b.ReportMetric(float64(len(r.Header.Get("Cookie"))), "cookie-bytes")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Decode(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCookieStoreLoad(b *testing.B) {
	benchmarkLoad(b, 0)
}

// BenchmarkCookieStoreLoadWithRevocations is the load path while many
// sessions have been signed out (the revocation list is consulted).
func BenchmarkCookieStoreLoadWithRevocations(b *testing.B) {
	benchmarkLoad(b, 10000)
}

// benchmarkLoad loads a typical session cookie while revoked other
// sessions are signed out.
func benchmarkLoad(b *testing.B, revoked int) {
	st := NewCookieStore(newCodec(b, CodecOptions{}), StoreOptions{IdleTimeout: 30 * time.Minute})
	until := time.Now().Add(time.Hour)
	for i := range revoked {
		st.revoked.Add(fmt.Sprintf("revoked-%d", i), until)
	}
	cookies, err := st.Save(context.Background(), requestWith(), typicalSession("0123456789abcdef0123456789abcdef"))
	if err != nil {
		b.Fatal(err)
	}
	r := requestWith(cookies...)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := st.Load(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
}
