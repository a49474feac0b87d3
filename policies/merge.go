package policies

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// Defaults of fields the CRD schema defaults; repeated here because policies
// built in Go (tests, `check` on files) never went through the API server.
const (
	defaultMaxSeconds     = 300
	defaultCleanupTimeout = 5
	defaultGiveUpAfter    = 600
)

// merged is what the matching policies ask for together. For each field the
// winner is the highest policy (in merge order) that sets it; finalizers and
// cleanups are the union of all.
type merged struct {
	pols []*compiled

	shutdown     *int64
	shutdownFrom string

	fit     bool
	maxSecs int64
	fitFrom string

	action     v1alpha1.ValidationAction
	actionFrom string

	finalizers []string // sorted, gracekeeper-owned: built-ins and cleanup finalizers
	cleanups   []CleanupRecord
}

func merge(pols []*compiled) merged {
	m := merged{pols: pols, action: v1alpha1.ActionDeny, maxSecs: defaultMaxSeconds}
	if len(pols) > 0 {
		m.actionFrom = pols[0].name
	}
	var haveShutdown, haveTGP, haveAction bool
	seenCleanup := map[string]bool{}
	for _, c := range pols {
		sp := c.spec
		if !haveShutdown && sp.ShutdownSeconds != nil {
			haveShutdown, m.shutdown, m.shutdownFrom = true, sp.ShutdownSeconds, c.name
		}
		if !haveTGP && sp.TerminationGracePeriod != nil {
			haveTGP, m.fit, m.fitFrom = true, sp.TerminationGracePeriod.Fit, c.name
			if ms := sp.TerminationGracePeriod.MaxSeconds; ms != nil {
				m.maxSecs = *ms
			}
		}
		if !haveAction && sp.Validation != nil && sp.Validation.Action != "" {
			haveAction, m.action, m.actionFrom = true, sp.Validation.Action, c.name
		}
		for _, f := range sp.Finalizers {
			if !slices.Contains(m.finalizers, string(f)) {
				m.finalizers = append(m.finalizers, string(f))
			}
		}
		// Two policies naming the same cleanup finalizer: the higher one's
		// URL and timings win, as for every other field.
		if cl := sp.Cleanup; cl != nil && cl.Finalizer != "" && !seenCleanup[cl.Finalizer] {
			seenCleanup[cl.Finalizer] = true
			r := CleanupRecord{Policy: c.name, Finalizer: cl.Finalizer, URL: cl.URL,
				TimeoutSeconds: cl.TimeoutSeconds, GiveUpAfterSeconds: defaultGiveUpAfter}
			if r.TimeoutSeconds == 0 {
				r.TimeoutSeconds = defaultCleanupTimeout
			}
			if cl.GiveUpAfterSeconds != nil {
				r.GiveUpAfterSeconds = *cl.GiveUpAfterSeconds
			}
			m.cleanups = append(m.cleanups, r)
			if !slices.Contains(m.finalizers, cl.Finalizer) {
				m.finalizers = append(m.finalizers, cl.Finalizer)
			}
		}
	}
	slices.Sort(m.finalizers)
	slices.SortFunc(m.cleanups, func(a, b CleanupRecord) int {
		if a.Finalizer < b.Finalizer {
			return -1
		}
		if a.Finalizer > b.Finalizer {
			return 1
		}
		return 0
	})
	return m
}

// target says which containers a policy's hooks may go to: regular
// containers by their globs; native sidecars (init containers with
// restartPolicy Always, KEP-753) only with includeSidecars; plain init
// containers never, since the API server forbids lifecycle on them
// (pkg/apis/core/validation/validation.go validateInitContainers).
func (c *compiled) target(name string, sidecar bool) bool {
	if sidecar && !c.sidecars {
		return false
	}
	return c.selectsContainer(name)
}

// preStopFor is the policy whose preStop a container gets: the highest that
// sets one and selects the container.
func (m *merged) preStopFor(name string, sidecar bool) *compiled {
	for _, c := range m.pols {
		if c.preStop != nil && c.target(name, sidecar) {
			return c
		}
	}
	return nil
}

// postStartFor is preStopFor for postStart.
func (m *merged) postStartFor(name string, sidecar bool) *compiled {
	for _, c := range m.pols {
		if c.postStart != nil && c.target(name, sidecar) {
			return c
		}
	}
	return nil
}

// names are the policy names, highest priority first.
func (m *merged) names() []string {
	out := make([]string, len(m.pols))
	for i, c := range m.pols {
		out[i] = c.name
	}
	return out
}

// IsSidecar reports a native sidecar: an init container with restartPolicy
// Always (KEP-753). The finalizer controller uses it too.
func IsSidecar(c *corev1.Container) bool { return isSidecar(c) }

func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}
