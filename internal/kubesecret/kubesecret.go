// Package kubesecret puts keys of Kubernetes Secrets where the
// configuration expects files. A file setting written as
// `sekisho+k8s://NAMESPACE/SECRET/KEY` is materialized into a file of a
// private directory (0700, files 0600, on a memory-backed file system when
// there is one), and the compiler is handed that file's path: every part
// that reads files (the certificate reloaders, the config reload's file
// watch, the parts reused by file content) works unchanged.
//
// Each referenced Secret is watched by an informer of its own, listing and
// watching with the field selector metadata.name=SECRET in its namespace,
// so RBAC can grant exactly the Secrets the configuration names
// (resourceNames). A Secret's files are swapped all at once as the kubelet
// swaps a Secret volume: the keys live in a generation directory that a
// `..data` symlink points at, and a change writes a new generation and
// renames a new symlink over `..data`. A certificate and its key therefore
// change together, and directory watchers see one rename.
//
// A Secret that is deleted, or loses a key, keeps its last files (the
// gateway keeps serving) and is logged at WARN; the next compile that
// references it reports it.
package kubesecret

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/sekisho/sekisho/internal/kubeclient"
	"github.com/sekisho/sekisho/internal/memfs"
	"github.com/sekisho/sekisho/internal/secretref"
)

// DirEnv names the directory the private directory is made in. When unset,
// the system's temporary directory if it is memory-backed (the chart
// mounts a memory emptyDir at /tmp), else memfs.DefaultDir.
const DirEnv = "SEKISHO_SECRETS_DIR"

// DefaultWait bounds how long a first reference waits for its Secret to be
// read.
const DefaultWait = 10 * time.Second

// dataLink is the symlink naming a Secret directory's current generation.
// Secret keys cannot start with "..", so it never clashes with a key.
const dataLink = "..data"

// Options configure a Materializer.
type Options struct {
	// Dir is the directory the private directory is made in; see DirEnv.
	Dir string
	// Logger receives rotations and deletions (never a value).
	Logger *slog.Logger
	// Wait bounds reading a Secret the first time; DefaultWait if zero.
	Wait time.Duration
	// RestConfig returns the client configuration for a kubeconfig ("" is
	// the default: in a pod its service account, else $KUBECONFIG).
	// Default: kubeclient.Config(kubeclient.OptionsFromEnv(kubeconfig,
	// os.Getenv)).
	RestConfig func(kubeconfig string) (*rest.Config, error)
}

// Materializer writes the Secrets references name into files and keeps
// them current. It talks to no API server and makes no directory until the
// first reference. It is safe for concurrent use.
type Materializer struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	dir     string // the private directory, once made
	clients map[string]kubernetes.Interface
	watches map[watchKey]*watch
	closed  bool
}

// watchKey names one informer: a Secret, through one API client.
type watchKey struct {
	kubeconfig, namespace, name string
}

// New returns a Materializer.
func New(opts Options) *Materializer {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Wait == 0 {
		opts.Wait = DefaultWait
	}
	if opts.RestConfig == nil {
		opts.RestConfig = func(kubeconfig string) (*rest.Config, error) {
			return kubeclient.Config(kubeclient.OptionsFromEnv(kubeconfig, os.Getenv))
		}
	}
	return &Materializer{opts: opts, log: opts.Logger, clients: map[string]kubernetes.Interface{}, watches: map[watchKey]*watch{}}
}

// Use collects the Secrets one compile references, so that Retain can
// stop watching the others once that compile is the running one.
type Use struct {
	m    *Materializer
	mu   sync.Mutex
	used map[watchKey]bool
}

// Use starts a collection for one compile.
func (m *Materializer) Use() *Use {
	return &Use{m: m, used: map[watchKey]bool{}}
}

// File is config.Options.SecretFile: it returns the path of a file holding
// the key ref names (NAMESPACE/SECRET/KEY), read through the API client of
// kubeconfig, starting to watch the Secret on its first reference. Errors
// name the reference and what to do, never a value.
func (u *Use) File(ctx context.Context, kubeconfig string, ref secretref.Ref) (string, error) {
	if ref.Scheme != secretref.Kubernetes {
		return "", fmt.Errorf("%s: not a Kubernetes Secret reference", ref.Raw)
	}
	parts := strings.Split(ref.Path, "/")
	if len(parts) != 3 {
		return "", fmt.Errorf("%s: want NAMESPACE/SECRET/KEY", ref.Raw)
	}
	k := watchKey{kubeconfig: kubeconfig, namespace: parts[0], name: parts[1]}
	u.mu.Lock()
	u.used[k] = true
	u.mu.Unlock()
	path, err := u.m.file(ctx, k, parts[2])
	if err != nil {
		return "", fmt.Errorf("%s: %w", ref.Raw, err)
	}
	return path, nil
}

