//go:build tools

// Package kube pins the real Kubernetes servers the tests run: kube-apiserver
// and etcd, built once per machine from this module (its own go.mod, so their
// dependencies never mix with sekisho's) into a cache directory by
// internal/kubetest.
package kube

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
