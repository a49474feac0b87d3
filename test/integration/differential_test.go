package integration

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/integration/install"
)

var (
	diffCases = flag.Int("differential.cases", 150, "random policies (and pods) TestDifferential sends to the API server")
	diffSeed  = flag.Uint64("differential.seed", 11, "seed of TestDifferential's generator (PCG)")
)

// TestDifferential compares the engine with the real API server on random
// policies, valid and near-valid, and pods, from a fixed seed: every policy
// the API server accepts (schema, CEL, the policy webhook: a server-side
// dry run) compiles in the engine; every policy the engine refuses, the API
// server refuses; and every pod the engine mutates with an accepted policy
// passes a server-side dry-run create (in a namespace gracekeeper's own
// webhooks skip, so the API server judges the engine's output alone).
// -differential.cases raises the count.
func TestDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(*diffSeed, 0x9e3779b97f4a7c15))
	ns, _ := newNamespace(t, map[string]string{install.IgnoreLabel: "true"})
	var accepted, refused, mutated int
	for i := range *diffCases {
		p := randomPolicy(rng, fmt.Sprintf("diff-%d", i))
		serverErr := env.c.Create(ctxFor(t), p.DeepCopy(), client.DryRunAll)
		set, fs := policies.NewSet(policies.Config{}, []v1alpha1.LifecyclePolicy{*p})
		engineOK := set.Len() == 1
		switch {
		case serverErr == nil && !engineOK:
			t.Errorf("case %d: the API server accepts, the engine refuses: %v\n%+v", i, fs, p.Spec)
			continue
		case serverErr != nil && engineOK:
			// The CRD may be stricter than the engine (sizes, enums); that
			// is allowed. The reverse is not.
			refused++
			continue
		case serverErr != nil:
			refused++
			continue
		}
		accepted++
		pod := randomPod(rng, ns, fmt.Sprintf("diff-%d", i))
		d := set.Mutate(pod, policies.Namespace{Name: ns})
		if !d.Changed {
			continue
		}
		mutated++
		if err := env.c.Create(ctxFor(t), d.Pod.DeepCopy(), client.DryRunAll); err != nil {
			t.Errorf("case %d: the API server refuses the mutated pod: %v\npolicy %+v\npod %+v", i, err, p.Spec, d.Pod.Spec)
		}
	}
	t.Logf("%d cases (seed %d): %d policies accepted, %d refused; %d mutated pods dry-run created", *diffCases, *diffSeed, accepted, refused, mutated)
	if accepted == 0 || refused == 0 || mutated == 0 {
		t.Errorf("the generator is too narrow: accepted %d, refused %d, mutated %d", accepted, refused, mutated)
	}
}

func pick[T any](rng *rand.Rand, xs ...T) T { return xs[rng.IntN(len(xs))] }

