package policies

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// skipped is a planned sleep hook left out because the API server would
// refuse the pod with it.
type skipped struct {
	c      *corev1.Container
	hook   string
	from   *compiled
	sleep  int64
	capped bool
}

// fitGrace decides the pod's final terminationGracePeriodSeconds (raised to
// the budget under fit, never above maxSeconds, never lowered) and drops the
// planned sleep hooks that would exceed it, editing plans in place. It
// returns the final value and the GraceCapped / HookSkipped findings.
func (m *merged) fitGrace(pod *corev1.Pod, plans []hookPlan, ps podSeconds, cur int64) (int64, []Finding) {
	var out []Finding
	// kube-apiserver (pkg/apis/core/validation/validation.go
	// validateSleepAction) refuses a sleep longer than the pod's grace period.
	// A preStop sleep above what the grace period can ever reach (the current
	// value, or maxSeconds under fit) is dropped before the budget is
	// computed, so fit is not raised for a hook that cannot be injected.
	reach := cur
	if m.fit {
		reach = max(cur, m.maxSecs)
	}
	var skips []skipped
	for i := range plans {
		if p := &plans[i]; p.preStop != nil && p.preStop.Sleep != nil && p.preStop.Sleep.Seconds > reach {
			skips = append(skips, skipped{p.c, "preStop", p.preFrom, p.preStop.Sleep.Seconds, m.fit && p.preStop.Sleep.Seconds > m.maxSecs})
			p.preStop, p.preFrom = nil, nil
		}
	}

	final := cur
	if m.fit {
		planned := func(c *corev1.Container, sidecar bool) *corev1.LifecycleHandler {
			for _, p := range plans {
				if p.c == c && p.preStop != nil {
					return p.preStop
				}
			}
			return currentPreStop(c, sidecar)
		}
		b := m.budget(members(&pod.Spec, planned), m.shutdownSeconds(ps), ps)
		if b.total > cur {
			final = max(cur, min(b.total, m.maxSecs))
			if b.total > m.maxSecs {
				out = append(out, Finding{Policy: m.fitFrom, Action: v1alpha1.ActionWarn, Reason: ReasonGraceCapped,
					Message: fmt.Sprintf("the shutdown budget needs terminationGracePeriodSeconds %ds but policy %q lets fit raise it only to maxSeconds %ds; it is %ds",
						b.total, m.fitFrom, m.maxSecs, final)})
			}
		}
	}
	// Checked against the final grace period: postStart sleeps are not in
	// the budget, and the preStop check above is only an upper bound.
	for i := range plans {
		p := &plans[i]
		if p.preStop != nil && p.preStop.Sleep != nil && p.preStop.Sleep.Seconds > final {
			skips = append(skips, skipped{p.c, "preStop", p.preFrom, p.preStop.Sleep.Seconds, m.fit && p.preStop.Sleep.Seconds > m.maxSecs})
			p.preStop, p.preFrom = nil, nil
		}
		if p.postStart != nil && p.postStart.Sleep != nil && p.postStart.Sleep.Seconds > final {
			skips = append(skips, skipped{p.c, "postStart", p.postFrom, p.postStart.Sleep.Seconds, m.fit && p.postStart.Sleep.Seconds > m.maxSecs})
			p.postStart, p.postFrom = nil, nil
		}
	}
	for _, k := range skips {
		msg := fmt.Sprintf("container %q: %s sleep %ds from policy %q not injected: the API server refuses a sleep longer than terminationGracePeriodSeconds (%ds); ",
			k.c.Name, k.hook, k.sleep, k.from.name, final)
		if k.capped {
			msg += fmt.Sprintf("fit may raise it only to maxSeconds %d (policy %q): raise maxSeconds to at least %d or shorten the sleep", m.maxSecs, m.fitFrom, k.sleep)
		} else {
			msg += fmt.Sprintf("raise terminationGracePeriodSeconds to at least %d or shorten the sleep", k.sleep)
		}
		out = append(out, Finding{Policy: k.from.name, Container: k.c.Name, Action: v1alpha1.ActionWarn, Reason: ReasonHookSkipped, Message: msg})
	}

	return final, out
}
