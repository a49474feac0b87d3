package audit

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	case *appsv1.Deployment:
		o.Spec = appsv1.DeploymentSpec{Template: o.Spec.Template}
		stripTemplate(&o.ObjectMeta, &o.Spec.Template)
		o.Status = appsv1.DeploymentStatus{}
	case *appsv1.StatefulSet:
		o.Spec = appsv1.StatefulSetSpec{Template: o.Spec.Template}
		stripTemplate(&o.ObjectMeta, &o.Spec.Template)
		o.Status = appsv1.StatefulSetStatus{}
	case *appsv1.DaemonSet:
		o.Spec = appsv1.DaemonSetSpec{Template: o.Spec.Template}
		stripTemplate(&o.ObjectMeta, &o.Spec.Template)
		o.Status = appsv1.DaemonSetStatus{}
	case *appsv1.ReplicaSet:
		o.Spec = appsv1.ReplicaSetSpec{Template: o.Spec.Template}
		stripTemplate(&o.ObjectMeta, &o.Spec.Template)
		o.Status = appsv1.ReplicaSetStatus{}
	case *corev1.ReplicationController:
		o.Spec = corev1.ReplicationControllerSpec{Template: o.Spec.Template}
		if o.Spec.Template != nil {
			stripTemplate(&o.ObjectMeta, o.Spec.Template)
		} else {
			stripMeta(&o.ObjectMeta)
		}
		o.Status = corev1.ReplicationControllerStatus{}
	case *batchv1.Job:
		// The Job's own selector and completion mode decide the labels its
		// pods get (policies/kinds.go jobPodLabels).
		o.Spec = batchv1.JobSpec{Template: o.Spec.Template, ManualSelector: o.Spec.ManualSelector, CompletionMode: o.Spec.CompletionMode}
		stripTemplate(&o.ObjectMeta, &o.Spec.Template)
		o.Status = batchv1.JobStatus{}
	case *batchv1.CronJob:
		jt := o.Spec.JobTemplate
		o.Spec = batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{ObjectMeta: jt.ObjectMeta, Spec: batchv1.JobSpec{
			Template: jt.Spec.Template, ManualSelector: jt.Spec.ManualSelector, CompletionMode: jt.Spec.CompletionMode}}}
		stripTemplate(&o.ObjectMeta, &o.Spec.JobTemplate.Spec.Template)
		stripMeta(&o.Spec.JobTemplate.ObjectMeta)
		o.Status = batchv1.CronJobStatus{}
	case metav1.Object:
		o.SetManagedFields(nil)
	}
	return obj, nil
}

func stripTemplate(m *metav1.ObjectMeta, t *corev1.PodTemplateSpec) {
	stripMeta(m)
	stripMeta(&t.ObjectMeta)
	t.Spec = compactSpec(&t.Spec)
}

func stripMeta(m *metav1.ObjectMeta) {
	m.ManagedFields, m.OwnerReferences = nil, nil
	for k := range m.Annotations {
		if !strings.HasPrefix(k, "gracekeeper.dev/") && k != corev1.MirrorPodAnnotationKey {
			delete(m.Annotations, k)
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
