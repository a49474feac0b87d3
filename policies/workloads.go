package policies

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TemplateOf returns the pod template of a workload of one of Kinds() and
// the JSON pointer at which it sits in the object, e.g. "/spec/template" or
// "/spec/jobTemplate/spec/template". ok is false for any other object and
// for one that creates no pods.
func TemplateOf(obj runtime.Object) (tmpl *corev1.PodTemplateSpec, pointer string, ok bool) {
	k, ok := KindOf(obj)
	if !ok {
		return nil, "", false
	}
	tmpl, pointer = k.Template(obj)
	return tmpl, pointer, tmpl != nil
}

// PodFromTemplate builds the pod a workload's controller would create from the
// template, in namespace ns: what admission will see at pod CREATE, without
// the labels the controller adds (TemplateFor adds those).
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
