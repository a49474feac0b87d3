package finalizer

import (
	"context"
	"encoding/json"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// Caps on what the cache keeps of one pod. Pod authors choose how many
// finalizers, containers and owner references a pod has and how long its
// annotations and termination messages are; beyond these caps the cached
// pod is marked truncated and the controller reads that one pod from the API
// server when it works on it (readFull), so memory stays bounded per pod
// and the record stays complete.
const (
	MaxCachedFinalizers = 16
	MaxCachedContainers = 16 // regular, and again init containers
	// MaxCleanupAnnotation bounds the gracekeeper.dev/cleanup annotation
	// read from the informer; the cache keeps only its policy and finalizer
	// names, for the finalizers present.
	MaxCleanupAnnotation = 64 << 10
	maxReason            = 128
	// cachedContainerID is how many trailing bytes of a container ID the
	// cache keeps: the IDs are only compared with each other (which instance
	// is the latest, observedExits), and 16 hex digits of a runtime's
	// 64-digit ID tell instances apart.
	cachedContainerID = 16
	// annotationTruncated marks a cached pod that was cut at a cap, and is
	// kept on a second pass (the transform is idempotent). A pod author who
	// sets it only makes the controller read that pod uncached.
	annotationTruncated = "gracekeeper.dev/cache-truncated"
)

// TransformPod keeps only what the controller reads: identity, the
// controller owner reference, pod-template-hash, the finalizers, deletion
// time and grace, the policy and finalizer names of the cleanup annotation,
// the node, the restart policies, container names (and which init
// containers are sidecars), the
// exits annotation's entries for those containers, and each container's
// restart count, the end of its container ID, its current end (exit code,
// signal, reason, finish time, container ID; no message) and of its last
// end the exit code and container ID (enough to tell a container exit is
// pending: the record itself is built from a live read).
// Whatever exceeds a cap is dropped and the pod marked truncated (see the
// caps). It is idempotent and leaves non-pod objects (such as informer
// tombstones) alone.
func TransformPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	m := pod.ObjectMeta
	out := &corev1.Pod{TypeMeta: pod.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		DeletionTimestamp: m.DeletionTimestamp, DeletionGracePeriodSeconds: m.DeletionGracePeriodSeconds,
	}}
	truncated := m.Annotations[annotationTruncated] == "true"
	if h, ok := m.Labels["pod-template-hash"]; ok {
		out.Labels = map[string]string{"pod-template-hash": h}
	}
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		out.OwnerReferences = []metav1.OwnerReference{*ref}
	}
	if len(m.Finalizers) > MaxCachedFinalizers {
		truncated = true
	} else {
		out.Finalizers = m.Finalizers
	}
	keep := func(k, v string) {
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		out.Annotations[k] = v
	}
	if raw, ok := m.Annotations[policies.AnnotationCleanup]; ok {
		if len(raw) > MaxCleanupAnnotation {
			truncated = true
		} else {
			keep(policies.AnnotationCleanup, cleanupNames(raw, out.Finalizers))
		}
	}
	// The exits state, re-encoded with the entries of the pod's containers
	// only (what a pod author adds beyond those is dropped): with the
	// statuses it says whether an exit is pending. Everything a record
	// holds is read from the API server when an exit is worked on.
	if raw, ok := m.Annotations[AnnotationExits]; ok {
		keep(AnnotationExits, parseExitState(raw).encode(pod))
	}
	out.Spec.NodeName = pod.Spec.NodeName
	out.Spec.TerminationGracePeriodSeconds = pod.Spec.TerminationGracePeriodSeconds
	// Whether the kubelet restarts a container that ended (observedExits).
	out.Spec.RestartPolicy = pod.Spec.RestartPolicy
	if len(pod.Spec.Containers) > MaxCachedContainers || len(pod.Spec.InitContainers) > MaxCachedContainers ||
		len(pod.Status.ContainerStatuses) > MaxCachedContainers || len(pod.Status.InitContainerStatuses) > MaxCachedContainers {
		truncated = true
	} else {
		for _, c := range pod.Spec.Containers {
			out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, RestartPolicy: c.RestartPolicy})
		}
		for _, c := range pod.Spec.InitContainers {
			out.Spec.InitContainers = append(out.Spec.InitContainers, corev1.Container{Name: c.Name, RestartPolicy: c.RestartPolicy})
		}
		out.Status.ContainerStatuses = stripStatuses(pod.Status.ContainerStatuses)
		out.Status.InitContainerStatuses = stripStatuses(pod.Status.InitContainerStatuses)
	}
	out.Status.Phase = pod.Status.Phase
	if truncated {
		keep(annotationTruncated, "true")
	}
	return out, nil
}

// cleanupNames reduces the cleanup annotation to the policy and finalizer
// names of the records whose finalizer is on the pod: nothing else of it is
// read (the current policy supplies the rest). Unparsable input is kept
// as "[]" plus nothing: ownedFinalizers then finds no record.
func cleanupNames(raw string, finalizers []string) string {
	var recs []policies.CleanupRecord
	if err := json.Unmarshal([]byte(raw), &recs); err != nil {
		return "[]"
	}
	keep := []policies.CleanupRecord{}
	for _, r := range recs {
		if slices.Contains(finalizers, r.Finalizer) && len(r.Policy) <= 253 && len(keep) < MaxCachedFinalizers {
			keep = append(keep, policies.CleanupRecord{Policy: r.Policy, Finalizer: r.Finalizer})
		}
	}
	b, _ := json.Marshal(keep)
	return string(b)
}

func stripStatuses(in []corev1.ContainerStatus) []corev1.ContainerStatus {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(in))
	for i, s := range in {
		// restartCount, containerID and lastState identify a container
		// exit of a running pod (observedExits).
		out[i] = corev1.ContainerStatus{Name: s.Name, RestartCount: s.RestartCount, ContainerID: idTail(s.ContainerID)}
		switch st := s.State; {
		case st.Terminated != nil:
			t := st.Terminated
			out[i].State.Terminated = &corev1.ContainerStateTerminated{ExitCode: t.ExitCode, Signal: t.Signal,
				Reason: truncate(t.Reason, maxReason), FinishedAt: t.FinishedAt, ContainerID: idTail(t.ContainerID)}
		case st.Running != nil:
			out[i].State.Running = &corev1.ContainerStateRunning{}
		case st.Waiting != nil:
			out[i].State.Waiting = &corev1.ContainerStateWaiting{}
		}
		if t := s.LastTerminationState.Terminated; t != nil {
			out[i].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: t.ExitCode, ContainerID: idTail(t.ContainerID)}
		}
	}
	return out
}

func idTail(id string) string {
	if len(id) > cachedContainerID {
		return id[len(id)-cachedContainerID:]
	}
	return id
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// readFull returns the pod as the API server has it when the cached copy
// was truncated at a cap, else pod itself.
func (r *Reconciler) readFull(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	if pod.Annotations[annotationTruncated] != "true" {
		return pod, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.APITimeout)
	defer cancel()
	full := &corev1.Pod{}
	if err := r.reader.Get(ctx, client.ObjectKeyFromObject(pod), full); err != nil {
		return nil, err
	}
	return full, nil
}

var _ toolscache.TransformFunc = TransformPod
