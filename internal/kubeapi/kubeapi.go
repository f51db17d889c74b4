// Package kubeapi names sekisho's Kubernetes API: the group, version and
// resources of its custom resources, and the condition types and reasons
// written to their status. The watcher, the CRD generator, the chart's
// RBAC and the docs all spell them from here, so they cannot drift apart.
package kubeapi

import "k8s.io/apimachinery/pkg/runtime/schema"

const (
	// Group is the API group of sekisho's custom resources.
	Group = "sekisho.io"
	// Version is the only served version; v1alpha1 says the shape may
	// still change.
	Version = "v1alpha1"
	// RouteKind is a route served by the gateway, namespaced. Its spec is
	// a route of the configuration file, without the name (the route is
	// named NAMESPACE/NAME).
	RouteKind = "Route"
	// RouteResource is the plural resource name of RouteKind.
	RouteResource = "routes"
)

// Routes is the resource the watcher lists and watches.
var Routes = schema.GroupVersionResource{Group: Group, Version: Version, Resource: RouteResource}

// Condition types and reasons written to a route's status.conditions.
const (
	// ConditionAccepted is True when the route is served.
	ConditionAccepted = "Accepted"

	// ReasonAccepted: the route compiled and is served.
	ReasonAccepted = "Accepted"
	// ReasonInvalid: the spec does not compile; the message names the
	// field path and the problem.
	ReasonInvalid = "Invalid"
	// ReasonConflicted: another route (from the file, or an older
	// resource) has the same match; the message names it.
	ReasonConflicted = "Conflicted"
)
