//go:build tools

// Package helm pins the helm CLI the tests render the chart with
// (deploy/helm/sekisho), built once per machine from this module (its own
// go.mod, so helm's dependencies never mix with sekisho's) into a cache
// directory by internal/helmtest.
package helm

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
