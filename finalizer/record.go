package finalizer

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gracekeeper/gracekeeper/policies"
)

// Cause says why a deleted pod counts as finished.
type Cause string

const (
	// CauseEnded: every container reported terminated, or the pod phase is terminal.
	CauseEnded Cause = "Ended"
	// CauseNeverScheduled: the pod had no node, so no container ever ran.
	CauseNeverScheduled Cause = "NeverScheduled"
	// CauseNodeLost: the node is gone or NotReady past the grace deadline plus
	// the margin; containers the kubelet never reported are "unknown".
	CauseNodeLost Cause = "NodeLost"
	// CauseReleased: `gracekeeper release-finalizers` (uninstall) removed the
	// finalizer before the containers were reported ended.
	CauseReleased Cause = "Released"
)

// ExitCodeSIGKILL is what a container killed by SIGKILL exits with (128+9),
// which is what the runtime does when the grace period runs out: the kubelet's
// killContainer (pkg/kubelet/kuberuntime/kuberuntime_container.go) calls
// StopContainer with the remaining grace (never under 2s,
// minimumGracePeriodInSeconds), after which the runtime sends SIGKILL.
const ExitCodeSIGKILL = 137

// ContainerEnd is how one container ended. It is part of the cleanup POST body.
type ContainerEnd struct {
	Name string `json:"name"`
	// Sidecar marks an init container with restartPolicy: Always (KEP-753).
	Sidecar bool `json:"sidecar,omitempty"`
	// State is "terminated", or "unknown" when it was never reported ended
	// (node lost) or never ran.
	State    string `json:"state"`
	ExitCode *int32 `json:"exitCode,omitempty"`
	// Reason is the runtime's: Completed, Error, OOMKilled, ...
	Reason string `json:"reason,omitempty"`
	// Signal is the one that ended it: the runtime's report, else exit code - 128.
	Signal     int32        `json:"signal,omitempty"`
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
	// TerminationSeconds is how long it took from the start of the pod's
	// termination to its exit; absent when it exited before the deletion.
	TerminationSeconds *int64 `json:"terminationSeconds,omitempty"`
	// Overrun: killed at the grace deadline (SIGKILL after the full grace period).
	Overrun bool `json:"overrun"`
}

// Record is how a deleted pod ended.
type Record struct {
	Cause Cause `json:"cause"`
	// GracePeriodSeconds is the grace the deletion gave the pod: its
	// deletionGracePeriodSeconds, else spec.terminationGracePeriodSeconds.
	GracePeriodSeconds int64          `json:"gracePeriodSeconds"`
	Containers         []ContainerEnd `json:"containers"`
	// StartUnknown: the deletion was confirmed with grace 0 (by the kubelet
	// or a force delete) before it was recorded, so durations are unknown.
	StartUnknown bool `json:"terminationStartUnknown,omitempty"`
}

// Overruns counts the containers killed at the grace deadline.
func (r Record) Overruns() int {
	n := 0
	for _, c := range r.Containers {
		if c.Overrun {
			n++
		}
	}
	return n
}

// verdict is what Evaluate decides for a deleted pod.
type verdict struct {
	done  bool
	cause Cause
	// wait is how long until the node-gone check is due (when !done && !checkNode).
	wait time.Duration
	// checkNode: the margin has passed and the containers have not ended;
	// the caller must look the node up (NodeLost when gone or NotReady).
	checkNode bool
}

