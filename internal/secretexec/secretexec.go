// Package secretexec is `sekisho exec`: it replaces the secret references
// in its environment (internal/secretref) with the secrets, then replaces
// itself with the program, or, in supervise mode, runs the program as its
// child. It fails closed: when any reference does not resolve, the program
// is not started. Secret values never appear in what it writes: messages
// name the variable and the reference only.
package secretexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sekisho/sekisho/internal/memfs"
	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/secrets"
	"github.com/sekisho/sekisho/internal/secrets/stores"
)

// Exit codes of `sekisho exec` itself; any other code is the program's.
// They follow env(1) and timeout(1).
const (
	// ExitUsage: bad flags or no program.
	ExitUsage = 2
	// ExitUnresolved: a reference is malformed, or did not resolve, or its
	// destination file could not be written. The program was not started.
	ExitUnresolved = 125
	// ExitCannotRun: the program was found but could not be started.
	ExitCannotRun = 126
	// ExitNotFound: the program was not found.
	ExitNotFound = 127
)

// DefaultTimeout bounds resolving all references unless Options.Timeout
// says otherwise.
const DefaultTimeout = secrets.DefaultTimeout

// TmpDirEnv names the directory tempfile destinations are written in;
// DefaultTmpDir if unset.
const TmpDirEnv = "SEKISHO_TMPDIR"

// DefaultTmpDir is a memory-backed file system on every Linux system and
// in every container runtime's default mounts.
const DefaultTmpDir = memfs.DefaultDir

// Options are one run of `sekisho exec`.
type Options struct {
	// Args are the program and its arguments. A name without a slash is
	// looked up in the PATH of the resolved environment, as a shell does.
	Args []string
	// Environ is the environment to resolve (os.Environ()).
	Environ []string
	// Supervise runs the program as a child instead of replacing sekisho
	// with it (set on its own when sekisho is PID 1).
	Supervise bool
	// Timeout bounds resolving all references; secrets.DefaultTimeout if
	// zero.
	Timeout time.Duration
	// AllowDiskTempfile lets tempfile destinations be written to a
	// directory that is not memory-backed.
	AllowDiskTempfile bool
	// Stderr receives sekisho's own messages (never a value).
	Stderr io.Writer
	// Providers are the stores; those of stores.New over Environ if nil.
	Providers secrets.Providers
	// Refresh, when not zero, resolves the references again at this
	// interval and restarts the program when a value changed, so a
	// rotated secret reaches it. It implies Supervise.
	Refresh time.Duration
	// StopSignal asks the program to stop before a restart; SIGTERM if
	// zero.
	StopSignal syscall.Signal
	// Grace is how long the program has to stop before its process group
	// is killed; DefaultGrace if zero.
	Grace time.Duration

	// ticks replaces the Refresh clock in tests.
	ticks <-chan time.Time
	// refreshed, in tests, learns how each refresh ended.
	refreshed func(outcome string)
}

// DefaultGrace is the time a program has to stop before a restart, as
// long as Kubernetes gives a pod by default.
const DefaultGrace = 30 * time.Second

// Prepared is the program's environment once every reference resolved.
type Prepared struct {
	// Env is Environ with each reference replaced by its secret, or by
	// the path of the file the secret was written to.
	Env []string
	// TempFiles are the tempfile destinations written, which supervise
	// mode removes when the program ends.
	TempFiles []string

	refs      []found
	providers secrets.Providers
	values    [][]byte // resolved, indexed as refs
	paths     []string // destination files, indexed as refs
}

// Failure is one variable whose reference did not resolve.
type Failure struct {
	Var string
	Err error // names the reference and the reason, never a value
}

// FailedError lists every variable that did not resolve, not just the
// first, so one run shows all that needs fixing.
type FailedError struct {
	Failures []Failure
}

func (e *FailedError) Error() string {
	return describe(e.Failures, "the program was not started")
}

// describe lists the failures, one variable and its reference a line,
// after a line that counts them and says what follows from them.
func describe(fs []Failure, consequence string) string {
	lines := make([]string, len(fs))
	for i, f := range fs {
		lines[i] = f.Var + ": " + f.Err.Error()
	}
	return fmt.Sprintf("%d secret reference(s) did not resolve; %s:\n  %s", len(fs), consequence, strings.Join(lines, "\n  "))
}

