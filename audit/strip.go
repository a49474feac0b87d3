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
// and pod template as a pod's, and its status.
func stripWorkload(k policies.Kind, o runtime.Object) {
	if m, ok := o.(metav1.Object); ok {
		stripMeta(m)
	}
	if t, _ := k.Template(o); t != nil {
		stripMeta(&t.ObjectMeta)
		stripSpec(&t.Spec)
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
	annotations := m.GetAnnotations()
	for k := range annotations {
		if !strings.HasPrefix(k, "gracekeeper.dev/") {
			delete(annotations, k)
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
