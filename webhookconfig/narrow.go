package webhookconfig

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// Narrowing is what the current policies let the pod webhooks skip. Each
// part is a superset of what the engine selects (policies.Set.selectPolicies):
// a pod the engine could select is always sent; most others are not.
type Narrowing struct {
	// None: no policy, so no call at all (the condition is `false`).
	None bool
	// Namespace, when set, is a requirement every policy's
	// namespaceSelector implies (a key all of them require, with the union
	// of their values): the namespaces no policy can select are left out.
	Namespace *metav1.LabelSelectorRequirement
	// Pods is a CEL expression over the pod that holds exactly when some
	// policy's podSelector matches its labels; "" when some policy selects
	// every pod (or the expression would be too long), so no condition.
	Pods string
}

// podLabels is the CEL for the pod's labels in a webhook's matchCondition,
// bound once as `l`: an absent labels map is an empty one, so the
// expression never fails to evaluate (a failed matchCondition would fall to
// the webhook's failurePolicy).
const podLabels = "object.metadata.?labels.orValue({})"

// MaxConditionLength bounds the generated pod condition. Past it the
// condition is dropped (every pod is sent, as without narrowing): the API
// server compiles each matchCondition and bounds its cost per call, and a
// webhook configuration lives in one etcd object.
const MaxConditionLength = 32 << 10

// Compute returns the narrowing the policies allow. A policy whose selector
// cannot be parsed is left out: the engine refuses to compile it and never
// applies it (policies.NewSet), and the policy webhook refuses it when applied.
func Compute(pols []v1alpha1.LifecyclePolicy) Narrowing {
	var usable []v1alpha1.Match
	for _, p := range pols {
		m := p.Spec.Match
		if _, err := metav1.LabelSelectorAsSelector(m.NamespaceSelector); err != nil {
			continue
		}
		if _, err := metav1.LabelSelectorAsSelector(m.PodSelector); err != nil {
			continue
		}
		usable = append(usable, m)
	}
	if len(usable) == 0 {
		return Narrowing{None: true}
	}
	return Narrowing{Namespace: namespaceUnion(usable), Pods: podCondition(usable)}
}

// empty reports whether ls selects everything (as the engine reads it).
func empty(ls *metav1.LabelSelector) bool {
	return ls == nil || (len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0)
}

// required lists what a selector requires of one key: the allowed values
// (In, matchLabels), or nil values when it only requires the key to exist.
// NotIn and DoesNotExist require no key and are not listed.
func required(ls *metav1.LabelSelector) map[string][]string {
	out := map[string][]string{}
	for k, v := range ls.MatchLabels {
		out[k] = []string{v}
	}
	for _, e := range ls.MatchExpressions {
		switch e.Operator {
		case metav1.LabelSelectorOpIn:
			if prev, ok := out[e.Key]; ok && prev != nil {
				continue // already narrower or as narrow; either is a superset
			}
			out[e.Key] = slices.Clone(e.Values)
		case metav1.LabelSelectorOpExists:
			if _, ok := out[e.Key]; !ok {
				out[e.Key] = nil
			}
		}
	}
	return out
}

// namespaceUnion is one requirement implied by every policy's
// namespaceSelector, or nil. A webhook has one namespaceSelector, and the
// union of several selectors is not a selector in general; but when every
// policy requires one key, "key In (union of their values)" (or "key
// Exists" when one of them only requires it to exist) holds for every
// namespace some policy selects. The key with values for every policy is
// preferred, then the first in sorted order, so the result is stable.
func namespaceUnion(ms []v1alpha1.Match) *metav1.LabelSelectorRequirement {
	var common map[string][]string
	exists := map[string]bool{}
	for i, m := range ms {
		if empty(m.NamespaceSelector) {
			return nil
		}
		req := required(m.NamespaceSelector)
		if i == 0 {
			common = req
		}
		for k, vs := range common {
			rv, ok := req[k]
			if !ok {
				delete(common, k)
				continue
			}
			if vs == nil || rv == nil {
				exists[k] = true
			}
			if i > 0 {
				common[k] = append(vs, rv...)
			}
		}
	}
	if len(common) == 0 {
		return nil
	}
	keys := make([]string, 0, len(common))
	for k := range common {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if exists[keys[i]] != exists[keys[j]] {
			return !exists[keys[i]]
		}
		return keys[i] < keys[j]
	})
	k := keys[0]
	if exists[k] {
		return &metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpExists}
	}
	vs := slices.Clone(common[k])
	slices.Sort(vs)
	return &metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpIn, Values: slices.Compact(vs)}
}

// podCondition is the CEL that holds when some policy's podSelector
// matches the pod's labels: exactly labels.Selector.Matches, term by term
// (k8s.io/apimachinery/pkg/labels/selector.go Requirement.Matches: NotIn
// and != hold when the key is absent). "" when a policy selects every pod.
func podCondition(ms []v1alpha1.Match) string {
	var terms []string
	for _, m := range ms {
		if empty(m.PodSelector) {
			return ""
		}
		terms = append(terms, selectorCEL(m.PodSelector))
	}
	slices.Sort(terms)
	terms = slices.Compact(terms)
	// The one-element list binds the labels to `l` once: the API server's
	// CEL environment has no cel.bind (k8s.io/apiserver/pkg/cel/environment/base.go).
	expr := "[" + podLabels + "].exists(l, " + strings.Join(terms, " || ") + ")"
	if len(expr) > MaxConditionLength {
		return ""
	}
	return expr
}

// selectorCEL is one selector over the bound labels `l`, its requirements
// joined by &&, each in parentheses.
func selectorCEL(ls *metav1.LabelSelector) string {
	var parts []string
	keys := make([]string, 0, len(ls.MatchLabels))
	for k := range ls.MatchLabels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s in l && l[%s] == %s", lit(k), lit(k), lit(ls.MatchLabels[k])))
	}
	for _, e := range ls.MatchExpressions {
		k := lit(e.Key)
		switch e.Operator {
		case metav1.LabelSelectorOpIn:
			parts = append(parts, fmt.Sprintf("%s in l && l[%s] in %s", k, k, list(e.Values)))
		case metav1.LabelSelectorOpNotIn:
			parts = append(parts, fmt.Sprintf("!(%s in l) || !(l[%s] in %s)", k, k, list(e.Values)))
		case metav1.LabelSelectorOpExists:
			parts = append(parts, k+" in l")
		case metav1.LabelSelectorOpDoesNotExist:
			parts = append(parts, "!("+k+" in l)")
		}
	}
	for i, p := range parts {
		parts[i] = "(" + p + ")"
	}
	return "(" + strings.Join(parts, " && ") + ")"
}

// lit is a CEL string literal. Label keys and values cannot hold a quote or
// a backslash (the API server validates them), but escaping keeps the
// expression well-formed whatever it is given.
func lit(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func list(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = lit(v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
