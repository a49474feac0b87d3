package policies

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// The exported names in this file are what the webhook, check, finalizer and
// test packages use of the engine: the Set, its Decision and Findings.

// Namespace is what selection needs to know of the pod's namespace.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Reason is a bounded, machine-readable finding kind (safe as a metric label).
type Reason string

const (
	ReasonBudgetExceeded   Reason = "BudgetExceeded"   // T > terminationGracePeriodSeconds
	ReasonUnknownPreStop   Reason = "UnknownPreStop"   // a preStop whose duration cannot be known
	ReasonProbeGraceShort  Reason = "ProbeGraceShort"  // probe-level tGPS shorter than the preStop
	ReasonHookSkipped      Reason = "HookSkipped"      // a hook the API server would refuse was not injected
	ReasonGraceCapped      Reason = "GraceCapped"      // fit wanted more than maxSeconds
	ReasonBadAnnotation    Reason = "BadAnnotation"    // a gracekeeper.dev/* annotation could not be parsed
	ReasonInvalidPolicy    Reason = "InvalidPolicy"    // a policy could not be compiled (bad selector, bad glob)
	ReasonOptedOut         Reason = "OptedOut"         // gracekeeper.dev/skip honoured
	ReasonOptOutNotAllowed Reason = "OptOutNotAllowed" // gracekeeper.dev/skip present but not allowed
	ReasonMirrorPod        Reason = "MirrorPod"        // a static pod's mirror: left alone
	ReasonNotTargeted      Reason = "NotTargeted"      // a container named in match.containers gets no hook, and why
	ReasonUnsafeMutation   Reason = "UnsafeMutation"   // the mutated pod would be refused by the API server: admitted unchanged
	// Duration annotations: honoured (Audit) or, lowering without
	// allowLowerBudget, refused (Warn).
	ReasonShutdownOverride        Reason = "ShutdownOverride"        // gracekeeper.dev/shutdown-seconds honoured
	ReasonShutdownLoweringRefused Reason = "ShutdownLoweringRefused" // ... would lower the budget: ignored
	ReasonPreStopOverride         Reason = "PreStopOverride"         // gracekeeper.dev/prestop-seconds honoured
	ReasonPreStopLoweringRefused  Reason = "PreStopLoweringRefused"  // ... would lower the budget: ignored
)

// Finding is one thing the engine has to say about a pod.
type Finding struct {
	// Policy is the policy the finding comes from ("" when none applies).
	Policy string
	// Container is the container it is about ("" for the pod as a whole).
	Container string
	// Action is Deny, Warn or Audit: Deny refuses the object, Warn becomes an
	// admission warning, Audit is only counted.
	Action v1alpha1.ValidationAction
	Reason Reason
	// Message names the container, every number and the fix.
	Message string
}

// Decision is the result of one pass of the engine over one pod.
type Decision struct {
	// Pod is the mutated pod: a new object when Changed, else the input itself.
	// The input pod is never modified.
	Pod *corev1.Pod
	// Changed reports whether Pod differs from the input.
	Changed bool
	// Policies are the names of the matching policies, highest priority first.
	Policies []string
	// Findings from mutation (skipped hooks, capped grace) and, where asked,
	// from validation of the resulting pod.
	Findings []Finding
}

// Denied reports whether any finding denies the object.
func (d Decision) Denied() bool {
	for _, f := range d.Findings {
		if f.Action == v1alpha1.ActionDeny {
			return true
		}
	}
	return false
}

// CleanupRecord is one element of the AnnotationCleanup JSON.
type CleanupRecord struct {
	Policy             string `json:"policy"`
	Finalizer          string `json:"finalizer"`
	URL                string `json:"url"`
	TimeoutSeconds     int32  `json:"timeoutSeconds"`
	GiveUpAfterSeconds int64  `json:"giveUpAfterSeconds"`
}

// SystemNamespaces are the namespaces gracekeeper never touches by default,
// besides its own (docs/design.md, "Webhook registration"; the chart's
// webhook.excludeNamespaces default). A new slice each call.
func SystemNamespaces() []string { return []string{"kube-system", "kube-node-lease"} }

// DefaultIgnoreLabel is the namespace label that keeps gracekeeper out of a
// namespace when set to "true" (the chart's webhook.ignoreLabel default).
const DefaultIgnoreLabel = "gracekeeper.dev/ignore"

