package inject

import (
	"context"
	"encoding/base64"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/sekisho/sekisho/internal/kubetest"
	"github.com/sekisho/sekisho/internal/testutil"
)

var kube kubetest.Shared

func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }

// pushIndex pushes a multi-platform index to the registry at host whose
// images have the given ENTRYPOINT/CMD per platform, and returns its
// reference.
type platImage struct {
	p   v1.Platform
	cfg ImageConfig
}

func pushIndex(t *testing.T, host, repo string, plats []platImage) string {
	t.Helper()
	ref, err := name.ParseReference(host+"/"+repo+":v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	var idx v1.ImageIndex = empty.Index
	for _, pi := range plats {
		p, cfg := pi.p, pi.cfg
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture, cf.Config.Entrypoint, cf.Config.Cmd = p.OS, p.Architecture, cfg.Entrypoint, cfg.Cmd
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	return ref.String()
}

func env(pairs ...string) []corev1.EnvVar {
	var out []corev1.EnvVar
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, corev1.EnvVar{Name: pairs[i], Value: pairs[i+1]})
	}
	return out
}

func podWith(c corev1.Container) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "p-"}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}
}

// dryRun creates pod in ns without storing it: every admission plugin and
// webhook runs.
func dryRun(ctx context.Context, c kubernetes.Interface, ns string, pod *corev1.Pod) (*corev1.Pod, error) {
	return c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
}