// Retain stops watching the Secrets u did not reference and removes their
// files: u is the running configuration's, so nothing reads them anymore.
// The compiles that Use collections serve must not overlap a Retain (serve
// reloads one at a time): a Secret only a concurrent compile references
// would lose its files under it.
func (m *Materializer) Retain(u *Use) {
	u.mu.Lock()
	used := maps.Clone(u.used)
	u.mu.Unlock()
	m.mu.Lock()
	var stop []*watch
	for k, w := range m.watches {
		if !used[k] {
			stop = append(stop, w)
			delete(m.watches, k)
		}
	}
	m.mu.Unlock()
	for _, w := range stop {
		w.stop()
		if err := os.RemoveAll(w.dir); err != nil {
			m.log.Warn("cannot remove the files of a Secret no longer referenced", "secret", w.key.namespace+"/"+w.key.name, "error", err)
		}
		m.log.Info("stopped watching a Secret the configuration no longer references", "secret", w.key.namespace+"/"+w.key.name)
	}
}

// Dir is the private directory the files are in, "" before the first
// reference.
func (m *Materializer) Dir() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dir
}

// Close stops every watch and removes the files.
func (m *Materializer) Close() error {
	m.mu.Lock()
	m.closed = true
	watches := m.watches
	m.watches = map[watchKey]*watch{}
	dir := m.dir
	m.mu.Unlock()
	for _, w := range watches {
		w.stop()
	}
	if dir == "" {
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove the Secrets' files: %w", err)
	}
	return nil
}

// file returns the path of key's file in k's Secret directory.
func (m *Materializer) file(ctx context.Context, k watchKey, key string) (string, error) {
	w, err := m.watch(k)
	if err != nil {
		return "", err
	}
	if err := w.wait(ctx, m.opts.Wait); err != nil {
		m.drop(w)
		return "", err
	}
	return w.add(key)
}

// watch returns k's watch, starting it on the first reference.
func (m *Materializer) watch(k watchKey) (*watch, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errors.New("closed")
	}
	if w := m.watches[k]; w != nil {
		return w, nil
	}
	if err := m.makeDir(); err != nil {
		return nil, err
	}
	client := m.clients[k.kubeconfig]
	if client == nil {
		cfg, err := m.opts.RestConfig(k.kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("cannot reach the Kubernetes API to read Secret %s/%s: %w", k.namespace, k.name, err)
		}
		cfg = rest.CopyConfig(cfg)
		cfg.UserAgent = "sekisho"
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("kubernetes client: %w", err)
		}
		client, m.clients[k.kubeconfig] = cs, cs
	}
	// The directory is named after the Secret and, since two kubeconfigs
	// may name the same Secret of different clusters, a counter.
	dir, err := os.MkdirTemp(m.dir, k.namespace+"_"+k.name+"_")
	if err != nil {
		return nil, fmt.Errorf("directory for Secret %s/%s: %w", k.namespace, k.name, err)
	}
	w := newWatch(k, dir, client, m.log)
	m.watches[k] = w
	return w, nil
}

// drop forgets a watch that could not start, so the next reference tries
// again (and reports again).
func (m *Materializer) drop(w *watch) {
	m.mu.Lock()
	if m.watches[w.key] == w {
		delete(m.watches, w.key)
	}
	m.mu.Unlock()
	w.stop()
	_ = os.RemoveAll(w.dir)
}

// makeDir makes the private directory, under m.mu.
func (m *Materializer) makeDir() error {
	if m.dir != "" {
		return nil
	}
	base := m.opts.Dir
	if base == "" {
		base = os.Getenv(DirEnv)
	}
	if base == "" {
		base = memoryDir(m.log)
	}
	dir, err := os.MkdirTemp(base, "sekisho-secrets-")
	if err != nil {
		return fmt.Errorf("directory for the Secrets' files (set %s to a writable, memory-backed directory): %w", DirEnv, err)
	}
	// MkdirTemp makes it 0700 already; say so where it matters.
	if err := os.Chmod(dir, 0o700); err != nil {
		_ = os.Remove(dir)
		return fmt.Errorf("directory for the Secrets' files: %w", err)
	}
	m.dir = dir
	return nil
}

