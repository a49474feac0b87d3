package policies

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// The shutdown budget model (docs/design.md), from the kubelet's behaviour:
//
//   - pkg/kubelet/kuberuntime/kuberuntime_container.go killContainer runs
//     executePreStopHook first, then sends SIGTERM and waits for what is left
//     of the grace period: so a container needs preStop + shutdown seconds,
//     and every regular container gets the pod's whole grace period at once.
//   - KEP-753 (native sidecars): init containers with restartPolicy Always
//     get SIGTERM only after every regular container has exited, one by one
//     in reverse order; their preStop hooks start at the beginning of
//     termination. So T = max_c need(c), then for each sidecar s, last first,
//     T = max(T, preStop(s)) + shutdown(s).
//
// The budget fits when T <= terminationGracePeriodSeconds; the kubelet's
// one-off 2 s extension after a preStop overrun is a safety floor, not budget.

// member is one container that takes part in termination.
type member struct {
	c       *corev1.Container
	sidecar bool
	preStop *corev1.LifecycleHandler // as it is, or as mutation will leave it
}

// members are the regular containers, then the native sidecars in spec
// order. Plain init containers have ended before termination can begin.
func members(spec *corev1.PodSpec, preStop func(c *corev1.Container, sidecar bool) *corev1.LifecycleHandler) []member {
	out := make([]member, 0, len(spec.Containers)+len(spec.InitContainers))
	for i := range spec.Containers {
		c := &spec.Containers[i]
		out = append(out, member{c: c, preStop: preStop(c, false)})
	}
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		if isSidecar(c) {
			out = append(out, member{c: c, sidecar: true, preStop: preStop(c, true)})
		}
	}
	return out
}

// currentPreStop reads the hook a container carries.
func currentPreStop(c *corev1.Container, _ bool) *corev1.LifecycleHandler {
	if c.Lifecycle == nil {
		return nil
	}
	return c.Lifecycle.PreStop
}

// preStopSeconds is how long a preStop hook takes: a native sleep; the
// budgetSeconds of the policy that injected it; a recognised `sleep N` exec;
// the pod's declared gracekeeper.dev/prestop-seconds; else unknown.
func (m *merged) preStopSeconds(h *corev1.LifecycleHandler, declared *int64) (int64, bool) {
	if h == nil {
		return 0, true
	}
	if h.Sleep != nil {
		return h.Sleep.Seconds, true
	}
	for _, c := range m.pols {
		if c.preStopBudget != nil && equality.Semantic.DeepEqual(c.preStop, h) {
			return *c.preStopBudget, true
		}
	}
	if h.Exec != nil {
		if n, ok := execSleepSeconds(h.Exec.Command); ok {
			return n, true
		}
	}
	if declared != nil {
		return *declared, true
	}
	return 0, false
}

// step is one sidecar's turn in the reverse chain.
type step struct {
	name                           string
	before, preStop, shutdown, end int64
}

// budget is the computed shutdown budget of a pod.
type budget struct {
	total    int64
	shutdown int64
	// widest is the regular container that needs the most (nil: none).
	widest        *corev1.Container
	widestPreStop int64
	// chain is the sidecars in the order they stop (reverse spec order).
	chain   []step
	unknown []member
}

func (m *merged) budget(ms []member, shutdown int64, declared *int64) budget {
	b := budget{shutdown: shutdown}
	for _, mb := range ms {
		if mb.sidecar {
			continue
		}
		pre, ok := m.preStopSeconds(mb.preStop, declared)
		if !ok {
			b.unknown = append(b.unknown, mb)
		}
		if b.widest == nil || pre+shutdown > b.total {
			b.widest, b.widestPreStop, b.total = mb.c, pre, pre+shutdown
		}
	}
	for i := len(ms) - 1; i >= 0; i-- {
		mb := ms[i]
		if !mb.sidecar {
			continue
		}
		pre, ok := m.preStopSeconds(mb.preStop, declared)
		if !ok {
			b.unknown = append(b.unknown, mb)
		}
		st := step{name: mb.c.Name, before: b.total, preStop: pre, shutdown: shutdown}
		st.end = max(b.total, pre) + shutdown
		b.total = st.end
		b.chain = append(b.chain, st)
	}
	return b
}

// gracePeriod is the pod's terminationGracePeriodSeconds, defaulted as the
// API server does (corev1.DefaultTerminationGracePeriodSeconds).
func gracePeriod(spec *corev1.PodSpec) int64 {
	if spec.TerminationGracePeriodSeconds == nil {
		return corev1.DefaultTerminationGracePeriodSeconds
	}
	return *spec.TerminationGracePeriodSeconds
}

// podSeconds are the pod's gracekeeper duration annotations.
type podSeconds struct {
	shutdown, preStop *int64
	findings          []Finding
}

func readSeconds(pod *corev1.Pod, policy string) podSeconds {
	var ps podSeconds
	read := func(key string) *int64 {
		raw, ok := pod.Annotations[key]
		if !ok {
			return nil
		}
		n, good := seconds(raw)
		if !good {
			ps.findings = append(ps.findings, Finding{Policy: policy, Action: v1alpha1.ActionWarn, Reason: ReasonBadAnnotation,
				Message: fmt.Sprintf("annotation %s: %q is not a whole number of seconds between 0 and %d; it is ignored", key, raw, maxSeconds)})
			return nil
		}
		return &n
	}
	ps.shutdown = read(AnnotationShutdownSeconds)
	ps.preStop = read(AnnotationPreStopSeconds)
	return ps
}

// shutdownSeconds is the pod annotation if valid, else the policies'.
func (m *merged) shutdownSeconds(ps podSeconds) int64 {
	if ps.shutdown != nil {
		return *ps.shutdown
	}
	if m.shutdown != nil {
		return *m.shutdown
	}
	return 0
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
