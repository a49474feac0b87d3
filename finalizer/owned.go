package finalizer

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// TerminationRecord is the built-in finalizer name.
const TerminationRecord = string(v1alpha1.TerminationRecordFinalizer)

// owned is what gracekeeper owns on one pod, among the finalizers present.
type owned struct {
	termination bool
	cleanups    []policies.CleanupRecord
	// skipped explains cleanup records that were not honoured.
	skipped []string
}

func (o owned) any() bool { return o.termination || len(o.cleanups) > 0 }

// ownedFinalizers reads the gracekeeper finalizers present on the pod:
// termination-record, and the finalizer of each valid CleanupRecord in the
// annotation. Anything else on the pod is someone else's and is never
// touched. A record is refused (and reported in skipped) when its finalizer
// is not domain-qualified or belongs to Kubernetes itself (kubernetes.io,
// k8s.io: e.g. batch.kubernetes.io/job-tracking). The annotation is written
// by the webhook, but a pod author can write it too: it only names the
// policy; what to call comes from that policy (currentTarget).
func ownedFinalizers(pod *corev1.Pod) owned {
	var o owned
	o.termination = slices.Contains(pod.Finalizers, TerminationRecord)
	raw, ok := pod.Annotations[policies.AnnotationCleanup]
	if !ok || raw == "" {
		return o
	}
	var recs []policies.CleanupRecord
	if err := json.Unmarshal([]byte(raw), &recs); err != nil {
		o.skipped = append(o.skipped, fmt.Sprintf("annotation %s is not a JSON list of cleanup records: %v", policies.AnnotationCleanup, err))
		return o
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if !slices.Contains(pod.Finalizers, r.Finalizer) || seen[r.Finalizer] {
			continue
		}
		if err := checkRecord(r); err != nil {
			o.skipped = append(o.skipped, fmt.Sprintf("cleanup %q: %v", r.Finalizer, err))
			continue
		}
		seen[r.Finalizer] = true
		o.cleanups = append(o.cleanups, r)
	}
	return o
}

// checkRecord refuses a record whose finalizer gracekeeper must never
// remove. Its URL and timings are never read: the current policy supplies
// them (currentTarget).
func checkRecord(r policies.CleanupRecord) error {
	dom, name, ok := strings.Cut(r.Finalizer, "/")
	if !ok || name == "" || !strings.Contains(dom, ".") {
		return fmt.Errorf("finalizer is not domain-qualified (example.com/name)")
	}
	if r.Finalizer == TerminationRecord {
		return fmt.Errorf("the built-in finalizer cannot be a cleanup step")
	}
	for _, k := range []string{"kubernetes.io", "k8s.io"} {
		if dom == k || strings.HasSuffix(dom, "."+k) {
			return fmt.Errorf("finalizer belongs to Kubernetes (%s)", k)
		}
	}
	return nil
}

// jsonPatchOp is one RFC 6902 operation.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// removalPatch removes the named finalizers and nothing else, with
// optimistic concurrency: "test" ops on the pod UID (a StatefulSet pod
// recreated under the same name is another pod) and on the finalizer list
// as read, so a patch built from a stale read fails instead of undoing a
// concurrent change. Only metadata.finalizers is written: never a full
// update, which would write back the cache's stripped spec.
func removalPatch(pod *corev1.Pod, remove []string) ([]byte, bool) {
	keep := make([]string, 0, len(pod.Finalizers))
	for _, f := range pod.Finalizers {
		if !slices.Contains(remove, f) {
			keep = append(keep, f)
		}
	}
	if len(keep) == len(pod.Finalizers) {
		return nil, false
	}
	cur := pod.Finalizers
	if cur == nil {
		cur = []string{}
	}
	ops := []jsonPatchOp{
		{Op: "test", Path: "/metadata/uid", Value: pod.UID},
		{Op: "test", Path: "/metadata/finalizers", Value: cur},
		{Op: "replace", Path: "/metadata/finalizers", Value: keep},
	}
	b, err := json.Marshal(ops)
	if err != nil { // cannot happen: strings only
		return nil, false
	}
	return b, true
}
