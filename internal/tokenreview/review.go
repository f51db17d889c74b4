package tokenreview

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	authnv1 "k8s.io/api/authentication/v1"
)

// API versions kube-apiserver speaks (--authentication-token-webhook-version);
// v1beta1 has the same shape as v1.
const (
	V1      = "authentication.k8s.io/v1"
	V1beta1 = "authentication.k8s.io/v1beta1"
	kind    = "TokenReview"
)

// MaxBodyBytes bounds a review request. A review is a token (sekisho
// refuses tokens over 16 KiB) and a few audiences; anything much larger is
// not a review.
const MaxBodyBytes = 64 << 10

// Review is a decoded TokenReview request.
type Review struct {
	APIVersion string
	Token      string
	Audiences  []string
}

// request is the part of an authentication.k8s.io TokenReview a review
// reads. Decoding only it (not the whole object with its metadata) halves
// the cost of a review; the field names are those of authnv1.TokenReview,
// which Encode answers with.
type request struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Spec       struct {
		Token     string   `json:"token"`
		Audiences []string `json:"audiences"`
	} `json:"spec"`
}

// errBadRequest wraps every reason a body is not a review; the message is
// answered as it is (it never quotes the body).
var errBadRequest = errors.New("bad TokenReview")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

// Decode reads one TokenReview from r, which must hold at most
// MaxBodyBytes. It checks the apiVersion and kind and refuses trailing data;
// unknown fields are ignored, as Kubernetes clients expect of a newer peer.
// Errors wrap errBadRequest and never quote the body (it holds a token).
func Decode(r io.Reader) (Review, error) {
	buf := bufs.Get().(*bytes.Buffer)
	defer putBuf(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(r, MaxBodyBytes+1)); err != nil {
		return Review{}, fmt.Errorf("read TokenReview: %w", err)
	}
	data := buf.Bytes()
	if len(data) > MaxBodyBytes {
		return Review{}, badRequest("the body is larger than %d bytes", MaxBodyBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return Review{}, badRequest("the body is not a JSON TokenReview (empty body)")
	}
	var tr request
	if err := json.Unmarshal(data, &tr); err != nil {
		return Review{}, badRequest("the body is not a JSON TokenReview (%s)", jsonReason(err))
	}
	switch tr.APIVersion {
	case V1, V1beta1:
	case "":
		return Review{}, badRequest("apiVersion is missing: want %s or %s", V1, V1beta1)
	default:
		return Review{}, badRequest("apiVersion %q is not supported: want %s or %s", printable(tr.APIVersion), V1, V1beta1)
	}
	if tr.Kind != kind {
		return Review{}, badRequest("kind %q is not TokenReview", printable(tr.Kind))
	}
	return Review{APIVersion: tr.APIVersion, Token: tr.Spec.Token, Audiences: tr.Spec.Audiences}, nil
}

// bufs holds request and answer buffers: a review is read and written
// whole, and thousands a second would otherwise each grow a new one.
var bufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putBuf returns a buffer to the pool unless a huge body grew it.
func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 2*MaxBodyBytes {
		bufs.Put(b)
	}
}

// jsonReason describes a decode error without the offending value: a
// type error names the field, a syntax error its offset.
func jsonReason(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se) && strings.Contains(se.Error(), "after top-level value"):
		return "data after the TokenReview object"
	case errors.As(err, &se) && strings.Contains(se.Error(), "unexpected end"):
		return "truncated"
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("%s must be %s", te.Field, te.Type)
	}
	return "malformed"
}

// printable cuts a caller-supplied name for a message: at most 64 bytes,
// control characters replaced.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

// Status is the answer to a review.
type Status struct {
	Authenticated bool
	Username      string
	UID           string
	Groups        []string
	Extra         map[string][]string
	Audiences     []string
	// Error is a short reason when not authenticated; never a token.
	Error string
}

// Encode writes the answer to a review of apiVersion, in one write.
func Encode(w io.Writer, apiVersion string, st Status) error {
	tr := authnv1.TokenReview{Status: authnv1.TokenReviewStatus{
		Authenticated: st.Authenticated,
		Audiences:     st.Audiences,
		Error:         st.Error,
	}}
	tr.APIVersion, tr.Kind = apiVersion, kind
	if st.Authenticated {
		tr.Status.User = authnv1.UserInfo{Username: st.Username, UID: st.UID, Groups: st.Groups}
		if len(st.Extra) > 0 {
			tr.Status.User.Extra = make(map[string]authnv1.ExtraValue, len(st.Extra))
			for k, v := range st.Extra {
				tr.Status.User.Extra[k] = v
			}
		}
	}
	buf := bufs.Get().(*bytes.Buffer)
	defer putBuf(buf)
	buf.Reset()
	if err := json.NewEncoder(buf).Encode(&tr); err != nil {
		return fmt.Errorf("encode TokenReview: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}
