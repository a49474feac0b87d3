package policies

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// hookPlan is what mutation will set on one container; nil keeps what it has.
type hookPlan struct {
	c                  *corev1.Container
	init               bool
	idx                int
	sidecar            bool
	preStop, postStart *corev1.LifecycleHandler
	preFrom, postFrom  *compiled
}

// Mutate applies the matching policies to pod (pods at CREATE). It is pure and
// idempotent: Mutate(Mutate(p).Pod) reports Changed == false. Findings are those
// of mutation only (skipped hooks, capped grace); opt-out and annotation
// findings come from Validate, so Review reports them once.
func (s *Set) Mutate(pod *corev1.Pod, ns Namespace) Decision {
	return s.mutate(pod, ns, nil)
}

func (s *Set) mutate(pod *corev1.Pod, ns Namespace, unknown []string) Decision {
	d, m, ok := s.matching(pod, ns, unknown, false)
	if !ok {
		return d
	}
	ps := m.readSeconds(pod, "")
	cur := gracePeriod(&pod.Spec)

	plans := m.planHooks(&pod.Spec)
	d.Findings = append(d.Findings, m.initContainerSkips(&pod.Spec)...)

	final, fs := m.fitGrace(pod, plans, ps, cur)
	d.Findings = append(d.Findings, fs...)

	e := m.edits(pod, plans, cur, final)
	if e.none() {
		return d
	}
	out := e.apply(pod)
	if errs := touchedErrors(pod, out); len(errs) > 0 {
		// Defence in depth: policies are validated when applied, but a
		// pod the API server refuses must never come out of here, whatever
		// slipped through. The pod is admitted as it came.
		d.Findings = append(d.Findings, Finding{Policy: d.Policies[0], Action: v1alpha1.ActionWarn, Reason: ReasonUnsafeMutation,
			Message: fmt.Sprintf("policies %s not applied: the API server would refuse the changed pod (%v); the pod is admitted unchanged", strings.Join(d.Policies, ", "), errs.ToAggregate())})
		return d
	}
	d.Pod, d.Changed = out, true
	return d
}

// planHooks chooses, for each regular container and native sidecar, the hook
// the winning policy gives it. A container's own hook is kept unless the
// policy says overwrite. Plain init containers never get hooks: the API
// server forbids lifecycle on them (validateInitContainers).
func (m *merged) planHooks(spec *corev1.PodSpec) []hookPlan {
	var plans []hookPlan
	add := func(c *corev1.Container, init bool, idx int, sidecar bool) {
		p := hookPlan{c: c, init: init, idx: idx, sidecar: sidecar}
		var ownPre, ownPost *corev1.LifecycleHandler
		if c.Lifecycle != nil {
			ownPre, ownPost = c.Lifecycle.PreStop, c.Lifecycle.PostStart
		}
		if w := m.preStopFor(c.Name, sidecar); w != nil && (ownPre == nil || w.preStopOver) {
			p.preStop, p.preFrom = w.preStop, w
		}
		if w := m.postStartFor(c.Name, sidecar); w != nil && (ownPost == nil || w.postStOver) {
			p.postStart, p.postFrom = w.postStart, w
		}
		if p.preStop != nil || p.postStart != nil {
			plans = append(plans, p)
		}
	}
	for i := range spec.Containers {
		add(&spec.Containers[i], false, i, false)
	}
	for i := range spec.InitContainers {
		if c := &spec.InitContainers[i]; isSidecar(c) {
			add(c, true, i, true)
		}
	}
	return plans
}

