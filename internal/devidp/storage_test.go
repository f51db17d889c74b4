package devidp

import (
	"log/slog"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// Two token requests that both looked the code up before either was served
// (the window op leaves between AuthRequestByCode and token creation) must
// not both get tokens, and the loser revokes what the winner got.
func TestCodeIsRedeemedOnceWhenLookupsRace(t *testing.T) {
	users, err := newUserDB(t.Context(), []User{{Email: "a@example.com", PasswordHash: minHash(t, "pw")}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	st := newStorage(users, nil, nil, time.Now, time.Minute)
	ctx := t.Context()
	ar, err := st.CreateAuthRequest(ctx, &oidc.AuthRequest{
		ClientID: "c", RedirectURI: "http://127.0.0.1/cb", ResponseType: oidc.ResponseTypeCode,
		Scopes: []string{"openid", "offline_access"}, CodeChallenge: "x", CodeChallengeMethod: oidc.CodeChallengeMethodS256,
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.completeLogin(ar.GetID(), users.byEmail["a@example.com"], []string{"pwd"}); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveAuthCode(ctx, ar.GetID(), "the-code"); err != nil {
		t.Fatal(err)
	}
	first, err1 := st.AuthRequestByCode(ctx, "the-code")
	second, err2 := st.AuthRequestByCode(ctx, "the-code")
	if err1 != nil || err2 != nil {
		t.Fatalf("lookups: %v, %v", err1, err2)
	}
	_, refresh, _, err := st.CreateAccessAndRefreshTokens(ctx, first, "")
	if err != nil {
		t.Fatalf("first redemption: %v", err)
	}
	if _, _, _, err := st.CreateAccessAndRefreshTokens(ctx, second, ""); err == nil {
		t.Fatal("the code was redeemed twice")
	}
	if _, err := st.TokenRequestByRefreshToken(ctx, refresh); err == nil {
		t.Fatal("the winner's refresh token survived the replay")
	}
	if _, err := st.AuthRequestByCode(ctx, "the-code"); err == nil {
		t.Fatal("a redeemed code is still accepted")
	}
}
