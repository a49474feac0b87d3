package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/integration/install"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// workloadReviews scrapes how many reviews the API server has sent to the
// workload route so far.
func (g *gracekeeper) workloadReviews(t *testing.T) uint64 {
	t.Helper()
	return g.reviews(t)[webhook.RouteValidateWorkloads]
}

// TestControllerWritesPass: workloads created before a Deny policy that
// selects them keep being scaled, relabelled, finalized, re-owned, written
// status to and deleted, as the Deployment, ReplicaSet, HPA, garbage
// collector and namespace controllers do, through the real kube-apiserver
// with the chart's webhook configurations; those UPDATEs are not even sent
// to gracekeeper (matchConditions). A template change that still does not
// fit is refused, a fitting one passes.
func TestControllerWritesPass(t *testing.T) {
	ns, scenario := newNamespace(t, nil)
	// Created before the policy: they do not fit it (preStop 25 + shutdown 10 > 30).
	d := newDeployment(ns, "legacy", 30)
	d.Spec.Replicas = ptr.To[int32](2)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy-rs"},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To[int32](3), Selector: d.Spec.Selector.DeepCopy(),
			Template: *d.Spec.Template.DeepCopy(),
		},
	}
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy-cron"},
		Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{Spec: newPod(ns, "cron", 30, "app").Spec},
		}}},
	}
	cj.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owner"}}
	for _, o := range []client.Object{d, rs, cj, owner} {
		if err := env.c.Create(ctxFor(t), o); err != nil {
			t.Fatalf("create %T before the policy: %v", o, err)
		}
	}
	createPolicy(t, "controller-writes-"+scenario, v1alpha1.LifecyclePolicySpec{
		Match:           forScenario(scenario),
		PreStop:         &v1alpha1.PreStopHook{HookAction: sleepHook(25)},
		ShutdownSeconds: ptr.To[int64](10),
		Validation:      &v1alpha1.Validation{Action: v1alpha1.ActionDeny},
	})
	const wantMsg = `preStop 25s + shutdown 10s = 35s > terminationGracePeriodSeconds`
	// The policy is in effect for workloads: the same Deployment is refused now.
	eventually(t, "Deny policy refuses the legacy template", func(ctx context.Context) (bool, string) {
		c := newDeployment(ns, "legacy-copy", 30)
		err := env.c.Create(ctx, c, client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), wantMsg), "dry-run create: " + errString(err)
	})

	// update re-reads obj, applies f and updates it (retrying on conflict).
	update := func(t *testing.T, obj client.Object, f func()) error {
		t.Helper()
		var err error
		_ = wait.PollUntilContextTimeout(ctxFor(t), 50*time.Millisecond, propagation, true, func(ctx context.Context) (bool, error) {
			if err = env.c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				return false, nil
			}
			f()
			err = env.c.Update(ctx, obj)
			return err == nil || !apierrors.IsConflict(err), nil
		})
		return err
	}
	deploy := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: d.Name}}
	ownerRef := metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID}

	passes := map[string]struct {
		obj client.Object
		f   func()
	}{
		"Deployment replicas (kubectl edit, the Deployment's own scale)": {deploy, func() { deploy.Spec.Replicas = ptr.To[int32](5) }},
		"Deployment label":      {deploy, func() { deploy.Labels = map[string]string{"team": "a"} }},
		"Deployment annotation": {deploy, func() { deploy.Annotations = map[string]string{"note": "x"} }},
		"Deployment foregroundDeletion finalizer added (garbage collector)": {deploy, func() {
			deploy.Finalizers = append(deploy.Finalizers, metav1.FinalizerDeleteDependents)
		}},
		"Deployment foregroundDeletion finalizer removed": {deploy, func() { deploy.Finalizers = nil }},
		"Deployment ownerReferences added":                {deploy, func() { deploy.OwnerReferences = []metav1.OwnerReference{ownerRef} }},
		"Deployment ownerReferences removed (orphaning)":  {deploy, func() { deploy.OwnerReferences = nil }},
		"ReplicaSet replicas to 0 (the Deployment controller's scale-down)": {rs, func() {
			rs.Spec.Replicas = ptr.To[int32](0)
			rs.Annotations = map[string]string{"deployment.kubernetes.io/revision": "1"}
		}},
		"CronJob schedule and suspend": {cj, func() { cj.Spec.Schedule = "0 4 * * *"; cj.Spec.Suspend = ptr.To(true) }},
	}
	// Run in a fixed order (the finalizer removal follows its addition).
	order := []string{
		"Deployment replicas (kubectl edit, the Deployment's own scale)", "Deployment label", "Deployment annotation",
		"Deployment foregroundDeletion finalizer added (garbage collector)", "Deployment foregroundDeletion finalizer removed",
		"Deployment ownerReferences added", "Deployment ownerReferences removed (orphaning)",
		"ReplicaSet replicas to 0 (the Deployment controller's scale-down)", "CronJob schedule and suspend",
	}
	// The last dry run's sample may land just after its answer: read until stable.
	before := env.gk.workloadReviews(t)
	eventually(t, "workload review count stable", func(context.Context) (bool, string) {
		time.Sleep(200 * time.Millisecond)
		n := env.gk.workloadReviews(t)
		stable := n == before
		before = n
		return stable, "still counting"
	})
	for _, name := range order {
		tc := passes[name]
		t.Run("passes: "+name, func(t *testing.T) {
			if err := update(t, tc.obj, tc.f); err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
	t.Run("passes: scale subresource (kubectl scale, the HPA)", func(t *testing.T) {
		sc := &autoscalingv1.Scale{}
		if err := env.c.SubResource("scale").Get(ctxFor(t), deploy, sc); err != nil {
			t.Fatal(err)
		}
		sc.Spec.Replicas = 1
		if err := env.c.SubResource("scale").Update(ctxFor(t), deploy, client.WithSubResourceBody(sc)); err != nil {
			t.Errorf("refused: %v", err)
		}
	})
	t.Run("passes: status subresource", func(t *testing.T) {
		if err := env.c.Get(ctxFor(t), client.ObjectKeyFromObject(deploy), deploy); err != nil {
			t.Fatal(err)
		}
		deploy.Status.Replicas, deploy.Status.ObservedGeneration = 1, deploy.Generation
		if err := env.c.Status().Update(ctxFor(t), deploy); err != nil {
			t.Errorf("refused: %v", err)
		}
	})
	if after := env.gk.workloadReviews(t); after != before {
		t.Errorf("the API server sent %d workload reviews for writes that leave the template alone; matchConditions should keep them away", after-before)
	}

	t.Run("refused: a template change that still does not fit", func(t *testing.T) {
		err := update(t, deploy, func() { deploy.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](31) })
		if err == nil || !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("error %v, want our denial with %q", err, wantMsg)
		}
		err = update(t, cj, func() { cj.Spec.JobTemplate.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](32) })
		if err == nil || !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("CronJob job template: error %v, want our denial with %q", err, wantMsg)
		}
	})
	t.Run("passes: a template change that fits", func(t *testing.T) {
		if err := update(t, deploy, func() { deploy.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](35) }); err != nil {
			t.Errorf("refused: %v", err)
		}
	})
	t.Run("passes: any write to a workload being deleted", func(t *testing.T) {
		if err := update(t, rs, func() { rs.Finalizers = []string{"test.gracekeeper.dev/hold"} }); err != nil {
			t.Fatalf("add finalizer: %v", err)
		}
		if err := env.c.Delete(ctxFor(t), rs); err != nil {
			t.Fatal(err)
		}
		// Even a template change that does not fit: the object is going away.
		err := update(t, rs, func() {
			rs.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](31)
			rs.Finalizers = nil
		})
		if err != nil {
			t.Errorf("refused while deleting: %v", err)
		}
		eventually(t, "ReplicaSet gone", func(ctx context.Context) (bool, string) {
			err := env.c.Get(ctx, client.ObjectKeyFromObject(rs), &appsv1.ReplicaSet{})
			return apierrors.IsNotFound(err), errString(err)
		})
	})
}

