package integration

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// TestPolicyLifecycle: gracekeeper follows LifecyclePolicy objects through its
// informer cache, so a new, an edited and a deleted policy take effect while
// the same server keeps running. The subtests are steps of one story.
func TestPolicyLifecycle(t *testing.T) {
	ns, scenario := newNamespace(t, nil)
	probe := newPod(ns, "probe", 60, "app")
	name := "lifecycle-" + scenario

	t.Run("a new policy takes effect", func(t *testing.T) {
		got, err := dryRunPod(ctxFor(t), probe)
		if err != nil {
			t.Fatal(err)
		}
		if !untouched(got) {
			t.Fatalf("pod mutated before any policy exists: %s", summary(got))
		}
		pol := &v1alpha1.LifecyclePolicy{Spec: v1alpha1.LifecyclePolicySpec{
			Match:           forScenario(scenario),
			PreStop:         &v1alpha1.PreStopHook{HookAction: sleepHook(5)},
			ShutdownSeconds: ptr.To[int64](10),
		}}
		pol.Name = name
		if err := env.c.Create(ctxFor(t), pol); err != nil {
			t.Fatal(err)
		}
		waitForMutation(t, probe, "new policy applied", func(p *corev1.Pod) bool { return preStopSleep(p, "app") == 5 })
	})

	t.Run("an edited policy takes effect", func(t *testing.T) {
		cur := &v1alpha1.LifecyclePolicy{}
		if err := env.c.Get(ctxFor(t), client.ObjectKey{Name: name}, cur); err != nil {
			t.Fatalf("the previous step's policy: %v", err)
		}
		cur.Spec.PreStop = &v1alpha1.PreStopHook{HookAction: sleepHook(9)}
		if err := env.c.Update(ctxFor(t), cur); err != nil {
			t.Fatal(err)
		}
		waitForMutation(t, probe, "edited policy applied", func(p *corev1.Pod) bool { return preStopSleep(p, "app") == 9 })
	})

	t.Run("a deleted policy stops applying", func(t *testing.T) {
		cur := &v1alpha1.LifecyclePolicy{}
		cur.Name = name
		if err := env.c.Delete(ctxFor(t), cur); err != nil {
			t.Fatalf("delete the previous steps' policy: %v", err)
		}
		waitForMutation(t, probe, "deleted policy gone", untouched)
	})
}
