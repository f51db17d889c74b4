// Package deploy holds sekisho's deployment artifacts (the Helm chart in
// helm/sekisho, the rendered manifests, the CRDs) and no code: its tests
// render the chart with the real helm CLI, compare the committed
// manifests, submit every rendered object to a real kube-apiserver, check
// the chart's RBAC by acting as its service account, and build the binary
// with the Dockerfile's own command.
package deploy
