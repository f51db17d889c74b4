package engine

import (
	"net/http"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/reqinfo"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// Changes are what happens to an allowed request's headers before it goes
// upstream: the consumed credential, the spoofable identity and
// method-override headers and sekisho's session cookies go, the identity
// headers and assertion come. Result.UpstreamChanges computes them once;
// the gateway applies them to the request it forwards and the decision
// service turns them into its answer, so that an upstream behind either
// sees the same headers.
//
// They are a diff against the request's headers: no edit names a header
// that is already as it should be, nor one that Identity sets. Recording
// the usual few edits allocates nothing.
type Changes struct {
	n     int
	fixed [4]Edit
	more  []Edit
	// Identity are the identity headers and the signed assertion, to be set
	// last: the gateway's proxy stage sets them after removing hop-by-hop
	// headers, so that a client naming them in Connection cannot make them
	// disappear.
	Identity reqinfo.Headers
}

// Edit is one change to a request header other than the identity.
type Edit struct {
	// Name is the header's key in the request's header map.
	Name string
	// Values replace the header's values; nil removes the header.
	Values []string
}

// Len is the number of edits.
func (c *Changes) Len() int { return c.n }

// At is edit i, 0 <= i < Len.
func (c *Changes) At(i int) Edit {
	if i < len(c.fixed) {
		return c.fixed[i]
	}
	return c.more[i-len(c.fixed)]
}

// Apply makes the edits on h. It does not set Identity: the gateway sets
// it in its proxy stage, a decision service in its answer.
func (c *Changes) Apply(h http.Header) {
	for i := range c.n {
		if e := c.At(i); e.Values == nil {
			delete(h, e.Name)
		} else {
			h[e.Name] = e.Values
		}
	}
}

func (c *Changes) add(e Edit) {
	if c.n < len(c.fixed) {
		c.fixed[c.n] = e
	} else {
		c.more = append(c.more, e)
	}
	c.n++
}

// edits reports whether an edit names key already.
func (c *Changes) edits(key string) bool {
	for i := range c.n {
		if c.At(i).Name == key {
			return true
		}
	}
	return false
}

// remove records the removal of key, unless Identity sets it (replacing
// whatever the client sent) or it is removed already.
func (c *Changes) remove(key string) {
	if !c.Identity.Sets(key) && !c.edits(key) {
		c.add(Edit{Name: key})
	}
}

// UpstreamChanges computes what must change in h, the headers of the
// request res allowed, before it goes upstream:
//   - the credential sekisho consumed (Authorization, the configured token
//     header or token cookie) is removed, unless the route passes
//     credentials on (pass_credentials);
//   - the spoofable headers (identity and assertion names, the configured
//     strip list, method overrides) are removed, except the
//     method-override header the decision applied, which is kept with the
//     canonical method as its value;
//   - sekisho's session cookies are removed from Cookie;
//   - the identity headers and the assertion (audience: the route) are
//     set, when someone was authenticated.
//
// It changes nothing in h. It is meant for an Allowed result only.
func (res *Result) UpstreamChanges(snap *snapshot.Snapshot, h http.Header) Changes {
	var c Changes
	if res.Identity != nil {
		setIdentityHeaders(&c.Identity, snap, res.Identity, res.RouteName)
	}
	consumed := res.Source
	if res.Identity == nil || res.Route.PassCredentials {
		consumed = authn.SourceNone // passed on as it came
	}
	if name := snap.Authn.CredentialHeader(consumed); name != "" {
		if _, ok := h[name]; ok {
			c.remove(name)
		}
	}
	if k := res.OverrideHeader; k != "" && !c.Identity.Sets(k) {
		// The override the decision was made on goes upstream, canonical.
		if vs := h[k]; len(vs) != 1 || vs[0] != res.Method {
			c.add(Edit{Name: k, Values: []string{res.Method}})
		}
	}
	for k := range h {
		if k != res.OverrideHeader && snap.Strip.Matches(k) {
			c.remove(k)
		}
	}
	if lines, ok := h["Cookie"]; ok && !c.edits("Cookie") && !c.Identity.Sets("Cookie") {
		if kept, changed := snap.Authn.UpstreamCookies(lines, consumed); changed {
			if len(kept) == 0 {
				kept = nil // no cookie left: the header goes
			}
			c.add(Edit{Name: "Cookie", Values: kept})
		}
	}
	return c
}

// setIdentityHeaders records the identity headers and, when configured,
// the signed assertion (audience: the route) that tell an upstream who
// called.
func setIdentityHeaders(h *reqinfo.Headers, snap *snapshot.Snapshot, id *identity.Identity, route string) {
	if id.Username != "" {
		h.Set(snap.Headers.User, id.Username)
	}
	if id.Email != "" {
		h.Set(snap.Headers.Email, id.Email)
	}
	if len(id.Groups) > 0 {
		h.Set(snap.Headers.Groups, strings.Join(id.Groups, ","))
	}
	if snap.Assertion != nil {
		if tok, err := snap.Assertion.Sign(id, route, time.Now()); err == nil {
			h.Set(snap.AssertionHeader, tok)
		}
	}
}
