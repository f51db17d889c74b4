package config

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sekisho/sekisho/internal/kubeapi"
	"github.com/sekisho/sekisho/internal/route"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// KubeResources reads routes from sekisho.io Route objects besides the
// file's: a second source for the same compiler.
type KubeResources struct {
	// Kubeconfig is the API client's kubeconfig; by default the pod's
	// service account (in-cluster), else $KUBECONFIG.
	Kubeconfig string `yaml:"kubeconfig"`
	// Namespaces whose routes are read; by default every namespace.
	Namespaces []string `yaml:"namespaces"`
	// NamespaceSelector is a label selector on Namespace objects: only
	// routes of the namespaces it selects are read.
	NamespaceSelector string `yaml:"namespace_selector"`
	// AllowURLs lets routes from resources send to any URL; by default
	// they may only name a Service of their own namespace, so a namespace
	// cannot point the gateway at another's services or at the cloud
	// metadata endpoint.
	AllowURLs bool `yaml:"allow_urls"`
	// ClusterDomain completes service/NAME:PORT upstreams
	// (NAME.NAMESPACE.svc.CLUSTER_DOMAIN).
	ClusterDomain string `yaml:"cluster_domain"`
	// SharedHosts are hosts on which routes of several namespaces (and
	// the file's) may sit side by side. Every other host belongs to the
	// file when a file route names it, else to the namespace of its
	// oldest Route object: no other namespace can add a path to it and so
	// take a share of its traffic and credentials.
	SharedHosts []string `yaml:"shared_hosts"`
	// LeaderElection names the Lease that picks the one replica writing
	// status and Events.
	LeaderElection LeaderElection `yaml:"leader_election"`
}

// LeaderElection names the Lease of the status writer.
type LeaderElection struct {
	// Namespace defaults to the pod's (POD_NAMESPACE, else the service
	// account's namespace file).
	Namespace string `yaml:"namespace"`
	Name      string `yaml:"name"`
}

// DefaultClusterDomain is Kubernetes' default DNS domain.
const DefaultClusterDomain = "cluster.local"

// ResourceRoute is a route read from a Route object. The watcher hands
// these to the compiler through Options.Resources.
type ResourceRoute struct {
	Namespace, Name string
	Generation      int64
	// Created orders resources for conflicts: the older wins.
	Created time.Time
	// Spec is the object's spec as JSON: a route of the file, without name.
	Spec []byte
}

// Key is NAMESPACE/NAME, the route's name in logs and metrics.
func (r *ResourceRoute) Key() string { return r.Namespace + "/" + r.Name }

// checkKubeResources resolves the section's paths and reports bad values.
func (c *compiler) checkKubeResources(f *File) {
	if f.Kube == nil || f.Kube.Resources == nil {
		return
	}
	k := f.Kube.Resources
	at := []any{"kube", "resources"}
	k.Kubeconfig = c.path(k.Kubeconfig)
	for i, ns := range k.Namespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			c.addf(append(at, "namespaces", i), "%q is not a namespace name: %s", ns, strings.Join(errs, "; "))
		}
	}
	if k.NamespaceSelector != "" {
		if _, err := labels.Parse(k.NamespaceSelector); err != nil {
			c.addf(append(at, "namespace_selector"), "not a label selector: %v", err)
		}
	}
	if k.ClusterDomain == "" {
		k.ClusterDomain = DefaultClusterDomain
	} else if errs := validation.IsDNS1123Subdomain(strings.TrimSuffix(k.ClusterDomain, ".")); len(errs) > 0 {
		c.addf(append(at, "cluster_domain"), "%q is not a DNS domain: %s", k.ClusterDomain, strings.Join(errs, "; "))
	}
	for i, h := range k.SharedHosts {
		name := strings.TrimPrefix(strings.ToLower(strings.TrimSuffix(h, ".")), "*.")
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			c.addf(append(at, "shared_hosts", i), "%q is not a host name (or *.domain): %s", h, strings.Join(errs, "; "))
		}
	}
	le := &k.LeaderElection
	if le.Name == "" {
		le.Name = "sekisho"
	} else if errs := validation.IsDNS1123Subdomain(le.Name); len(errs) > 0 {
		c.addf(append(at, "leader_election", "name"), "%q is not a Lease name: %s", le.Name, strings.Join(errs, "; "))
	}
	if le.Namespace != "" {
		if errs := validation.IsDNS1123Label(le.Namespace); len(errs) > 0 {
			c.addf(append(at, "leader_election", "namespace"), "%q is not a namespace name: %s", le.Namespace, strings.Join(errs, "; "))
		}
	}
}

// resourceScope is what a route from a resource may reach: a compiler
// with one set compiles that route, and its problems are the resource's.
type resourceScope struct {
	namespace     string
	allowURLs     bool
	clusterDomain string
}

