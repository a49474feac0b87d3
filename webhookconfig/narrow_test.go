package webhookconfig

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/cel-go/cel"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// celEnv is the API server's CEL environment for stored expressions (what a
// webhook's matchConditions compile in), with `object` as the pod.
func celEnv(t *testing.T) *cel.Env {
	t.Helper()
	es, err := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()).Extend(environment.VersionedOptions{
		IntroducedVersion: version.MajorMinor(1, 0),
		EnvOptions:        []cel.EnvOption{cel.Variable("object", cel.DynType)},
	})
	if err != nil {
		t.Fatal(err)
	}
	env, err := es.Env(environment.StoredExpressions)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func evalPod(t *testing.T, prg cel.Program, lbls map[string]string) bool {
	t.Helper()
	meta := map[string]any{"name": "p"}
	if lbls != nil {
		m := map[string]any{}
		for k, v := range lbls {
			m[k] = v
		}
		meta["labels"] = m
	}
	out, _, err := prg.Eval(map[string]any{"object": map[string]any{"metadata": meta}})
	if err != nil {
		t.Fatalf("evaluating: %v (a matchCondition that fails falls to failurePolicy)", err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		t.Fatalf("result %v is not a bool", out)
	}
	return b
}

var (
	keys   = []string{"app", "tier", "example.com/team", "gracekeeper.dev/x"}
	values = []string{"", "web", "db", "a-b.c_d"}
)

func randomSelector(rng *rand.Rand) *metav1.LabelSelector {
	ls := &metav1.LabelSelector{}
	for range rng.IntN(3) {
		if ls.MatchLabels == nil {
			ls.MatchLabels = map[string]string{}
		}
		ls.MatchLabels[keys[rng.IntN(len(keys))]] = values[rng.IntN(len(values))]
	}
	ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn,
		metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
	for range rng.IntN(3) {
		r := metav1.LabelSelectorRequirement{Key: keys[rng.IntN(len(keys))], Operator: ops[rng.IntN(len(ops))]}
		if r.Operator == metav1.LabelSelectorOpIn || r.Operator == metav1.LabelSelectorOpNotIn {
			for range 1 + rng.IntN(2) {
				r.Values = append(r.Values, values[rng.IntN(len(values))])
			}
		}
		ls.MatchExpressions = append(ls.MatchExpressions, r)
	}
	return ls
}

func randomLabels(rng *rand.Rand) map[string]string {
	if rng.IntN(5) == 0 {
		return nil
	}
	m := map[string]string{}
	for range rng.IntN(4) {
		m[keys[rng.IntN(len(keys))]] = values[rng.IntN(len(values))]
	}
	return m
}

func policiesWith(ms ...v1alpha1.Match) []v1alpha1.LifecyclePolicy {
	out := make([]v1alpha1.LifecyclePolicy, len(ms))
	for i, m := range ms {
		out[i] = v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i)}, Spec: v1alpha1.LifecyclePolicySpec{Match: m}}
	}
	return out
}

// TestPodConditionIsTheSelectors: on random policies and random pods, the
// generated matchCondition holds exactly when some policy's podSelector
// matches the pod (labels.Selector, what the engine uses), compiled and
// run in the API server's own CEL environment; it never fails to evaluate.
func TestPodConditionIsTheSelectors(t *testing.T) {
	env := celEnv(t)
	rng := rand.New(rand.NewPCG(14, 4))
	for round := range 300 {
		var ms []v1alpha1.Match
		var sels []labels.Selector
		for range 1 + rng.IntN(4) {
			ls := randomSelector(rng)
			if len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0 {
				ls.MatchLabels = map[string]string{"app": "web"}
			}
			sel, err := metav1.LabelSelectorAsSelector(ls)
			if err != nil {
				t.Fatal(err)
			}
			ms = append(ms, v1alpha1.Match{PodSelector: ls})
			sels = append(sels, sel)
		}
		n := Compute(policiesWith(ms...))
		if n.Pods == "" {
			t.Fatalf("round %d: no pod condition for %d non-empty selectors", round, len(ms))
		}
		ast, iss := env.Compile(n.Pods)
		if iss.Err() != nil {
			t.Fatalf("round %d: %s does not compile: %v", round, n.Pods, iss.Err())
		}
		prg, err := env.Program(ast)
		if err != nil {
			t.Fatal(err)
		}
		for range 30 {
			lbls := randomLabels(rng)
			want := false
			for _, s := range sels {
				want = want || s.Matches(labels.Set(lbls))
			}
			if got := evalPod(t, prg, lbls); got != want {
				t.Fatalf("round %d: labels %v: condition %v, selectors %v\n%s", round, lbls, got, want, n.Pods)
			}
		}
	}
}

