// Package tokenreview is sekisho's Kubernetes token webhook: kube-apiserver
// (--authentication-token-webhook-config-file) sends it the bearer tokens
// it cannot verify itself, and it answers who they belong to. A token is
// verified by the same chain as the gateway's (JWT issuers, API tokens),
// and the identity becomes a Kubernetes user by the kube.webhook rules
// (internal/kubeuser), so that kubectl users, CI jobs and services are the
// same principals to RBAC as to sekisho's routes.
//
// A token that does not verify is answered "authenticated: false" with a
// short reason, never an HTTP error: kube-apiserver then answers 401. Only
// a request that is not a TokenReview gets 400.
package tokenreview

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/listen"
	"github.com/sekisho/sekisho/internal/snapshot"
	"github.com/sekisho/sekisho/internal/tokenreview/webhookconf"
)

// Path is where kube-apiserver posts reviews; `sekisho kube webhook-config`
// writes it into the kubeconfig.
const Path = "/tokenreview"

// Config is the kube.webhook section; its rules are in webhookconf, where
// the config compiler runs them too.
type Config = webhookconf.Config

// Limits bound what a caller may send and how long it may take: the
// gateway listener's settings and defaults.
type Limits = listen.Limits

// Result labels of OnReview.
const (
	ResultAuthenticated   = "authenticated"
	ResultUnauthenticated = "unauthenticated"
	ResultBadRequest      = "bad_request"
)

// Server answers TokenReviews on the current configuration snapshot.
type Server struct {
	current func() *snapshot.Snapshot
	log     *slog.Logger
	svc     *listen.Service
	// OnReview, when set before Start, is called after every review with
	// its result and duration (metrics).
	OnReview func(result string, d time.Duration)
}

// New checks cfg's listener settings (address, TLS files) without opening
// a socket. current returns the snapshot to answer on; nil while none is
// loaded.
func New(cfg Config, current func() *snapshot.Snapshot, log *slog.Logger) (*Server, error) {
	if current == nil {
		return nil, errors.New("token webhook: no snapshot source")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b, ps := webhookconf.Build(&cfg, log)
	if len(ps) > 0 {
		return nil, fmt.Errorf("kube.webhook: %w", listen.Problems(ps))
	}
	s := &Server{current: current, log: log}
	s.svc = &listen.Service{
		Name: "token webhook", Addr: cfg.Listen, TLS: b.TLS, Certs: b.Certs, Log: log,
		// A review is small: the whole request must arrive promptly.
		ReadTimeout: 10 * time.Second,
		Handler:     s.Handler(),
		Attrs:       []any{"path", Path},
	}
	return s, nil
}

// SetLimits applies the gateway's listener limits; call it before Start.
func (s *Server) SetLimits(l Limits) { s.svc.Limits = l }

// Start binds the listener and serves in the background until Shutdown.
func (s *Server) Start(ctx context.Context) error { return s.svc.Start(ctx) }

// Addr is the bound address ("" before Start).
func (s *Server) Addr() string { return s.svc.BoundAddr() }

// Shutdown stops accepting reviews and waits for those in flight until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.svc.Shutdown(ctx) }

// Handler answers POST Path.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.URL.Path != Path {
		http.Error(w, "not found: kube-apiserver posts TokenReviews to "+Path, http.StatusNotFound)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed: POST a TokenReview", http.StatusMethodNotAllowed)
		return
	}
	rev, err := Decode(r.Body)
	if err != nil {
		msg := "could not read the request"
		if errors.Is(err, errBadRequest) {
			msg = err.Error()
		}
		s.log.Warn("token review refused", "status", http.StatusBadRequest, "reason", msg, "peer", r.RemoteAddr)
		s.report(ResultBadRequest, start)
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	st := s.review(r.Context(), rev)
	result := ResultAuthenticated
	if !st.Authenticated {
		result = ResultUnauthenticated
		s.log.Info("token review", "authenticated", false, "reason", st.Error, "audiences", rev.Audiences)
	} else {
		s.log.Info("token review", "authenticated", true, "username", st.Username, "groups", st.Groups, "rule", st.Extra["sekisho.io/rule"], "audiences", st.Audiences)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := Encode(w, rev.APIVersion, st); err != nil {
		s.log.Warn("token review answer not sent", "error", err)
	}
	s.report(result, start)
}

func (s *Server) report(result string, start time.Time) {
	if s.OnReview != nil {
		s.OnReview(result, time.Since(start))
	}
}

// review authenticates the token and maps the identity. Every failure is
// an unauthenticated status with a reason that is safe to show.
func (s *Server) review(ctx context.Context, rev Review) Status {
	snap := s.current()
	if snap == nil || snap.KubeWebhook == nil || snap.KubeWebhook.Users == nil {
		return Status{Error: "the token webhook is not configured (kube.webhook)"}
	}
	if snap.Authn == nil {
		return Status{Error: "no JWT issuer or API token is configured"}
	}
	id, err := snap.Authn.Token(ctx, rev.Token)
	if err != nil {
		return Status{Error: err.Error()}
	}
	auds, ok := audiences(rev.Audiences, tokenAudiences(id.Claims), snap.KubeWebhook.Audiences)
	if !ok {
		return Status{Error: fmt.Sprintf("the token is not valid for the requested audiences %s (list them in kube.webhook.audiences if this issuer's tokens are meant for this cluster)", printableList(rev.Audiences))}
	}
	u, err := snap.KubeWebhook.Users.Map(id)
	if err != nil {
		return Status{Error: err.Error()}
	}
	return Status{Authenticated: true, Username: u.Username, UID: u.UID, Groups: u.Groups, Extra: u.Extra, Audiences: auds}
}

// audiences is the answer's status.audiences: the requested audiences the
// token is good for, by its own "aud" or by the webhook's configuration.
// No requested audiences means the caller does not check them (nil, ok).
func audiences(requested, token, configured []string) ([]string, bool) {
	if len(requested) == 0 {
		return nil, true
	}
	var out []string
	for _, a := range requested {
		if slices.Contains(token, a) || slices.Contains(configured, a) {
			out = append(out, a)
		}
	}
	return out, len(out) > 0
}

// printableList quotes at most a few caller-supplied names for a message.
func printableList(names []string) string {
	const most = 4
	out := make([]string, 0, most+1)
	for i, n := range names {
		if i == most {
			out = append(out, "…")
			break
		}
		out = append(out, strconv.Quote(printable(n)))
	}
	return "[" + strings.Join(out, " ") + "]"
}

// tokenAudiences reads a JWT's "aud" claim: a string or a list of strings.
func tokenAudiences(claims map[string]any) []string {
	switch v := claims["aud"].(type) {
	case string:
		return []string{v}
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
