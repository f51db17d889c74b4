// Package memfs tells whether a directory is memory-backed, so that
// secrets sekisho writes to files (`sekisho exec` tempfiles, Kubernetes
// Secrets behind file settings) never reach a disk unless asked to.
package memfs

// DefaultDir is a memory-backed file system on every Linux system and in
// every container runtime's default mounts.
const DefaultDir = "/dev/shm"
