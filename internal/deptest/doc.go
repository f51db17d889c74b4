// Package deptest holds the test that keeps sekisho's packages layered, in
// the manner of Tailscale's tstest/deptest: a pipeline stage depends on no
// later stage, the engine every mode shares knows no mode and no socket, no
// production package pulls in test support, and cmd/sekisho stays a thin
// flag parser. The rules are tables in deptest_test.go, each forbidden
// dependency with the reason it is forbidden; docs/architecture.md explains
// the layering they keep.
//
// The package has no code of its own: nothing imports it.
package deptest
