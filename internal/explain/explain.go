// Package explain shows how the pipeline decides a request, and checks a
// table of expected decisions against a configuration: "test the policy
// before you apply it", on the same engine the gateway runs.
package explain

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/sekisho/sekisho/internal/engine"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// Request describes one request to evaluate.
type Request struct {
	Method  string            `yaml:"method" json:"method"`
	URL     string            `yaml:"url" json:"url"`
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`
	// ClientIP is the client address policy sees (default 127.0.0.1).
	ClientIP string `yaml:"client_ip" json:"client_ip,omitempty"`
	// Token is a credential to authenticate (sent as a Bearer token).
	Token string `yaml:"token" json:"-"`
	// Identity skips authentication and evaluates policy for this identity.
	Identity *identity.Identity `yaml:"identity" json:"identity,omitempty"`
}

// Step is one rule with its result.
type Step struct {
	Rule    string `json:"rule"`
	Matched bool   `json:"matched"`
	Detail  string `json:"detail,omitempty"`
}

// Report is the full account of one decision.
type Report struct {
	Method   string             `json:"method"`
	URL      string             `json:"url"`
	Path     string             `json:"canonical_path,omitempty"`
	Route    string             `json:"route,omitempty"`
	Public   bool               `json:"public,omitempty"`
	Identity *identity.Identity `json:"identity,omitempty"`
	Steps    []Step             `json:"rules,omitempty"`
	Decision string             `json:"decision"` // allow or deny
	Status   int                `json:"status"`
	Reason   string             `json:"reason"`
}

// Explain evaluates req against snap with every rule traced.
func Explain(ctx context.Context, snap *snapshot.Snapshot, req Request) (*Report, error) {
	r, err := req.httpRequest()
	if err != nil {
		return nil, err
	}
	ip := netip.MustParseAddr("127.0.0.1")
	if req.ClientIP != "" {
		if ip, err = netip.ParseAddr(req.ClientIP); err != nil {
			return nil, fmt.Errorf("client_ip %q: %w", req.ClientIP, err)
		}
	}
	id := req.Identity
	if id != nil {
		id = completeIdentity(*id)
	}
	res := engine.Evaluate(ctx, snap, r, engine.Options{ClientIP: ip, Identity: id, Explain: true})
	rep := &Report{
		Method:   r.Method,
		URL:      req.URL,
		Path:     res.Path.Path,
		Route:    res.RouteName,
		Identity: res.Identity,
		Status:   res.Outcome.Status(),
		Reason:   res.Reason,
		Decision: "deny",
	}
	if res.Route != nil {
		rep.Public = res.Route.Public
	}
	if res.Outcome == engine.Allowed {
		rep.Decision = "allow"
	}
	for _, s := range res.Steps {
		rep.Steps = append(rep.Steps, Step{Rule: s.Rule, Matched: s.Matched, Detail: s.Detail})
	}
	return rep, nil
}

// httpRequest builds the request the pipeline sees.
func (req Request) httpRequest() (*http.Request, error) {
	u, err := url.Parse(req.URL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("url %q: give an absolute http(s) URL, e.g. https://api.example.com/api1/users", req.URL)
	}
	method := strings.ToUpper(req.Method)
	if method == "" {
		method = http.MethodGet
	}
	target := u.EscapedPath()
	if target == "" {
		target = "/"
	}
	if u.RawQuery != "" {
		target += "?" + u.RawQuery
	}
	r, err := http.NewRequest(method, req.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	r.RequestURI = target
	for k, v := range req.Headers {
		r.Header.Set(k, v)
	}
	if req.Token != "" {
		r.Header.Set("Authorization", "Bearer "+req.Token)
	}
	return r, nil
}

// completeIdentity fills what a hand-written identity usually leaves out.
func completeIdentity(id identity.Identity) *identity.Identity {
	if id.Username == "" {
		id.Username = id.Email
	}
	if id.Subject == "" {
		id.Subject = id.Username
	}
	if id.Method == "" {
		id.Method = identity.MethodJWT
	}
	if id.Kind == "" {
		id.Kind = identity.KindUser
	}
	return &id
}

// WriteText prints a report for people.
func (rep *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "request:   %s %s\n", rep.Method, rep.URL)
	if rep.Path != "" {
		fmt.Fprintf(w, "path:      %s (canonical)\n", rep.Path)
	}
	switch {
	case rep.Route == "":
		fmt.Fprintln(w, "route:     (none)")
	case rep.Public:
		fmt.Fprintf(w, "route:     %s (public: no authentication)\n", rep.Route)
	default:
		fmt.Fprintf(w, "route:     %s\n", rep.Route)
	}
	if rep.Identity != nil {
		b, _ := json.Marshal(rep.Identity)
		fmt.Fprintf(w, "identity:  %s\n", b)
	} else if rep.Route != "" && !rep.Public {
		fmt.Fprintln(w, "identity:  (anonymous)")
	}
	for _, s := range rep.Steps {
		mark := "no match"
		if s.Matched {
			mark = "MATCH"
		}
		if s.Detail != "" {
			fmt.Fprintf(w, "  %-10s %-8s %s\n", s.Rule, mark, s.Detail)
		} else {
			fmt.Fprintf(w, "  %-10s %s\n", s.Rule, mark)
		}
	}
	fmt.Fprintf(w, "decision:  %s (%d): %s\n", rep.Decision, rep.Status, rep.Reason)
}