// TestNamespaceRequirementIsASuperset: whenever some policy's
// namespaceSelector selects a namespace, the requirement Compute adds to the
// webhooks' namespaceSelector matches it too.
func TestNamespaceRequirementIsASuperset(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 5))
	narrowed := 0
	for range 2000 {
		var ms []v1alpha1.Match
		var sels []labels.Selector
		for range 1 + rng.IntN(3) {
			ls := randomSelector(rng)
			sel, err := metav1.LabelSelectorAsSelector(ls)
			if err != nil {
				t.Fatal(err)
			}
			ms = append(ms, v1alpha1.Match{NamespaceSelector: ls})
			sels = append(sels, sel)
		}
		n := Compute(policiesWith(ms...))
		if n.Namespace == nil {
			continue
		}
		narrowed++
		req, err := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{*n.Namespace}})
		if err != nil {
			t.Fatalf("requirement %v: %v", n.Namespace, err)
		}
		for range 30 {
			lbls := randomLabels(rng)
			for i, s := range sels {
				if s.Matches(labels.Set(lbls)) && !req.Matches(labels.Set(lbls)) {
					t.Fatalf("namespace %v selected by policy %d (%v) but not by the webhook's %v", lbls, i, ms[i].NamespaceSelector, n.Namespace)
				}
			}
		}
	}
	if narrowed < 100 {
		t.Fatalf("only %d of 2000 random policy sets narrowed the namespaces: the test would prove little", narrowed)
	}
}

func TestCompute(t *testing.T) {
	web := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	prod := &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
	shop := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"shop", "cart"}}}}
	hasEnv := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpExists}}}
	bad := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}
	for _, tc := range []struct {
		desc     string
		pols     []v1alpha1.LifecyclePolicy
		none     bool
		ns       string // requirement as text, "" for none
		anyPod   bool
		podsHold map[string]string // labels the pod condition must accept
	}{
		{desc: "no policy: no call", pols: nil, none: true},
		{desc: "only a policy that cannot compile: no call", pols: policiesWith(v1alpha1.Match{PodSelector: bad}), none: true},
		{desc: "a policy selecting every pod everywhere: no narrowing", pols: policiesWith(v1alpha1.Match{}), anyPod: true},
		{desc: "pod selector only", pols: policiesWith(v1alpha1.Match{PodSelector: web}), podsHold: map[string]string{"app": "web"}},
		{desc: "namespace selectors on one key: union of values",
			pols: policiesWith(v1alpha1.Match{NamespaceSelector: prod}, v1alpha1.Match{NamespaceSelector: shop}),
			ns:   "env in (cart,prod,shop)", anyPod: true},
		{desc: "one policy only requires the key: Exists",
			pols: policiesWith(v1alpha1.Match{NamespaceSelector: prod}, v1alpha1.Match{NamespaceSelector: hasEnv}),
			ns:   "env", anyPod: true},
		{desc: "one policy in every namespace: no namespace narrowing",
			pols:     policiesWith(v1alpha1.Match{NamespaceSelector: prod, PodSelector: web}, v1alpha1.Match{PodSelector: web}),
			podsHold: map[string]string{"app": "web"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			n := Compute(tc.pols)
			if n.None != tc.none {
				t.Fatalf("None = %v, want %v", n.None, tc.none)
			}
			got := ""
			if n.Namespace != nil {
				sel, err := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{*n.Namespace}})
				if err != nil {
					t.Fatal(err)
				}
				got = sel.String()
			}
			if got != tc.ns {
				t.Errorf("namespace requirement %q, want %q", got, tc.ns)
			}
			if tc.none {
				return
			}
			if (n.Pods == "") != tc.anyPod {
				t.Fatalf("pod condition %q, want any pod: %v", n.Pods, tc.anyPod)
			}
			if tc.podsHold != nil {
				prg := program(t, n.Pods)
				if !evalPod(t, prg, tc.podsHold) {
					t.Errorf("condition refuses %v", tc.podsHold)
				}
				if evalPod(t, prg, nil) {
					t.Errorf("condition accepts a pod without labels")
				}
			}
		})
	}
}

