package policies

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// validate is Validate of a pod whose labels named in unknown have values
// that cannot be known yet (a workload's template, see ReviewTemplate).
func (s *Set) validate(pod *corev1.Pod, ns Namespace, unknown []string) Decision {
	d, m, ok := s.matching(pod, ns, unknown, true)
	if !ok {
		return d
	}
	ps := m.readSeconds(pod, m.actionFrom)
	d.Findings = append(d.Findings, ps.findings...)
	d.Findings = append(d.Findings, m.preStopTrace(pod, ps)...)
	shutdown := m.shutdownSeconds(ps)
	tgps := gracePeriod(&pod.Spec)

	b := m.budget(members(&pod.Spec, currentPreStop), shutdown, ps)
	for _, u := range b.unknown {
		d.Findings = append(d.Findings, Finding{Policy: m.actionFrom, Container: u.c.Name,
			Action: m.adviceAction(), Reason: ReasonUnknownPreStop, Message: unknownMessage(u)})
	}
	if b.total > tgps {
		f := Finding{Policy: m.actionFrom, Action: m.action, Reason: ReasonBudgetExceeded}
		if len(b.chain) == 0 {
			f.Container = b.widest.Name
			f.Message = fmt.Sprintf("container %q: preStop %ds + shutdown %ds = %ds > terminationGracePeriodSeconds %ds; raise it to at least %d or shorten the preStop",
				b.widest.Name, b.widestPreStop, b.shutdown, b.total, tgps, b.total)
		} else {
			last := b.chain[len(b.chain)-1]
			f.Container = last.name
			f.Message = chainMessage(b, tgps)
		}
		d.Findings = append(d.Findings, f)
	}
	d.Findings = append(d.Findings, m.probeFindings(&pod.Spec, ps)...)
	return d
}

// Validate checks the pod's shutdown budget against its
// terminationGracePeriodSeconds under the matching policies (pods at CREATE,
// after mutation). It returns the matching policy names and the findings.
// A pod no policy matches gets no findings.
func (s *Set) Validate(pod *corev1.Pod, ns Namespace) Decision {
	return s.validate(pod, ns, nil)
}

// adviceAction is the action of budget advice (unknown preStop, short probe
// grace): a Warn, except where the policies only audit budgets (such as a
// cluster-wide termination record), whose pods should not get warnings
// about a budget nobody asked them to keep.
func (m *merged) adviceAction() v1alpha1.ValidationAction {
	if m.action == v1alpha1.ActionAudit {
		return v1alpha1.ActionAudit
	}
	return v1alpha1.ActionWarn
}

// chainMessage explains a budget that includes native sidecars, step by step.
func chainMessage(b budget, tgps int64) string {
	var sb strings.Builder
	last := b.chain[len(b.chain)-1]
	fmt.Fprintf(&sb, "sidecar %q stops last: ", last.name)
	if b.widest != nil {
		fmt.Fprintf(&sb, "containers need %ds (%q: preStop %ds + shutdown %ds), then sidecars stop in reverse order: ",
			b.chain[0].before, b.widest.Name, b.widestPreStop, b.shutdown)
	} else {
		sb.WriteString("sidecars stop in reverse order: ")
	}
	for i, st := range b.chain {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%q max(%ds, preStop %ds) + shutdown %ds = %ds", st.name, st.before, st.preStop, st.shutdown, st.end)
	}
	fmt.Fprintf(&sb, "; total %ds > terminationGracePeriodSeconds %ds; raise it to at least %d or shorten the preStop", b.total, tgps, b.total)
	return sb.String()
}

func unknownMessage(u member) string {
	kind := "a handler"
	switch h := u.preStop; {
	case h.Exec != nil:
		kind = fmt.Sprintf("exec %q", h.Exec.Command)
	case h.HTTPGet != nil:
		kind = fmt.Sprintf("httpGet %s on port %s", h.HTTPGet.Path, h.HTTPGet.Port.String())
	case h.TCPSocket != nil:
		kind = "tcpSocket"
	}
	return fmt.Sprintf("container %q: preStop %s takes an unknown time and counts as 0s; declare it with the pod annotation %s: \"<seconds>\"",
		u.c.Name, kind, AnnotationPreStopSeconds)
}

// probeFindings warns where a liveness or startup probe's own
// terminationGracePeriodSeconds (KEP-2238) is shorter than the container's
// preStop: on a probe-triggered kill the kubelet uses the probe's value as
// the grace period (kuberuntime_container.go killContainer), so the preStop
// is cut short.
func (m *merged) probeFindings(spec *corev1.PodSpec, ps podSeconds) []Finding {
	var out []Finding
	for _, mb := range members(spec, currentPreStop) {
		declared, _, _, _ := m.declaredFor(mb, ps)
		pre, ok := m.preStopSeconds(mb.preStop, declared)
		if !ok || pre == 0 {
			continue
		}
		for _, p := range []struct {
			kind  string
			probe *corev1.Probe
		}{{"livenessProbe", mb.c.LivenessProbe}, {"startupProbe", mb.c.StartupProbe}} {
			if p.probe == nil || p.probe.TerminationGracePeriodSeconds == nil || *p.probe.TerminationGracePeriodSeconds >= pre {
				continue
			}
			out = append(out, Finding{Policy: m.actionFrom, Container: mb.c.Name, Action: m.adviceAction(), Reason: ReasonProbeGraceShort,
				Message: fmt.Sprintf("container %q: %s terminationGracePeriodSeconds %ds < preStop %ds; a %s kill cuts the preStop short; raise the probe's terminationGracePeriodSeconds to at least %d or shorten the preStop",
					mb.c.Name, p.kind, *p.probe.TerminationGracePeriodSeconds, pre, strings.TrimSuffix(p.kind, "Probe"), pre)})
		}
	}
	return out
}
