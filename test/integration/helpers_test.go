package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// scenarioLabel marks each test's namespaces, so each test's policies select
// only its own namespaces and tests never see each other's policies.
const scenarioLabel = "test.gracekeeper.dev/scenario"

// propagation bounds how long a change (a new policy, namespace or webhook
// configuration) may take to reach the informer caches involved.
const propagation = 20 * time.Second

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newNamespace creates a namespace labelled with the test's scenario (plus
// extra labels) and returns its name and the scenario value.
func newNamespace(t *testing.T, extra map[string]string) (name, scenario string) {
	t.Helper()
	scenario = fmt.Sprintf("s%d", time.Now().UnixNano())
	labels := map[string]string{scenarioLabel: scenario}
	for k, v := range extra {
		labels[k] = v
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "gk-", Labels: labels}}
	if err := env.c.Create(ctxFor(t), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	// Without a namespace controller (kube-apiserver alone) a deleted namespace
	// stays Terminating; the pods in it are released by their own cleanups.
	return ns.Name, scenario
}

// forScenario selects the namespaces of one scenario.
func forScenario(scenario string) v1alpha1.Match {
	return v1alpha1.Match{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{scenarioLabel: scenario}}}
}

// createPolicy creates a LifecyclePolicy and deletes it when the test ends.
func createPolicy(t *testing.T, name string, spec v1alpha1.LifecyclePolicySpec) *v1alpha1.LifecyclePolicy {
	t.Helper()
	p := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	if err := env.c.Create(ctxFor(t), p); err != nil {
		t.Fatalf("create policy %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := env.c.Delete(context.Background(), p); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete policy %s: %v", name, err)
		}
	})
	return p
}

// container is a minimal container; no kubelet runs here, so images never pull.
func container(name string) corev1.Container {
	return corev1.Container{Name: name, Image: "registry.k8s.io/pause:3.10"}
}

// newPod is a pod with the given grace period and containers.
func newPod(ns, name string, tgps int64, containers ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To(tgps)},
	}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, container(c))
	}
	return p
}

// createPod creates pod for real and, when the test ends, removes every
// finalizer from it and deletes it: with no kubelet and no gracekeeper
// finalizer work to wait for, a pod with a finalizer would stay Terminating.
func createPod(t *testing.T, c client.Client, pod *corev1.Pod) error {
	t.Helper()
	err := c.Create(ctxFor(t), pod)
	if err == nil {
		key := client.ObjectKeyFromObject(pod)
		t.Cleanup(func() { releasePod(t, key) })
	}
	return err
}

func releasePod(t *testing.T, key client.ObjectKey) {
	ctx := context.Background()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	patch := []byte(`{"metadata":{"finalizers":null}}`)
	if err := env.c.Patch(ctx, p, client.RawPatch(types.MergePatchType, patch)); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("release pod %s: %v", key, err)
	}
	if err := env.c.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete pod %s: %v", key, err)
	}
}

// eventually polls cond every 100ms until it returns true, failing the test
// when it has not by the deadline, with the last thing cond said.
func eventually(t *testing.T, what string, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), propagation)
	defer cancel()
	var last string
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, msg := cond(ctx)
		last = msg
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not reached within %s; last: %s", what, propagation, last)
	}
}

// dryRunPod creates a copy of pod with dryRun=All (nothing is persisted, and
// our webhooks declare sideEffects None, so the API server calls them) and
// returns what the API server would have stored.
func dryRunPod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	p := pod.DeepCopy()
	err := env.c.Create(ctx, p, client.DryRunAll)
	return p, err
}

// waitForMutation polls a dry-run create of pod until want holds of the
// result: the way to wait for a new policy or namespace to reach
// gracekeeper's informer cache without sleeping.
func waitForMutation(t *testing.T, pod *corev1.Pod, what string, want func(*corev1.Pod) bool) {
	t.Helper()
	eventually(t, what, func(ctx context.Context) (bool, string) {
		got, err := dryRunPod(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		return want(got), summary(got)
	})
}

// summary is a short description of what gracekeeper did to a pod.
func summary(p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "tGPS=%v finalizers=%v labels=%v policies=%q", ptr.Deref(p.Spec.TerminationGracePeriodSeconds, -1),
		p.Finalizers, p.Labels, p.Annotations[policies.AnnotationPolicies])
	for _, c := range p.Spec.Containers {
		lc, _ := json.Marshal(c.Lifecycle)
		fmt.Fprintf(&b, " %s:%s", c.Name, lc)
	}
	return b.String()
}

// preStopSleep is the native sleep preStop seconds of container name, or -1.
func preStopSleep(p *corev1.Pod, name string) int64 {
	for _, c := range p.Spec.Containers {
		if c.Name == name && c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			return c.Lifecycle.PreStop.Sleep.Seconds
		}
	}
	return -1
}

// untouched reports whether gracekeeper left no trace on a pod.
func untouched(p *corev1.Pod) bool {
	if _, ok := p.Annotations[policies.AnnotationPolicies]; ok {
		return false
	}
	if _, ok := p.Labels[policies.LabelFinalize]; ok {
		return false
	}
	for _, c := range p.Spec.Containers {
		if c.Lifecycle != nil {
			return false
		}
	}
	return len(p.Finalizers) == 0
}

// warnings collects the admission warnings the API server sends back, as
// kubectl prints them.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	if code != 299 || text == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}

// clientWithWarnings is a client whose warnings land in the returned collector.
func clientWithWarnings(t *testing.T) (client.Client, *warnings) {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(env.cfg)
	cfg.WarningHandler = w
	c, err := client.New(cfg, client.Options{Scheme: env.scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}

// sleepHook is a native-sleep hook action of n seconds.
func sleepHook(n int64) v1alpha1.HookAction {
	return v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: n}}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