// compileResources compiles the routes of Route objects. A resource that
// does not compile, or that loses a conflict, is left out and reported in
// the snapshot's Resources; it never fails the compile. The file's rules
// come first in rules and win every conflict.
func (c *compiler) compileResources(s *snapshot.Snapshot, f *File, rules []route.Rule[*snapshot.Route], compileRoute func(*compiler, *Route, []any) route.Rule[*snapshot.Route]) (*route.Table[*snapshot.Route], bool) {
	var resources []ResourceRoute
	if c.opts.Resources != nil && f.Kube != nil && f.Kube.Resources != nil {
		resources = slices.Clone(c.opts.Resources())
	}
	// Older first, then by name: the order conflicts are decided in.
	slices.SortFunc(resources, func(a, b ResourceRoute) int {
		if d := a.Created.Compare(b.Created); d != 0 {
			return d
		}
		return cmp.Compare(a.Key(), b.Key())
	})
	status := make([]snapshot.ResourceStatus, len(resources))
	owners := newHostOwners(rules, f.Kube.Resources.SharedHosts)
	var candidates []int // indices into resources, in table order after the file's rules
	for i := range resources {
		res := &resources[i]
		status[i] = snapshot.ResourceStatus{Namespace: res.Namespace, Name: res.Name, Generation: res.Generation}
		sub := &compiler{baseDir: c.baseDir, opts: c.opts, refs: c.refs, env: c.env, file: c.file, hidden: c.hidden, scope: &resourceScope{
			namespace: res.Namespace, allowURLs: f.Kube.Resources.AllowURLs, clusterDomain: f.Kube.Resources.ClusterDomain}}
		r, ok := sub.decodeResource(res)
		var rule route.Rule[*snapshot.Route]
		if ok {
			rule = compileRoute(sub, r, []any{"spec"})
		}
		if ok && len(rule.Hosts) == 0 {
			sub.addf([]any{"spec", "match"}, "a route from a resource names its hosts (match.host or match.hosts): a route for any host would take paths of hosts other namespaces own")
		}
		if len(sub.problems) > 0 {
			status[i].Reason, status[i].Message = kubeapi.ReasonInvalid, problemsMessage(sub.problems)
			continue
		}
		if msg := owners.claim(res, rule.Hosts); msg != "" {
			status[i].Reason, status[i].Message = kubeapi.ReasonConflicted, msg
			continue
		}
		rules = append(rules, rule)
		candidates = append(candidates, i)
	}
	nFile := len(rules) - len(candidates)
	for {
		table, err := route.New(rules)
		if err == nil {
			for _, i := range candidates {
				status[i].Accepted, status[i].Reason = true, kubeapi.ReasonAccepted
				status[i].Message = "served as route " + resources[i].Key()
			}
			s.Resources = status
			return table, true
		}
		// File rules' own errors fail the compile as before; a resource
		// rule's error leaves that resource out, and the table is built
		// again without it.
		drop := map[int]bool{}
		for _, e := range unjoin(err) {
			var re *route.RuleError
			if !errors.As(e, &re) || re.Index < nFile {
				c.routeErrors(err)
				return nil, false
			}
			j := re.Index - nFile
			drop[j] = true
			st := &status[candidates[j]]
			if re.Winner != "" {
				st.Reason, st.Message = kubeapi.ReasonConflicted, fmt.Sprintf("%v (the file's routes, then older resources, take precedence)", re.Err)
			} else {
				st.Reason, st.Message = kubeapi.ReasonInvalid, "spec.match: "+re.Err.Error()
			}
		}
		keep := rules[:nFile:nFile]
		var kept []int
		for j, i := range candidates {
			if !drop[j] {
				keep = append(keep, rules[nFile+j])
				kept = append(kept, i)
			}
		}
		rules, candidates = keep, kept
	}
}

// hostOwners decides who may put routes on a host: the file, for the
// hosts its routes name; else the namespace of the oldest Route object
// naming it. Shared hosts belong to no one.
type hostOwners struct {
	shared map[string]bool
	owner  map[string]string // host ("*.example.com" too) → namespace, or "" for the file
	by     map[string]string // host → the object that took it, for messages
	order  []string          // owned hosts as taken (the file's first), so messages are stable
}

func (o *hostOwners) take(h, ns, by string) {
	if _, taken := o.owner[h]; taken || o.shared[h] {
		return
	}
	o.owner[h], o.by[h] = ns, by
	o.order = append(o.order, h)
}

func newHostOwners(fileRules []route.Rule[*snapshot.Route], shared []string) *hostOwners {
	o := &hostOwners{shared: map[string]bool{}, owner: map[string]string{}, by: map[string]string{}}
	for _, h := range shared {
		o.shared[strings.ToLower(strings.TrimSuffix(h, "."))] = true
	}
	for _, r := range fileRules {
		for _, h := range r.Hosts {
			o.take(h, "", "")
		}
	}
	return o
}

