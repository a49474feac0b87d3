package finalizer

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies"
)

// PodSelector selects the pods the webhook marked next to a gracekeeper
// finalizer (policies.LabelFinalize=true).
func PodSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{policies.LabelFinalize: "true"})
}

// CacheOptions is what the manager's cache needs for this controller: pods
// are listed and watched only with the finalize label, and stored stripped by
// TransformPod, so memory grows with those pods, not with the cluster. Pass it
// (or merge its ByObject entry) into manager.Options.Cache:
//
//	mgr, err := ctrl.NewManager(cfg, manager.Options{Cache: finalizer.CacheOptions(), ...})
//
// Note that every pod read through the manager's cached client then sees
// only those pods; read other pods through mgr.GetAPIReader().
func CacheOptions() cache.Options {
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Label: PodSelector(), Transform: TransformPod},
	}}
}

// TransformPod keeps only what the controller reads: identity, owners,
// finalizers, deletion time, gracekeeper's own annotations, the node, the
// grace period, container names (and which init containers are sidecars) and
// each container's state. It is idempotent and leaves non-pod objects (such
// as informer tombstones) alone.
func TransformPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{TypeMeta: pod.TypeMeta}
	m := pod.ObjectMeta
	out.ObjectMeta = m
	out.ManagedFields = nil
	out.Annotations = nil
	for k, v := range m.Annotations {
		if strings.HasPrefix(k, "gracekeeper.dev/") {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	out.Spec.NodeName = pod.Spec.NodeName
	out.Spec.TerminationGracePeriodSeconds = pod.Spec.TerminationGracePeriodSeconds
	for _, c := range pod.Spec.Containers {
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name})
	}
	for _, c := range pod.Spec.InitContainers {
		out.Spec.InitContainers = append(out.Spec.InitContainers, corev1.Container{Name: c.Name, RestartPolicy: c.RestartPolicy})
	}
	out.Status.Phase = pod.Status.Phase
	out.Status.ContainerStatuses = stripStatuses(pod.Status.ContainerStatuses)
	out.Status.InitContainerStatuses = stripStatuses(pod.Status.InitContainerStatuses)
	return out, nil
}

func stripStatuses(in []corev1.ContainerStatus) []corev1.ContainerStatus {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(in))
	for i, s := range in {
		out[i] = corev1.ContainerStatus{Name: s.Name, State: s.State}
	}
	return out
}

var _ toolscache.TransformFunc = TransformPod
