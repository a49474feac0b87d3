package admissionmodes

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/admissionpolicy"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

var (
	propCases = flag.Int("property.cases", 200, "random pods TestBudgetCELMatchesEngine judges")
	propSeed  = flag.Uint64("property.seed", 14, "seed of TestBudgetCELMatchesEngine's pods")
)

// warnings collects the API server's warnings of one request at a time.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

// TestBudgetCELMatchesEngine compares the compiled budget (the
// ValidatingAdmissionPolicies alone, evaluated by the API server) with
// policies/budget.go on random pods: regular containers and native
// sidecars with sleeps, recognised and unrecognised exec sleeps, a
// policy's own exec hook with its budgetSeconds, httpGet hooks, declared
// and overriding annotations, and grace periods around the budget. Two
// policies select overlapping pods, so the merge (shutdown and action
// from the higher one, lowering allowed only by both) is exercised too.
// Each pod is first stored with no admission, so the engine judges what
// the API server judges (defaults applied); then created where the
// policies apply: refused exactly when the engine denies, with its
// message, and warned exactly with the engine's Warn budget finding.
func TestBudgetCELMatchesEngine(t *testing.T) {
	needCluster(t)
	ctx := ctxT(t)
	ns := ensureNamespace(t, "property", map[string]string{"team": "a"})
	plain := ensureNamespace(t, "plain-property", map[string]string{"gracekeeper.dev/ignore": "true"})
	specs := []v1alpha1.LifecyclePolicy{
		{ObjectMeta: metav1.ObjectMeta{Name: "prop-web"}, Spec: v1alpha1.LifecyclePolicySpec{
			Priority:        10,
			Match:           v1alpha1.Match{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, IncludeSidecars: true},
			PreStop:         &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Exec: &v1alpha1.ExecAction{Command: []string{"/drain"}, BudgetSeconds: ptr(int64(7))}}},
			ShutdownSeconds: ptr(int64(5)),
			Validation:      &v1alpha1.Validation{Action: v1alpha1.ActionDeny},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "prop-all"}, Spec: v1alpha1.LifecyclePolicySpec{
			Match:            v1alpha1.Match{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}},
			PreStop:          &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: 3}}},
			ShutdownSeconds:  ptr(int64(10)),
			AllowLowerBudget: true,
			Validation:       &v1alpha1.Validation{Action: v1alpha1.ActionWarn},
		}},
	}
	var pols []v1alpha1.LifecyclePolicy
	for i := range specs {
		p := specs[i].DeepCopy()
		createAll(t, p)
		pols = append(pols, *p)
	}
	cfg := admissionpolicy.Config{ExcludedNamespaces: policies.SystemNamespaces(), IgnoreLabel: policies.DefaultIgnoreLabel}
	compiledObjects(t, pols, cfg)
	waitEffective(t, false)
	set, fs := policies.NewSet(policies.Config{ExcludedNamespaces: cfg.ExcludedNamespaces, IgnoreLabel: cfg.IgnoreLabel}, pols)
	if len(fs) > 0 {
		t.Fatal(fs)
	}

	wc, w := warningClient(t)
	rng := rand.New(rand.NewPCG(*propSeed, 1))
	var denied, warned, admitted, invalid int
	for i := 0; i < *propCases; i++ {
		pod := randomPod(rng, i)
		stored := pod.DeepCopy()
		stored.Namespace = plain
		if err := cluster.Create(ctx, stored, client.DryRunAll); err != nil {
			if apierrors.IsInvalid(err) {
				invalid++ // a pod the API server refuses anyway (a sleep above its grace)
				continue
			}
			t.Fatal(err)
		}
		stored.Namespace = ns
		want := set.Validate(stored, policies.Namespace{Name: ns, Labels: map[string]string{"team": "a", corev1.LabelMetadataName: ns}})
		var wantDeny, wantWarn string
		for _, f := range want.Findings {
			if f.Reason != policies.ReasonBudgetExceeded {
				continue // advice findings stay on the webhook (docs/admission-modes.md)
			}
			if f.Action == v1alpha1.ActionDeny {
				wantDeny = f.Message
			} else if f.Action == v1alpha1.ActionWarn {
				wantWarn = f.Message
			}
		}
		_ = w.take()
		pod.Namespace = ns
		err := wc.Create(ctx, pod, client.DryRunAll)
		got := w.take()
		switch {
		case wantDeny != "":
			denied++
			if err == nil || !strings.Contains(err.Error(), "gracekeeper: "+wantDeny) {
				t.Errorf("pod %d: want refused with %q, got %v\n%s", i, wantDeny, err, describe(stored))
			}
		case err != nil:
			t.Errorf("pod %d: refused (%v); the engine admits it\n%s", i, err, describe(stored))
		default:
			admitted++
			hasWarn := false
			for _, g := range got {
				if strings.Contains(g, "gracekeeper: ") {
					hasWarn = hasWarn || (wantWarn != "" && strings.Contains(g, "gracekeeper: "+wantWarn))
					if wantWarn == "" || !strings.Contains(g, "gracekeeper: "+wantWarn) {
						t.Errorf("pod %d: unexpected warning %q (engine: %q)\n%s", i, g, wantWarn, describe(stored))
					}
				}
			}
			if wantWarn != "" {
				warned++
				if !hasWarn {
					t.Errorf("pod %d: want warning %q, got %q\n%s", i, wantWarn, got, describe(stored))
				}
			}
		}
	}
	t.Logf("%d pods: %d refused, %d admitted (%d with a budget warning), %d refused by pod validation", *propCases, denied, admitted, warned, invalid)
	if denied == 0 || warned == 0 || admitted-warned == 0 {
		t.Errorf("the random pods must cover refusals, warnings and clean admissions; got %d, %d, %d", denied, warned, admitted-warned)
	}
}

