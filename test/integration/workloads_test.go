package integration

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

func newDeployment(ns, name string, tgps int64) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       newPod(ns, name, tgps, "app").Spec,
			},
		},
	}
}

// TestWorkloads: a Deployment whose pods would be denied is refused when it is
// created and when it is updated into that state, so `kubectl apply` fails
// early rather than leaving a ReplicaSet that can never create its pods.
func TestWorkloads(t *testing.T) {
	ns, scenario := newNamespace(t, nil)
	createPolicy(t, "workloads-"+scenario, v1alpha1.LifecyclePolicySpec{
		Match:           forScenario(scenario),
		PreStop:         &v1alpha1.PreStopHook{HookAction: sleepHook(25)},
		ShutdownSeconds: ptr.To[int64](10),
		Validation:      &v1alpha1.Validation{Action: v1alpha1.ActionDeny},
	})
	waitForMutation(t, newPod(ns, "probe", 60, "app"), "policy in effect", func(p *corev1.Pod) bool { return preStopSleep(p, "app") == 25 })
	const wantMsg = `container "app": preStop 25s + shutdown 10s = 35s > terminationGracePeriodSeconds 30s`

	t.Run("a Deployment that would be denied is refused at create", func(t *testing.T) {
		err := env.c.Create(ctxFor(t), newDeployment(ns, "tight", 30))
		if err == nil {
			t.Fatal("Deployment admitted, want refused")
		}
		if !strings.Contains(err.Error(), wantMsg) || !strings.Contains(err.Error(), `admission webhook "validate-workloads.gracekeeper.dev" denied`) {
			t.Errorf("error %q is not our workload webhook's denial with %q", err, wantMsg)
		}
		if err := env.c.Get(ctxFor(t), client.ObjectKey{Namespace: ns, Name: "tight"}, &appsv1.Deployment{}); err == nil {
			t.Error("refused Deployment was stored")
		}
	})

	t.Run("a CronJob whose jobs' pods would be denied is refused at create", func(t *testing.T) {
		cj := &batchv1.CronJob{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly"},
			Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				Template: corev1.PodTemplateSpec{Spec: newPod(ns, "nightly", 30, "app").Spec},
			}}},
		}
		cj.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		err := env.c.Create(ctxFor(t), cj)
		if err == nil {
			t.Fatal("CronJob admitted, want refused")
		}
		if !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("error %q does not contain %q", err, wantMsg)
		}
	})

	t.Run("a fitting Deployment is accepted, and refused when updated to not fit", func(t *testing.T) {
		d := newDeployment(ns, "roomy", 60)
		if err := env.c.Create(ctxFor(t), d); err != nil {
			t.Fatalf("fitting Deployment refused: %v", err)
		}
		d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
		err := env.c.Update(ctxFor(t), d)
		if err == nil {
			t.Fatal("update admitted, want refused")
		}
		if !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("error %q does not contain %q", err, wantMsg)
		}
		got := &appsv1.Deployment{}
		if err := env.c.Get(ctxFor(t), client.ObjectKeyFromObject(d), got); err != nil {
			t.Fatal(err)
		}
		if g := ptr.Deref(got.Spec.Template.Spec.TerminationGracePeriodSeconds, -1); g != 60 {
			t.Errorf("stored template grace period = %d after a refused update, want 60", g)
		}
		// An update that keeps it fitting goes through.
		got.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](35)
		if err := env.c.Update(ctxFor(t), got); err != nil {
			t.Errorf("fitting update refused: %v", err)
		}
	})
}
