package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// TestMutation: a pod created in a matching namespace gets what the policy
// asks for, and the API server (which validates our patch like any other
// change) stores it.
func TestMutation(t *testing.T) {
	ns, scenario := newNamespace(t, nil)
	pol := createPolicy(t, "mutation-"+scenario, v1alpha1.LifecyclePolicySpec{
		Match:                  forScenario(scenario),
		PreStop:                &v1alpha1.PreStopHook{HookAction: sleepHook(5)},
		PostStart:              &v1alpha1.PostStartHook{HookAction: v1alpha1.HookAction{Exec: &v1alpha1.ExecAction{Command: []string{"/bin/true"}}}},
		ShutdownSeconds:        ptr.To[int64](40),
		TerminationGracePeriod: &v1alpha1.TerminationGracePeriod{Fit: true, MaxSeconds: ptr.To[int64](120)},
		Finalizers:             []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer},
	})
	waitForMutation(t, newPod(ns, "probe", 30, "app"), "policy in effect", func(p *corev1.Pod) bool { return preStopSleep(p, "app") == 5 })

	cases := map[string]struct {
		pod      *corev1.Pod
		wantTGPS int64
		// wantPreStop per container: the sleep seconds, or -1 for a container's own hook kept.
		wantPreStop map[string]int64
	}{
		"hooks, fitted grace period, finalizer and label on every container": {
			pod:         newPod(ns, "web", 30, "app", "metrics"),
			wantTGPS:    45, // preStop 5 + shutdown 40 > 30: fit raises it to exactly 45
			wantPreStop: map[string]int64{"app": 5, "metrics": 5},
		},
		"a longer grace period is never lowered": {
			pod:         newPod(ns, "long", 100, "app"),
			wantTGPS:    100,
			wantPreStop: map[string]int64{"app": 5},
		},
		"a container's own preStop is kept (overwrite false)": {
			pod: func() *corev1.Pod {
				p := newPod(ns, "own", 30, "app", "side")
				p.Spec.Containers[1].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 2}}}
				return p
			}(),
			wantTGPS:    45,
			wantPreStop: map[string]int64{"app": 5, "side": 2},
		},
	}
	t.Run("a deleted pod is released by the finalizer controller", func(t *testing.T) {
		p := newPod(ns, "deleted", 30, "app")
		if err := createPod(t, env.c, p); err != nil {
			t.Fatalf("create: %v", err)
		}
		if !slices.Contains(p.Finalizers, string(v1alpha1.TerminationRecordFinalizer)) {
			t.Fatalf("no finalizer to release: %s", summary(p))
		}
		// Never scheduled, so the API server sets deletionGracePeriodSeconds 0
		// (pkg/registry/core/pod/strategy.go CheckGracefulDelete); only our
		// finalizer holds it, until the controller records it and lets go.
		if err := env.c.Delete(ctxFor(t), p); err != nil {
			t.Fatal(err)
		}
		eventually(t, "pod gone", func(ctx context.Context) (bool, string) {
			cur := &corev1.Pod{}
			err := env.c.Get(ctx, client.ObjectKeyFromObject(p), cur)
			if apierrors.IsNotFound(err) {
				return true, ""
			}
			return false, fmt.Sprintf("get: %v, finalizers %v", err, cur.Finalizers)
		})
	})

	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if err := createPod(t, env.c, tc.pod); err != nil {
				t.Fatalf("create: %v", err)
			}
			// Read back what the API server stored, not what the create returned.
			got := &corev1.Pod{}
			if err := env.c.Get(ctxFor(t), client.ObjectKeyFromObject(tc.pod), got); err != nil {
				t.Fatal(err)
			}
			if g := ptr.Deref(got.Spec.TerminationGracePeriodSeconds, -1); g != tc.wantTGPS {
				t.Errorf("terminationGracePeriodSeconds = %d, want %d", g, tc.wantTGPS)
			}
			for c, want := range tc.wantPreStop {
				if g := preStopSleep(got, c); g != want {
					t.Errorf("container %s preStop sleep = %d, want %d", c, g, want)
				}
			}
			for _, c := range got.Spec.Containers {
				if c.Lifecycle == nil || c.Lifecycle.PostStart == nil || c.Lifecycle.PostStart.Exec == nil ||
					!slices.Equal(c.Lifecycle.PostStart.Exec.Command, []string{"/bin/true"}) {
					t.Errorf("container %s postStart = %+v, want exec /bin/true", c.Name, c.Lifecycle)
				}
			}
			if !slices.Contains(got.Finalizers, string(v1alpha1.TerminationRecordFinalizer)) {
				t.Errorf("finalizers = %v, want %s", got.Finalizers, v1alpha1.TerminationRecordFinalizer)
			}
			if got.Labels[policies.LabelFinalize] != "true" {
				t.Errorf("label %s = %q, want \"true\"", policies.LabelFinalize, got.Labels[policies.LabelFinalize])
			}
			if got.Annotations[policies.AnnotationPolicies] != pol.Name {
				t.Errorf("annotation %s = %q, want %q", policies.AnnotationPolicies, got.Annotations[policies.AnnotationPolicies], pol.Name)
			}
		})
	}
}
