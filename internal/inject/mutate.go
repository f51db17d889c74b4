package inject

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Names the injector gives what it adds to a pod.
const (
	// Annotation marks a pod the injector wrapped; its value lists the
	// wrapped containers. Whether a container is wrapped is read from its
	// command (Wrapped), so a second pass changes nothing.
	Annotation = "sekisho.io/injected"
	// InitContainerName copies the sekisho binary into VolumeName.
	InitContainerName = "sekisho-copy"
	// VolumeName is the memory-backed emptyDir holding the binary.
	VolumeName = "sekisho-bin"
)

// Injector decides how to wrap a pod.
type Injector struct {
	// Image is the sekisho image the init container runs; ImageBinary is
	// the sekisho executable in it.
	Image, ImageBinary string
	// Client reads ConfigMaps, pull secrets, service accounts and nodes;
	// nil reads nothing (a pod that needs them is refused).
	Client kubernetes.Interface
	// Registry reads images' ENTRYPOINT/CMD for containers without a
	// command.
	Registry *Registry
	Log      *slog.Logger

	nodesMu sync.Mutex
	nodes   []Platform
	nodesAt time.Time
}

// Op is one JSON Patch (RFC 6902) operation.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Rejection is a pod the injector refuses; its message says what to
// change.
type Rejection struct{ Msg string }

func (r *Rejection) Error() string { return r.Msg }

func reject(format string, args ...any) error {
	return &Rejection{Msg: fmt.Sprintf(format, args...)}
}

// Mutate returns the patch that wraps every container of pod (in
// namespace) whose environment holds a secret reference, or a Rejection.
// No patch (nil) for a pod with nothing to wrap or already wrapped.
func (in *Injector) Mutate(ctx context.Context, namespace string, pod *corev1.Pod) ([]Op, []string, error) {
	cms := map[string]*corev1.ConfigMap{}
	var get ConfigMapGetter
	if in.Client != nil {
		get = func(ctx context.Context, name string) (*corev1.ConfigMap, error) {
			return in.Client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
		}
	}
	var ops []Op
	var wrapped []string
	var kc authn.Keychain
	for _, list := range []struct {
		path string
		cs   []corev1.Container
	}{{"initContainers", pod.Spec.InitContainers}, {"containers", pod.Spec.Containers}} {
		for i := range list.cs {
			c := &list.cs[i]
			if c.Name == InitContainerName || Wrapped(c.Command) {
				continue
			}
			has, err := hasReference(ctx, c, get, cms)
			if err != nil {
				return nil, nil, &Rejection{Msg: err.Error()}
			}
			if !has {
				continue
			}
			for _, m := range c.VolumeMounts {
				if m.MountPath == MountPath || strings.HasPrefix(m.MountPath, MountPath+"/") {
					return nil, nil, reject("container %q mounts a volume at %s, where the injector puts the sekisho binary: move that mount", c.Name, m.MountPath)
				}
			}
			var img ImageConfig
			if len(c.Command) == 0 {
				if kc == nil {
					if kc, err = in.keychain(ctx, namespace, pod); err != nil {
						return nil, nil, reject("container %q holds secret references and sets no command, and its image's ENTRYPOINT/CMD could not be read: %v; set the container's command (and args) to what the image runs", c.Name, err)
					}
				}
				if img, err = in.imageConfig(ctx, c.Image, pod, kc); err != nil {
					return nil, nil, reject("container %q holds secret references and sets no command, and its image's ENTRYPOINT/CMD could not be read: %v; set the container's command (and args) to what the image runs", c.Name, err)
				}
			}
			cmd, args, err := Wrap(c.Command, c.Args, img)
			if err != nil {
				return nil, nil, reject("container %q: %v; set the container's command", c.Name, err)
			}
			at := fmt.Sprintf("/spec/%s/%d/", list.path, i)
			ops = append(ops, Op{"add", at + "command", cmd})
			if len(args) > 0 {
				ops = append(ops, Op{"add", at + "args", args})
			}
			mount := corev1.VolumeMount{Name: VolumeName, MountPath: MountPath, ReadOnly: true}
			if c.VolumeMounts == nil {
				ops = append(ops, Op{"add", at + "volumeMounts", []corev1.VolumeMount{mount}})
			} else {
				ops = append(ops, Op{"add", at + "volumeMounts/-", mount})
			}
			wrapped = append(wrapped, c.Name)
		}
	}
	if len(wrapped) == 0 {
		return nil, nil, nil
	}
	hasVolume, hasInit := false, false
	for _, v := range pod.Spec.Volumes {
		hasVolume = hasVolume || v.Name == VolumeName
	}
	for _, c := range pod.Spec.InitContainers {
		hasInit = hasInit || c.Name == InitContainerName
	}
	if !hasVolume {
		vol := corev1.Volume{Name: VolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}
		if pod.Spec.Volumes == nil {
			ops = append(ops, Op{"add", "/spec/volumes", []corev1.Volume{vol}})
		} else {
			ops = append(ops, Op{"add", "/spec/volumes/-", vol})
		}
	}
	if !hasInit {
		ic := in.initContainer()
		if pod.Spec.InitContainers == nil {
			ops = append(ops, Op{"add", "/spec/initContainers", []corev1.Container{ic}})
		} else {
			// First, before any init container it may have to wrap.
			ops = append(ops, Op{"add", "/spec/initContainers/0", ic})
		}
	}
	names := strings.Join(wrapped, ",")
	if prev := pod.Annotations[Annotation]; prev != "" {
		names = prev + "," + names
	}
	if pod.Annotations == nil {
		ops = append(ops, Op{"add", "/metadata/annotations", map[string]string{Annotation: names}})
	} else {
		ops = append(ops, Op{"add", "/metadata/annotations/" + strings.ReplaceAll(Annotation, "/", "~1"), names})
	}
	return ops, wrapped, nil
}

