package admissionpolicy

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	celgo "github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/traits"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/mutating/patch"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// This file measures what the compiled objects cost the API server's CEL,
// in process, compiled and evaluated as
// k8s.io/apiserver/pkg/admission/plugin/policy/mutating/compilation.go and
// .../validating do it: variables stored in a composited compiler and
// evaluated lazily per expression, matchConditions first. The same run
// measures the hand-written floor of make bench-cluster
// (test/bench/cluster/arms.go) as the baseline; compare ns/op and
// cel-cost/op between the sub-benchmarks (benchstat or by eye), never as
// absolute numbers.

// condExpr is a boolean expression (a matchCondition or a validation).
type condExpr string

func (c condExpr) GetExpression() string      { return string(c) }
func (c condExpr) ReturnTypes() []*celgo.Type { return []*celgo.Type{celgo.BoolType} }

// evaluator is one MutatingAdmissionPolicy or ValidatingAdmissionPolicy
// compiled the API server's way.
type evaluator struct {
	compiler *plugincel.CompositedCompiler
	conds    plugincel.ConditionEvaluator // matchConditions
	checks   plugincel.ConditionEvaluator // validations (VAP)
	patch    plugincel.MutatingEvaluator  // the JSONPatch (MAP)
}

func compileEvaluator(t testing.TB, vars []admissionregistrationv1.Variable, conds []admissionregistrationv1.MatchCondition, validations []admissionregistrationv1.Validation, jsonPatch string) *evaluator {
	t.Helper()
	c, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		t.Fatal(err)
	}
	opts := plugincel.OptionalVariableDeclarations{HasAuthorizer: true}
	// In order, as CompileAndStoreVariables does: a variable sees only
	// those before it.
	for _, v := range vars {
		r := c.CompileAndStoreVariable(&validating.Variable{Name: v.Name, Expression: v.Expression}, opts, environment.StoredExpressions)
		if r.Error != nil {
			t.Fatalf("variable %s: %v", v.Name, r.Error)
		}
	}
	e := &evaluator{compiler: c}
	var ces []plugincel.ExpressionAccessor
	for _, m := range conds {
		ces = append(ces, condExpr(m.Expression))
	}
	e.conds = c.CompileCondition(ces, opts, environment.StoredExpressions)
	var ves []plugincel.ExpressionAccessor
	for _, v := range validations {
		ves = append(ves, condExpr(v.Expression))
	}
	e.checks = c.CompileCondition(ves, opts, environment.StoredExpressions)
	if jsonPatch != "" {
		po := opts
		po.HasPatchTypes = true
		e.patch = c.CompileMutatingEvaluator(&patch.JSONPatchCondition{Expression: jsonPatch}, po, environment.StoredExpressions)
		if errs := e.patch.CompilationErrors(); len(errs) > 0 {
			t.Fatalf("patch: %v", errs)
		}
	}
	return e
}

