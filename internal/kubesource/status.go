package kubesource

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/sekisho/sekisho/internal/kubeapi"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// Limits of the API: a condition's message and an events.k8s.io/v1
// Event's note.
const (
	maxMessage = 32768
	maxNote    = 1024
)

// FieldManager is the manager of the status fields sekisho writes.
const FieldManager = "sekisho"

// statusLoop writes status whenever it is kicked: after a Report, on
// taking the Lease, and when an object's status changed under it (someone
// else wrote it). It writes only what differs, so its own writes, which
// kick it again, end in a pass that writes nothing.
func (s *Source) statusLoop(ctx context.Context) {
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-retry:
		}
		retry = nil
		if !s.leader.Load() {
			continue
		}
		if failed := s.writeStatus(ctx); failed > 0 && ctx.Err() == nil {
			retry = time.After(retryAfter)
		}
	}
}

// writeStatus brings every reported object's status to what the last
// compile said, and returns how many writes failed.
func (s *Source) writeStatus(ctx context.Context) (failed int) {
	s.mu.Lock()
	keys := make([]string, 0, len(s.desired))
	for k := range s.desired {
		keys = append(keys, k)
	}
	desired := s.desired
	s.mu.Unlock()
	slices.Sort(keys)
	for _, key := range keys {
		if ctx.Err() != nil || !s.leader.Load() {
			return failed
		}
		st := desired[key]
		obj := s.object(st.Namespace, st.Name)
		// A newer generation is compiled soon, and reported then; a
		// deleted object needs nothing.
		if obj == nil || obj.GetGeneration() != st.Generation {
			continue
		}
		if err := s.writeOne(ctx, obj, st); err != nil {
			failed++
			s.log.Warn("cannot write a Route's status; retrying", "route", key, "error", err)
		}
	}
	return failed
}

// writeOne patches obj's status to st when it differs, and records an
// Event when the Accepted condition changed.
func (s *Source) writeOne(ctx context.Context, obj *unstructured.Unstructured, st snapshot.ResourceStatus) error {
	var cur struct {
		ObservedGeneration int64              `json:"observedGeneration"`
		Conditions         []metav1.Condition `json:"conditions"`
	}
	if raw, ok := obj.Object["status"].(map[string]any); ok {
		// A status not of this shape (written by hand) is replaced.
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &cur)
	}
	old := meta.FindStatusCondition(cur.Conditions, kubeapi.ConditionAccepted)
	var before *metav1.Condition
	if old != nil {
		c := *old
		before = &c
	}
	cond := metav1.Condition{
		Type:               kubeapi.ConditionAccepted,
		Status:             metav1.ConditionFalse,
		Reason:             st.Reason,
		Message:            truncate(st.Message, maxMessage),
		ObservedGeneration: st.Generation,
		LastTransitionTime: metav1.NewTime(time.Now().Truncate(time.Second)),
	}
	if st.Accepted {
		cond.Status = metav1.ConditionTrue
	}
	conds := slices.Clone(cur.Conditions)
	// Keeps lastTransitionTime unless the status itself changes.
	changed := meta.SetStatusCondition(&conds, cond)
	if !changed && cur.ObservedGeneration == st.Generation {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{
		"observedGeneration": st.Generation,
		"conditions":         conds,
	}})
	if err != nil {
		return fmt.Errorf("status patch: %w", err)
	}
	_, err = s.dyn.Resource(kubeapi.Routes).Namespace(obj.GetNamespace()).Patch(ctx, obj.GetName(), types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager}, "status")
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile
	}
	if err != nil {
		if apierrors.IsForbidden(err) {
			return fmt.Errorf("%w: sekisho's account needs update and patch on routes.sekisho.io/status", err)
		}
		return fmt.Errorf("write status: %w", err)
	}
	s.writes.Add(1)
	if before == nil || before.Status != cond.Status || before.Reason != cond.Reason || before.Message != cond.Message {
		s.event(obj, st)
	}
	return nil
}

// event records what the compile made of obj: Normal Accepted, or Warning
// Invalid or Conflicted with the reason.
func (s *Source) event(obj *unstructured.Unstructured, st snapshot.ResourceStatus) {
	ref := obj.DeepCopy() // the recorder reads its kind to refer to it
	ref.SetAPIVersion(kubeapi.Group + "/" + kubeapi.Version)
	ref.SetKind(kubeapi.RouteKind)
	kind := corev1.EventTypeNormal
	if !st.Accepted {
		kind = corev1.EventTypeWarning
	}
	s.recorder.Eventf(ref, nil, kind, st.Reason, "Compile", "%s", truncate(st.Message, maxNote))
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n-3]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}

// elect takes part in the election of the status writer until ctx ends,
// standing again after losing the Lease. The Lease is given up on the way
// out, so another replica takes over at once.
func (s *Source) elect(ctx context.Context) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: s.leaseNS, Name: s.opts.Settings.LeaderElection.Name},
		Client:     s.kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: s.identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   s.opts.LeaseDuration,
			RenewDeadline:   s.opts.RenewDeadline,
			RetryPeriod:     s.opts.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            "sekisho-route-status",
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) {
					s.leader.Store(true)
					s.log.Info("writing the status of Route objects: this replica holds the Lease", "lease", s.leaseNS+"/"+lock.LeaseMeta.Name, "identity", s.identity)
					if s.opts.OnLeader != nil {
						s.opts.OnLeader(true)
					}
					s.kickStatus() // the current state, written on taking over
				},
				OnStoppedLeading: func() {
					if s.leader.Swap(false) {
						s.log.Info("no longer writing the status of Route objects", "identity", s.identity)
						if s.opts.OnLeader != nil {
							s.opts.OnLeader(false)
						}
					}
				},
			},
		})
		if err != nil {
			s.log.Error("leader election cannot run; this replica serves routes but never writes their status", "error", err)
			return
		}
		le.Run(ctx)
	}
}
