package gateway

import (
	"context"
	"net/http"
	"testing"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
)

// updatingSessions is a session authenticator that answers with a cookie
// update, and with an ended session when ended is set.
type updatingSessions struct{ ended bool }

func (s updatingSessions) Authenticate(_ context.Context, r *http.Request) (*identity.Identity, []*http.Cookie, error) {
	if s.ended {
		return nil, []*http.Cookie{{Name: "_sekisho", MaxAge: -1, Path: "/"}}, session.ErrExpired
	}
	return &identity.Identity{Username: "sam", Groups: []string{"admin"}}, []*http.Cookie{{Name: "_sekisho", Value: "updated", Path: "/"}}, nil
}

// TestSessionCookieUpdatesReachTheBrowser: the gateway sets the session's
// cookie updates on its answer, an allowed request's and a denied one's.
func TestSessionCookieUpdatesReachTheBrowser(t *testing.T) {
	for _, tt := range []struct {
		name      string
		ended     bool
		status    int
		setCookie string
	}{
		{"activity recorded", false, http.StatusOK, "_sekisho=updated; Path=/"},
		{"session ended", true, http.StatusUnauthorized, "_sekisho=; Path=/; Max-Age=0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, `
listen: {http: "127.0.0.1:0"}
routes:
  - {name: app, match: {path_prefix: /app}, to: builtin:echo, allow: [{groups: [admin]}]}
`)
			snap := f.gw.Snapshot()
			snap.Authn.Session = updatingSessions{ended: tt.ended} // before the first request
			snap.Authn.SessionCookie = "_sekisho"
			req, err := http.NewRequest("GET", f.srv.URL+"/app/x", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Cookie", "_sekisho=old; theme=dark")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Values("Set-Cookie"); len(got) != 1 || got[0] != tt.setCookie {
				t.Errorf("Set-Cookie %q, want [%q]", got, tt.setCookie)
			}
		})
	}
}
