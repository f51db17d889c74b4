package inject

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sekisho/sekisho/internal/testutil"
)

func review(t *testing.T, pod *corev1.Pod, op admissionv1.Operation) string {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	rev := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "uid-1", Operation: op, Namespace: "ns",
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}},
	}
	rev.Request.Object.Raw = raw
	b, err := json.Marshal(rev)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func post(t *testing.T, h http.Handler, method, ctype, body string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequest(method, srv.URL+Path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHandlerBadInput(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	in := &Injector{Image: "sekisho:t", ImageBinary: "/s"}
	in.Log = testLogger(logs)
	secretish := "sekisho+vault://secret/x#k"
	for _, tc := range []struct {
		name, method, ctype, body string
		code                      int
		msg                       string
	}{
		{"GET", http.MethodGet, "application/json", "", http.StatusMethodNotAllowed, "POST an AdmissionReview"},
		{"not JSON content", http.MethodPost, "text/plain", "{}", http.StatusUnsupportedMediaType, "application/json"},
		{"not JSON", http.MethodPost, "application/json", "{" + secretish, http.StatusBadRequest, "not JSON of an AdmissionReview"},
		{"v1beta1", http.MethodPost, "application/json", `{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u"}}`, http.StatusBadRequest, "want admission.k8s.io/v1 AdmissionReview"},
		{"no request", http.MethodPost, "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, http.StatusBadRequest, "no request"},
		{"too large", http.MethodPost, "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","x":"` + strings.Repeat("a", MaxBody) + `"}`, http.StatusBadRequest, "larger than"},
		{"object not a pod", http.MethodPost, "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","resource":{"version":"v1","resource":"pods"},"object":{"spec":{"containers":"` + secretish + `"}}}}`, http.StatusBadRequest, "request.object is not a Pod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, in.Handler(), tc.method, tc.ctype, tc.body)
			if code != tc.code || !strings.Contains(body, tc.msg) {
				t.Fatalf("%d %q, want %d %q", code, body, tc.code, tc.msg)
			}
			if strings.Contains(body, secretish) {
				t.Fatalf("the answer echoes the request: %q", body)
			}
		})
	}
	if strings.Contains(logs.String(), secretish) {
		t.Fatalf("logs hold request content:\n%s", logs)
	}
}

// answer posts the review and returns the response and the pod after the
// patch.
func answer(t *testing.T, in *Injector, pod *corev1.Pod, op admissionv1.Operation) (*admissionv1.AdmissionResponse, *corev1.Pod) {
	t.Helper()
	code, body := post(t, in.Handler(), http.MethodPost, "application/json", review(t, pod, op))
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	var rev admissionv1.AdmissionReview
	if err := json.Unmarshal([]byte(body), &rev); err != nil {
		t.Fatal(err)
	}
	if rev.APIVersion != "admission.k8s.io/v1" || rev.Response == nil || rev.Response.UID != "uid-1" {
		t.Fatalf("answer %s", body)
	}
	if rev.Response.Patch == nil {
		return rev.Response, pod
	}
	raw, _ := json.Marshal(pod)
	p, err := jsonpatch.DecodePatch(rev.Response.Patch)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("patch %s does not apply: %v", rev.Response.Patch, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return rev.Response, &got
}

func TestMutate(t *testing.T) {
	client := fake.NewClientset(
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "refs"}, Data: map[string]string{"A": "sekisho+aws-ssm:///prod/a"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "plain"}, Data: map[string]string{"A": "file:///etc/app.conf"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "refs2"}, Data: map[string]string{"A": "sekisho+aws-ssm:///prod/a"}},
	)
	in := &Injector{Image: "sekisho:t", ImageBinary: "/usr/local/bin/sekisho", Client: client}
	cmRef := func(name, key string, optional bool) []corev1.EnvVar {
		return []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key, Optional: &optional}}}}
	}
	c := func(name string, env []corev1.EnvVar) corev1.Container {
		return corev1.Container{Name: name, Image: "app", Command: []string{"/app"}, Env: env}
	}
	for _, tc := range []struct {
		name    string
		pod     corev1.Pod
		wrapped []string // containers then init containers, by name
		refused string
	}{
		{"literal", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{c("a", env("T", "sekisho+k8s://ns/s/k")), c("b", env("U", "x"))}}}, []string{"a"}, ""},
		{"alias", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{c("a", env("T", "berglas-aws://arn"))}}}, []string{"a"}, ""},
		{"configMapKeyRef", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{c("a", cmRef("refs", "A", false))}}}, []string{"a"}, ""},
		{"configMapKeyRef to a plain value", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{c("a", cmRef("plain", "A", false))}}}, nil, ""},
		{"ConfigMap of another namespace is not read", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{c("a", cmRef("refs2", "A", true))}}}, nil, ""},
		{"optional missing ConfigMap", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{c("a", cmRef("nope", "A", true))}}}, nil, ""},
		{"missing ConfigMap", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{c("a", cmRef("nope", "A", false))}}}, nil, `ConfigMap "nope", which does not exist: create it before the pod`},
		{"init container and sidecar", corev1.Pod{Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{c("migrate", env("T", "sekisho+file:///t"))},
			Containers:     []corev1.Container{c("a", nil)},
			Volumes:        []corev1.Volume{{Name: "data"}},
			NodeSelector:   map[string]string{"x": "y"},
		}, ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"keep": "me"}}}, []string{"migrate"}, ""},
		{"mount conflict", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "i", Command: []string{"/a"}, Env: env("T", "sekisho+file:///t"), VolumeMounts: []corev1.VolumeMount{{Name: "v", MountPath: "/sekisho"}}}}}}, nil, "mounts a volume at /sekisho"},
		{"no command, no registry", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "i", Env: env("T", "sekisho+file:///t")}}}}, nil, "set the container's command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, got := answer(t, in, &tc.pod, admissionv1.Create)
			if tc.refused != "" {
				if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, tc.refused) || resp.Result.Code != http.StatusForbidden {
					t.Fatalf("response %+v, want refused with %q", resp, tc.refused)
				}
				return
			}
			if !resp.Allowed {
				t.Fatalf("refused: %+v", resp.Result)
			}
			var wrapped []string
			for _, c := range append(got.Spec.InitContainers, got.Spec.Containers...) {
				if Wrapped(c.Command) {
					wrapped = append(wrapped, c.Name)
					if c.VolumeMounts[len(c.VolumeMounts)-1].MountPath != MountPath {
						t.Errorf("%s: mounts %+v", c.Name, c.VolumeMounts)
					}
				}
			}
			if strings.Join(wrapped, ",") != strings.Join(tc.wrapped, ",") {
				t.Fatalf("wrapped %q, want %q", wrapped, tc.wrapped)
			}
			if len(tc.wrapped) == 0 {
				if resp.Patch != nil {
					t.Fatalf("patch for a pod with nothing to wrap: %s", resp.Patch)
				}
				return
			}
			if got.Spec.InitContainers[0].Name != InitContainerName || got.Annotations[Annotation] == "" {
				t.Fatalf("init containers %+v, annotations %v", got.Spec.InitContainers, got.Annotations)
			}
			if tc.pod.Annotations["keep"] != "" && got.Annotations["keep"] != "me" {
				t.Fatalf("annotations %v", got.Annotations)
			}
			// A second pass changes nothing.
			resp2, _ := answer(t, in, got, admissionv1.Create)
			if resp2.Patch != nil {
				t.Fatalf("second pass patched: %s", resp2.Patch)
			}
		})
	}
	t.Run("not a create", func(t *testing.T) {
		pod := corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{c("a", env("T", "sekisho+file:///t"))}}}
		resp, _ := answer(t, in, &pod, admissionv1.Update)
		if !resp.Allowed || resp.Patch != nil {
			t.Fatalf("%+v", resp)
		}
	})
}

// FuzzDecodeReview: any body either decodes to a review with a request
// and uid, or is refused with errBadReview; the handler never fails
// otherwise.
func FuzzDecodeReview(f *testing.F) {
	pod := corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "i", Args: []string{"$(X)"}, Env: env("T", "sekisho+file:///t")}}}}
	raw, _ := json.Marshal(pod)
	f.Add(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","resource":{"version":"v1","resource":"pods"},"object":` + string(raw) + `}}`)
	f.Add(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}`)
	f.Add(`[]`)
	in := &Injector{Image: "sekisho:t", ImageBinary: "/s"}
	f.Fuzz(func(t *testing.T, body string) {
		rev, err := DecodeReview(strings.NewReader(body))
		if err != nil {
			return
		}
		if rev.Request == nil || rev.Request.UID == "" {
			t.Fatal("decoded without a request uid")
		}
		var p corev1.Pod
		if json.Unmarshal(rev.Request.Object.Raw, &p) == nil {
			ops, _, err := in.Mutate(context.Background(), "ns", &p)
			if err == nil && ops != nil {
				if _, err := patchJSON(ops); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}