type found struct {
	index int // in Environ
	name  string
	ref   secretref.Ref
}

// Prepare resolves every reference in opts.Environ and writes the files
// of those with a destination. It returns a *FailedError naming each
// variable that failed; then no file it wrote is left behind.
func Prepare(ctx context.Context, opts Options) (*Prepared, error) {
	env := append([]string(nil), opts.Environ...)
	var refs []found
	var failures []Failure
	for i, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		ref, isRef, err := secretref.Parse(value)
		switch {
		case err != nil:
			failures = append(failures, Failure{name, err})
		case isRef:
			refs = append(refs, found{i, name, ref})
		}
	}
	if len(refs) == 0 && len(failures) == 0 {
		return &Prepared{Env: env}, nil
	}
	providers := opts.Providers
	if providers == nil {
		providers = stores.New(getenv(opts.Environ)).Provider
	}
	p := &Prepared{Env: env, refs: refs, providers: providers}
	var values [][]byte
	if len(refs) > 0 {
		var more []Failure
		values, more = p.resolve(ctx, opts.Timeout)
		failures = append(failures, more...)
	}
	if len(failures) > 0 {
		sortFailures(failures, opts.Environ)
		return nil, &FailedError{failures}
	}
	paths, failures := p.write(values, nil, opts)
	if len(failures) > 0 {
		return nil, &FailedError{failures}
	}
	for i, f := range refs {
		value := values[i]
		if f.ref.Destination != "" {
			value = []byte(paths[i])
			if f.ref.Destination == secretref.TempFile {
				p.TempFiles = append(p.TempFiles, paths[i])
			}
		}
		env[f.index] = f.name + "=" + string(value)
	}
	p.values, p.paths = values, paths
	return p, nil
}

// resolve fetches every reference again with the same stores (whose
// credentials they keep), returning the values in the order of p.refs or
// the variables that failed.
func (p *Prepared) resolve(ctx context.Context, timeout time.Duration) ([][]byte, []Failure) {
	list := make([]secretref.Ref, len(p.refs))
	for i, f := range p.refs {
		list[i] = f.ref
	}
	values, errs := secrets.Resolver{Providers: p.providers, Timeout: timeout}.Resolve(ctx, list)
	var failures []Failure
	for i, err := range errs {
		if err != nil {
			failures = append(failures, Failure{p.refs[i].name, err})
		}
	}
	return values, failures
}

// write writes the value of every reference with a destination and
// returns the paths, indexed as p.refs. With old paths (a refresh) each
// file is replaced where it is, so the variable keeps its path; without,
// tempfiles are new. On failure it removes the new files it wrote.
func (p *Prepared) write(values [][]byte, old []string, opts Options) ([]string, []Failure) {
	paths := make([]string, len(p.refs))
	var written []string
	var failures []Failure
	for i, f := range p.refs {
		if f.ref.Destination == "" {
			continue
		}
		var path string
		var err error
		if old != nil {
			path, err = writeFile(f.ref, filepath.Dir(old[i]), old[i], values[i])
		} else {
			path, err = writeDestination(f.ref, values[i], opts)
			if err == nil {
				written = append(written, path)
			}
		}
		if err != nil {
			failures = append(failures, Failure{f.name, err})
			continue
		}
		paths[i] = path
	}
	if len(failures) > 0 {
		removeAll(written)
	}
	return paths, failures
}

// changed names the variables whose value differs from the one the
// program was started with.
func (p *Prepared) changed(values [][]byte) []string {
	var names []string
	for i, v := range values {
		if !bytes.Equal(v, p.values[i]) {
			names = append(names, p.refs[i].name)
		}
	}
	return names
}

// update sets the values and environment a restarted program gets.
func (p *Prepared) update(values [][]byte) {
	for i, f := range p.refs {
		if f.ref.Destination == "" {
			p.Env[f.index] = f.name + "=" + string(values[i])
		}
	}
	p.values = values
}

