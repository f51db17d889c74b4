package jwtauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/sync/singleflight"
	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sekisho/sekisho/internal/identity"
)

// ErrUnavailable means a credential could not be checked because a service
// it depends on (the Kubernetes API server, for TokenReview) did not answer.
// The credential is refused, but the caller should say 503, not 401: the
// client may retry, and its token need not be replaced.
var ErrUnavailable = errors.New("token review unavailable")

const (
	tokenReviewPath        = "/apis/authentication.k8s.io/v1/tokenreviews"
	defaultReviewCacheSize = 10000
	// defaultReviewTTL is how long an accepted token is trusted without
	// asking again, as the API server's own webhook token cache does.
	defaultReviewTTL = 2 * time.Minute
	// reviewFailTTL is how long a refused token is refused without asking
	// again: long enough that a client retrying in a loop costs the API
	// server nothing, short enough that a fixed token works soon.
	reviewFailTTL = 10 * time.Second
	// maxReviewBytes bounds the TokenReview answer read into memory.
	maxReviewBytes = 1 << 20
	// maxReviewsInFlight bounds the TokenReviews one issuer has open: the
	// token's claims are read unverified before asking, so made-up tokens
	// could otherwise open a request to the API server each. Further
	// tokens wait for a slot, as long as their request may.
	maxReviewsInFlight = 16
)

var (
	errReviewRefused = invalid("the Kubernetes API server did not authenticate the token")
	errReviewUser    = invalid("the Kubernetes API server named no service account for the token")
)

// reviewer checks tokens with the API server's TokenReview API.
type reviewer struct {
	url       string
	audiences []string
	// cache holds answers, refusals included, by token hash; bounded, so
	// a flood of made-up tokens evicts entries instead of growing it.
	cache *tokenCache
	ttl   time.Duration
	// flight makes requests with the same new token share one review.
	flight singleflight.Group
	// slots holds a token per open review (maxReviewsInFlight).
	slots chan struct{}
}

// review is verify for an issuer in TokenReview mode. The token's claims
// are read unverified first, only to refuse without a call what the API
// server would refuse too (expired, for another audience); the identity is
// built once the API server vouched for the token. Answers, refusals
// included, are kept in the reviewer's cache; an accepted token also goes
// to the Authenticator's, with the same expiry, so that it is answered
// there without parsing.
func (a *Authenticator) review(ctx context.Context, iss *issuer, tok *jwt.JSONWebToken, token string, now time.Time) (cacheEntry, error) {
	var std jwt.Claims
	var claims map[string]any
	if tok.UnsafeClaimsWithoutVerification(&std, &claims) != nil {
		return cacheEntry{}, errClaims
	}
	if std.Expiry == nil {
		return cacheEntry{}, errNoExpiry
	}
	switch err := std.ValidateWithLeeway(jwt.Expected{Issuer: iss.name, AnyAudience: iss.audiences, Time: now}, iss.skew); {
	case err == nil:
	case errors.Is(err, jwt.ErrExpired):
		return cacheEntry{}, errExpired
	case errors.Is(err, jwt.ErrInvalidAudience):
		return cacheEntry{}, errAudience
	default:
		return cacheEntry{}, errClaims
	}

	r := iss.kube.review
	key := keyOf(token)
	nowNano := now.UnixNano()
	if e, ok := r.cache.lookup(key, nowNano); ok {
		return e, e.err
	}
	// The review runs on its own (bounded) time, so that a caller giving
	// up does not fail the others waiting for the same answer.
	ch := r.flight.DoChan(string(key[:]), func() (any, error) {
		return a.askAPIServer(context.WithoutCancel(ctx), iss, token, claims)
	})
	var id *identity.Identity
	var err error
	select {
	case res := <-ch:
		id, _ = res.Val.(*identity.Identity)
		err = res.Err
	case <-ctx.Done():
		return cacheEntry{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
	switch {
	case errors.Is(err, ErrUnavailable):
		return cacheEntry{}, err // not remembered: the next request asks again
	case err != nil:
		r.cache.put(key, cacheEntry{err: err, exp: now.Add(reviewFailTTL).UnixNano(), iss: iss}, entryOverhead)
		return cacheEntry{}, err
	}
	e := cacheEntry{id: id, exp: min(now.Add(r.ttl).UnixNano(), std.Expiry.Time().UnixNano()), iss: iss}
	r.cache.put(key, e, entryCost(len(token)))
	return e, nil
}

// askAPIServer posts a TokenReview for token and maps the answer. A
// missing answer wraps ErrUnavailable; its error names the status, never
// the token (the API server's own error text is not relayed either).
func (a *Authenticator) askAPIServer(ctx context.Context, iss *issuer, token string, claims map[string]any) (*identity.Identity, error) {
	r := iss.kube.review
	body, err := json.Marshal(&authv1.TokenReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		Spec:     authv1.TokenReviewSpec{Token: token, Audiences: r.audiences},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: request: %w", ErrUnavailable, err)
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	select {
	case r.slots <- struct{}{}:
		defer func() { <-r.slots }()
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %d reviews already open with the API server", ErrUnavailable, maxReviewsInFlight)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: request: %w", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := iss.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated:
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("%w: status %s (%s)", ErrUnavailable, resp.Status, ownTokenRefused)
	case http.StatusForbidden:
		return nil, fmt.Errorf("%w: status %s (sekisho's service account needs create on tokenreviews.authentication.k8s.io)", ErrUnavailable, resp.Status)
	default:
		return nil, fmt.Errorf("%w: status %s", ErrUnavailable, resp.Status)
	}
	var tr authv1.TokenReview
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxReviewBytes)).Decode(&tr); err != nil {
		return nil, fmt.Errorf("%w: decode: %w", ErrUnavailable, err)
	}
	st := tr.Status
	if !st.Authenticated {
		return nil, errReviewRefused
	}
	if !slices.ContainsFunc(st.Audiences, func(aud string) bool { return slices.Contains(r.audiences, aud) }) {
		return nil, errAudience
	}
	return reviewIdentity(iss, st.User, claims)
}

// reviewIdentity builds the identity from the API server's answer: its
// username, groups and workload. The token's claims (vouched for by the
// API server now) still go through the entry's rules.
func reviewIdentity(iss *issuer, u authv1.UserInfo, claims map[string]any) (*identity.Identity, error) {
	ns, name, ok := splitServiceAccount(u.Username)
	if !ok {
		return nil, errReviewUser
	}
	id, err := iss.mapper.Map(iss.name, identity.MethodJWT, claims)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	id.Subject = u.Username
	id.Username = iss.prefix.Username + u.Username
	id.Groups = make([]string, 0, len(u.Groups))
	for _, g := range u.Groups {
		if g != "" {
			id.Groups = append(id.Groups, iss.prefix.Groups+g)
		}
	}
	extra := func(k string) string {
		if v := u.Extra["authentication.kubernetes.io/"+k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	k := &identity.Kube{
		Namespace:         ns,
		ServiceAccount:    name,
		ServiceAccountUID: u.UID,
		Pod:               extra("pod-name"),
		PodUID:            extra("pod-uid"),
		Node:              extra("node-name"),
		NodeUID:           extra("node-uid"),
	}
	if !validKube(k) || controlIn(id.Groups) {
		return nil, errReviewUser
	}
	id.Kube = k
	id.Kind = identity.KindService
	return id, nil
}

func controlIn(ss []string) bool {
	for _, s := range ss {
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] == 0x7f {
				return true
			}
		}
	}
	return false
}