// memoryDir is the system's temporary directory when it is memory-backed,
// else memfs.DefaultDir when that is, else the temporary directory with a
// warning: the Secrets' files will be on a disk.
func memoryDir(log *slog.Logger) string {
	for _, d := range []string{os.TempDir(), memfs.DefaultDir} {
		if mem, err := memfs.MemoryBacked(d); err == nil && mem && writable(d) {
			return d
		}
	}
	log.Warn("no memory-backed directory for the files of Kubernetes Secrets: they are written to disk; set "+DirEnv+" to a tmpfs directory", "dir", os.TempDir())
	return os.TempDir()
}

func writable(dir string) bool {
	f, err := os.CreateTemp(dir, ".sekisho-probe-")
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}

// watch follows one Secret and writes the keys referenced so far.
type watch struct {
	key      watchKey
	dir      string
	log      *slog.Logger
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
	done     chan struct{}

	errMu     sync.Mutex
	lastErr   error
	fatalErr  error         // the first error retrying cannot fix (403, 401)
	fatal     chan struct{} // closed when fatalErr is set
	fatalOnce sync.Once

	mu      sync.Mutex // serializes writes
	keys    []string   // the keys referenced, sorted
	written map[string][]byte
	gen     string // the current generation directory's name
}

func newWatch(k watchKey, dir string, client kubernetes.Interface, log *slog.Logger) *watch {
	lw := cache.NewFilteredListWatchFromClient(client.CoreV1().RESTClient(), "secrets", k.namespace, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", k.name).String()
	})
	inf := cache.NewSharedIndexInformer(lw, &corev1.Secret{}, 0, cache.Indexers{})
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{key: k, dir: dir, log: log, informer: inf, cancel: cancel, done: make(chan struct{}), fatal: make(chan struct{}), written: map[string][]byte{}}
	_ = inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		w.errMu.Lock()
		w.lastErr = err
		w.errMu.Unlock()
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			w.fatalOnce.Do(func() {
				w.errMu.Lock()
				w.fatalErr = err
				w.errMu.Unlock()
				close(w.fatal)
			})
		}
		log.Warn("cannot read a Kubernetes Secret; retrying", "secret", k.namespace+"/"+k.name, "error", err)
	})
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.changed(obj) },
		UpdateFunc: func(_, obj any) { w.changed(obj) },
		DeleteFunc: func(any) {
			log.Warn("a Kubernetes Secret the configuration references was deleted; its last files are kept and the next reload will fail until it is back", "secret", k.namespace+"/"+k.name)
		},
	})
	go func() {
		defer close(w.done)
		inf.RunWithContext(ctx)
	}()
	return w
}

func (w *watch) stop() {
	w.cancel()
	<-w.done
}

// wait waits, at most bound, for the first list of the Secret.
func (w *watch) wait(ctx context.Context, bound time.Duration) error {
	if w.informer.HasSynced() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	stop := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-w.fatal:
		}
		close(stop)
	}()
	if cache.WaitForCacheSync(stop, w.informer.HasSynced) {
		return nil
	}
	ns, name := w.key.namespace, w.key.name
	w.errMu.Lock()
	fatal, last := w.fatalErr, w.lastErr
	w.errMu.Unlock()
	switch {
	case apierrors.IsForbidden(fatal):
		return fmt.Errorf("not allowed to read Secret %s/%s: grant get, list and watch on secrets with resourceNames [%s] in namespace %s (a Role and RoleBinding); the API server said: %s", ns, name, name, ns, apiMessage(fatal))
	case apierrors.IsUnauthorized(fatal):
		return fmt.Errorf("the Kubernetes API server refused the credentials reading Secret %s/%s: %s", ns, name, apiMessage(fatal))
	}
	if last != nil {
		return fmt.Errorf("could not read Secret %s/%s within %s: %v", ns, name, bound, last)
	}
	return fmt.Errorf("could not read Secret %s/%s within %s", ns, name, bound)
}

func apiMessage(err error) string {
	var se apierrors.APIStatus
	if errors.As(err, &se) && se.Status().Message != "" {
		return se.Status().Message
	}
	return err.Error()
}