// initContainer copies the sekisho binary into the shared volume. It
// passes the restricted Pod Security Standard.
func (in *Injector) initContainer() corev1.Container {
	no, yes := false, true
	uid := int64(65532)
	return corev1.Container{
		Name:         InitContainerName,
		Image:        in.Image,
		Command:      []string{in.ImageBinary, "kube", "copy-binary", BinaryPath},
		VolumeMounts: []corev1.VolumeMount{{Name: VolumeName, MountPath: MountPath}},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: &no,
			ReadOnlyRootFilesystem:   &yes,
			RunAsNonRoot:             &yes,
			RunAsUser:                &uid,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

// imageConfig reads the image's ENTRYPOINT/CMD for the platforms the pod
// may run on.
func (in *Injector) imageConfig(ctx context.Context, image string, pod *corev1.Pod, kc authn.Keychain) (ImageConfig, error) {
	if in.Registry == nil {
		return ImageConfig{}, fmt.Errorf("no registry access is configured")
	}
	return in.Registry.Config(ctx, image, in.platforms(ctx, pod), kc)
}

// platforms are the platforms the pod may land on: its node's when it
// names one; else the nodes' platforms narrowed by its nodeSelector on
// kubernetes.io/os and kubernetes.io/arch; else that selector alone (or
// any platform, whose ENTRYPOINT/CMD must then agree).
func (in *Injector) platforms(ctx context.Context, pod *corev1.Pod) []Platform {
	sel := Platform{OS: pod.Spec.NodeSelector[corev1.LabelOSStable], Arch: pod.Spec.NodeSelector[corev1.LabelArchStable]}
	if pod.Spec.NodeName != "" && in.Client != nil {
		if n, err := in.Client.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{}); err == nil {
			return []Platform{nodePlatform(n)}
		}
	}
	set := map[Platform]bool{}
	for _, p := range in.nodePlatforms(ctx) {
		if (sel.OS == "" || sel.OS == p.OS) && (sel.Arch == "" || sel.Arch == p.Arch) {
			set[p] = true
		}
	}
	if len(set) == 0 {
		return []Platform{sel}
	}
	return sortedPlatforms(set)
}

func nodePlatform(n *corev1.Node) Platform {
	p := Platform{OS: n.Status.NodeInfo.OperatingSystem, Arch: n.Status.NodeInfo.Architecture}
	if p.OS == "" {
		p.OS = n.Labels[corev1.LabelOSStable]
	}
	if p.Arch == "" {
		p.Arch = n.Labels[corev1.LabelArchStable]
	}
	return p
}

// nodePlatforms lists the cluster's nodes' platforms, at most once a
// minute. Without them (no permission, no nodes) the image's platforms
// must agree.
func (in *Injector) nodePlatforms(ctx context.Context) []Platform {
	if in.Client == nil {
		return nil
	}
	in.nodesMu.Lock()
	defer in.nodesMu.Unlock()
	if !in.nodesAt.IsZero() && time.Since(in.nodesAt) < time.Minute {
		return in.nodes
	}
	list, err := in.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		in.log().Warn("injector cannot list nodes; an image's platforms must then agree on ENTRYPOINT/CMD", "error", err)
		return nil
	}
	set := map[Platform]bool{}
	for i := range list.Items {
		if p := nodePlatform(&list.Items[i]); p.OS != "" || p.Arch != "" {
			set[p] = true
		}
	}
	in.nodes, in.nodesAt = sortedPlatforms(set), time.Now()
	return in.nodes
}

func (in *Injector) log() *slog.Logger {
	if in.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return in.Log
}

// keychain holds the pull secrets of the pod and of its service account,
// as the kubelet uses them. A secret that does not exist is skipped (the
// kubelet skips it too).
func (in *Injector) keychain(ctx context.Context, namespace string, pod *corev1.Pod) (authn.Keychain, error) {
	if in.Client == nil {
		return authn.NewMultiKeychain(), nil
	}
	var names []string
	for _, s := range pod.Spec.ImagePullSecrets {
		names = append(names, s.Name)
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	acct, err := in.Client.CoreV1().ServiceAccounts(namespace).Get(ctx, sa, metav1.GetOptions{})
	switch {
	case err == nil:
		for _, s := range acct.ImagePullSecrets {
			names = append(names, s.Name)
		}
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("service account %q: %w", sa, err)
	}
	var secrets []*corev1.Secret
	for _, n := range names {
		s, err := in.Client.CoreV1().Secrets(namespace).Get(ctx, n, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pull secret %q: %w", n, err)
		}
		secrets = append(secrets, s)
	}
	return newPullSecretKeychain(secrets)
}

// patchJSON encodes ops.
func patchJSON(ops []Op) ([]byte, error) {
	return json.Marshal(ops)
}
