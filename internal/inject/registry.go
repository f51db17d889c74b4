package inject

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"
)

// Platform is an OS and CPU architecture (and variant) an image is built
// for. In a pattern (what a pod may run on), an empty field matches any.
type Platform struct {
	OS, Arch, Variant string
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Arch
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	if p.OS == "" && p.Arch == "" {
		return "any platform"
	}
	return s
}

func (p Platform) matches(m v1.Platform) bool {
	return (p.OS == "" || p.OS == m.OS) && (p.Arch == "" || p.Arch == m.Architecture) &&
		(p.Variant == "" || p.Variant == m.Variant)
}

// Registry reads ENTRYPOINT and CMD from images' registries. A tag is
// resolved to a digest at most TagTTL ago (a tag moves); what a digest
// names never changes, so index manifests and configurations are kept by
// digest for the life of the process (up to maxCached of each).
type Registry struct {
	// PlainHTTP names registries (host:port) spoken to over plain HTTP:
	// test registries on loopback.
	PlainHTTP []string
	// Transport, when set, carries the requests (tests).
	Transport http.RoundTripper
	// TagTTL bounds how long a tag's digest is reused; 0 means 30 s.
	TagTTL time.Duration

	mu      sync.Mutex
	tags    map[string]tagEntry
	indexes map[string]*v1.IndexManifest // index digest →
	configs map[string]ImageConfig       // image manifest digest →
	now     func() time.Time
}

type tagEntry struct {
	desc v1.Descriptor
	at   time.Time
}

const maxCached = 4096

// Config returns the ENTRYPOINT and CMD a container of image runs on one
// of platforms (patterns; none means any). A multi-platform index is
// resolved to the manifests for those platforms, never to its first
// entry; when they disagree on ENTRYPOINT or CMD, it is an error: the
// command depends on the node the pod lands on. keychain authenticates
// the pulls (the pod's pull secrets).
func (r *Registry) Config(ctx context.Context, image string, platforms []Platform, keychain authn.Keychain) (ImageConfig, error) {
	ref, err := name.ParseReference(image, r.nameOpts(image)...)
	if err != nil {
		return ImageConfig{}, fmt.Errorf("image %q: %w", image, err)
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(keychain)}
	if r.Transport != nil {
		opts = append(opts, remote.WithTransport(r.Transport))
	}
	desc, err := r.resolve(ref, opts)
	if err != nil {
		return ImageConfig{}, fmt.Errorf("image %q: %w", image, err)
	}
	repo := ref.Context()
	if !desc.MediaType.IsIndex() {
		return r.imageConfig(repo, desc.Digest, opts)
	}
	idx, err := r.index(repo, desc.Digest, opts)
	if err != nil {
		return ImageConfig{}, fmt.Errorf("image %q: %w", image, err)
	}
	if len(platforms) == 0 {
		platforms = []Platform{{}}
	}
	type found struct {
		p   v1.Platform
		cfg ImageConfig
	}
	var got []found
	for _, m := range idx.Manifests {
		if m.Platform == nil || m.Platform.OS == "unknown" || !m.MediaType.IsImage() {
			continue // attestations and the like
		}
		if !slices.ContainsFunc(platforms, func(p Platform) bool { return p.matches(*m.Platform) }) {
			continue
		}
		cfg, err := r.imageConfig(repo, m.Digest, opts)
		if err != nil {
			return ImageConfig{}, fmt.Errorf("image %q for %s: %w", image, m.Platform, err)
		}
		got = append(got, found{*m.Platform, cfg})
	}
	if len(got) == 0 {
		return ImageConfig{}, fmt.Errorf("image %q has no manifest for %s", image, platformList(platforms))
	}
	for _, f := range got[1:] {
		if !slices.Equal(f.cfg.Entrypoint, got[0].cfg.Entrypoint) || !slices.Equal(f.cfg.Cmd, got[0].cfg.Cmd) {
			return ImageConfig{}, fmt.Errorf("image %q runs a different ENTRYPOINT/CMD on %s than on %s, and the pod may run on either (set a nodeSelector on kubernetes.io/arch and kubernetes.io/os, or the command)", image, got[0].p.String(), f.p.String())
		}
	}
	return got[0].cfg, nil
}

