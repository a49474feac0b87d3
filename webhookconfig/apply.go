package webhookconfig

import (
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gracekeeper/gracekeeper/policies"
)

// ConditionName is the matchCondition this package owns on each narrowed
// webhook; every other matchCondition is kept as it is.
const ConditionName = "selected-by-a-policy"

// Webhooks narrowed, by name (webhook.Routes). The policy webhook
// (validate-policies) is never narrowed: with no policy it is the only way
// to create one. validate-workloads gets the namespace requirement and the
// no-policy condition, not the pod condition: a workload's pods carry
// labels its controller adds, which its template does not show.
const (
	MutatePods        = "mutate-pods.gracekeeper.dev"
	ValidatePods      = "validate-pods.gracekeeper.dev"
	ValidateWorkloads = "validate-workloads.gracekeeper.dev"
)

// target is what one webhook should carry.
type target struct {
	nsSel      *metav1.LabelSelector
	conditions []admissionregistrationv1.MatchCondition
}

// desired computes the namespaceSelector and matchConditions of the webhook
// called name under n, keeping its other matchConditions; ok is false for a
// webhook this package does not narrow.
func desired(name string, n Narrowing, engine policies.Config, nsSel *metav1.LabelSelector, conds []admissionregistrationv1.MatchCondition) (target, bool) {
	if name != MutatePods && name != ValidatePods && name != ValidateWorkloads {
		return target{}, false
	}
	t := target{nsSel: baseSelector(engine)}
	if n.Namespace != nil && !n.None {
		t.nsSel.MatchExpressions = append(t.nsSel.MatchExpressions, *n.Namespace)
	}
	for _, c := range conds {
		if c.Name != ConditionName {
			t.conditions = append(t.conditions, c)
		}
	}
	expr := n.Pods
	if name == ValidateWorkloads {
		expr = ""
	}
	if n.None {
		expr = "false"
	}
	if expr != "" {
		t.conditions = append(t.conditions, admissionregistrationv1.MatchCondition{Name: ConditionName, Expression: expr})
	}
	return t, true
}

// baseSelector is what the chart renders for every webhook (and the engine
// excludes again): the excluded namespaces and those with the ignore label.
func baseSelector(engine policies.Config) *metav1.LabelSelector {
	ignore := engine.IgnoreLabel
	if ignore == "" {
		ignore = policies.DefaultIgnoreLabel
	}
	excluded := slices.Clone(engine.ExcludedNamespaces)
	slices.Sort(excluded)
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: slices.Compact(excluded)},
		{Key: ignore, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"true"}},
	}}
}

// sameSelector compares selectors as the API server reads them: the order
// of requirements and of values does not matter.
func sameSelector(a, b *metav1.LabelSelector) bool {
	return apiequality.Semantic.DeepEqual(normal(a), normal(b))
}

func normal(ls *metav1.LabelSelector) *metav1.LabelSelector {
	if ls == nil {
		return &metav1.LabelSelector{}
	}
	out := &metav1.LabelSelector{}
	if len(ls.MatchLabels) > 0 {
		out.MatchLabels = ls.MatchLabels
	}
	for _, e := range ls.MatchExpressions {
		e = *e.DeepCopy()
		slices.Sort(e.Values)
		e.Values = slices.Compact(e.Values)
		if len(e.Values) == 0 {
			e.Values = nil
		}
		out.MatchExpressions = append(out.MatchExpressions, e)
	}
	slices.SortFunc(out.MatchExpressions, func(x, y metav1.LabelSelectorRequirement) int {
		if c := strings.Compare(x.Key, y.Key); c != 0 {
			return c
		}
		if c := strings.Compare(string(x.Operator), string(y.Operator)); c != 0 {
			return c
		}
		return strings.Compare(strings.Join(x.Values, ","), strings.Join(y.Values, ","))
	})
	return out
}

func sameConditions(a, b []admissionregistrationv1.MatchCondition) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return apiequality.Semantic.DeepEqual(a, b)
}

// NarrowMutating sets the narrowing on cfg's pod webhook; it reports
// whether anything changed (nothing is written otherwise).
func NarrowMutating(cfg *admissionregistrationv1.MutatingWebhookConfiguration, n Narrowing, engine policies.Config) bool {
	return narrowAll(cfg.Webhooks, func(w *admissionregistrationv1.MutatingWebhook) hookFields {
		return hookFields{w.Name, &w.NamespaceSelector, &w.MatchConditions}
	}, n, engine)
}

// NarrowValidating sets the narrowing on cfg's pod and workload webhooks,
// never on the policy webhook; it reports whether anything changed.
func NarrowValidating(cfg *admissionregistrationv1.ValidatingWebhookConfiguration, n Narrowing, engine policies.Config) bool {
	return narrowAll(cfg.Webhooks, func(w *admissionregistrationv1.ValidatingWebhook) hookFields {
		return hookFields{w.Name, &w.NamespaceSelector, &w.MatchConditions}
	}, n, engine)
}

// hookFields are what narrowing sets on a webhook, which the mutating and
// validating webhook types both have but share no Go type for.
type hookFields struct {
	name       string
	nsSel      **metav1.LabelSelector
	conditions *[]admissionregistrationv1.MatchCondition
}

func narrowAll[W any](ws []W, of func(*W) hookFields, n Narrowing, engine policies.Config) bool {
	changed := false
	for i := range ws {
		f := of(&ws[i])
		if t, ok := desired(f.name, n, engine, *f.nsSel, *f.conditions); ok {
			changed = t.applyTo(f.nsSel, f.conditions) || changed
		}
	}
	return changed
}

func (t target) applyTo(nsSel **metav1.LabelSelector, conds *[]admissionregistrationv1.MatchCondition) bool {
	changed := false
	if !sameSelector(*nsSel, t.nsSel) {
		*nsSel, changed = t.nsSel, true
	}
	if !sameConditions(*conds, t.conditions) {
		*conds, changed = t.conditions, true
	}
	return changed
}