// evaluate decides whether a deleted pod's containers have ended. The
// deletionTimestamp the API server sets is already the grace deadline (now +
// grace, staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go
// BeforeDelete), so the node-gone rule waits deletionTimestamp + margin.
func evaluate(pod *corev1.Pod, now time.Time, margin time.Duration) verdict {
	if pod.Spec.NodeName == "" {
		return verdict{done: true, cause: CauseNeverScheduled}
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || allTerminated(pod) {
		return verdict{done: true, cause: CauseEnded}
	}
	due := pod.DeletionTimestamp.Add(margin)
	if now.Before(due) {
		return verdict{wait: due.Sub(now)}
	}
	return verdict{checkNode: true}
}

// allTerminated: every regular container and every sidecar has a terminated state.
func allTerminated(pod *corev1.Pod) bool {
	if len(pod.Spec.Containers) == 0 {
		return false
	}
	for _, c := range pod.Spec.Containers {
		if s := statusOf(pod.Status.ContainerStatuses, c.Name); s == nil || s.State.Terminated == nil {
			return false
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if policies.IsSidecar(&c) {
			if s := statusOf(pod.Status.InitContainerStatuses, c.Name); s != nil && s.State.Terminated == nil {
				return false
			}
		}
	}
	return true
}

func statusOf(ss []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range ss {
		if ss[i].Name == name {
			return &ss[i]
		}
	}
	return nil
}

// deletionGracePeriod is the grace the kubelet applies to this deletion: the
// deletion's own (metadata.deletionGracePeriodSeconds, e.g. `kubectl delete
// --grace-period`), else spec.terminationGracePeriodSeconds, else the API
// default of 30. (The policies package's budget compares against the spec's
// alone: that is what a pod declares.)
func deletionGracePeriod(pod *corev1.Pod) int64 {
	if g := pod.DeletionGracePeriodSeconds; g != nil {
		return *g
	}
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		return *g
	}
	return corev1.DefaultTerminationGracePeriodSeconds
}

// buildRecord computes each container's end. Call it on a deleted pod.
func buildRecord(pod *corev1.Pod, cause Cause) Record {
	grace := deletionGracePeriod(pod)
	r := Record{Cause: cause, GracePeriodSeconds: grace, Containers: []ContainerEnd{}}
	var deadline, start time.Time
	if pod.DeletionTimestamp != nil {
		deadline = pod.DeletionTimestamp.Time
		start = deadline.Add(-time.Duration(grace) * time.Second)
	}
	if g := pod.DeletionGracePeriodSeconds; g != nil && *g == 0 && pod.Spec.NodeName != "" {
		// The kubelet confirms a finished pod's deletion with grace 0
		// (pkg/kubelet/status/status_manager.go, canBeDeleted), which moves
		// deletionTimestamp to that moment (BeforeDelete): when termination
		// began is lost. A force delete looks the same. Then SIGKILL without
		// an OOM during termination is taken as the deadline kill.
		r.StartUnknown = true
		r.GracePeriodSeconds = ptr.Deref(pod.Spec.TerminationGracePeriodSeconds, corev1.DefaultTerminationGracePeriodSeconds)
		start, deadline = time.Time{}, time.Time{}
	}
	add := func(name string, sidecar bool, s *corev1.ContainerStatus) {
		e := ContainerEnd{Name: name, Sidecar: sidecar, State: "unknown"}
		if s != nil && s.State.Terminated != nil {
			t := s.State.Terminated
			code := t.ExitCode
			e.State, e.ExitCode, e.Reason, e.Signal = "terminated", &code, t.Reason, t.Signal
			if e.Signal == 0 && code > 128 {
				e.Signal = code - 128
			}
			if !t.FinishedAt.IsZero() {
				fin := t.FinishedAt
				e.FinishedAt = &fin
				if !start.IsZero() && !fin.Time.Before(start) {
					d := int64(fin.Time.Sub(start) / time.Second)
					e.TerminationSeconds = &d
				}
				// Killed at the deadline: SIGKILL (137, not an OOM kill) at or
				// after deletionTimestamp, which is when the grace ran out.
				e.Overrun = code == ExitCodeSIGKILL && t.Reason != "OOMKilled" &&
					(r.StartUnknown || (!deadline.IsZero() && !fin.Time.Before(deadline)))
			}
		}
		r.Containers = append(r.Containers, e)
	}
	for _, c := range pod.Spec.InitContainers {
		if policies.IsSidecar(&c) {
			add(c.Name, true, statusOf(pod.Status.InitContainerStatuses, c.Name))
		}
	}
	for _, c := range pod.Spec.Containers {
		add(c.Name, false, statusOf(pod.Status.ContainerStatuses, c.Name))
	}
	return r
}

// eventReason and eventType: the most telling thing about the record.
func (r Record) eventReason() (reason, typ string) {
	switch {
	case r.Overruns() > 0:
		return "ShutdownOverrun", corev1.EventTypeWarning
	case r.Cause == CauseNodeLost:
		return "NodeLost", corev1.EventTypeWarning
	}
	for _, c := range r.Containers {
		if c.Reason == "OOMKilled" {
			return "OOMKilled", corev1.EventTypeWarning
		}
	}
	return "PodTerminated", corev1.EventTypeNormal
}

// message is the short human text of the termination Event.
func (r Record) message(pod *corev1.Pod) string {
	var b strings.Builder
	switch r.Cause {
	case CauseNeverScheduled:
		fmt.Fprintf(&b, "pod %s was deleted before it was scheduled: no container ran", pod.Name)
		return b.String()
	case CauseNodeLost:
		fmt.Fprintf(&b, "pod %s: node %s is gone or NotReady past the grace deadline; ", pod.Name, pod.Spec.NodeName)
	case CauseReleased:
		fmt.Fprintf(&b, "pod %s was still terminating when gracekeeper's finalizers were released (uninstall); ", pod.Name)
	default:
		fmt.Fprintf(&b, "pod %s terminated (grace %ds): ", pod.Name, r.GracePeriodSeconds)
	}
	for i, c := range r.Containers {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(c.summary(r.GracePeriodSeconds, r.StartUnknown))
	}
	return b.String()
}

func (c ContainerEnd) summary(grace int64, startUnknown bool) string {
	if c.ExitCode == nil {
		return c.Name + " state unknown"
	}
	s := fmt.Sprintf("%s exit %d", c.Name, *c.ExitCode)
	if c.Reason != "" {
		s += " " + c.Reason
	}
	if c.Signal != 0 {
		s += " " + signalName(c.Signal)
	}
	if c.TerminationSeconds != nil {
		s += fmt.Sprintf(" after %ds of %ds", *c.TerminationSeconds, grace)
	} else if !startUnknown {
		s += " before the deletion"
	}
	if c.Overrun {
		s += ", killed at the grace deadline (shutdown overrun)"
	}
	return s
}

func signalName(sig int32) string {
	switch sig {
	case 9:
		return "SIGKILL"
	case 15:
		return "SIGTERM"
	case 2:
		return "SIGINT"
	case 6:
		return "SIGABRT"
	case 11:
		return "SIGSEGV"
	}
	return fmt.Sprintf("signal %d", sig)
}

// knownReason bounds the metric label: the reasons the kubelet and the
// common runtimes report; anything else counts as "Other".
func knownReason(r string) bool {
	switch r {
	case "Completed", "Error", "OOMKilled", "ContainerCannotRun", "DeadlineExceeded", "StartError", "ContainerStatusUnknown":
		return true
	}
	return false
}

func reasonLabel(c ContainerEnd) string {
	switch {
	case c.ExitCode == nil:
		return "Unknown"
	case knownReason(c.Reason):
		return c.Reason
	case c.Reason == "":
		if *c.ExitCode == 0 {
			return "Completed"
		}
		return "Error"
	}
	return "Other"
}