// run evaluates e on pod as one admission request does and returns the
// CEL cost spent, whether the matchConditions held, the validations'
// results and the patch's length.
func (e *evaluator) run(t testing.TB, pod *corev1.Pod, ns *corev1.Namespace) (cost int64, matched bool, valid []bool, patchOps int) {
	gvk := corev1.SchemeGroupVersion.WithKind("Pod")
	gvr := corev1.SchemeGroupVersion.WithResource("pods")
	attr := admission.NewAttributesRecord(pod, nil, gvk, pod.Namespace, pod.Name, gvr, "", admission.Create, &metav1.CreateOptions{}, false, nil)
	va := &admission.VersionedAttributes{Attributes: attr, VersionedObject: admission.NewLazyObject(pod), VersionedKind: gvk}
	req := plugincel.CreateAdmissionRequest(attr, metav1.GroupVersionResource(gvr), metav1.GroupVersionKind(gvk))
	ctx := e.compiler.CreateContext(context.Background())
	budget := int64(celconfig.RuntimeCELCostBudget)
	res, left, err := e.conds.ForInput(ctx, va, req, plugincel.OptionalVariableBindings{}, ns, budget)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Error != nil {
			t.Fatalf("matchCondition: %v", r.Error)
		}
		if r.EvalResult.Value() != true {
			return budget - left, false, nil, 0
		}
	}
	res, left, err = e.checks.ForInput(e.compiler.CreateContext(context.Background()), va, req, plugincel.OptionalVariableBindings{}, ns, left)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Error != nil {
			t.Fatalf("validation %s: %v", r.ExpressionAccessor.GetExpression(), r.Error)
		}
		valid = append(valid, r.EvalResult.Value() == true)
	}
	if e.patch != nil {
		r, l, err := e.patch.ForInput(e.compiler.CreateContext(context.Background()), va, req, plugincel.OptionalVariableBindings{}, ns, left)
		if err != nil {
			t.Fatal(err)
		}
		if r.Error != nil {
			t.Fatalf("patch: %v", r.Error)
		}
		left = l
		if l, ok := r.EvalResult.(traits.Sizer); ok {
			patchOps = int(l.Size().(types.Int))
		}
	}
	return budget - left, true, valid, patchOps
}

// benchPod and benchNamespace are make bench-cluster's: two containers,
// grace 30 s, selected by benchLifecyclePolicy.
func benchPod() *corev1.Pod {
	g := int64(30)
	c := func(n string) corev1.Container { return corev1.Container{Name: n, Image: "registry.k8s.io/pause:3.10"} }
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench-selected", Name: "p", Labels: map[string]string{"app": "bench"}},
		Spec:       corev1.PodSpec{TerminationGracePeriodSeconds: &g, Containers: []corev1.Container{c("app"), c("helper")}},
	}
}

func benchNamespace() *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench-selected", Labels: map[string]string{
		"bench.gracekeeper.dev/arm": "selected", corev1.LabelMetadataName: "bench-selected"}}}
}

func benchLifecyclePolicy() v1alpha1.LifecyclePolicy {
	return policy("bench", func(s *v1alpha1.LifecyclePolicySpec) {
		s.Match.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"bench.gracekeeper.dev/arm": "selected"}}
		s.Match.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bench"}}
		s.PreStop = &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: 5}}}
		s.ShutdownSeconds = ptr(int64(10))
		s.Validation = &v1alpha1.Validation{Action: v1alpha1.ActionDeny}
	})
}

// floorObjects reads the floor's MutatingAdmissionPolicy and
// ValidatingAdmissionPolicy from the cluster bench's source, so the
// baseline here is the one make bench-cluster measures.
func floorObjects(t testing.TB) (*admissionregistrationv1.MutatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicy) {
	t.Helper()
	b, err := os.ReadFile("../test/bench/cluster/arms.go")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "const floorPolicies = `")
	src, _, ok2 := strings.Cut(rest, "`")
	if !ok || !ok2 {
		t.Fatal("floorPolicies not found in test/bench/cluster/arms.go")
	}
	var m *admissionregistrationv1.MutatingAdmissionPolicy
	var vp *admissionregistrationv1.ValidatingAdmissionPolicy
	for _, doc := range strings.Split(src, "\n---\n") {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatal(err)
		}
		switch tm.Kind {
		case "MutatingAdmissionPolicy":
			m = &admissionregistrationv1.MutatingAdmissionPolicy{}
			err = yaml.Unmarshal([]byte(doc), m)
		case "ValidatingAdmissionPolicy":
			vp = &admissionregistrationv1.ValidatingAdmissionPolicy{}
			err = yaml.Unmarshal([]byte(doc), vp)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if m == nil || vp == nil {
		t.Fatal("the floor's policies not found")
	}
	return m, vp
}

type arm struct {
	name string
	map_ *evaluator
	vap  *evaluator
}