// TestThroughAPIServer registers the injector and the policy from
// Manifests with a real kube-apiserver and creates pods through it.
func TestThroughAPIServer(t *testing.T) {
	cluster := kube.Cluster(t)
	client := cluster.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	reg, host := startRegistry(t)
	differ := pushIndex(t, host, "app", []platImage{
		{v1.Platform{OS: "linux", Architecture: "amd64"}, ImageConfig{Entrypoint: []string{"/amd64-app"}, Cmd: []string{"--amd"}}},
		{v1.Platform{OS: "linux", Architecture: "arm64"}, ImageConfig{Entrypoint: []string{"/arm64-app"}, Cmd: []string{"--home=$(HOME)"}}},
	})

	private := pushIndex(t, host, "private", []platImage{{v1.Platform{OS: "linux", Architecture: "amd64"}, ImageConfig{Entrypoint: []string{"/private-app"}}}})
	reg.user = "puller:s3cret"

	ca := testutil.NewCA(t)
	leaf := ca.Server(t, "127.0.0.1")
	// The injector's address is known before it serves: the manifests
	// name it, and its API client is its service account's, with only the
	// RBAC of the manifests.
	hook := httptest.NewUnstartedServer(nil)
	built, err := Manifests(ManifestOptions{URL: "https://" + hook.Listener.Addr().String() + Path, CABundle: ca.PEM, Namespace: "sekisho-system"})
	if err != nil {
		t.Fatal(err)
	}
	// What is applied is what `sekisho kube injector-manifests` prints.
	objs := fromYAML(t, built)
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sekisho-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().ServiceAccounts("sekisho-system").Create(ctx, objs.ServiceAccount, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RbacV1().ClusterRoles().Create(ctx, objs.ClusterRole, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, objs.Binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token, err := cluster.TokenFor(ctx, "sekisho-system", objs.ServiceAccount.Name, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	saClient, err := kubernetes.NewForConfig(cluster.BearerConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	in := &Injector{Image: "sekisho:test", ImageBinary: "/usr/local/bin/sekisho", Client: saClient, Registry: &Registry{PlainHTTP: []string{host}}}
	hook.Config.Handler = in.Handler()
	hook.TLS = &tlsConfigFor(leaf).Config
	hook.StartTLS()
	defer hook.Close()

	ar := client.AdmissionregistrationV1()
	if _, err := ar.ValidatingAdmissionPolicies().Create(ctx, objs.Policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ar.ValidatingAdmissionPolicyBindings().Create(ctx, objs.PolicyBinding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ar.MutatingWebhookConfigurations().Create(ctx, objs.Webhook, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for ns, labels := range map[string]map[string]string{"inj": {NamespaceLabel: "enabled"}, "plain": nil} {
		if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cluster.EnsureServiceAccount(ctx, ns, "default"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.CoreV1().ConfigMaps("inj").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app-env"}, Data: map[string]string{"DB": "sekisho+vault://secret/db#password"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	withRef := corev1.Container{Name: "app", Image: "example/app:1", Command: []string{"/app", "serve"}, Args: []string{"--port=$(PORT)"},
		Env: env("PORT", "8080", "TOKEN", "sekisho+k8s://inj/app/token")}
	// The webhook and the policy take effect once kube-apiserver has seen
	// them: poll until both do.
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := dryRun(ctx, client, "inj", podWith(withRef))
		_, perr := dryRun(ctx, client, "plain", podWith(withRef))
		if err == nil && Wrapped(got.Spec.Containers[0].Command) && perr != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook or policy not in effect after 30 s: inj err=%v, plain err=%v", err, perr)
		}
		time.Sleep(200 * time.Millisecond) // polling kube-apiserver's informers, not synchronising with our code
	}

	var wrappedPod *corev1.Pod
	t.Run("explicit command", func(t *testing.T) {
		got, err := dryRun(ctx, client, "inj", podWith(withRef))
		if err != nil {
			t.Fatal(err)
		}
		c := got.Spec.Containers[0]
		if want := []string{BinaryPath, "exec", "--", "/app", "serve"}; !slices.Equal(c.Command, want) || !slices.Equal(c.Args, []string{"--port=$(PORT)"}) {
			t.Fatalf("command %q args %q", c.Command, c.Args)
		}
		if len(got.Spec.InitContainers) != 1 || got.Spec.InitContainers[0].Name != InitContainerName || got.Spec.InitContainers[0].Image != "sekisho:test" {
			t.Fatalf("init containers %+v", got.Spec.InitContainers)
		}
		i := slices.IndexFunc(got.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == VolumeName })
		if i < 0 || got.Spec.Volumes[i].EmptyDir == nil || got.Spec.Volumes[i].EmptyDir.Medium != corev1.StorageMediumMemory {
			t.Fatalf("volumes %+v", got.Spec.Volumes)
		}
		if got.Annotations[Annotation] != "app" {
			t.Fatalf("annotations %v", got.Annotations)
		}
		if c.Env[1].Value != "sekisho+k8s://inj/app/token" {
			t.Fatalf("env changed: %+v", c.Env)
		}
		wrappedPod = got
	})
	t.Run("reference from a ConfigMap", func(t *testing.T) {
		c := corev1.Container{Name: "app", Image: "example/app:1", Command: []string{"/app"}, EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app-env"}}}}}
		got, err := dryRun(ctx, client, "inj", podWith(c))
		if err != nil {
			t.Fatal(err)
		}
		if !Wrapped(got.Spec.Containers[0].Command) {
			t.Fatalf("not wrapped: %q", got.Spec.Containers[0].Command)
		}
	})
	t.Run("command from the image for the node's platform", func(t *testing.T) {
		c := corev1.Container{Name: "app", Image: differ, Env: env("TOKEN", "berglas-aws://arn:aws:secretsmanager:eu-west-1:1:secret:x")}
		p := podWith(c)
		p.Spec.NodeSelector = map[string]string{corev1.LabelArchStable: "arm64", corev1.LabelOSStable: "linux"}
		got, err := dryRun(ctx, client, "inj", p)
		if err != nil {
			t.Fatal(err)
		}
		gc := got.Spec.Containers[0]
		if want := []string{BinaryPath, "exec", "--", "/arm64-app"}; !slices.Equal(gc.Command, want) || !slices.Equal(gc.Args, []string{"--home=$$(HOME)"}) {
			t.Fatalf("command %q args %q", gc.Command, gc.Args)
		}
	})
	t.Run("no references: unchanged", func(t *testing.T) {
		c := corev1.Container{Name: "app", Image: "example/app:1", Env: env("URL", "file:///etc/app.conf")}
		got, err := dryRun(ctx, client, "inj", podWith(c))
		if err != nil {
			t.Fatal(err)
		}
		if got.Spec.Containers[0].Command != nil || got.Spec.InitContainers != nil || got.Annotations[Annotation] != "" {
			t.Fatalf("changed: %+v", got.Spec)
		}
	})
	t.Run("already wrapped: unchanged", func(t *testing.T) {
		if wrappedPod == nil {
			t.Skip("explicit command failed")
		}
		again := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "p-", Annotations: wrappedPod.Annotations}, Spec: *wrappedPod.Spec.DeepCopy()}
		got, err := dryRun(ctx, client, "inj", again)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Spec.InitContainers) != 1 || len(got.Spec.Volumes) != len(wrappedPod.Spec.Volumes) ||
			!slices.Equal(got.Spec.Containers[0].Command, wrappedPod.Spec.Containers[0].Command) ||
			len(got.Spec.Containers[0].VolumeMounts) != len(wrappedPod.Spec.Containers[0].VolumeMounts) || got.Annotations[Annotation] != "app" {
			t.Fatalf("changed the second time: %+v %v", got.Spec, got.Annotations)
		}
	})
	for _, tc := range []struct{ name, image, want string }{
		{"failed look-up", "127.0.0.1:1/nothing:v1", "set the container's command"},
		{"platforms disagree", differ, "runs a different ENTRYPOINT/CMD"},
	} {
		t.Run(tc.name+": refused", func(t *testing.T) {
			c := corev1.Container{Name: "app", Image: tc.image, Env: env("TOKEN", "sekisho+file:///run/token")}
			_, err := dryRun(ctx, client, "inj", podWith(c))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "set the container's command") {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}

	t.Run("private image: the service account's pull secret", func(t *testing.T) {
		auth := base64.StdEncoding.EncodeToString([]byte("puller:s3cret"))
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pull"}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"` + host + `":{"auth":"` + auth + `"}}}`)}}
		if _, err := client.CoreV1().Secrets("inj").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "puller"}, ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pull"}}}
		if _, err := client.CoreV1().ServiceAccounts("inj").Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c := corev1.Container{Name: "app", Image: private, Env: env("TOKEN", "sekisho+file:///run/token")}
		if _, err := dryRun(ctx, client, "inj", podWith(c)); err == nil || !strings.Contains(err.Error(), "set the container's command") {
			t.Fatalf("default service account, no pull secret: err = %v", err)
		}
		p := podWith(c)
		p.Spec.ServiceAccountName = "puller"
		got, err := dryRun(ctx, client, "inj", p)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{BinaryPath, "exec", "--", "/private-app"}; !slices.Equal(got.Spec.Containers[0].Command, want) {
			t.Fatalf("command %q", got.Spec.Containers[0].Command)
		}
	})
	t.Run("platform of the cluster's nodes", func(t *testing.T) {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "arm-node"}}
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		node.Status.NodeInfo = corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: "arm64"}
		if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		in.nodesMu.Lock()
		in.nodesAt = time.Time{} // the node list is cached for a minute
		in.nodesMu.Unlock()
		c := corev1.Container{Name: "app", Image: differ, Env: env("TOKEN", "sekisho+file:///run/token")}
		got, err := dryRun(ctx, client, "inj", podWith(c))
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{BinaryPath, "exec", "--", "/arm64-app"}; !slices.Equal(got.Spec.Containers[0].Command, want) {
			t.Fatalf("command %q", got.Spec.Containers[0].Command)
		}
	})

	t.Run("webhook down", func(t *testing.T) {
		hook.Close()
		noRef := corev1.Container{Name: "app", Image: "example/app:1", Env: env("A", "b")}
		if _, err := dryRun(ctx, client, "plain", podWith(noRef)); err != nil {
			t.Fatalf("pod without references refused: %v", err)
		}
		_, err := dryRun(ctx, client, "plain", podWith(withRef))
		if err == nil || !strings.Contains(err.Error(), "not wrapped by /sekisho/sekisho exec") {
			t.Fatalf("pod with references: err = %v, want the policy's refusal", err)
		}
		if _, err := dryRun(ctx, client, "inj", podWith(withRef)); err == nil {
			t.Fatal("pod in an injected namespace admitted with the webhook down")
		}
		if _, err := dryRun(ctx, client, "inj", podWith(noRef)); err == nil {
			t.Fatal("failurePolicy Fail: a pod in an injected namespace must be refused while the webhook is down")
		}
	})
}

// fromYAML prints objs as YAML and reads the documents back.
func fromYAML(t *testing.T, objs *Objects) *Objects {
	t.Helper()
	out, err := objs.YAML()
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(out), "\n---\n")
	back := &Objects{}
	targets := []any{&back.ServiceAccount, &back.ClusterRole, &back.Binding, &back.Policy, &back.PolicyBinding, &back.Webhook}
	if len(docs) != len(targets) {
		t.Fatalf("%d YAML documents, want %d:\n%s", len(docs), len(targets), out)
	}
	for i, doc := range docs {
		if err := yaml.UnmarshalStrict([]byte(doc), targets[i]); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, doc)
		}
	}
	return back
}
