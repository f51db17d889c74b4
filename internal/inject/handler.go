package inject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Path is where kube-apiserver posts AdmissionReviews (the
// MutatingWebhookConfiguration's path).
const Path = "/mutate"

// MaxBody bounds an AdmissionReview: a pod is at most 1.5 MiB in etcd,
// and a review carries it once on CREATE (plus the review's own fields).
const MaxBody = 4 << 20

// lookupBudget bounds the work for one review (registry and API reads),
// under the 10 s timeoutSeconds of the manifests: a slow registry gets a
// refusal that says what to set, not kube-apiserver's timeout.
const lookupBudget = 8 * time.Second

// errBadReview marks input that is not an AdmissionReview we can answer;
// its message is safe to send back.
var errBadReview = errors.New("bad AdmissionReview")

// DecodeReview reads an admission.k8s.io/v1 AdmissionReview with a
// request, from at most MaxBody bytes.
func DecodeReview(r io.Reader) (*admissionv1.AdmissionReview, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read the review: %w", err)
	}
	if len(data) > MaxBody {
		return nil, fmt.Errorf("%w: larger than %d bytes", errBadReview, MaxBody)
	}
	var rev admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &rev); err != nil {
		return nil, fmt.Errorf("%w: not JSON of an AdmissionReview", errBadReview)
	}
	if rev.APIVersion != "admission.k8s.io/v1" || rev.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("%w: apiVersion %q kind %q, want admission.k8s.io/v1 AdmissionReview (set admissionReviewVersions: [v1])", errBadReview, rev.APIVersion, rev.Kind)
	}
	if rev.Request == nil || rev.Request.UID == "" {
		return nil, fmt.Errorf("%w: no request, or a request without uid", errBadReview)
	}
	return &rev, nil
}

// isPodCreate reports whether req creates a pod (not a subresource).
func isPodCreate(req *admissionv1.AdmissionRequest) bool {
	return req.Operation == admissionv1.Create && req.SubResource == "" &&
		req.Resource.Group == "" && req.Resource.Resource == "pods"
}

// Handler answers POST Path with the injector.
func (in *Injector) Handler() http.Handler {
	return http.HandlerFunc(in.serveHTTP)
}

func (in *Injector) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	log := in.log()
	if r.URL.Path != Path {
		http.Error(w, "not found: kube-apiserver posts AdmissionReviews to "+Path, http.StatusNotFound)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed: POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		http.Error(w, "unsupported content type: send application/json", http.StatusUnsupportedMediaType)
		return
	}
	rev, err := DecodeReview(r.Body)
	if err != nil {
		msg := "could not read the request"
		if errors.Is(err, errBadReview) {
			msg = err.Error()
		}
		log.Warn("admission review refused", "status", http.StatusBadRequest, "reason", msg, "peer", r.RemoteAddr)
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	req := rev.Request
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if isPodCreate(req) {
		var pod corev1.Pod
		if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
			log.Warn("admission review refused", "status", http.StatusBadRequest, "reason", "request.object is not a Pod", "peer", r.RemoteAddr)
			http.Error(w, "bad AdmissionReview: request.object is not a Pod", http.StatusBadRequest)
			return
		}
		podName := req.Name
		if podName == "" {
			podName = pod.GenerateName + "*"
		}
		ctx, cancel := context.WithTimeout(r.Context(), lookupBudget)
		ops, wrapped, err := in.Mutate(ctx, req.Namespace, &pod)
		cancel()
		var rej *Rejection
		switch {
		case errors.As(err, &rej):
			resp.Allowed = false
			resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: rej.Msg}
			log.Info("pod refused", "namespace", req.Namespace, "pod", podName, "reason", rej.Msg, "duration", time.Since(start))
		case err != nil:
			resp.Allowed = false
			resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusInternalServerError, Message: "sekisho injector: " + err.Error()}
			log.Error("pod refused", "namespace", req.Namespace, "pod", podName, "error", err)
		case len(ops) > 0:
			patch, err := patchJSON(ops)
			if err != nil {
				http.Error(w, "internal error", http.StatusInternalServerError)
				return
			}
			pt := admissionv1.PatchTypeJSONPatch
			resp.Patch, resp.PatchType = patch, &pt
			log.Info("pod wrapped with sekisho exec", "namespace", req.Namespace, "pod", podName, "containers", wrapped, "duration", time.Since(start))
		}
	}
	out := admissionv1.AdmissionReview{TypeMeta: rev.TypeMeta, Response: resp}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(out); err != nil {
		log.Warn("admission answer not sent", "error", err)
	}
}