// Config holds engine-wide settings.
type Config struct {
	// ExcludedNamespaces are never mutated or validated, whatever the policies
	// say (the webhook configurations exclude them too; this is the second lock).
	ExcludedNamespaces []string
	// IgnoreLabel: a namespace with this label set to "true" is never
	// mutated or validated ("" turns the label off). The webhook
	// configurations' namespaceSelector leaves those namespaces out too.
	IgnoreLabel string
}

// Validate says which excluded namespace is not a namespace name and
// whether IgnoreLabel is not a label key.
func (c Config) Validate() error {
	var errs []error
	for _, n := range c.ExcludedNamespaces {
		if msgs := validation.IsDNS1123Label(n); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("excluded namespace %q: %s", n, strings.Join(msgs, "; ")))
		}
	}
	if c.IgnoreLabel != "" {
		if msgs := validation.IsQualifiedName(c.IgnoreLabel); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("ignore label %q is not a label key: %s", c.IgnoreLabel, strings.Join(msgs, "; ")))
		}
	}
	return errors.Join(errs...)
}

// Ignores reports whether ns carries the ignore label set to "true".
func (c Config) Ignores(ns Namespace) bool {
	return c.IgnoreLabel != "" && ns.Labels[c.IgnoreLabel] == "true"
}

// Set is a compiled, immutable snapshot of the policies, indexed for fast
// selection. Build a new one when policies change; share it between goroutines.
type Set struct {
	cfg      Config
	excluded map[string]struct{}
	// pols is in merge order (priority descending, then name), so the index
	// can hold positions and a sort of positions is a sort by priority.
	pols []*compiled
	ix   index
}

// NewSet compiles the policies. A policy that cannot be compiled (an invalid
// selector or glob that slipped past the CRD schema) is left out of the set and
// reported in the returned findings (Reason InvalidPolicy), never a panic.
func NewSet(cfg Config, pols []v1alpha1.LifecyclePolicy) (*Set, []Finding) {
	s := &Set{
		cfg:      cfg,
		excluded: make(map[string]struct{}, len(cfg.ExcludedNamespaces)),
		ix:       index{pod: map[kv][]int{}, ns: map[kv][]int{}},
	}
	for _, n := range cfg.ExcludedNamespaces {
		s.excluded[n] = struct{}{}
	}
	var findings []Finding
	seen := make(map[string]bool, len(pols))
	for i := range pols {
		p := &pols[i]
		if seen[p.Name] {
			findings = append(findings, Finding{Policy: p.Name, Action: v1alpha1.ActionWarn, Reason: ReasonInvalidPolicy,
				Message: fmt.Sprintf("policy %q is listed twice; the second copy is left out", p.Name)})
			continue
		}
		c, err := compile(p)
		if err != nil {
			findings = append(findings, Finding{Policy: p.Name, Action: v1alpha1.ActionWarn, Reason: ReasonInvalidPolicy,
				Message: fmt.Sprintf("policy %q is left out: %v", p.Name, err)})
			continue
		}
		seen[p.Name] = true
		s.pols = append(s.pols, c)
	}
	slices.SortFunc(s.pols, func(a, b *compiled) int {
		if a.before(b) {
			return -1
		}
		if b.before(a) {
			return 1
		}
		return 0
	})
	for i, c := range s.pols {
		s.ix.add(i, c.spec.Match)
	}
	return s, findings
}

// Ignores reports whether the set's configuration ignores ns (its ignore
// label): admission is never asked about objects there.
func (s *Set) Ignores(ns Namespace) bool {
	return s != nil && s.cfg.Ignores(ns)
}

// Len is the number of compiled policies.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.pols)
}

// Review is what admission of a pod template does: Mutate, then Validate the
// result, with the findings of both. Workload validation and `check` use it.
func (s *Set) Review(pod *corev1.Pod, ns Namespace) Decision {
	return s.review(pod, ns, nil)
}

// ReviewTemplate is Review of a workload's template as the pods its
// controller creates: with the controller's labels, those of unknown value
// judged as matchUnknown says.
func (s *Set) ReviewTemplate(t Template, ns Namespace) Decision {
	return s.review(t.Pod, ns, t.Unknown)
}

func (s *Set) review(pod *corev1.Pod, ns Namespace, unknown []string) Decision {
	m := s.mutate(pod, ns, unknown)
	v := s.validate(m.Pod, ns, unknown)
	m.Findings = append(m.Findings, v.Findings...)
	return m
}
