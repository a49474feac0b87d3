package admissionmodes

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gracekeeper/gracekeeper/admissionpolicy"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// runReconciler runs the Reconciler as serve wires it (admissionpolicy.Setup
// on a manager, leader-elected) in the given mode; the returned func stops
// it and waits. serve itself runs it in test/chart (as the chart's
// ServiceAccount) and test/demo; here the golden test's webhook-mode
// app.Run already holds the controller's name in this process, which
// controller-runtime checks unless told not to.
func runReconciler(t *testing.T, mode admissionpolicy.Mode) func() {
	t.Helper()
	mgr, err := manager.New(clusterConfig, manager.Options{Scheme: cluster.Scheme(), Logger: logr.Discard(),
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		LeaderElection: true, LeaderElectionID: "admissionmodes-test", LeaderElectionNamespace: "default", LeaderElectionReleaseOnCancel: true,
		Controller: config.Controller{SkipNameValidation: ptr(true)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := admissionpolicy.Setup(mgr, &admissionpolicy.Reconciler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Mode: mode,
		Config: admissionpolicy.Config{ExcludedNamespaces: []string{"kube-system"}, IgnoreLabel: "gracekeeper.dev/ignore"}, Log: logr.Discard()}); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stopped := false
	halt := func() {
		if stopped {
			return
		}
		stopped = true
		stop()
		if err := <-done; err != nil {
			t.Errorf("reconciler (%s mode): %v", mode, err)
		}
	}
	t.Cleanup(halt)
	return halt
}

func compiledKinds() []client.Object {
	return []client.Object{&admissionregistrationv1.ValidatingAdmissionPolicy{}, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{},
		&admissionregistrationv1.MutatingAdmissionPolicy{}, &admissionregistrationv1.MutatingAdmissionPolicyBinding{}}
}

// eventually polls cond for up to 30 s.
func eventually(t *testing.T, what string, cond func(ctx context.Context) bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(ctxT(t), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return cond(ctx), nil
	}); err != nil {
		t.Fatalf("after 30s: %s", what)
	}
}

// TestReconcilerKeepsObjectsInStep runs the reconciler in apiserver mode
// and then in webhook mode: an orphan it labelled is removed at start; a new policy
// gets its four objects, owned by it; a policy change reaches them; a
// deleted policy's objects go (the reconciler prunes them; the garbage
// collector, absent here, would too through the ownerReference); and a
// start in webhook mode removes every compiled object left behind.
func TestReconcilerKeepsObjectsInStep(t *testing.T) {
	needCluster(t)
	ctx := ctxT(t)
	orphan := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "gracekeeper-gone", Labels: map[string]string{admissionpolicy.LabelCompiled: "true"}},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: "gracekeeper-gone",
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}}}
	if err := cluster.Create(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	stop := runReconciler(t, admissionpolicy.ModeAPIServer)
	eventually(t, "the orphan binding was not removed", func(ctx context.Context) bool {
		return apierrors.IsNotFound(cluster.Get(ctx, client.ObjectKeyFromObject(orphan), orphan))
	})

	p := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "reconciled"}, Spec: v1alpha1.LifecyclePolicySpec{
		Match:           v1alpha1.Match{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "reconciled"}}},
		PreStop:         &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: 5}}},
		ShutdownSeconds: ptr(int64(11)),
	}}
	if err := cluster.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Delete(context.Background(), p) })
	name := admissionpolicy.Name(p.Name)
	for _, o := range compiledKinds() {
		eventually(t, "no "+kindOf(o)+" for the new policy", func(ctx context.Context) bool {
			return cluster.Get(ctx, client.ObjectKey{Name: name}, o) == nil
		})
		if refs := o.GetOwnerReferences(); len(refs) != 1 || refs[0].UID != p.UID || refs[0].Kind != "LifecyclePolicy" || refs[0].Controller == nil || !*refs[0].Controller {
			t.Errorf("%s not owned by the policy: %+v", kindOf(o), refs)
		}
	}
	shutdownVar := func(ctx context.Context) string {
		var vap admissionregistrationv1.ValidatingAdmissionPolicy
		if err := cluster.Get(ctx, client.ObjectKey{Name: name}, &vap); err != nil {
			return ""
		}
		for _, v := range vap.Spec.Variables {
			if v.Name == "polShutdown" {
				return v.Expression
			}
		}
		return ""
	}
	if got := shutdownVar(ctx); !strings.Contains(got, "? 11 :") {
		t.Fatalf("polShutdown %q does not carry shutdownSeconds 11", got)
	}
	if err := cluster.Patch(ctx, p, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"shutdownSeconds":23}}`))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the policy change did not reach its ValidatingAdmissionPolicy", func(ctx context.Context) bool {
		return strings.Contains(shutdownVar(ctx), "? 23 :")
	})

	if err := cluster.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	for _, o := range compiledKinds() {
		eventually(t, kindOf(o)+" of the deleted policy still there", func(ctx context.Context) bool {
			return apierrors.IsNotFound(cluster.Get(ctx, client.ObjectKey{Name: name}, o))
		})
	}

	// Objects compiled in apiserver mode are removed by a webhook-mode start.
	q := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "switched"}, Spec: v1alpha1.LifecyclePolicySpec{
		Match:           v1alpha1.Match{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "switched"}}},
		ShutdownSeconds: ptr(int64(3)),
	}}
	if err := cluster.Create(ctx, q); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Delete(context.Background(), q) })
	eventually(t, "no objects for the second policy", func(ctx context.Context) bool {
		return cluster.Get(ctx, client.ObjectKey{Name: admissionpolicy.Name(q.Name)}, &admissionregistrationv1.MutatingAdmissionPolicy{}) == nil
	})
	stop()
	runReconciler(t, admissionpolicy.ModeWebhook)
	for _, o := range compiledKinds() {
		eventually(t, kindOf(o)+" left behind in webhook mode", func(ctx context.Context) bool {
			return apierrors.IsNotFound(cluster.Get(ctx, client.ObjectKey{Name: admissionpolicy.Name(q.Name)}, o))
		})
	}
}

func kindOf(o client.Object) string { return strings.TrimPrefix(fmt.Sprintf("%T", o), "*v1.") }

// TestCompiledObjectsAreStoredAsCompiled: the API server stores each
// compiled object with a spec equal to what Compile made (its defaults are
// written out), so the reconciler, which updates what differs, writes
// nothing when nothing changed.
func TestCompiledObjectsAreStoredAsCompiled(t *testing.T) {
	needCluster(t)
	p := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "stored"}, Spec: v1alpha1.LifecyclePolicySpec{ShutdownSeconds: ptr(int64(3)),
		Match: v1alpha1.Match{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "stored"}}}}}
	createAll(t, p)
	o, err := admissionpolicy.Compile(p, nil, admissionpolicy.Config{Mutate: true, ExcludedNamespaces: []string{"kube-system"}, IgnoreLabel: "gracekeeper.dev/ignore"})
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{o.VAP, o.VAPBinding, o.MAP, o.MAPBinding} {
		compiled := obj.DeepCopyObject().(client.Object)
		createAll(t, obj)
		stored := compiled.DeepCopyObject().(client.Object)
		if err := cluster.Get(ctxT(t), client.ObjectKeyFromObject(compiled), stored); err != nil {
			t.Fatal(err)
		}
		if !admissionpolicy.SameSpec(stored, compiled) {
			t.Errorf("%s is stored with another spec than compiled (an API server default not written out?)", kindOf(compiled))
		}
	}
}
