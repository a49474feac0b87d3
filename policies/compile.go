package policies

import (
	"fmt"
	"path"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// compiled is one policy ready for selection: selectors parsed and globs
// checked once, in NewSet, never per request.
type compiled struct {
	name string
	spec *v1alpha1.LifecyclePolicySpec
	// nsSel and podSel are nil when they select everything, so the common
	// "all namespaces" case costs nothing per pod.
	nsSel, podSel labels.Selector
	// include is nil for the default ["*"].
	include, exclude []string
	sidecars         bool
	// preStop and postStart are the hooks as the pod will carry them;
	// preStopBudget is what the policy declares an exec/httpGet preStop takes.
	preStop, postStart      *corev1.LifecycleHandler
	preStopBudget           *int64
	preStopOver, postStOver bool
}

// compile turns a policy into its compiled form, or says why it cannot.
func compile(p *v1alpha1.LifecyclePolicy) (*compiled, error) {
	if errs := ValidatePolicy(p); len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	c := &compiled{name: p.Name, spec: p.Spec.DeepCopy(), sidecars: p.Spec.Match.IncludeSidecars}
	var err error
	if c.nsSel, err = selector(p.Spec.Match.NamespaceSelector); err != nil {
		return nil, fmt.Errorf("spec.match.namespaceSelector: %w", err)
	}
	if c.podSel, err = selector(p.Spec.Match.PodSelector); err != nil {
		return nil, fmt.Errorf("spec.match.podSelector: %w", err)
	}
	if !slices.Contains(p.Spec.Match.Containers, "*") {
		c.include = slices.Clone(p.Spec.Match.Containers)
	}
	c.exclude = slices.Clone(p.Spec.Match.ExcludeContainers)
	if h := p.Spec.PreStop; h != nil {
		if c.preStop = handler(h.HookAction); c.preStop == nil {
			return nil, fmt.Errorf("preStop: exactly one of sleep, exec or httpGet must be set")
		}
		c.preStopBudget, c.preStopOver = declaredBudget(h.HookAction), h.Overwrite
	}
	if h := p.Spec.PostStart; h != nil {
		if c.postStart = handler(h.HookAction); c.postStart == nil {
			return nil, fmt.Errorf("postStart: exactly one of sleep, exec or httpGet must be set")
		}
		c.postStOver = h.Overwrite
	}
	return c, nil
}

func validAction(a v1alpha1.ValidationAction) bool {
	return a == v1alpha1.ActionDeny || a == v1alpha1.ActionWarn || a == v1alpha1.ActionAudit
}

// selector compiles a LabelSelector; nil means "everything" (also for an
// empty selector, which metav1 would turn into labels.Everything()).
func selector(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil || (len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0) {
		return nil, nil
	}
	return metav1.LabelSelectorAsSelector(ls)
}

// named reports whether one of the policy's own container globs (not the
// default "*") matches name.
func (c *compiled) named(name string) bool {
	for _, g := range c.include {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// excluded reports whether match.excludeContainers matches name.
func (c *compiled) excluded(name string) bool {
	for _, g := range c.exclude {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// selectsContainer reports whether the policy's container globs choose name.
// Patterns were checked in compile, so path.Match errors cannot occur here.
func (c *compiled) selectsContainer(name string) bool {
	for _, g := range c.exclude {
		if ok, _ := path.Match(g, name); ok {
			return false
		}
	}
	if c.include == nil {
		return true
	}
	for _, g := range c.include {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// before is the merge order: higher priority first, then name.
func (c *compiled) before(o *compiled) bool {
	if c.spec.Priority != o.spec.Priority {
		return c.spec.Priority > o.spec.Priority
	}
	return c.name < o.name
}
