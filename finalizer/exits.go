package finalizer

import (
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/gracekeeper/gracekeeper/policies"
)

// AnnotationExits is where the controller keeps, on the pod itself, which
// container exits it has finished with: a JSON object from container name to
// the restart count of the last exit recorded (and cleaned up), e.g.
// {"app":3}. State in the pod survives a controller restart and a change of
// leader, and outlives the exit Events (the API server drops Events after
// --event-ttl, 1h by default). Pod authors can write it too: it is read
// bounded and defensively, and a forged value can at worst suppress the
// records of that pod's own containers.
const AnnotationExits = "gracekeeper.dev/exits"

// MaxExitsAnnotation bounds the exits annotation the controller reads; a
// larger one (only a pod author can make it) counts as absent and is
// replaced by the controller's own on the next recorded exit.
const MaxExitsAnnotation = 4096

// exitState maps a container name to the restart count of its last exit
// that is done (recorded, and every exit cleanup called or given up).
type exitState map[string]int32

// parseExitState reads the annotation. Anything unreadable (too large, not
// a JSON object of non-negative integers) is treated as no state: the
// exits still visible in the status are then done again, and their Events,
// named after the exit, are not doubled while they live.
func parseExitState(raw string) exitState {
	st := exitState{}
	if raw == "" || len(raw) > MaxExitsAnnotation {
		return st
	}
	var m map[string]int64
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return st
	}
	for k, v := range m {
		if v >= 0 && v <= 1<<31-1 && len(k) <= 253 {
			st[k] = int32(v)
		}
	}
	return st
}

// encode writes the state for the containers the pod has, sorted (json
// sorts map keys), so it stays within a fixed size per container.
func (st exitState) encode(pod *corev1.Pod) string {
	keep := map[string]int32{}
	for _, c := range exitContainers(pod) {
		if v, ok := st[c.name]; ok {
			keep[c.name] = v
		}
	}
	b, _ := json.Marshal(keep)
	return string(b)
}

// exitContainer is a container whose exits are recorded.
type exitContainer struct {
	name    string
	sidecar bool
	// init: a regular init container: only its failures are exits worth a
	// record (every pod start completes its init containers).
	init   bool
	status *corev1.ContainerStatus
	spec   *corev1.Container
}

func exitContainers(pod *corev1.Pod) []exitContainer {
	var out []exitContainer
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		out = append(out, exitContainer{name: c.Name, sidecar: policies.IsSidecar(c), init: !policies.IsSidecar(c),
			status: statusOf(pod.Status.InitContainerStatuses, c.Name), spec: c})
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		out = append(out, exitContainer{name: c.Name, status: statusOf(pod.Status.ContainerStatuses, c.Name), spec: c})
	}
	return out
}

// observedExit is one container exit the pod status shows.
type observedExit struct {
	container *exitContainer
	// restart is the exited instance's restart count (0: the first run).
	restart int32
	t       *corev1.ContainerStateTerminated
	// previous: it is the container's lastState, so its log is the
	// "previous" one (PodLogOptions.Previous).
	previous bool
	// superseded: a later exit of the same container is visible too.
	superseded bool
}

// key is the exit's identity: pod UID, container and restart count.
func (e observedExit) key(pod *corev1.Pod) string {
	return string(pod.UID) + "/" + e.container.name + "/" + strconv.Itoa(int(e.restart))
}

// observedExits lists the exits the status shows, oldest first per container.
//
// The kubelet reports at most two instances per container
// (pkg/kubelet/kubelet_pods.go, convertToAPIContainerStatuses): the latest
// in state, the one before in lastState, and restartCount is the latest
// container's attempt number. While an exited container waits out its
// back-off (CrashLoopBackOff) it is still the latest: its termination moves
// to lastState and status.containerID still names it, so lastState is
// instance restartCount. Once the next instance exists, lastState is
// instance restartCount-1. An exit the kubelet could only infer
// (ContainerStatusUnknown) has no container ID and an incremented count.
// The current instance's end counts only when the kubelet will start the
// container again: else it is the container's final end, which the
// termination record reports when the pod is deleted (and the kubelet
// reports a pod's terminal phase only after its containers stopped, so the
// phase alone cannot tell: pkg/kubelet/kubelet_pods.go, generateAPIPodStatus).
// For a deleted pod, or one whose phase is Succeeded or Failed, only
// lastState counts.
func observedExits(pod *corev1.Pod) []observedExit {
	var out []observedExit
	cs := exitContainers(pod)
	for i := range cs {
		c := &cs[i]
		s := c.status
		if s == nil {
			continue
		}
		var mine []observedExit
		if lt := s.LastTerminationState.Terminated; lt != nil {
			inst := s.RestartCount - 1
			if lt.ContainerID != "" && lt.ContainerID == s.ContainerID {
				inst = s.RestartCount
			}
			if inst >= 0 {
				mine = append(mine, observedExit{container: c, restart: inst, t: lt, previous: true})
			}
		}
		if t := s.State.Terminated; t != nil && !podEnded(pod) && restarts(pod, c, t) {
			if len(mine) == 0 || mine[0].restart < s.RestartCount {
				mine = append(mine, observedExit{container: c, restart: s.RestartCount, t: t})
			}
		}
		for j := range mine {
			if c.init && mine[j].t.ExitCode == 0 {
				continue
			}
			mine[j].superseded = j < len(mine)-1
			out = append(out, mine[j])
		}
	}
	return out
}

// pendingExits are the observed exits not yet done according to st.
func pendingExits(pod *corev1.Pod, st exitState) []observedExit {
	var out []observedExit
	for _, e := range observedExits(pod) {
		if last, ok := st[e.container.name]; ok && e.restart <= last {
			continue
		}
		out = append(out, e)
	}
	return out
}

// missedBefore counts the exits of e's container between the last one done
// and e that nobody recorded (gracekeeper was not running, or fell behind
// two restarts): the kubelet keeps only the last two.
func missedBefore(e observedExit, st exitState, pending []observedExit) int32 {
	prev := int32(-1)
	if last, ok := st[e.container.name]; ok {
		prev = last
	}
	for _, p := range pending {
		if p.container.name == e.container.name && p.restart < e.restart && p.restart > prev {
			prev = p.restart
		}
	}
	return max(e.restart-prev-1, 0)
}

// appliedPolicies reads the comma-separated policy names mutation wrote,
// bounded: at most maxAppliedPolicies names, sorted. Only an index: what a
// policy asks is read from the policy itself.
func appliedPolicies(pod *corev1.Pod) []string {
	raw := pod.Annotations[policies.AnnotationPolicies]
	if raw == "" || len(raw) > maxPoliciesAnnotation {
		return nil
	}
	var out []string
	for _, n := range strings.Split(raw, ",") {
		n = strings.TrimSpace(n)
		if n != "" && len(n) <= 253 && !slices.Contains(out, n) && len(out) < maxAppliedPolicies {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

const (
	maxPoliciesAnnotation = 4096
	maxAppliedPolicies    = 16
)

// podEnded: deleted, or in a terminal phase (no container will run again).
func podEnded(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// restarts: the kubelet starts the container again after this end: the
// container's own restartPolicy (native sidecars: Always), else the pod's
// (Always when unset; OnFailure only after a failure).
func restarts(pod *corev1.Pod, c *exitContainer, t *corev1.ContainerStateTerminated) bool {
	policy := pod.Spec.RestartPolicy
	if c.spec != nil && c.spec.RestartPolicy != nil {
		policy = corev1.RestartPolicy(*c.spec.RestartPolicy)
	}
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return t.ExitCode != 0
	}
	return true
}
