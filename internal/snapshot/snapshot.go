// Package snapshot is the compiled configuration requests run on: the route
// table, the policies, the authenticators, the upstream pools and browser
// login, immutable once built. It knows no YAML: internal/config decodes
// the file and compiles it into a Snapshot, and the stages that serve
// requests (engine, gateway, decision, explain) read only this package.
package snapshot

import (
	"context"
	"net/http"

	"github.com/sekisho/sekisho/internal/assertion"
	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/kubeuser"
	"github.com/sekisho/sekisho/internal/login"
	"github.com/sekisho/sekisho/internal/normalize"
	"github.com/sekisho/sekisho/internal/reuse"
	"github.com/sekisho/sekisho/internal/route"
	"github.com/sekisho/sekisho/internal/session"
)

// DevIDPPrefix is where built-in providers are served: DevIDPPrefix + name.
const DevIDPPrefix = login.DefaultPathPrefix + "/dev/"

// Snapshot is one compiled, immutable configuration. Requests load the
// current snapshot once and use only it, so a reload never changes the rules
// under a request in flight.
type Snapshot struct {
	// Source is where the configuration came from.
	Source string
	// Routes is the compiled route table.
	Routes *route.Table[*Route]
	// Trust says whose X-Forwarded-* headers are believed.
	Trust *normalize.Trust
	// Strip lists the identity and method-override headers removed from
	// every inbound request (an applied override is put back).
	Strip *normalize.HeaderSet
	// Hidden is Strip plus the credential header and the forwarding headers
	// (normalize.ForwardingHeaders): names route conditions and policies
	// never look at, since a client controls their values.
	Hidden *normalize.HeaderSet
	// Authn finds and verifies credentials: bearer JWT, API token, and the
	// browser session of Login.
	Authn *authn.Chain
	// Headers are the identity headers set on forwarded requests.
	Headers IdentityHeaders
	// Assertion signs the identity JWT sent upstream; nil when off.
	Assertion       *assertion.Signer
	AssertionHeader string
	// Realm is used in WWW-Authenticate challenges.
	Realm string

	// Login is browser login; nil without providers.
	Login *Login

	// KubeWebhook is what the TokenReview webhook answers with; nil
	// without kube.webhook.
	KubeWebhook *KubeWebhook

	// Resources says what became of each route read from a Kubernetes
	// Route object: served, or left out and why. The watcher writes it
	// to the objects' status.
	Resources []ResourceStatus

	// WatchFiles lists the files besides the configuration whose change
	// should reload it: API tokens, and the secret files, so that a
	// rotated key takes effect.
	WatchFiles []string

	// refs are the snapshot's references on the shared parts it uses (JWT
	// verifier, login service, assertion signer, upstream pools); Close
	// gives them back.
	refs *reuse.Refs
}

// ResourceStatus is what became of one Route object in a compile.
type ResourceStatus struct {
	Namespace, Name string
	// Generation is the object's metadata.generation that was compiled.
	Generation int64
	Accepted   bool
	// Reason is one of the kubeapi reasons (Accepted, Invalid,
	// Conflicted); Message says why, with field paths.
	Reason, Message string
}

// New returns an empty snapshot holding refs, the references on shared
// parts its compile takes; Close gives them back.
func New(refs *reuse.Refs) *Snapshot {
	return &Snapshot{refs: refs}
}

// IdentityHeaders are the names of the headers that carry the caller's
// identity to the upstream.
type IdentityHeaders struct {
	User   string
	Email  string
	Groups string
}

// KubeWebhook is the reloadable part of the TokenReview webhook: who
// each identity is in Kubernetes, and which API audiences it is good for.
type KubeWebhook struct {
	Users *kubeuser.Mapper
	// Audiences are those a review may ask about whatever the token's own
	// audience (kube.webhook.audiences).
	Audiences []string
}

// Login is the browser-login part of a snapshot: the login service, its
// session store and the built-in providers. It is shared across reloads
// that change neither its configuration nor the secret files it names, so
// a reload neither logs everyone out nor forgets logins in progress.
type Login struct {
	Service *login.Service
	// Store keeps the sessions Service creates.
	Store session.Store
	// DevIDPs maps a mount path (DevIDPPrefix + name + "/") to the
	// handler of a built-in provider.
	DevIDPs map[string]http.Handler
}

// Close gives back the snapshot's references on its shared parts; those
// no other snapshot uses are closed (background key refresh stopped, idle
// upstream connections closed). It is called after a newer snapshot has
// replaced this one; requests still running on it finish normally. Calling
// it again does nothing.
func (s *Snapshot) Close() {
	s.refs.Release()
}

// WaitReady waits until the JWT verifier has keys for every issuer and the
// login providers are discovered, or ctx ends. Start and reload call it
// before serving the snapshot, so tokens that verified a moment ago keep
// verifying and the first browser is not told the provider is unreachable.
func (s *Snapshot) WaitReady(ctx context.Context) bool {
	var waits []<-chan struct{}
	if s.Authn != nil && s.Authn.JWT != nil {
		waits = append(waits, s.Authn.JWT.KeysReady())
	}
	if s.Login != nil {
		waits = append(waits, s.Login.Service.Discovered())
	}
	for _, ready := range waits {
		select {
		case <-ready:
		case <-ctx.Done():
			return false
		}
	}
	return true
}
