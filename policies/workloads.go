package policies

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TemplateOf returns the pod template of a workload (Deployment, StatefulSet,
// DaemonSet, ReplicaSet, ReplicationController, Job, CronJob) and the JSON
// pointer at which it sits in the object, e.g. "/spec/template" or
// "/spec/jobTemplate/spec/template". ok is false for any other kind.
func TemplateOf(obj runtime.Object) (tmpl *corev1.PodTemplateSpec, pointer string, ok bool) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &o.Spec.Template, "/spec/template", true
	case *appsv1.StatefulSet:
		return &o.Spec.Template, "/spec/template", true
	case *appsv1.DaemonSet:
		return &o.Spec.Template, "/spec/template", true
	case *appsv1.ReplicaSet:
		return &o.Spec.Template, "/spec/template", true
	case *corev1.ReplicationController:
		if o.Spec.Template == nil {
			return nil, "", false
		}
		return o.Spec.Template, "/spec/template", true
	case *batchv1.Job:
		return &o.Spec.Template, "/spec/template", true
	case *batchv1.CronJob:
		return &o.Spec.JobTemplate.Spec.Template, "/spec/jobTemplate/spec/template", true
	}
	return nil, "", false
}

// PodFromTemplate builds the pod a workload's controller would create from the
// template, in namespace ns: what admission will see at pod CREATE.
func PodFromTemplate(owner metav1.Object, kind string, tmpl *corev1.PodTemplateSpec) *corev1.Pod {
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: *tmpl.ObjectMeta.DeepCopy(),
		Spec:       *tmpl.Spec.DeepCopy(),
	}
	pod.Namespace = owner.GetNamespace()
	if pod.Name == "" && pod.GenerateName == "" {
		pod.GenerateName = fmt.Sprintf("%s-", owner.GetName())
	}
	return pod
}
