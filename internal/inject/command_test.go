package inject

import (
	"bytes"
	"slices"
	"testing"
)

// expand is the kubelet's $(VAR) expansion of command and args
// (k8s.io/kubernetes third_party/forked/golang/expansion), copied so the
// tests can check that a wrapped command expands to what the original
// would have: "$$" is "$", "$(NAME)" is the variable if defined, anything
// else is kept.
func expand(input string, vars map[string]string) string {
	var buf bytes.Buffer
	checkpoint := 0
	for cursor := 0; cursor < len(input); cursor++ {
		if input[cursor] == '$' && cursor+1 < len(input) {
			buf.WriteString(input[checkpoint:cursor])
			read, isVar, advance := readVariable(input[cursor+1:])
			if isVar {
				if v, ok := vars[read]; ok {
					buf.WriteString(v)
				} else {
					buf.WriteString("$(" + read + ")")
				}
			} else {
				buf.WriteString(read)
			}
			cursor += advance
			checkpoint = cursor + 1
		}
	}
	return buf.String() + input[checkpoint:]
}

func readVariable(input string) (string, bool, int) {
	switch input[0] {
	case '$':
		return input[0:1], false, 1
	case '(':
		for i := 1; i < len(input); i++ {
			if input[i] == ')' {
				return input[1:i], true, i + 1
			}
		}
		return "$(", false, 1
	default:
		return "$" + string(input[0]), false, 1
	}
}

func expandAll(ss []string, vars map[string]string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = expand(s, vars)
	}
	return out
}

var vars = map[string]string{"PORT": "8080", "HOME": "/root"}

// runs is what a container runs: its command and args expanded by the
// kubelet, combined with the image by the runtime.
func runs(t *testing.T, command, args []string, img ImageConfig) []string {
	t.Helper()
	argv, err := Effective(expandAll(command, vars), expandAll(args, vars), img)
	if err != nil {
		t.Fatal(err)
	}
	return argv
}

func TestEffectiveAndWrap(t *testing.T) {
	img := ImageConfig{Entrypoint: []string{"/entry", "-x"}, Cmd: []string{"serve", "--home=$(HOME)", "$$", "50$"}}
	for _, tc := range []struct {
		name          string
		command, args []string
		img           ImageConfig
		want          []string
	}{
		{"neither: ENTRYPOINT + CMD", nil, nil, img, []string{"/entry", "-x", "serve", "--home=$(HOME)", "$$", "50$"}},
		{"args only: ENTRYPOINT + args", nil, []string{"run", "$(PORT)"}, img, []string{"/entry", "-x", "run", "8080"}},
		{"command only: CMD ignored", []string{"/bin/app"}, nil, img, []string{"/bin/app"}},
		{"command and args", []string{"/bin/app", "--port=$(PORT)"}, []string{"$$(PORT)", "$(NOPE)"}, img, []string{"/bin/app", "--port=8080", "$(PORT)", "$(NOPE)"}},
		{"empty lists are unset", []string{}, []string{}, img, []string{"/entry", "-x", "serve", "--home=$(HOME)", "$$", "50$"}},
		{"ENTRYPOINT [\"\"] is none", nil, nil, ImageConfig{Entrypoint: []string{""}, Cmd: []string{"/bin/sh"}}, []string{"/bin/sh"}},
		{"ENTRYPOINT [\"\"] with args", nil, []string{"/bin/true"}, ImageConfig{Entrypoint: []string{""}, Cmd: []string{"/bin/sh"}}, []string{"/bin/true"}},
		{"CMD only", nil, nil, ImageConfig{Cmd: []string{"/bin/sh", "-c", "echo $HOME"}}, []string{"/bin/sh", "-c", "echo $HOME"}},
		{"ENTRYPOINT only, args", nil, []string{"a"}, ImageConfig{Entrypoint: []string{"/e"}}, []string{"/e", "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := runs(t, tc.command, tc.args, tc.img); !slices.Equal(got, tc.want) {
				t.Fatalf("Effective = %q, want %q", got, tc.want)
			}
			cmd, args, err := Wrap(tc.command, tc.args, tc.img)
			if err != nil {
				t.Fatal(err)
			}
			if !Wrapped(cmd) {
				t.Fatalf("Wrap's command %q does not start with the wrapper", cmd)
			}
			// The wrapped container, whatever its image, runs the wrapper
			// then exactly the original argv.
			got := runs(t, cmd, args, ImageConfig{Entrypoint: []string{"/other"}, Cmd: []string{"other"}})
			if want := append(slices.Clone(Exec), tc.want...); !slices.Equal(got, want) {
				t.Fatalf("wrapped runs %q, want %q", got, want)
			}
		})
	}
}

func TestNoCommandAnywhere(t *testing.T) {
	for _, img := range []ImageConfig{{}, {Entrypoint: []string{""}}} {
		if _, err := Effective(nil, nil, img); err == nil {
			t.Errorf("Effective(%+v): no error", img)
		}
		if _, _, err := Wrap(nil, nil, img); err == nil {
			t.Errorf("Wrap(%+v): no error", img)
		}
	}
}

func TestWrapped(t *testing.T) {
	for _, tc := range []struct {
		cmd  []string
		want bool
	}{
		{[]string{BinaryPath, "exec", "--", "/app"}, true},
		{[]string{BinaryPath, "exec", "--"}, true},
		{[]string{BinaryPath, "exec", "/app"}, false},
		{[]string{"/app", BinaryPath, "exec", "--"}, false},
		{nil, false},
	} {
		if got := Wrapped(tc.cmd); got != tc.want {
			t.Errorf("Wrapped(%q) = %v", tc.cmd, got)
		}
	}
}

// FuzzWrap: for any command, args and image, the wrapped container runs
// the wrapper followed by exactly what the original would have run.
func FuzzWrap(f *testing.F) {
	f.Add("", "", "/entry", "cmd $(HOME)", "$$(X)")
	f.Add("/app", "$(PORT)", "", "", "")
	f.Fuzz(func(t *testing.T, command, args, entry, cmd, extra string) {
		split := func(s string) []string {
			if s == "" {
				return nil
			}
			return []string{s, extra}
		}
		img := ImageConfig{Entrypoint: split(entry), Cmd: split(cmd)}
		want, err := Effective(expandAll(split(command), vars), expandAll(split(args), vars), img)
		c, a, werr := Wrap(split(command), split(args), img)
		if (err != nil) != (werr != nil) {
			t.Fatalf("Effective err %v, Wrap err %v", err, werr)
		}
		if err != nil {
			return
		}
		got, err := Effective(expandAll(c, vars), expandAll(a, vars), ImageConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, append(slices.Clone(Exec), want...)) {
			t.Fatalf("wrapped runs %q, want %q", got, want)
		}
	})
}
