package snapshot

import (
	"context"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/authn/jwtauth"
	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
)

// TestWaitReady: WaitReady returns at once without verifiers, false when
// the deadline passes before a JWT issuer's keys arrive, and true as soon
// as they have, woken by the verifier's channel rather than a poll.
func TestWaitReady(t *testing.T) {
	if !New(nil).WaitReady(context.Background()) {
		t.Error("a snapshot without verifiers or login is not ready")
	}

	iss := jwttest.NewIssuer(t)
	held := iss.Hold()
	a, err := jwtauth.New(context.Background(), []jwtauth.IssuerConfig{{Issuer: iss.URL, Audiences: []string{"api"}}}, jwtauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	s := New(nil)
	s.Authn = &authn.Chain{JWT: a}
	<-held // the first key fetch is in flight, and stays there

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	ready := s.WaitReady(ctx)
	cancel()
	if ready {
		t.Fatal("ready while the issuer's keys are still being fetched")
	}

	iss.Release()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !s.WaitReady(ctx) {
		t.Fatal("not ready after the issuer's keys arrived")
	}
}
