// Package baotest runs a real OpenBao server (bao server -dev, on
// loopback, in a process group of its own) for the tests of sekisho's
// Vault/OpenBao secret store, and sets it up the way a deployment would:
// KV v2 secrets with several versions, a policy and a token limited to one
// path, JWT auth with a test signing key standing in for Kubernetes'
// service-account tokens.
//
// bao is built once per machine from the tools module tools/openbao
// (EnsureBinary); it is test support, never imported by production code.
package baotest