// randomPolicy draws each field from values at and around the API server's
// limits: mostly valid, some just outside.
func randomPolicy(rng *rand.Rand, name string) *v1alpha1.LifecyclePolicy {
	p := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	s := &p.Spec
	if rng.IntN(2) == 0 {
		var reqs []metav1.LabelSelectorRequirement
		for range rng.IntN(3) {
			op := pick(rng, metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist)
			r := metav1.LabelSelectorRequirement{Key: pick(rng, "app", "app", "example.com/tier", "bad key!", "a/b/c", strings.Repeat("k", 64)), Operator: op}
			switch rng.IntN(4) {
			case 0:
			case 1:
				r.Values = []string{}
			default:
				r.Values = []string{pick(rng, "web", "web", "a b", "x")}
			}
			reqs = append(reqs, r)
		}
		s.Match.PodSelector = &metav1.LabelSelector{MatchExpressions: reqs}
		if rng.IntN(3) == 0 {
			s.Match.PodSelector.MatchLabels = map[string]string{pick(rng, "app", "bad key!"): pick(rng, "web", "-web")}
		}
	}
	if rng.IntN(3) == 0 {
		s.Match.Containers = []string{pick(rng, "*", "web", "web-*", "web[", "[a-c]*", "side")}
	}
	if rng.IntN(4) == 0 {
		s.Match.ExcludeContainers = []string{pick(rng, "side", "x[", "istio-proxy")}
	}
	s.Match.IncludeSidecars = rng.IntN(2) == 0
	action := func(pre bool) v1alpha1.HookAction {
		var a v1alpha1.HookAction
		switch rng.IntN(3) {
		case 0:
			a.Sleep = &v1alpha1.SleepAction{Seconds: pick[int64](rng, 0, 1, 5, 30, 45, 120)}
		case 1:
			a.Exec = &v1alpha1.ExecAction{Command: []string{"sh", "-c", "sleep 3"}}
			if pre {
				a.Exec.BudgetSeconds = ptr.To[int64](3)
			}
		default:
			g := &v1alpha1.HTTPGetAction{
				Path:   pick(rng, "", "/", "/drain"),
				Port:   pick(rng, intstr.FromInt32(8080), intstr.FromInt32(1), intstr.FromInt32(65535), intstr.FromInt32(0), intstr.FromInt32(65536), intstr.FromString("http"), intstr.FromString("Http"), intstr.FromString("a--b"), intstr.FromString("very-long-port-name")),
				Scheme: pick(rng, corev1.URIScheme(""), corev1.URISchemeHTTP, corev1.URISchemeHTTPS),
			}
			if rng.IntN(3) == 0 {
				g.HTTPHeaders = []v1alpha1.HTTPHeader{{Name: pick(rng, "X-Drain", "X Drain", "x_y"), Value: "1"}}
			}
			if pre {
				g.BudgetSeconds = ptr.To[int64](pick[int64](rng, 0, 5, 20))
			}
			a.HTTPGet = g
		}
		a.Overwrite = rng.IntN(2) == 0
		return a
	}
	if rng.IntN(4) != 0 {
		s.PreStop = &v1alpha1.PreStopHook{HookAction: action(true)}
	}
	if rng.IntN(3) == 0 {
		s.PostStart = &v1alpha1.PostStartHook{HookAction: action(false)}
	}
	if rng.IntN(2) == 0 {
		s.ShutdownSeconds = ptr.To[int64](pick[int64](rng, 0, 5, 30))
	}
	if rng.IntN(2) == 0 {
		s.TerminationGracePeriod = &v1alpha1.TerminationGracePeriod{Fit: rng.IntN(2) == 0, MaxSeconds: ptr.To[int64](pick[int64](rng, 1, 20, 60, 300))}
	}
	if rng.IntN(3) == 0 {
		s.Finalizers = []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer}
	}
	if rng.IntN(4) == 0 {
		s.Cleanup = &v1alpha1.Cleanup{URL: "https://ipam.example.com/release", Finalizer: pick(rng, "example.com/release-ip",
			strings.Repeat("a", 63)+"."+strings.Repeat("b", 63)+"."+strings.Repeat("c", 63)+"."+strings.Repeat("d", 63)+".com/x", "example.com/-x")}
	}
	s.Validation = &v1alpha1.Validation{Action: pick(rng, v1alpha1.ActionDeny, v1alpha1.ActionWarn, v1alpha1.ActionAudit)}
	return p
}

// randomPod is a pod with one to three containers, maybe a sidecar and a
// plain init container, maybe a hook of its own, and a grace period.
func randomPod(rng *rand.Rand, ns, name string) *corev1.Pod {
	p := newPod(ns, name, pick[int64](rng, 0, 1, 10, 30, 60), "web")
	p.Labels = map[string]string{"app": pick(rng, "web", "x"), "example.com/tier": "web"}
	if rng.IntN(2) == 0 {
		p.Spec.Containers = append(p.Spec.Containers, container("web-2"))
	}
	if rng.IntN(3) == 0 {
		c := container("side")
		c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		p.Spec.InitContainers = append(p.Spec.InitContainers, c)
	}
	if rng.IntN(3) == 0 {
		p.Spec.InitContainers = append(p.Spec.InitContainers, container("init"))
	}
	if rng.IntN(4) == 0 {
		p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 0}}}
	}
	return p
}
