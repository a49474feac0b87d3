package finalizer

import (
	"context"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Owner is the object a pod's termination Event is about.
type Owner struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Name       string    `json:"name"`
	UID        types.UID `json:"uid,omitempty"`
}

func (o Owner) ref(namespace string) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, UID: o.UID, Namespace: namespace}
}

// resolveOwner returns what the pod's termination Event is recorded on: the
// Deployment behind a ReplicaSet (read through reader, metadata only), else
// the pod's controller as it is (StatefulSet, DaemonSet, Job, or anything
// else that controls pods), else the pod itself. A bare pod's Event is thus
// stored in the pod's namespace and listed by `kubectl get events -n NS`
// after the pod is gone: an Event on the Namespace object would land in
// "default", away from the people who own the pod.
func resolveOwner(ctx context.Context, reader client.Reader, pod *corev1.Pod) Owner {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return Owner{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}
	}
	own := Owner{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: ref.UID}
	if ref.Kind != "ReplicaSet" || !strings.HasPrefix(ref.APIVersion, "apps/") || reader == nil {
		return own
	}
	rs := &metav1.PartialObjectMetadata{}
	rs.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))
	err := reader.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: ref.Name}, rs)
	switch {
	case err == nil:
		if d := metav1.GetControllerOf(rs); d != nil && d.Kind == "Deployment" {
			return Owner{APIVersion: d.APIVersion, Kind: d.Kind, Name: d.Name, UID: d.UID}
		}
		return own
	case apierrors.IsNotFound(err):
		// The ReplicaSet went first (a cascading delete): the Deployment
		// controller names it <deployment>-<pod-template-hash>.
		if h := pod.Labels["pod-template-hash"]; h != "" && strings.HasSuffix(ref.Name, "-"+h) {
			return Owner{APIVersion: "apps/v1", Kind: "Deployment", Name: strings.TrimSuffix(ref.Name, "-"+h)}
		}
	}
	return own
}