// secret is the Secret as last listed or watched, nil if it does not
// exist.
func (w *watch) secret() *corev1.Secret {
	obj, ok, err := w.informer.GetStore().GetByKey(w.key.namespace + "/" + w.key.name)
	if err != nil || !ok {
		return nil
	}
	s, _ := obj.(*corev1.Secret)
	return s
}

// add writes key's file unless it is written already, and returns its
// path. The Secret must have been listed.
func (w *watch) add(key string) (string, error) {
	// The Secret is read under w.mu: an update that changed skips while
	// key is not yet listed is then already in the store, so it is the
	// version written here.
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.secret()
	ns, name := w.key.namespace, w.key.name
	// The messages start with the kind's name, Secret, as kubectl's do;
	// File prefixes them with the reference.
	if s == nil {
		return "", fmt.Errorf("Secret %s/%s not found", ns, name) //lint:ignore ST1005 the Kubernetes kind
	}
	if _, ok := s.Data[key]; !ok {
		return "", fmt.Errorf("Secret %s/%s has no key %q (its keys: %s)", ns, name, key, keyList(s.Data)) //lint:ignore ST1005 the Kubernetes kind
	}
	if !slices.Contains(w.keys, key) {
		w.keys = append(w.keys, key)
		slices.Sort(w.keys)
		if err := w.write(s); err != nil {
			return "", err
		}
		link := filepath.Join(w.dir, key)
		if err := os.Symlink(filepath.Join(dataLink, key), link); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("file for key %q of Secret %s/%s: %w", key, ns, name, err)
		}
	}
	return filepath.Join(w.dir, key), nil
}

func keyList(data map[string][]byte) string {
	if len(data) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}

// changed is the informer's add and update handler: it rewrites the files
// when a referenced key's value changed.
func (w *watch) changed(obj any) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.keys) == 0 {
		return // not materialized yet: add writes it
	}
	same := true
	for _, k := range w.keys {
		v, ok := s.Data[k]
		if !ok {
			w.log.Warn("a key of a Kubernetes Secret the configuration references is gone; its last file is kept and the next reload will fail until it is back", "secret", w.key.namespace+"/"+w.key.name, "key", k)
			continue
		}
		same = same && bytes.Equal(v, w.written[k])
	}
	if same {
		return
	}
	if err := w.write(s); err != nil {
		w.log.Error("cannot write the files of a rotated Kubernetes Secret; the last ones are kept", "secret", w.key.namespace+"/"+w.key.name, "error", err)
		return
	}
	w.log.Info("Kubernetes Secret changed; its files are rewritten", "secret", w.key.namespace+"/"+w.key.name, "resource_version", s.ResourceVersion)
}

// write writes a new generation with every referenced key (a key the
// Secret lost keeps its last value) and points ..data at it, under w.mu.
func (w *watch) write(s *corev1.Secret) error {
	gen, err := os.MkdirTemp(w.dir, "..gen_")
	if err != nil {
		return fmt.Errorf("write Secret %s/%s: %w", w.key.namespace, w.key.name, err)
	}
	values := make(map[string][]byte, len(w.keys))
	for _, k := range w.keys {
		v, ok := s.Data[k]
		if !ok {
			v = w.written[k]
		}
		if err := os.WriteFile(filepath.Join(gen, k), v, 0o600); err != nil {
			os.RemoveAll(gen)
			return fmt.Errorf("write key %q of Secret %s/%s: %w", k, w.key.namespace, w.key.name, err)
		}
		values[k] = v
	}
	// A new symlink renamed over the old one: readers see the old
	// generation or the new one, never a mix.
	tmp := filepath.Join(w.dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(gen), tmp); err != nil {
		os.RemoveAll(gen)
		return fmt.Errorf("write Secret %s/%s: %w", w.key.namespace, w.key.name, err)
	}
	if err := os.Rename(tmp, filepath.Join(w.dir, dataLink)); err != nil {
		os.Remove(tmp)
		os.RemoveAll(gen)
		return fmt.Errorf("write Secret %s/%s: %w", w.key.namespace, w.key.name, err)
	}
	if w.gen != "" {
		_ = os.RemoveAll(filepath.Join(w.dir, w.gen))
	}
	w.gen, w.written = filepath.Base(gen), values
	return nil
}