// benchArms: the floor; gracekeeper's objects for make bench-cluster's
// policy; the same with terminationGracePeriod.fit (the mutation then
// computes the budget too).
func benchArms(t testing.TB) []arm {
	fm, fv := floorObjects(t)
	arms := []arm{{name: "floor",
		map_: compileEvaluator(t, fm.Spec.Variables, fm.Spec.MatchConditions, nil, fm.Spec.Mutations[0].JSONPatch.Expression),
		vap:  compileEvaluator(t, fv.Spec.Variables, fv.Spec.MatchConditions, fv.Spec.Validations, ""),
	}}
	fit := benchLifecyclePolicy()
	fit.Spec.TerminationGracePeriod = &v1alpha1.TerminationGracePeriod{Fit: true}
	for name, p := range map[string]v1alpha1.LifecyclePolicy{"gracekeeper": benchLifecyclePolicy(), "gracekeeper-fit": fit} {
		o, err := Compile(&p, []v1alpha1.LifecyclePolicy{p}, Config{ExcludedNamespaces: []string{"gracekeeper-system", "kube-system"}, IgnoreLabel: "gracekeeper.dev/ignore", Mutate: true})
		if err != nil {
			t.Fatal(err)
		}
		arms = append(arms, arm{name: name,
			map_: compileEvaluator(t, o.MAP.Spec.Variables, o.MAP.Spec.MatchConditions, nil, o.MAP.Spec.Mutations[0].JSONPatch.Expression),
			vap:  compileEvaluator(t, o.VAP.Spec.Variables, o.VAP.Spec.MatchConditions, o.VAP.Spec.Validations, ""),
		})
	}
	slices.SortFunc(arms[1:], func(a, b arm) int { return strings.Compare(a.name, b.name) })
	return arms
}

// BenchmarkAdmissionCEL: one pod CREATE through the mutating and the
// validating policy, gracekeeper's compiled objects beside the floor.
// Reports cel-cost/op, the API server's runtime cost units.
func BenchmarkAdmissionCEL(b *testing.B) {
	ns := benchNamespace()
	for _, a := range benchArms(b) {
		for _, part := range []struct {
			name string
			e    *evaluator
		}{{"mutate", a.map_}, {"validate", a.vap}} {
			b.Run(a.name+"/"+part.name, func(b *testing.B) {
				var cost int64
				b.ReportAllocs()
				for b.Loop() {
					c, matched, valid, _ := part.e.run(b, benchPod(), ns)
					if !matched || (len(valid) > 0 && !valid[0]) {
						b.Fatalf("matched %v valid %v", matched, valid)
					}
					cost = c
				}
				b.ReportMetric(float64(cost), "cel-cost/op")
			})
		}
	}
}

// TestAdmissionCELBench: the benchmark measures what it says: both arms
// patch the bench pod and admit it,
// and refuse a pod whose grace the budget does not fit.
func TestAdmissionCELBench(t *testing.T) {
	ns := benchNamespace()
	arms := benchArms(t)
	var ops []int
	for _, a := range arms {
		_, matched, _, n := a.map_.run(t, benchPod(), ns)
		if !matched || n == 0 {
			t.Errorf("%s: matched %v, %d patch operations", a.name, matched, n)
		}
		ops = append(ops, n)
		_, _, valid, _ := a.vap.run(t, benchPod(), ns)
		if len(valid) != 1 || !valid[0] {
			t.Errorf("%s: the bench pod is refused: %v", a.name, valid)
		}
		tight := benchPod()
		*tight.Spec.TerminationGracePeriodSeconds = 5
		tight.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}}}
		_, _, valid, _ = a.vap.run(t, tight, ns)
		if len(valid) != 1 || valid[0] {
			t.Errorf("%s: a pod with grace 5 s < 5 s + 10 s is admitted: %v", a.name, valid)
		}
	}
	t.Logf("patch operations: %v", ops)
}
