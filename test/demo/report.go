package main

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// describeHandler is a lifecycle handler as a person would say it.
func describeHandler(h *corev1.LifecycleHandler) string {
	switch {
	case h == nil:
		return "none"
	case h.Sleep != nil:
		return fmt.Sprintf("sleep %ds", h.Sleep.Seconds)
	case h.Exec != nil:
		return fmt.Sprintf("exec %q", h.Exec.Command)
	case h.HTTPGet != nil:
		return fmt.Sprintf("httpGet %s:%s", h.HTTPGet.Path, h.HTTPGet.Port.String())
	case h.TCPSocket != nil:
		return "tcpSocket " + h.TCPSocket.Port.String()
	}
	return "?"
}

func hook(c corev1.Container, preStop bool) *corev1.LifecycleHandler {
	if c.Lifecycle == nil {
		return nil
	}
	if preStop {
		return c.Lifecycle.PreStop
	}
	return c.Lifecycle.PostStart
}

// podChanges lists, one line each, what admission changed between the pod as
// submitted and as stored: hooks per container, grace period, finalizers,
// gracekeeper's labels and annotations.
func podChanges(before, after *corev1.Pod) []string {
	var out []string
	old := map[string]corev1.Container{}
	for _, c := range append(slices.Clone(before.Spec.InitContainers), before.Spec.Containers...) {
		old[c.Name] = c
	}
	for _, c := range append(slices.Clone(after.Spec.InitContainers), after.Spec.Containers...) {
		o, existed := old[c.Name]
		if !existed {
			out = append(out, fmt.Sprintf("container %q added", c.Name))
		}
		for _, kind := range []struct {
			name    string
			preStop bool
		}{{"preStop", true}, {"postStart", false}} {
			was, now := hook(o, kind.preStop), hook(c, kind.preStop)
			switch {
			case now != nil && was == nil:
				out = append(out, fmt.Sprintf("container %q: %s %s injected", c.Name, kind.name, describeHandler(now)))
			case now != nil && describeHandler(now) != describeHandler(was):
				out = append(out, fmt.Sprintf("container %q: %s %s replaced by %s", c.Name, kind.name, describeHandler(was), describeHandler(now)))
			case now != nil:
				out = append(out, fmt.Sprintf("container %q: own %s %s kept", c.Name, kind.name, describeHandler(now)))
			}
		}
	}
	if b, a := ptr.Deref(before.Spec.TerminationGracePeriodSeconds, 30), ptr.Deref(after.Spec.TerminationGracePeriodSeconds, 30); b != a {
		out = append(out, fmt.Sprintf("terminationGracePeriodSeconds %d -> %d", b, a))
	}
	for _, f := range after.Finalizers {
		if !slices.Contains(before.Finalizers, f) {
			out = append(out, "finalizer "+f)
		}
	}
	out = append(out, newKeys("label", before.Labels, after.Labels)...)
	out = append(out, newKeys("annotation", before.Annotations, after.Annotations)...)
	return out
}

// newKeys lists the gracekeeper.dev/ keys added to m.
func newKeys(what string, before, after map[string]string) []string {
	var out []string
	for k, v := range after {
		if _, ok := before[k]; !ok && strings.HasPrefix(k, "gracekeeper.dev/") {
			if len(v) > 60 {
				v = v[:57] + "..."
			}
			out = append(out, fmt.Sprintf("%s %s=%s", what, k, v))
		}
	}
	sort.Strings(out)
	return out
}