// claim gives res's hosts to its namespace, or says whose one of them
// is. A wildcard and the hosts under it count as one claim.
func (o *hostOwners) claim(res *ResourceRoute, hosts []string) string {
	for _, h := range hosts {
		if o.shared[h] {
			continue
		}
		for _, owned := range o.order {
			ns := o.owner[owned]
			if ns == res.Namespace || !(owned == h || covers(owned, h) || covers(h, owned)) {
				continue
			}
			if ns == "" {
				return fmt.Sprintf("host %q belongs to the gateway's configuration file (a route there names %q); list it in kube.resources.shared_hosts to let namespaces add routes to it", h, owned)
			}
			return fmt.Sprintf("host %q belongs to namespace %s (its Route %s named %q first); list it in kube.resources.shared_hosts to let namespaces share it", h, ns, o.by[owned], owned)
		}
	}
	for _, h := range hosts {
		o.take(h, res.Namespace, res.Key())
	}
	return ""
}

// covers reports whether the wildcard host w ("*.example.com") matches h.
func covers(w, h string) bool {
	domain, ok := strings.CutPrefix(w, "*")
	return ok && strings.HasSuffix(h, domain) && len(h) > len(domain)
}

// problemsMessage joins a resource's problems into one status message,
// each with its field path (spec.allow[0].when: ...).
func problemsMessage(ps []Problem) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		p.File, p.Line = "", 0
		parts[i] = strings.TrimPrefix(p.String(), ": ")
	}
	return strings.Join(parts, "; ")
}

// decodeResource decodes a Route object's spec with the file's rules
// (unknown keys, types), as a route named NAMESPACE/NAME.
func (c *compiler) decodeResource(res *ResourceRoute) (*Route, bool) {
	var node yaml.Node
	spec := &node
	if err := yaml.Unmarshal(res.Spec, &node); err != nil {
		spec = &yaml.Node{} // the API server stores JSON: only a test gets here
	} else if spec.Kind == yaml.DocumentNode && len(spec.Content) == 1 {
		spec = spec.Content[0]
	}
	// A root mapping {spec: ...} so problems locate at spec.* paths.
	c.root = &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: "spec"}, spec}}
	if spec.Kind != yaml.MappingNode {
		c.addf([]any{"spec"}, "the spec must be a mapping (a route of the configuration file)")
		return nil, false
	}
	for i := 0; i+1 < len(spec.Content); i += 2 {
		if spec.Content[i].Value == "name" {
			c.addf([]any{"spec", "name"}, "a route from a resource is named NAMESPACE/NAME after the object; remove name")
		}
	}
	checkKeys(spec, reflect.TypeFor[Route](), "spec", func(_ int, key, msg string) {
		c.problems = append(c.problems, Problem{Key: key, Msg: msg})
	})
	var r Route
	if err := spec.Decode(&r); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, e := range te.Errors {
				p := c.yamlProblem(e)
				p.Line = 0
				p.Key = "spec"
				c.problems = append(c.problems, p)
			}
		} else {
			c.addf([]any{"spec"}, "%v", err)
		}
	}
	if len(c.problems) > 0 {
		return nil, false
	}
	r.Name = res.Key()
	if t := r.UpstreamTLS; t != nil {
		for _, f := range []struct {
			key string
			v   *string
		}{{"ca_file", &t.CAFile}, {"cert_file", &t.CertFile}, {"key_file", &t.KeyFile}} {
			if *f.v != "" {
				c.addf([]any{"spec", "upstream_tls", f.key}, "a route from a resource cannot name files of the gateway")
				*f.v = "" // never read, not even to say it is missing
			}
		}
	}
	return &r, true
}

// serviceUpstream turns service/NAME:PORT (a route from a resource: a
// Service of its namespace) or service/NAMESPACE/NAME:PORT (a file route)
// into the Service's cluster DNS URL.
func (c *compiler) serviceUpstream(raw, clusterDomain string) (*url.URL, error) {
	ref := strings.TrimPrefix(raw, "service/")
	hostPart, port, ok := strings.Cut(ref, ":")
	if !ok {
		return nil, fmt.Errorf("upstream %q: want service/NAME:PORT", raw)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("upstream %q: the port must be a number from 1 to 65535", raw)
	}
	var ns, name string
	switch segs := strings.Split(hostPart, "/"); {
	case c.scope != nil && len(segs) == 1:
		ns, name = c.scope.namespace, segs[0]
	case c.scope != nil:
		return nil, fmt.Errorf("upstream %q: a route from a resource sends only to Services of its own namespace (service/NAME:PORT)", raw)
	case len(segs) == 2:
		ns, name = segs[0], segs[1]
	default:
		return nil, fmt.Errorf("upstream %q: in the configuration file, name the namespace: service/NAMESPACE/NAME:PORT", raw)
	}
	if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
		return nil, fmt.Errorf("upstream %q: %q is not a Service name: %s", raw, name, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return nil, fmt.Errorf("upstream %q: %q is not a namespace name: %s", raw, ns, strings.Join(errs, "; "))
	}
	return &url.URL{Scheme: "http", Host: name + "." + ns + ".svc." + strings.TrimSuffix(clusterDomain, ".") + ":" + port}, nil
}
