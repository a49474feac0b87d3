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

func (m *merged) budget(ms []member, shutdown int64, ps podSeconds) budget {
	b := budget{shutdown: shutdown}
	for _, mb := range ms {
		if mb.sidecar {
			continue
		}
		declared, _, _, _ := m.declaredFor(mb, ps)
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
		declared, _, _, _ := m.declaredFor(mb, ps)
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
	// A negative value (accepted in templates with a warning) becomes 1
	// when the pod is created (pkg/apis/core/v1/defaults.go SetDefaults_Pod).
	if v := *spec.TerminationGracePeriodSeconds; v >= 0 {
		return v
	}
	return 1
}

// podSeconds are the pod's gracekeeper duration annotations, as the
// matching policies let them count.
type podSeconds struct {
	// shutdown and preStop are the valid annotation values (nil: absent or bad).
	shutdown, preStop *int64
	// lowerOK: every matching policy sets allowLowerBudget; else lowerBy
	// names the first that does not.
	lowerOK bool
	lowerBy string
	// findings are the bad-value findings (always) and the shutdown-seconds
	// trace (honoured or refused).
	findings []Finding
}

// readSeconds reads the duration annotations. An annotation may raise the
// budget; one that would lower it below the policies' value counts only
// where every matching policy allows lowering (allowLowerBudget), since a
// pod author could otherwise annotate a pod out of a Deny policy. Every
// honoured override leaves an Audit finding (an audit annotation and a
// metric in the webhook); a refused one a Warn.
func (m *merged) readSeconds(pod *corev1.Pod, policy string) podSeconds {
	ps := podSeconds{lowerOK: true}
	for _, c := range m.pols {
		if !c.spec.AllowLowerBudget {
			ps.lowerOK, ps.lowerBy = false, c.name
			break
		}
	}
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
	if ps.shutdown != nil {
		var from int64
		if m.shutdown != nil {
			from = *m.shutdown
		}
		owner := m.shutdownFrom
		if owner == "" {
			owner = policy
		}
		a := *ps.shutdown
		switch {
		case a == from:
		case a < from && !ps.lowerOK:
			ps.findings = append(ps.findings, Finding{Policy: ps.lowerBy, Action: v1alpha1.ActionWarn, Reason: ReasonShutdownLoweringRefused,
				Message: fmt.Sprintf("annotation %s: %q is ignored: it would lower shutdownSeconds %ds (policy %q) and policy %q does not set allowLowerBudget; the budget counts %ds",
					AnnotationShutdownSeconds, pod.Annotations[AnnotationShutdownSeconds], from, owner, ps.lowerBy, from)})
		default:
			verb := "raises"
			if a < from {
				verb = "lowers"
			}
			ps.findings = append(ps.findings, Finding{Policy: owner, Action: v1alpha1.ActionAudit, Reason: ReasonShutdownOverride,
				Message: fmt.Sprintf("annotation %s: %q %s shutdownSeconds of policy %q from %ds to %ds",
					AnnotationShutdownSeconds, pod.Annotations[AnnotationShutdownSeconds], verb, owner, from, a)})
		}
	}
	return ps
}

// shutdownSeconds is what the budget counts after SIGTERM: the policies'
// value, or the pod's annotation where readSeconds honours it.
func (m *merged) shutdownSeconds(ps podSeconds) int64 {
	var from int64
	if m.shutdown != nil {
		from = *m.shutdown
	}
	if ps.shutdown != nil && (*ps.shutdown >= from || ps.lowerOK) {
		return *ps.shutdown
	}
	return from
}

// policyPreStop is the preStop time the policies give a container: what
// the hook the winning policy would inject takes (ok false: none).
func (m *merged) policyPreStop(mb member) (int64, *compiled, bool) {
	w := m.preStopFor(mb.c.Name, mb.sidecar)
	if w == nil {
		return 0, nil, false
	}
	if w.preStop.Sleep != nil {
		return w.preStop.Sleep.Seconds, w, true
	}
	if w.preStopBudget != nil {
		return *w.preStopBudget, w, true
	}
	return 0, nil, false
}

// declaredFor is the prestop-seconds value that counts for a member whose
// own hook takes an unknown time: the annotation, but never less than the
// preStop the policies would have given the container unless lowering is
// allowed (a pod's own hook, kept where the policy does not overwrite, must
// not be declared out of the budget the policy asks for).
func (m *merged) declaredFor(mb member, ps podSeconds) (v *int64, floor int64, from *compiled, refused bool) {
	if ps.preStop == nil {
		return nil, 0, nil, false
	}
	floor, from, ok := m.policyPreStop(mb)
	if ok && *ps.preStop < floor && !ps.lowerOK {
		return &floor, floor, from, true
	}
	return ps.preStop, floor, from, false
}

// preStopTrace is the prestop-seconds trace for each container whose
// budget it decides in place of a policy's preStop: an Audit finding where
// honoured, a Warn where a lowering is refused.
func (m *merged) preStopTrace(pod *corev1.Pod, ps podSeconds) []Finding {
	if ps.preStop == nil {
		return nil
	}
	var out []Finding
	raw := pod.Annotations[AnnotationPreStopSeconds]
	for _, mb := range members(&pod.Spec, currentPreStop) {
		if _, known := m.preStopSeconds(mb.preStop, nil); known {
			continue // the annotation does not count for this container
		}
		v, floor, from, refused := m.declaredFor(mb, ps)
		if refused {
			out = append(out, Finding{Policy: ps.lowerBy, Container: mb.c.Name, Action: v1alpha1.ActionWarn, Reason: ReasonPreStopLoweringRefused,
				Message: fmt.Sprintf("container %q: annotation %s: %q is ignored: it is lower than the %ds preStop of policy %q and policy %q does not set allowLowerBudget; the budget counts %ds",
					mb.c.Name, AnnotationPreStopSeconds, raw, floor, from.name, ps.lowerBy, *v)})
			continue
		}
		if from == nil || *v == floor {
			// No policy preStop to override: the annotation only declares
			// what the container's own hook takes.
			continue
		}
		verb := "raises"
		if *v < floor {
			verb = "lowers"
		}
		out = append(out, Finding{Policy: from.name, Container: mb.c.Name, Action: v1alpha1.ActionAudit, Reason: ReasonPreStopOverride,
			Message: fmt.Sprintf("container %q: annotation %s: %q %s the %ds preStop of policy %q to %ds for the container's own hook",
				mb.c.Name, AnnotationPreStopSeconds, raw, verb, floor, from.name, *v)})
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
