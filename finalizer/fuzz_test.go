package finalizer

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/gracekeeper/gracekeeper/policies"
)

// FuzzOwnedFinalizers: whatever a pod author puts in the cleanup
// annotation and the finalizer list, the parser never panics, and every
// cleanup it accepts names a finalizer the pod carries (once) and passes
// checkRecord (its URL is never used: the current policy supplies it).
func FuzzOwnedFinalizers(f *testing.F) {
	f.Add(`[{"policy":"p","finalizer":"example.com/release","url":"https://ipam.example.svc/release","timeoutSeconds":5,"giveUpAfterSeconds":600}]`, "example.com/release")
	f.Add(`[{"finalizer":"example.com/x","url":"http://169.254.169.254/latest"}]`, "example.com/x")
	f.Add(`[{"finalizer":"batch.kubernetes.io/job-tracking","url":"https://a"}]`, "batch.kubernetes.io/job-tracking")
	f.Add(`[{"finalizer":"e.com/a","url":"http://evil.svc.attacker.com/"},{"finalizer":"e.com/a","url":"https://b"}]`, "e.com/a")
	f.Add(`{"not":"a list"}`, "")
	f.Add(`[null, 1, "x"]`, TerminationRecord)
	f.Fuzz(func(t *testing.T, annotation, finalizers string) {
		pod := &corev1.Pod{}
		pod.Annotations = map[string]string{policies.AnnotationCleanup: annotation}
		pod.Finalizers = strings.Split(finalizers, ",")
		o := ownedFinalizers(pod)
		seen := map[string]bool{}
		for _, r := range o.cleanups {
			if !slices.Contains(pod.Finalizers, r.Finalizer) || seen[r.Finalizer] {
				t.Fatalf("accepted %q: not on the pod or twice", r.Finalizer)
			}
			seen[r.Finalizer] = true
			if err := checkRecord(r); err != nil {
				t.Fatalf("accepted a record checkRecord refuses: %v", err)
			}
		}
		if o.termination != slices.Contains(pod.Finalizers, TerminationRecord) {
			t.Fatal("termination-record ownership misread")
		}
	})
}