func describe(p *corev1.Pod) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "labels %v annotations %v grace %v\n", p.Labels, p.Annotations, p.Spec.TerminationGracePeriodSeconds)
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		fmt.Fprintf(&sb, "  %s restart=%v lifecycle=%+v\n", c.Name, c.RestartPolicy, c.Lifecycle)
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			fmt.Fprintf(&sb, "    preStop %+v %+v %+v\n", c.Lifecycle.PreStop.Sleep, c.Lifecycle.PreStop.Exec, c.Lifecycle.PreStop.HTTPGet)
		}
	}
	return sb.String()
}

// randomPod is a pod for the property test: 1-3 containers, 0-3 native
// sidecars, maybe a plain init container, each with a random preStop.
func randomPod(r *rand.Rand, i int) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Labels: map[string]string{}, Annotations: map[string]string{}}}
	if r.IntN(3) > 0 {
		p.Labels["app"] = "web"
	}
	pick := func(vs ...string) string { return vs[r.IntN(len(vs))] }
	if r.IntN(3) == 0 {
		p.Annotations[policies.AnnotationPreStopSeconds] = pick("0", "4", "9", "20", "+6", "x", "-1", "007", "86401")
	}
	if r.IntN(3) == 0 {
		p.Annotations[policies.AnnotationShutdownSeconds] = pick("0", "3", "8", "15", "bad", "1e3")
	}
	grace := int64(r.IntN(45))
	maxSleep := grace
	hook := func() *corev1.Lifecycle {
		n := func() string { return fmt.Sprint(r.IntN(30)) }
		var h *corev1.LifecycleHandler
		switch r.IntN(10) {
		case 0, 1:
			return nil
		case 2:
			h = &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: r.Int64N(maxSleep + 1)}}
		case 3:
			h = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{pick("sleep", "/bin/sleep", "/usr/bin/sleep", "usleep"), n()}}}
		case 4:
			h = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{pick("/bin/sh", "bash", "/bin/dash", "zsh"), "-c", pick("sleep ", " sleep\t", "sleep  +", "sleep 1 && sleep ") + n()}}}
		case 5:
			h = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/drain"}}}
		case 6:
			h = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/other", "x"}}}
		case 7:
			h = &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/q", Port: intstr.FromInt32(8080)}}
		case 8:
			h = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", pick("5", "+5", "05", "5s", "86400", "99999")}}}
		default:
			h = &corev1.LifecycleHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}
		}
		return &corev1.Lifecycle{PreStop: h}
	}
	for j := 0; j < 1+r.IntN(3); j++ {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", j), Image: "x", Lifecycle: hook()})
	}
	if r.IntN(4) == 0 {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "init", Image: "x"})
	}
	for j := 0; j < r.IntN(4); j++ {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: fmt.Sprintf("side%d", j), Image: "x",
			RestartPolicy: ptr(corev1.ContainerRestartPolicyAlways), Lifecycle: hook()})
	}
	if r.IntN(6) > 0 {
		p.Spec.TerminationGracePeriodSeconds = &grace
	}
	return p
}
