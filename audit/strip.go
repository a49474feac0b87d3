package audit

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// strip is the audit cache's transform: it keeps what the engine reads (the
// metadata selection and the gracekeeper.dev/* annotations need, and the pod
// spec's containers, grace period and probes) and drops the rest before the
// object is stored, so the cache's memory follows what is judged: status,
// managed fields, other annotations (kubectl's last-applied copy), volumes,
// env and mounts.
func strip(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		stripMeta(&o.ObjectMeta)
		stripSpec(&o.Spec)
		o.Status = corev1.PodStatus{}
	case *appsv1.Deployment:
		stripTemplate(&o.ObjectMeta, &o.Spec.Template)
		o.Status = appsv1.DeploymentStatus{}
	case *appsv1.StatefulSet:
		stripTemplate(&o.ObjectMeta, &o.Spec.Template)
		o.Spec.VolumeClaimTemplates = nil
		o.Status = appsv1.StatefulSetStatus{}
	case *appsv1.DaemonSet:
		stripTemplate(&o.ObjectMeta, &o.Spec.Template)
		o.Status = appsv1.DaemonSetStatus{}
	case *appsv1.ReplicaSet:
		stripTemplate(&o.ObjectMeta, &o.Spec.Template)
		o.Status = appsv1.ReplicaSetStatus{}
	case *corev1.ReplicationController:
		if o.Spec.Template != nil {
			stripTemplate(&o.ObjectMeta, o.Spec.Template)
		} else {
			stripMeta(&o.ObjectMeta)
		}
		o.Status = corev1.ReplicationControllerStatus{}
	case *batchv1.Job:
		stripTemplate(&o.ObjectMeta, &o.Spec.Template)
		o.Status = batchv1.JobStatus{}
	case *batchv1.CronJob:
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
	stripSpec(&t.Spec)
}

func stripMeta(m *metav1.ObjectMeta) {
	m.ManagedFields = nil
	for k := range m.Annotations {
		if !strings.HasPrefix(k, "gracekeeper.dev/") {
			delete(m.Annotations, k)
		}
	}
}

func stripSpec(s *corev1.PodSpec) {
	s.Volumes = nil
	s.Affinity, s.Tolerations, s.TopologySpreadConstraints = nil, nil, nil
	for _, cs := range [][]corev1.Container{s.Containers, s.InitContainers} {
		for i := range cs {
			c := &cs[i]
			c.Env, c.EnvFrom, c.VolumeMounts, c.VolumeDevices = nil, nil, nil, nil
			c.Args = nil
		}
	}
}