// TestControllerWritesPassWithoutMatchConditions: an API server that sends
// every workload UPDATE (a configuration without the chart's
// matchConditions) still gets them allowed, by the server's own rule: only a
// changed pod template is judged.
func TestControllerWritesPassWithoutMatchConditions(t *testing.T) {
	// The chart's own webhooks also see this namespace, but their
	// matchConditions keep metadata-only UPDATEs from them: every such
	// UPDATE counted below reached gracekeeper through the unconditional copy.
	ns, scenario := newNamespace(t, nil)
	d := newDeployment(ns, "legacy", 30)
	if err := env.c.Create(ctxFor(t), d); err != nil {
		t.Fatal(err)
	}
	_, val, err := install.Webhooks(install.DefaultOptions(), env.gk.BaseURL, env.caBundle)
	if err != nil {
		t.Fatal(err)
	}
	var hook admissionregistrationv1.ValidatingWebhook
	for _, w := range val.Webhooks {
		if w.Name == "validate-workloads.gracekeeper.dev" {
			hook = w
		}
	}
	hook.Name = "validate-workloads-unconditional.gracekeeper.dev"
	hook.MatchConditions = nil
	hook.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{scenarioLabel: scenario}}
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "gracekeeper-unconditional-" + scenario},
		Webhooks:   []admissionregistrationv1.ValidatingWebhook{hook},
	}
	if err := env.c.Create(ctxFor(t), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.c.Delete(context.Background(), cfg) })
	createPolicy(t, "unconditional-"+scenario, v1alpha1.LifecyclePolicySpec{
		Match:           forScenario(scenario),
		PreStop:         &v1alpha1.PreStopHook{HookAction: sleepHook(25)},
		ShutdownSeconds: ptr.To[int64](10),
		Validation:      &v1alpha1.Validation{Action: v1alpha1.ActionDeny},
	})
	// In effect once a metadata-only dry-run UPDATE reaches gracekeeper (the
	// chart's webhooks never send those) and is allowed.
	eventually(t, "unconditional webhook in effect", func(ctx context.Context) (bool, string) {
		n := env.gk.workloadReviews(t)
		cur := &appsv1.Deployment{}
		if err := env.c.Get(ctx, client.ObjectKeyFromObject(d), cur); err != nil {
			return false, err.Error()
		}
		cur.Annotations = map[string]string{"probe": time.Now().String()}
		if err := env.c.Update(ctx, cur, client.DryRunAll); err != nil {
			return false, err.Error()
		}
		return env.gk.workloadReviews(t) > n, "no workload review counted"
	})
	before := env.gk.workloadReviews(t)
	for name, f := range map[string]func(d *appsv1.Deployment){
		"replicas":           func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](4) },
		"label":              func(d *appsv1.Deployment) { d.Labels = map[string]string{"team": "b"} },
		"foregroundDeletion": func(d *appsv1.Deployment) { d.Finalizers = []string{metav1.FinalizerDeleteDependents} },
	} {
		t.Run("passes: "+name, func(t *testing.T) {
			err := wait.PollUntilContextTimeout(ctxFor(t), 50*time.Millisecond, propagation, true, func(ctx context.Context) (bool, error) {
				cur := &appsv1.Deployment{}
				if err := env.c.Get(ctx, client.ObjectKeyFromObject(d), cur); err != nil {
					return false, err
				}
				f(cur)
				err := env.c.Update(ctx, cur)
				if apierrors.IsConflict(err) {
					return false, nil
				}
				return true, err
			})
			if err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
	if after := env.gk.workloadReviews(t); after < before+3 {
		t.Errorf("workload reviews went from %d to %d: the unconditional webhook should have been sent each UPDATE", before, after)
	}
	// Let the finalizer go so the namespace's objects can be cleaned up.
	cur := &appsv1.Deployment{}
	if err := env.c.Get(ctxFor(t), client.ObjectKeyFromObject(d), cur); err == nil {
		cur.Finalizers = nil
		_ = env.c.Update(ctxFor(t), cur)
	}
}
