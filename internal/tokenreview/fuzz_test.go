package tokenreview

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// FuzzDecode: any body either decodes to a review of a known version or is
// refused with a bad-request error; an error never repeats the token.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"abc","audiences":["x"]}}`,
		`{"apiVersion":"authentication.k8s.io/v1beta1","kind":"TokenReview","spec":{"token":"abc"}}`,
		`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","metadata":{"creationTimestamp":null},"spec":{},"status":{"user":{}}}`,
		`{"apiVersion":"v1","kind":"TokenReview","spec":{"token":"secret-token-value"}}`,
		`{"spec":{"token":5}}`,
		`[]`, `null`, ``, `{`, `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview"} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rev, err := Decode(bytes.NewReader(body))
		if err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("error %v does not wrap errBadRequest", err)
			}
			var probe struct {
				APIVersion string                 `json:"apiVersion"`
				Kind       string                 `json:"kind"`
				Spec       struct{ Token string } `json:"spec"`
			}
			_ = json.Unmarshal(body, &probe)
			// The version and kind are named in errors; a token that
			// shares their text proves nothing.
			tok := probe.Spec.Token
			if len(tok) >= 4 && strings.Contains(err.Error(), tok) && !strings.Contains(probe.APIVersion+probe.Kind, tok) {
				t.Fatalf("error %q repeats the token", err)
			}
			return
		}
		if rev.APIVersion != V1 && rev.APIVersion != V1beta1 {
			t.Fatalf("decoded version %q", rev.APIVersion)
		}
	})
}