// sortFailures orders failures as their variables appear in the
// environment, so a message reads in a stable order.
func sortFailures(fs []Failure, environ []string) {
	pos := map[string]int{}
	for i, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := pos[name]; !ok {
			pos[name] = i
		}
	}
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && pos[fs[j].Var] < pos[fs[j-1].Var]; j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
}

// getenv looks names up in environ as the C library does: the first
// entry wins.
func getenv(environ []string) func(string) string {
	return func(key string) string {
		for _, kv := range environ {
			if k, v, ok := strings.Cut(kv, "="); ok && k == key {
				return v
			}
		}
		return ""
	}
}

// writeDestination writes value to a new 0600 file: a tempfile on the
// memory-backed directory, or the absolute path the reference names
// (replaced atomically, so no reader sees half a secret or a wider mode).
func writeDestination(ref secretref.Ref, value []byte, opts Options) (string, error) {
	if ref.Destination == secretref.TempFile {
		dir := getenv(opts.Environ)(TmpDirEnv)
		if dir == "" {
			dir = DefaultTmpDir
		}
		mem, err := memfs.MemoryBacked(dir)
		if err != nil {
			return "", fmt.Errorf("%s: tempfile directory %s: %w", ref.Raw, dir, err)
		}
		if !mem && !opts.AllowDiskTempfile {
			return "", fmt.Errorf("%s: tempfile directory %s is not memory-backed (tmpfs); set %s to a tmpfs directory, or pass --allow-disk-tempfile to accept a secret on disk", ref.Raw, dir, TmpDirEnv)
		}
		return writeFile(ref, dir, "", value)
	}
	return writeFile(ref, filepath.Dir(ref.Destination), ref.Destination, value)
}

// writeFile writes value to a new 0600 file in dir and, if final is set,
// renames it there; it returns the file's path.
func writeFile(ref secretref.Ref, dir, final string, value []byte) (string, error) {
	f, err := os.CreateTemp(dir, ".sekisho-secret-*")
	if err != nil {
		return "", fmt.Errorf("%s: destination: %w", ref.Raw, err)
	}
	path := f.Name()
	_, werr := f.Write(value)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("%s: write %s: %w", ref.Raw, path, err)
	}
	if final == "" {
		return path, nil
	}
	if err := os.Rename(path, final); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("%s: destination: %w", ref.Raw, err)
	}
	return final, nil
}

// Run prepares the environment, then replaces sekisho with the program (or
// supervises it) and returns the exit code sekisho must exit with: one of
// the Exit codes when the program could not be started, the program's
// status in supervise mode. In exec mode it returns only on failure.
func Run(ctx context.Context, opts Options) int {
	stderr := opts.Stderr
	if stderr == nil {
		stderr = io.Discard
	}
	if len(opts.Args) == 0 || opts.Args[0] == "" {
		fmt.Fprintln(stderr, "sekisho exec: no program given")
		return ExitUsage
	}
	p, err := Prepare(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "sekisho exec: %v\n", err)
		return ExitUnresolved
	}
	path, err := lookPath(opts.Args[0], getenv(p.Env)("PATH"))
	if err != nil {
		removeAll(p.TempFiles)
		fmt.Fprintf(stderr, "sekisho exec: %v\n", err)
		return ExitNotFound
	}
	if opts.Supervise || opts.Refresh > 0 || os.Getpid() == 1 {
		return supervise(ctx, path, opts, p, stderr)
	}
	err = execve(path, opts.Args, p.Env)
	// Still here: the program did not start.
	removeAll(p.TempFiles)
	fmt.Fprintf(stderr, "sekisho exec: %s: %v\n", opts.Args[0], err)
	if errors.Is(err, fs.ErrNotExist) {
		return ExitNotFound
	}
	return ExitCannotRun
}

func removeAll(paths []string) {
	for _, p := range paths {
		_ = os.Remove(p)
	}
}

// defaultPath is searched when PATH is unset, as execvp(3) does.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// lookPath finds the program as a shell does: a name with a slash as is,
// else the first executable regular file of that name in the PATH
// directories (an empty entry is the current directory).
func lookPath(name, pathEnv string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	if pathEnv == "" {
		pathEnv = defaultPath
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			if dir == "." {
				return "./" + name, nil
			}
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH", name)
}