// initContainerSkips reports the containers a policy names in
// match.containers that get none of its hooks, and why: a plain init
// container (the API server forbids lifecycle on init containers without
// restartPolicy: Always, validateInitContainers), a native sidecar without
// includeSidecars, or a name match.excludeContainers also matches. A "*"
// (or absent) glob is not naming them, so it stays silent.
func (m *merged) initContainerSkips(spec *corev1.PodSpec) []Finding {
	var out []Finding
	check := func(c *corev1.Container, init bool) {
		for _, hook := range []string{"preStop", "postStart"} {
			for _, p := range m.pols {
				if (hook == "preStop" && p.preStop == nil) || (hook == "postStart" && p.postStart == nil) || p.include == nil || !p.named(c.Name) {
					continue
				}
				var why string
				reason := ReasonNotTargeted
				switch {
				case init && !isSidecar(c):
					reason = ReasonHookSkipped
					why = "it is an init container without restartPolicy: Always, and the API server allows lifecycle hooks only on regular containers and native sidecars"
				case p.excluded(c.Name):
					why = "match.excludeContainers also matches it; exclusions win"
				case init && !p.sidecars:
					why = "it is a native sidecar (an init container with restartPolicy: Always) and the policy does not set match.includeSidecars: true"
				default:
					continue
				}
				out = append(out, Finding{Policy: p.name, Container: c.Name, Action: v1alpha1.ActionWarn, Reason: reason,
					Message: fmt.Sprintf("container %q: %s from policy %q not injected: %s", c.Name, hook, p.name, why)})
				break
			}
		}
	}
	for i := range spec.Containers {
		check(&spec.Containers[i], false)
	}
	for i := range spec.InitContainers {
		check(&spec.InitContainers[i], true)
	}
	return out
}

// edits are the changes mutation makes, computed against the input without
// copying it, so a pod that needs nothing costs no deep copy.
type edits struct {
	hooks      []hookPlan
	tgps       *int64
	finalizers []string
	label      bool
	cleanup    *string
	policies   *string
}

func (e *edits) none() bool {
	return len(e.hooks) == 0 && e.tgps == nil && len(e.finalizers) == 0 && !e.label && e.cleanup == nil && e.policies == nil
}

func (m *merged) edits(pod *corev1.Pod, plans []hookPlan, cur, final int64) edits {
	var e edits
	for _, p := range plans {
		var ownPre, ownPost *corev1.LifecycleHandler
		if p.c.Lifecycle != nil {
			ownPre, ownPost = p.c.Lifecycle.PreStop, p.c.Lifecycle.PostStart
		}
		if p.preStop != nil && equality.Semantic.DeepEqual(ownPre, p.preStop) {
			p.preStop = nil
		}
		if p.postStart != nil && equality.Semantic.DeepEqual(ownPost, p.postStart) {
			p.postStart = nil
		}
		if p.preStop != nil || p.postStart != nil {
			e.hooks = append(e.hooks, p)
		}
	}
	if final != cur {
		e.tgps = &final
	}
	for _, f := range m.finalizers {
		if !slices.Contains(pod.Finalizers, f) {
			e.finalizers = append(e.finalizers, f)
		}
	}
	// The label goes with any gracekeeper finalizer on the pod, so the
	// finalizer controller's informer (which selects on it) sees the pod.
	if len(m.finalizers) > 0 && pod.Labels[LabelFinalize] != "true" {
		e.label = true
	}
	if len(m.cleanups) > 0 {
		raw, err := json.Marshal(m.cleanups)
		if s := string(raw); err == nil && pod.Annotations[AnnotationCleanup] != s {
			e.cleanup = &s
		}
	}
	names := m.names()
	slices.Sort(names)
	if s := strings.Join(names, ","); pod.Annotations[AnnotationPolicies] != s {
		e.policies = &s
	}
	return e
}

// apply makes the edits on a deep copy of pod.
func (e *edits) apply(pod *corev1.Pod) *corev1.Pod {
	out := pod.DeepCopy()
	for _, p := range e.hooks {
		var c *corev1.Container
		if p.init {
			c = &out.Spec.InitContainers[p.idx]
		} else {
			c = &out.Spec.Containers[p.idx]
		}
		if c.Lifecycle == nil {
			c.Lifecycle = &corev1.Lifecycle{}
		}
		// Copies: the compiled handlers belong to the Set, shared by all pods.
		if p.preStop != nil {
			c.Lifecycle.PreStop = p.preStop.DeepCopy()
		}
		if p.postStart != nil {
			c.Lifecycle.PostStart = p.postStart.DeepCopy()
		}
	}
	if e.tgps != nil {
		v := *e.tgps
		out.Spec.TerminationGracePeriodSeconds = &v
	}
	out.Finalizers = append(out.Finalizers, e.finalizers...)
	if e.label {
		if out.Labels == nil {
			out.Labels = map[string]string{}
		}
		out.Labels[LabelFinalize] = "true"
	}
	if e.cleanup != nil || e.policies != nil {
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		if e.cleanup != nil {
			out.Annotations[AnnotationCleanup] = *e.cleanup
		}
		if e.policies != nil {
			out.Annotations[AnnotationPolicies] = *e.policies
		}
	}
	return out
}