func platformList(ps []Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// SetPlainHTTP replaces PlainHTTP while the registry is in use (a
// configuration reload); the caches are kept.
func (r *Registry) SetPlainHTTP(hosts []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.PlainHTTP = slices.Clone(hosts)
}

func (r *Registry) nameOpts(image string) []name.Option {
	host, _, _ := strings.Cut(image, "/")
	r.mu.Lock()
	plain := slices.Contains(r.PlainHTTP, host)
	r.mu.Unlock()
	if plain {
		return []name.Option{name.Insecure}
	}
	return nil
}

// resolve returns the descriptor a reference names: a digest as is, a
// tag from the registry unless resolved within TagTTL.
func (r *Registry) resolve(ref name.Reference, opts []remote.Option) (v1.Descriptor, error) {
	key := ref.Name()
	ttl := r.TagTTL
	if ttl == 0 {
		ttl = 30 * time.Second
	}
	r.mu.Lock()
	e, ok := r.tags[key]
	now := r.clock()
	r.mu.Unlock()
	if ok && now.Sub(e.at) < ttl {
		return e.desc, nil
	}
	d, err := remote.Head(ref, opts...)
	if err != nil || d.MediaType == "" {
		// Some registries answer HEAD poorly: GET the manifest.
		g, gerr := remote.Get(ref, opts...)
		if gerr != nil {
			return v1.Descriptor{}, gerr
		}
		d = &g.Descriptor
	}
	if _, isDigest := ref.(name.Digest); !isDigest {
		r.mu.Lock()
		if r.tags == nil || len(r.tags) >= maxCached {
			r.tags = map[string]tagEntry{}
		}
		r.tags[key] = tagEntry{*d, now}
		r.mu.Unlock()
	}
	return *d, nil
}

func (r *Registry) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

func (r *Registry) index(repo name.Repository, d v1.Hash, opts []remote.Option) (*v1.IndexManifest, error) {
	r.mu.Lock()
	im, ok := r.indexes[d.String()]
	r.mu.Unlock()
	if ok {
		return im, nil
	}
	idx, err := remote.Index(repo.Digest(d.String()), opts...)
	if err != nil {
		return nil, err
	}
	im, err = idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.indexes == nil || len(r.indexes) >= maxCached {
		r.indexes = map[string]*v1.IndexManifest{}
	}
	r.indexes[d.String()] = im
	r.mu.Unlock()
	return im, nil
}

func (r *Registry) imageConfig(repo name.Repository, d v1.Hash, opts []remote.Option) (ImageConfig, error) {
	r.mu.Lock()
	cfg, ok := r.configs[d.String()]
	r.mu.Unlock()
	if ok {
		return cfg, nil
	}
	img, err := remote.Image(repo.Digest(d.String()), opts...)
	if err != nil {
		return ImageConfig{}, err
	}
	mt, err := img.MediaType()
	if err == nil && mt != types.DockerManifestSchema2 && mt != types.OCIManifestSchema1 {
		return ImageConfig{}, fmt.Errorf("manifest %s is a %s, not an image", d, mt)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return ImageConfig{}, err
	}
	cfg = ImageConfig{Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd}
	r.mu.Lock()
	if r.configs == nil || len(r.configs) >= maxCached {
		r.configs = map[string]ImageConfig{}
	}
	r.configs[d.String()] = cfg
	r.mu.Unlock()
	return cfg, nil
}

// pullSecretKeychain authenticates to registries with the credentials of
// Kubernetes pull secrets (kubernetes.io/dockerconfigjson or
// kubernetes.io/dockercfg), the first secret naming a registry winning,
// as the kubelet tries them; a registry none names is pulled anonymously.
type pullSecretKeychain struct {
	auths []map[string]dockerAuth
}

type dockerAuth struct {
	Username      string `json:"username"`
	Password      string `json:"password"`
	Auth          string `json:"auth"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// newPullSecretKeychain reads the secrets' registry credentials; a secret
// of another type or that does not parse is an error naming it (never its
// content).
func newPullSecretKeychain(secrets []*corev1.Secret) (*pullSecretKeychain, error) {
	k := &pullSecretKeychain{}
	for _, s := range secrets {
		var auths map[string]dockerAuth
		switch s.Type {
		case corev1.SecretTypeDockerConfigJson:
			var f struct {
				Auths map[string]dockerAuth `json:"auths"`
			}
			if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &f); err != nil {
				return nil, fmt.Errorf("pull secret %q: %s is not a docker config", s.Name, corev1.DockerConfigJsonKey)
			}
			auths = f.Auths
		case corev1.SecretTypeDockercfg:
			if err := json.Unmarshal(s.Data[corev1.DockerConfigKey], &auths); err != nil {
				return nil, fmt.Errorf("pull secret %q: %s is not a docker config", s.Name, corev1.DockerConfigKey)
			}
		default:
			return nil, fmt.Errorf("pull secret %q is of type %q, not %s", s.Name, s.Type, corev1.SecretTypeDockerConfigJson)
		}
		norm := make(map[string]dockerAuth, len(auths))
		for host, a := range auths {
			norm[registryHost(host)] = a
		}
		k.auths = append(k.auths, norm)
	}
	return k, nil
}

// registryHost reduces a docker config key ("https://index.docker.io/v1/",
// "registry.example:5000/path") to the registry's host[:port].
func registryHost(key string) string {
	key = strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	key, _, _ = strings.Cut(key, "/")
	if key == "docker.io" || key == "registry-1.docker.io" {
		return name.DefaultRegistry
	}
	return key
}

// Resolve implements authn.Keychain.
func (k *pullSecretKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	host := registryHost(res.RegistryStr())
	for _, auths := range k.auths {
		a, ok := auths[host]
		if !ok {
			continue
		}
		cfg := authn.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}
		if a.Auth != "" && cfg.Username == "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return nil, errors.New("a pull secret's auth for " + host + " is not base64")
			}
			cfg.Username, cfg.Password, _ = strings.Cut(string(raw), ":")
		}
		return authn.FromConfig(cfg), nil
	}
	return authn.Anonymous, nil
}

// sortedPlatforms orders platforms for stable messages.
func sortedPlatforms(set map[Platform]bool) []Platform {
	out := make([]Platform, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}
