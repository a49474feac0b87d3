package policies

import (
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// kv is one label requirement key=value, the unit of the selection index.
type kv struct{ k, v string }

// index narrows selection to the policies that can possibly match: each
// policy with an equality requirement (matchLabels, or an In expression) is
// filed under it, so a pod only looks at the policies filed under its own
// labels (and its namespace's), plus the few with nothing to index on.
// With 1,000 policies of which one matches, a pod evaluates about one.
type index struct {
	pod    map[kv][]int
	ns     map[kv][]int
	always []int
}

// indexKeys returns the (key, values) to file a selector under: the first
// matchLabels key in sorted order, else the first In expression. ok is false
// when the selector has no equality requirement (Exists, NotIn, ...).
func indexKeys(ls *metav1.LabelSelector) (key string, values []string, ok bool) {
	if ls == nil {
		return "", nil, false
	}
	if len(ls.MatchLabels) > 0 {
		keys := make([]string, 0, len(ls.MatchLabels))
		for k := range ls.MatchLabels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return keys[0], []string{ls.MatchLabels[keys[0]]}, true
	}
	for _, e := range ls.MatchExpressions {
		if e.Operator == metav1.LabelSelectorOpIn && len(e.Values) > 0 {
			return e.Key, e.Values, true
		}
	}
	return "", nil, false
}

func (ix *index) add(i int, m v1alpha1.Match) {
	// An In list may repeat a value; the policy is filed once per value.
	if k, vs, ok := indexKeys(m.PodSelector); ok {
		for _, v := range uniq(vs) {
			ix.pod[kv{k, v}] = append(ix.pod[kv{k, v}], i)
		}
		return
	}
	if k, vs, ok := indexKeys(m.NamespaceSelector); ok {
		for _, v := range uniq(vs) {
			ix.ns[kv{k, v}] = append(ix.ns[kv{k, v}], i)
		}
		return
	}
	ix.always = append(ix.always, i)
}

// nsLabels is a namespace's labels as the API server sets them: since
// Kubernetes 1.21 every namespace carries kubernetes.io/metadata.name, which
// callers such as `check` may not have filled in.
type nsLabels struct {
	name string
	m    map[string]string
}

func (n nsLabels) Lookup(k string) (string, bool) {
	if v, ok := n.m[k]; ok {
		return v, true
	}
	if k == corev1.LabelMetadataName && n.name != "" {
		return n.name, true
	}
	return "", false
}
func (n nsLabels) Has(k string) bool   { _, ok := n.Lookup(k); return ok }
func (n nsLabels) Get(k string) string { v, _ := n.Lookup(k); return v }
func nsName(pod *corev1.Pod, ns Namespace) string {
	if ns.Name != "" {
		return ns.Name
	}
	return pod.Namespace
}

func uniq(vs []string) []string {
	out := slices.Clone(vs)
	slices.Sort(out)
	return slices.Compact(out)
}

// selectPolicies returns the policies whose selectors match the pod, highest
// priority first, each once. unknown are label keys the pod will carry with
// a value not known yet (a workload template's controller labels): a
// requirement on one of them may hold, and counts as holding (matchUnknown).
// It allocates nothing when none matches.
func (s *Set) selectPolicies(pod *corev1.Pod, ns Namespace, unknown []string) []*compiled {
	if pod == nil || len(s.pols) == 0 {
		return nil
	}
	name := nsName(pod, ns)
	if _, ok := s.excluded[name]; ok || s.cfg.Ignores(ns) {
		return nil
	}
	var buf [32]int
	cand := append(buf[:0], s.ix.always...)
	if len(unknown) > 0 {
		// A policy filed under an unknown key's value may match: look at
		// all of them (workload templates only, never the pod path).
		cand = cand[:0]
		for i := range s.pols {
			cand = append(cand, i)
		}
	} else {
		for k, v := range pod.Labels {
			cand = append(cand, s.ix.pod[kv{k, v}]...)
		}
	}
	if len(s.ix.ns) > 0 {
		_, hasName := ns.Labels[corev1.LabelMetadataName]
		for k, v := range ns.Labels {
			cand = append(cand, s.ix.ns[kv{k, v}]...)
		}
		if !hasName && name != "" {
			cand = append(cand, s.ix.ns[kv{corev1.LabelMetadataName, name}]...)
		}
	}
	// Keep those that match; duplicates (all policies with unknown labels,
	// plus the namespace index) are removed after sorting.
	n := 0
	nsl := nsLabels{name: name, m: ns.Labels}
	for _, i := range cand {
		c := s.pols[i]
		if c.podSel != nil && !matchUnknown(c.podSel, pod.Labels, unknown) {
			continue
		}
		if c.nsSel != nil && !c.nsSel.Matches(nsl) {
			continue
		}
		cand[n] = i
		n++
	}
	if n == 0 {
		return nil
	}
	cand = cand[:n]
	slices.Sort(cand) // s.pols is in merge order, so index order is priority order
	cand = slices.Compact(cand)
	n = len(cand)
	out := make([]*compiled, n)
	for j, i := range cand {
		out[j] = s.pols[i]
	}
	return out
}

// matchUnknown is sel.Matches(set) where the keys in unknown are present
// with a value that is not known. A requirement on such a key is judged:
// Exists holds, DoesNotExist fails (the controller always sets the key), and
// In, NotIn, = and != may hold either way and count as holding, so that a
// policy that may select some pod of a workload judges its template: a
// template is refused at apply time when any of its pods could be.
func matchUnknown(sel labels.Selector, set map[string]string, unknown []string) bool {
	if len(unknown) == 0 {
		return sel.Matches(labels.Set(set))
	}
	reqs, _ := sel.Requirements()
	for _, r := range reqs {
		if !slices.Contains(unknown, r.Key()) {
			if !r.Matches(labels.Set(set)) {
				return false
			}
			continue
		}
		if r.Operator() == selection.DoesNotExist {
			return false
		}
	}
	return true
}

// matching is where Mutate and Validate start: the decision so far and the
// policies that apply to pod, merged; ok is false when none does (no set, no
// pod, no match, opted out, a mirror pod). Validating keeps the findings of
// selection (opt-outs, a bad skip annotation), which Review reports once.
func (s *Set) matching(pod *corev1.Pod, ns Namespace, unknown []string, validating bool) (d Decision, m merged, ok bool) {
	d = Decision{Pod: pod}
	if s == nil || pod == nil {
		return d, m, false
	}
	pols, findings := s.applicable(pod, ns, unknown, validating)
	d.Findings = findings
	if len(pols) == 0 {
		return d, m, false
	}
	m = merge(pols)
	d.Policies = m.names()
	return d, m, true
}

// applicable is selection followed by the opt-out annotation: a policy with
// allowOptOut is dropped when the pod says gracekeeper.dev/skip: "true".
// Findings (opt-out, a bad skip value) are collected only when withFindings,
// so that Mutate and Validate do not report them twice through Review.
func (s *Set) applicable(pod *corev1.Pod, ns Namespace, unknown []string, withFindings bool) ([]*compiled, []Finding) {
	pols := s.selectPolicies(pod, ns, unknown)
	if len(pols) == 0 {
		return nil, nil
	}
	if _, mirror := pod.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		// A mirror pod is the API server's copy of a static pod: the kubelet
		// runs it from its manifest file, whatever the copy says, so hooks
		// added here never run and a finalizer only keeps the copy around
		// (pkg/kubelet/pod/mirror_client.go). It is left alone.
		if !withFindings {
			return nil, nil
		}
		return nil, []Finding{{Policy: pols[0].name, Action: v1alpha1.ActionAudit, Reason: ReasonMirrorPod,
			Message: fmt.Sprintf("mirror pod of a static pod (annotation %s): left alone; its hooks and grace period come from the kubelet's manifest file, not from policies", corev1.MirrorPodAnnotationKey)}}
	}
	raw, present := pod.Annotations[AnnotationSkip]
	if !present {
		return pols, nil
	}
	var findings []Finding
	skip, err := strconv.ParseBool(raw)
	if err != nil {
		if withFindings {
			findings = append(findings, Finding{
				Policy: pols[0].name, Action: v1alpha1.ActionWarn, Reason: ReasonBadAnnotation,
				Message: fmt.Sprintf("annotation %s: %q is not a boolean; it is ignored (use \"true\" to opt out)", AnnotationSkip, raw),
			})
		}
		return pols, findings
	}
	if !skip {
		return pols, nil
	}
	kept := pols[:0:0]
	for _, c := range pols {
		if c.spec.AllowOptOut {
			if withFindings {
				findings = append(findings, Finding{
					Policy: c.name, Action: v1alpha1.ActionAudit, Reason: ReasonOptedOut,
					Message: fmt.Sprintf("policy %q skipped: the pod has %s: %q and the policy allows opting out", c.name, AnnotationSkip, raw),
				})
			}
			continue
		}
		if withFindings {
			findings = append(findings, Finding{
				Policy: c.name, Action: v1alpha1.ActionAudit, Reason: ReasonOptOutNotAllowed,
				Message: fmt.Sprintf("policy %q still applies: the pod has %s: %q but the policy does not set allowOptOut", c.name, AnnotationSkip, raw),
			})
		}
		kept = append(kept, c)
	}
	return kept, findings
}

// SelectsIn reports whether any object in namespace ns can be selected: ns
// is neither excluded nor ignored and some policy's namespace selector
// matches it. The background audit skips re-judging a namespace where
// none can, however many of its pods change.
func (s *Set) SelectsIn(ns Namespace) bool {
	if s == nil || len(s.pols) == 0 {
		return false
	}
	if _, ok := s.excluded[ns.Name]; ok || s.cfg.Ignores(ns) {
		return false
	}
	nsl := nsLabels{name: ns.Name, m: ns.Labels}
	for _, c := range s.pols {
		if c.nsSel == nil || c.nsSel.Matches(nsl) {
			return true
		}
	}
	return false
}
