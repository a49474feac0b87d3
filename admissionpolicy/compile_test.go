package admissionpolicy

import (
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

func policy(name string, mod func(*v1alpha1.LifecyclePolicySpec)) v1alpha1.LifecyclePolicy {
	p := v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Spec: v1alpha1.LifecyclePolicySpec{ShutdownSeconds: ptr(int64(5))}}
	if mod != nil {
		mod(&p.Spec)
	}
	return p
}

// TestCompile: what each policy's objects say about it, apart from the
// CEL (which test/admissionmodes proves through a real API server).
func TestCompile(t *testing.T) {
	cfg := Config{ExcludedNamespaces: []string{"gk", "kube-system"}, IgnoreLabel: "gracekeeper.dev/ignore"}
	for name, tc := range map[string]struct {
		p      v1alpha1.LifecyclePolicy
		mutate bool
		check  func(t *testing.T, o Objects)
	}{
		"no action set: Deny": {p: policy("a", nil), check: func(t *testing.T, o Objects) {
			if got := o.VAPBinding.Spec.ValidationActions; !slices.Equal(got, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}) {
				t.Errorf("validationActions %v", got)
			}
		}},
		"Warn maps to [Warn]": {p: policy("a", func(s *v1alpha1.LifecyclePolicySpec) {
			s.Validation = &v1alpha1.Validation{Action: v1alpha1.ActionWarn}
		}), check: func(t *testing.T, o Objects) {
			if got := o.VAPBinding.Spec.ValidationActions; !slices.Equal(got, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Warn}) {
				t.Errorf("validationActions %v", got)
			}
		}},
		"Audit maps to [Audit]": {p: policy("a", func(s *v1alpha1.LifecyclePolicySpec) {
			s.Validation = &v1alpha1.Validation{Action: v1alpha1.ActionAudit}
		}), check: func(t *testing.T, o Objects) {
			if got := o.VAPBinding.Spec.ValidationActions; !slices.Equal(got, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Audit}) {
				t.Errorf("validationActions %v", got)
			}
		}},
		"owned by the policy, labelled, named after it": {p: policy("web", nil), mutate: true, check: func(t *testing.T, o Objects) {
			for _, m := range []metav1.Object{o.VAP, o.VAPBinding, o.MAP, o.MAPBinding} {
				refs := m.GetOwnerReferences()
				if m.GetName() != "gracekeeper-web" || m.GetLabels()[LabelCompiled] != "true" || m.GetAnnotations()[AnnotationPolicy] != "web" ||
					len(refs) != 1 || refs[0].UID != "uid-web" || refs[0].Kind != "LifecyclePolicy" || refs[0].APIVersion != "gracekeeper.dev/v1alpha1" || !*refs[0].Controller {
					t.Errorf("%s: labels %v, owners %+v", m.GetName(), m.GetLabels(), refs)
				}
			}
			if o.VAPBinding.Spec.PolicyName != o.VAP.Name || o.MAPBinding.Spec.PolicyName != o.MAP.Name {
				t.Error("a binding does not name its policy")
			}
			if o.MAP.Spec.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy || o.MAP.Spec.Mutations[0].PatchType != admissionregistrationv1.PatchTypeJSONPatch {
				t.Errorf("mutation %+v", o.MAP.Spec)
			}
		}},
		"the binding keeps the policy's selectors and adds the exclusions": {p: policy("sel", func(s *v1alpha1.LifecyclePolicySpec) {
			s.Match.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
			s.Match.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
		}), check: func(t *testing.T, o Objects) {
			ns := o.VAPBinding.Spec.MatchResources.NamespaceSelector
			if ns.MatchLabels["team"] != "a" || len(ns.MatchExpressions) != 2 ||
				ns.MatchExpressions[0].Key != "kubernetes.io/metadata.name" || !slices.Equal(ns.MatchExpressions[0].Values, []string{"gk", "kube-system"}) ||
				ns.MatchExpressions[1].Key != "gracekeeper.dev/ignore" || ns.MatchExpressions[1].Operator != metav1.LabelSelectorOpNotIn {
				t.Errorf("namespaceSelector %+v", ns)
			}
			if o.VAPBinding.Spec.MatchResources.ObjectSelector.MatchLabels["app"] != "web" {
				t.Errorf("objectSelector %+v", o.VAPBinding.Spec.MatchResources.ObjectSelector)
			}
		}},
		"webhook-only compile makes no mutating objects": {p: policy("v", nil), check: func(t *testing.T, o Objects) {
			if o.MAP != nil || o.MAPBinding != nil {
				t.Error("MutatingAdmissionPolicy compiled without Mutate")
			}
		}},
		"a name too long for an object is hashed": {p: policy(strings.Repeat("x", 250), nil), check: func(t *testing.T, o Objects) {
			if n := o.VAP.Name; len(n) > 253 || !strings.HasPrefix(n, "gracekeeper-xxx") || n == Name(strings.Repeat("x", 249)) {
				t.Errorf("name %q (%d)", n, len(n))
			}
		}},
	} {
		t.Run(name, func(t *testing.T) {
			c := cfg
			c.Mutate = tc.mutate
			o, err := Compile(&tc.p, []v1alpha1.LifecyclePolicy{tc.p}, c)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}

// TestCompileRefusesWhatTheEngineRefuses: a policy ValidatePolicy refuses
// is not compiled, and another policy's objects leave it out of the set.
func TestCompileRefusesWhatTheEngineRefuses(t *testing.T) {
	bad := policy("bad", func(s *v1alpha1.LifecyclePolicySpec) { s.Match.Containers = []string{"[a"} })
	if _, err := Compile(&bad, nil, Config{}); err == nil || !strings.Contains(err.Error(), "spec.match.containers") {
		t.Errorf("err %v, want one naming spec.match.containers", err)
	}
	good := policy("good", nil)
	o, err := Compile(&good, []v1alpha1.LifecyclePolicy{bad, good}, Config{Mutate: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range o.MAP.Spec.Variables {
		if strings.Contains(v.Expression, `"bad"`) {
			t.Errorf("variable %s names the refused policy: %s", v.Name, v.Expression)
		}
	}
}

// TestInlineVariables: cheap variables are written into their readers
// (never into a longer name that starts the same), and a variable no
// expression reads, directly or through another, is dropped.
func TestInlineVariables(t *testing.T) {
	vars := []admissionregistrationv1.Variable{
		v("ann", "object.metadata.?annotations.orValue({})"),
		v("annPre", "'x' in variables.ann ? 1 : -1"),
		v("unused", "variables.annPre + 1"),
		v("used", "variables.annPre + size(variables.ann)"),
	}
	expr := "variables.used > 0"
	got := inlineVariables(vars, &expr)
	var names []string
	for _, g := range got {
		names = append(names, g.Name+"="+g.Expression)
	}
	want := []string{
		"annPre='x' in (object.metadata.?annotations.orValue({})) ? 1 : -1",
		"used=variables.annPre + size((object.metadata.?annotations.orValue({})))",
	}
	if !slices.Equal(names, want) || expr != "variables.used > 0" {
		t.Errorf("got %q, %q; want %q", names, expr, want)
	}
}
