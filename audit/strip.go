package audit

import (
	"reflect"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gracekeeper/gracekeeper/policies"
)

// strip is the audit cache's transform: it keeps what the engine reads and
// drops the rest before the object is stored, so the cache's memory follows
// what is judged. Of metadata: names, UID, labels, finalizers (mutation
// adds missing ones), deletion time, and the gracekeeper.dev/* and mirror-pod
// annotations; of a pod spec (a pod's or a template's): the grace period
// and, per container, its name, hooks, restart policy (native sidecars) and
// the probes' own grace periods (policies/validate.go probeFindings).
// Everything else (status, managed fields, owner references, kubectl's
// last-applied copy, images, env, resources, ports, volumes, scheduling) goes.
func strip(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		stripMeta(&o.ObjectMeta)
		o.Spec = compactSpec(&o.Spec)
		o.Status = corev1.PodStatus{}
	default:
		if w, ok := obj.(runtime.Object); ok {
			if k, ok := policies.KindOf(w); ok {
				stripWorkload(k, w)
				return obj, nil
			}
		}
		if m, ok := obj.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
	}
	return obj, nil
}

// stripWorkload strips a workload of a kind in policies.Kinds: its metadata
// and pod template as a pod's, and its status. The rest of its spec stays:
// a Job's selector and completion mode decide the labels its pods get
// (policies/kinds.go jobPodLabels).
func stripWorkload(k policies.Kind, o runtime.Object) {
	if m, ok := o.(metav1.Object); ok {
		stripMeta(m)
	}
	if t, _ := k.Template(o); t != nil {
		stripMeta(&t.ObjectMeta)
		t.Spec = compactSpec(&t.Spec)
	}
	// Every workload kind keeps what its controller observed in a Status
	// field (the API conventions' spec/status split); no policy reads it.
	if st := reflect.ValueOf(o).Elem().FieldByName("Status"); st.IsValid() {
		st.SetZero()
	}
	// What a kind holds beside its pod template that nothing judges.
	switch o := o.(type) {
	case *appsv1.StatefulSet:
		o.Spec.VolumeClaimTemplates = nil
	case *batchv1.CronJob:
		stripMeta(&o.Spec.JobTemplate.ObjectMeta)
	}
}

func stripMeta(m metav1.Object) {
	m.SetManagedFields(nil)
	m.SetOwnerReferences(nil)
	annotations := m.GetAnnotations()
	for k := range annotations {
		if !strings.HasPrefix(k, "gracekeeper.dev/") && k != corev1.MirrorPodAnnotationKey {
			delete(annotations, k)
		}
	}
}

// compactSpec is a new spec holding only what the engine reads of s, so
// nothing else of the decoded object stays referenced.
func compactSpec(s *corev1.PodSpec) corev1.PodSpec {
	return corev1.PodSpec{TerminationGracePeriodSeconds: s.TerminationGracePeriodSeconds,
		Containers: compactContainers(s.Containers), InitContainers: compactContainers(s.InitContainers)}
}

func compactContainers(cs []corev1.Container) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Lifecycle: c.Lifecycle, RestartPolicy: c.RestartPolicy,
			LivenessProbe: probeGrace(c.LivenessProbe), StartupProbe: probeGrace(c.StartupProbe)}
	}
	return out
}

// probeGrace keeps of a probe only its own grace period, the one field the
// engine reads of it.
func probeGrace(p *corev1.Probe) *corev1.Probe {
	if p == nil || p.TerminationGracePeriodSeconds == nil {
		return nil
	}
	return &corev1.Probe{TerminationGracePeriodSeconds: p.TerminationGracePeriodSeconds}
}