func program(t *testing.T, expr string) cel.Program {
	t.Helper()
	env := celEnv(t)
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		t.Fatal(err)
	}
	return prg
}

func TestTooLongConditionIsDropped(t *testing.T) {
	var ms []v1alpha1.Match
	for i := range 2000 {
		ms = append(ms, v1alpha1.Match{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", i)}}})
	}
	if n := Compute(policiesWith(ms...)); n.Pods != "" || n.None {
		t.Fatalf("2000 policies: condition of %d bytes kept (limit %d)", len(n.Pods), MaxConditionLength)
	}
	if n := Compute(policiesWith(ms[:50]...)); n.Pods == "" {
		t.Fatal("50 policies: no condition")
	}
}

func validatingConfig() *admissionregistrationv1.ValidatingWebhookConfiguration {
	base := baseSelector(engine)
	return &admissionregistrationv1.ValidatingWebhookConfiguration{Webhooks: []admissionregistrationv1.ValidatingWebhook{
		{Name: ValidatePods, NamespaceSelector: base.DeepCopy()},
		{Name: ValidateWorkloads, NamespaceSelector: base.DeepCopy(),
			MatchConditions: []admissionregistrationv1.MatchCondition{{Name: "create-or-template-changed", Expression: "true"}}},
		{Name: "validate-policies.gracekeeper.dev"},
	}}
}

var engine = policies.Config{ExcludedNamespaces: []string{"gracekeeper", "kube-system"}, IgnoreLabel: policies.DefaultIgnoreLabel}

// TestNarrowValidating: the pod and workload webhooks are narrowed, the
// policy webhook never is, other matchConditions are kept, and a second
// pass changes nothing (no write).
func TestNarrowValidating(t *testing.T) {
	prod := &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
	web := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	for _, tc := range []struct {
		desc string
		n    Narrowing
	}{
		{desc: "no policy", n: Compute(nil)},
		{desc: "namespace and pod selectors", n: Compute(policiesWith(v1alpha1.Match{NamespaceSelector: prod, PodSelector: web}))},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			cfg := validatingConfig()
			if !NarrowValidating(cfg, tc.n, engine) {
				t.Fatal("nothing changed")
			}
			policy := cfg.Webhooks[2]
			if policy.NamespaceSelector != nil || len(policy.MatchConditions) != 0 {
				t.Errorf("policy webhook narrowed: %+v", policy)
			}
			wl := cfg.Webhooks[1]
			if len(wl.MatchConditions) == 0 || wl.MatchConditions[0].Name != "create-or-template-changed" {
				t.Errorf("workload webhook lost its own matchCondition: %+v", wl.MatchConditions)
			}
			pods := cfg.Webhooks[0]
			last := pods.MatchConditions[len(pods.MatchConditions)-1]
			if last.Name != ConditionName || (tc.n.None && last.Expression != "false") {
				t.Errorf("pod webhook condition %+v", last)
			}
			if tc.n.Namespace != nil && len(pods.NamespaceSelector.MatchExpressions) != 3 {
				t.Errorf("pod webhook namespaceSelector %+v: want the 2 exclusions and the policies' requirement", pods.NamespaceSelector)
			}
			if NarrowValidating(cfg, tc.n, engine) {
				t.Error("second pass changed the configuration again")
			}
			// Back to a policy for every pod: the chart's superset again.
			if !NarrowValidating(cfg, Compute(policiesWith(v1alpha1.Match{})), engine) {
				t.Fatal("widening changed nothing")
			}
			if !sameSelector(cfg.Webhooks[0].NamespaceSelector, baseSelector(engine)) || len(cfg.Webhooks[0].MatchConditions) != 0 {
				t.Errorf("widened pod webhook: %+v", cfg.Webhooks[0])
			}
		})
	}
}

// TestChartOrderIsNoChange: the chart lists the excluded namespaces in its
// own order; the same set in another order is not a change to write.
func TestChartOrderIsNoChange(t *testing.T) {
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{Webhooks: []admissionregistrationv1.MutatingWebhook{{
		Name: MutatePods,
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "gracekeeper", "kube-system"}},
			{Key: policies.DefaultIgnoreLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"true"}},
		}},
	}}}
	if NarrowMutating(cfg, Compute(policiesWith(v1alpha1.Match{})), engine) {
		t.Errorf("rewrote the chart's selector: %+v", cfg.Webhooks[0].NamespaceSelector)
	}
}
