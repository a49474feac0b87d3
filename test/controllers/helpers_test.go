package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// scenarioLabel marks each test's namespace, so each test's policies select
// only its own namespace.
const scenarioLabel = "test.gracekeeper.dev/scenario"

// propagation bounds how long a new policy may take to reach gracekeeper's cache.
const propagation = 20 * time.Second

// The Deny policy every test uses: preStop 25 s + shutdown 10 s = 35 s, so a
// pod (template) with terminationGracePeriodSeconds 30 is denied and one
// with 60 fits.
const (
	tightGrace = 30
	roomyGrace = 60
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newNamespace creates a namespace labelled with a fresh scenario and
// deletes it (without waiting) when the test ends.
func newNamespace(t *testing.T) (name, scenario string) {
	t.Helper()
	scenario = fmt.Sprintf("s%d", time.Now().UnixNano())
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "gk-", Labels: map[string]string{scenarioLabel: scenario}}}
	if err := env.c.Create(ctxFor(t, 30*time.Second), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := env.c.Delete(context.Background(), ns); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name, scenario
}

// denyPolicy is a Deny policy for scenario's namespace with the given
// built-in finalizers.
func denyPolicy(scenario string, finalizers ...v1alpha1.BuiltinFinalizer) v1alpha1.LifecyclePolicySpec {
	return v1alpha1.LifecyclePolicySpec{
		Match:           v1alpha1.Match{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{scenarioLabel: scenario}}},
		PreStop:         &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: 25}}},
		ShutdownSeconds: ptr.To[int64](10),
		Finalizers:      finalizers,
		Validation:      &v1alpha1.Validation{Action: v1alpha1.ActionDeny},
	}
}

// createPolicy creates a LifecyclePolicy, deletes it when the test ends,
// and waits until gracekeeper applies it to a pod in ns.
func createPolicy(t *testing.T, ns, name string, spec v1alpha1.LifecyclePolicySpec) {
	t.Helper()
	p := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	if err := env.c.Create(ctxFor(t, 30*time.Second), p); err != nil {
		t.Fatalf("create policy %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := env.c.Delete(context.Background(), p); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete policy %s: %v", name, err)
		}
	})
	probe := newPod(ns, "probe", roomyGrace)
	eventually(t, "policy "+name+" in effect", propagation, func(ctx context.Context) (bool, string) {
		got := probe.DeepCopy()
		// dryRun: nothing is stored; our webhooks are sideEffects None, so
		// the API server still calls them.
		if err := env.c.Create(ctx, got, client.DryRunAll); err != nil {
			return false, err.Error()
		}
		return strings.Contains(got.Annotations[policies.AnnotationPolicies], name), fmt.Sprintf("annotations %v", got.Annotations)
	})
}

// eventually polls cond every 200 ms until it holds, failing the test with
// what cond last said when it has not within d.
func eventually(t *testing.T, what string, d time.Duration, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	if err := poll(d, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// poll is eventually without the test: the error says what cond last said.
func poll(d time.Duration, cond func(ctx context.Context) (bool, string)) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var last string
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, msg := cond(ctx)
		if ctx.Err() == nil { // a call cut short by the deadline says nothing
			last = msg
		}
		return ok, nil
	})
	if err != nil {
		return fmt.Errorf("not within %s; last: %s", d, last)
	}
	return nil
}

// newPod is a pod with one container; no kubelet or scheduler runs, so it is
// never scheduled and its image never pulled.
func newPod(ns, name string, grace int64) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec:       podSpec(grace),
	}
}

func podSpec(grace int64) corev1.PodSpec {
	return corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr.To(grace),
		Containers:                    []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
	}
}

// newDeployment is a Deployment of replicas pods with the given grace period.
func newDeployment(ns, name string, replicas int32, grace int64) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec(grace)},
		},
	}
}

// rollingAllAtOnce lets a rollout replace every pod at once: with no kubelet
// no pod ever becomes Ready, so the default 25% maxUnavailable would never
// let the Deployment controller scale the old ReplicaSet down.
func rollingAllAtOnce(d *appsv1.Deployment) {
	all, none := intstr.FromString("100%"), intstr.FromInt32(0)
	d.Spec.Strategy = appsv1.DeploymentStrategy{
		Type:          appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &all, MaxSurge: &none},
	}
}

// waitPods waits until the pods matching app=name in ns number want (each
// satisfying ok, when given), and returns them.
func waitPods(t *testing.T, ns, app string, want int, ok func(*corev1.Pod) bool) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, fmt.Sprintf("%d pods of %s", want, app), 60*time.Second, func(ctx context.Context) (bool, string) {
		var l corev1.PodList
		if err := env.c.List(ctx, &l, client.InNamespace(ns), client.MatchingLabels{"app": app}); err != nil {
			return false, err.Error()
		}
		n := 0
		for i := range l.Items {
			if l.Items[i].DeletionTimestamp == nil && (ok == nil || ok(&l.Items[i])) {
				n++
			}
		}
		pods = l.Items
		return n == want && len(l.Items) == want, fmt.Sprintf("%d pods, %d as wanted", len(l.Items), n)
	})
	return pods
}

// hasFinalizer reports whether gracekeeper put the termination-record
// finalizer (and its label) on p.
func hasFinalizer(p *corev1.Pod) bool {
	return slices.Contains(p.Finalizers, string(v1alpha1.TerminationRecordFinalizer)) && p.Labels[policies.LabelFinalize] == "true"
}

// replicaSets lists the ReplicaSets in ns owned by Deployment name.
func replicaSets(ctx context.Context, ns, name string) ([]appsv1.ReplicaSet, error) {
	var l appsv1.ReplicaSetList
	if err := env.c.List(ctx, &l, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var out []appsv1.ReplicaSet
	for _, rs := range l.Items {
		for _, o := range rs.OwnerReferences {
			if o.Kind == "Deployment" && o.Name == name {
				out = append(out, rs)
			}
		}
	}
	return out, nil
}

// recentEvents describes the Warning events in ns: what a controller says
// when its writes are refused.
func recentEvents(ns string) string {
	var l corev1.EventList
	if err := env.c.List(context.Background(), &l, client.InNamespace(ns)); err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range l.Items {
		if e.Type == corev1.EventTypeWarning {
			fmt.Fprintf(&b, "\n  %s %s/%s %s: %.300s", e.Source.Component, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	return b.String()
}
