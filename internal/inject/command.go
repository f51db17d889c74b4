package inject

import (
	"errors"
	"slices"
	"strings"
)

// Exec is the wrapper the injector puts in front of a container's
// command: the sekisho binary the init container copied into the shared
// memory volume, then `exec --`.
var Exec = []string{BinaryPath, "exec", "--"}

// MountPath is where the sekisho binary's volume is mounted in every
// container the injector wraps; BinaryPath is the binary in it.
const (
	MountPath  = "/sekisho"
	BinaryPath = MountPath + "/sekisho"
)

// ImageConfig is the part of an image's configuration that decides what a
// container runs when its pod does not say.
type ImageConfig struct {
	Entrypoint []string
	Cmd        []string
}

// errNoCommand is what the container runtime would fail with: neither the
// pod nor the image names a program.
var errNoCommand = errors.New("neither the pod nor the image names a program to run (no command, args, ENTRYPOINT or CMD)")

// Effective is the argv a container runs, combined exactly as the kubelet
// and the container runtime (containerd's CRI plugin, CRI-O) do:
//   - command set: command + args; the image's ENTRYPOINT and CMD are
//     ignored, even when args is empty;
//   - only args set: ENTRYPOINT + args (CMD ignored);
//   - neither: ENTRYPOINT + CMD.
//
// An ENTRYPOINT of exactly [""] is Docker's way of clearing it and counts
// as none. Empty lists count as unset, as they do once the API server has
// stored the pod.
func Effective(command, args []string, img ImageConfig) ([]string, error) {
	var argv []string
	if len(command) > 0 {
		argv = append(slices.Clone(command), args...)
	} else {
		if !(len(img.Entrypoint) == 1 && img.Entrypoint[0] == "") {
			argv = slices.Clone(img.Entrypoint)
		}
		if len(args) > 0 {
			argv = append(argv, args...)
		} else {
			argv = append(argv, img.Cmd...)
		}
	}
	if len(argv) == 0 {
		return nil, errNoCommand
	}
	return argv, nil
}

// Wrap returns the command and args that run the same argv as command and
// args would (with the image's ENTRYPOINT/CMD img when command is empty),
// behind `sekisho exec --`. The pod's own command and args are kept as
// written, so the kubelet expands their $(VAR) references as before;
// strings taken from the image are escaped ($ → $$), because the kubelet
// expands $(VAR) in a pod's command and args but never in the image's.
// needImage reports that command is empty, so img was used.
func Wrap(command, args []string, img ImageConfig) (newCommand, newArgs []string, err error) {
	if len(command) > 0 {
		return append(slices.Clone(Exec), command...), slices.Clone(args), nil
	}
	ep := img.Entrypoint
	if len(ep) == 1 && ep[0] == "" {
		ep = nil
	}
	newCommand = append(slices.Clone(Exec), escapeAll(ep)...)
	if len(args) > 0 {
		newArgs = slices.Clone(args)
	} else {
		newArgs = escapeAll(img.Cmd)
	}
	if len(ep) == 0 && len(newArgs) == 0 {
		return nil, nil, errNoCommand
	}
	return newCommand, newArgs, nil
}

// Wrapped reports whether command already starts with the wrapper: the
// injector has seen this container before.
func Wrapped(command []string) bool {
	return len(command) >= len(Exec) && slices.Equal(command[:len(Exec)], Exec)
}

// escapeAll escapes every string for the kubelet's $(VAR) expansion, in
// which "$$" stands for "$": the result expands back to the input exactly.
func escapeAll(ss []string) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ReplaceAll(s, "$", "$$")
	}
	return out
}
