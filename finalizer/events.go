package finalizer

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The Event API limits (pkg/apis/core/validation/events.go).
const (
	maxEventMessage = 1024
	maxObjectName   = 253
)

// TerminationEventName is the name of a pod's one termination Event. It is
// derived from the pod UID so that a second attempt (after a restart, or
// from release-finalizers) fails with AlreadyExists instead of doubling it.
// This is why gracekeeper writes these Events itself rather than through a
// client-go EventRecorder, which names Events by time and may aggregate or
// drop them.
func TerminationEventName(pod *corev1.Pod) string {
	return eventName(pod, "termination")
}

// AbandonEventName is the name of the Warning Event for an abandoned cleanup.
func AbandonEventName(pod *corev1.Pod, finalizer string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(finalizer))
	return eventName(pod, fmt.Sprintf("cleanup-%08x", h.Sum32()))
}

func eventName(pod *corev1.Pod, suffix string) string {
	tail := "." + string(pod.UID) + "." + suffix
	name := pod.Name
	if len(name)+len(tail) > maxObjectName {
		name = name[:maxObjectName-len(tail)]
	}
	return name + tail
}

type eventSpec struct {
	name, reason, typ, action, message string
}

// createEvent creates the Event once; created is false when it already
// existed (recorded by an earlier attempt).
func createEvent(ctx context.Context, c client.Client, pod *corev1.Pod, owner Owner, instance string, now metav1.Time, e eventSpec) (created bool, err error) {
	msg := e.message
	if len(msg) > maxEventMessage {
		msg = msg[:maxEventMessage-3] + "..."
	}
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: e.name, Namespace: pod.Namespace},
		InvolvedObject:      owner.ref(pod.Namespace),
		Reason:              e.reason,
		Message:             msg,
		Type:                e.typ,
		Source:              corev1.EventSource{Component: "gracekeeper"},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		Action:              e.action,
		ReportingController: ReportingController,
		ReportingInstance:   instance,
	}
	if owner.Kind != "Pod" {
		ev.Related = &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	}
	if err := c.Create(ctx, ev); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		return false, fmt.Errorf("create event %s/%s: %w", pod.Namespace, e.name, err)
	}
	return true, nil
}

// Reasons a record could not be written as an Event: the bounded values of
// the reason label of records_unwritten_total.
const (
	// RefusedNamespaceTerminating: the namespace is being deleted; the
	// NamespaceLifecycle admission plugin refuses every create in it
	// (plugin/pkg/admission/namespace/lifecycle/admission.go, cause
	// NamespaceTerminating) until the namespace is gone.
	RefusedNamespaceTerminating = "namespace_terminating"
	// RefusedForbidden: 403 or 401: RBAC without events create, a
	// ResourceQuota on events ("exceeded quota"), an admission webhook or
	// policy that denies with 403.
	RefusedForbidden = "forbidden"
	// RefusedRejected: any other refusal of this Event as such (422 Invalid,
	// 400, 404, ...): e.g. a ValidatingAdmissionPolicy that denies Events.
	RefusedRejected = "rejected"
	// RefusedUnavailable: the API server did not answer or failed (timeouts,
	// 5xx, 429) for longer than Options.EventRetryWindow.
	RefusedUnavailable = "unavailable"
)

// refusal classifies an Event create error: permanent refusals go to the
// log at once, the others are retried for a bounded window first.
func refusal(err error) (reason string, permanent bool) {
	switch {
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause),
		apierrors.IsForbidden(err) && strings.Contains(err.Error(), "because it is being terminated"):
		return RefusedNamespaceTerminating, true
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return RefusedForbidden, true
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsNotFound(err),
		apierrors.IsMethodNotSupported(err), apierrors.IsNotAcceptable(err),
		apierrors.IsUnsupportedMediaType(err), apierrors.IsRequestEntityTooLargeError(err),
		apierrors.IsGone(err), apierrors.IsConflict(err):
		return RefusedRejected, true
	}
	return RefusedUnavailable, false
}
