package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/integration/install"
)

// TestExclusions: gracekeeper never touches kube-system, kube-node-lease, its
// own namespace or a namespace labelled gracekeeper.dev/ignore=true, even
// under a policy that selects every namespace; and it honours the opt-out
// annotation only where the policy allows it.
func TestExclusions(t *testing.T) {
	id := fmt.Sprintf("%d", time.Now().UnixNano())
	// Selects every namespace, but only pods labelled for this test, so that
	// no other test's pods are affected.
	createPolicy(t, "everywhere-"+id, v1alpha1.LifecyclePolicySpec{
		Match: v1alpha1.Match{
			NamespaceSelector: &metav1.LabelSelector{},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"exclusion-test": id}},
		},
		PreStop:         &v1alpha1.PreStopHook{HookAction: sleepHook(3)},
		ShutdownSeconds: ptr.To[int64](5),
	})
	labelled := func(ns, name string) *corev1.Pod {
		p := newPod(ns, name, 30, "app")
		p.Labels["exclusion-test"] = id
		return p
	}
	ignored, _ := newNamespace(t, map[string]string{install.IgnoreLabel: "true"})
	control, _ := newNamespace(t, nil)
	waitForMutation(t, labelled(control, "probe"), "policy in effect", func(p *corev1.Pod) bool { return preStopSleep(p, "app") == 3 })

	for name, ns := range map[string]string{
		"kube-system is left alone":                                      metav1.NamespaceSystem,
		"kube-node-lease is left alone":                                  corev1.NamespaceNodeLease,
		"the webhook's own namespace is left alone":                      ownNamespace,
		"a namespace labelled gracekeeper.dev/ignore=true is left alone": ignored,
	} {
		t.Run(name, func(t *testing.T) {
			p := labelled(ns, "excluded-"+id)
			if err := createPod(t, env.c, p); err != nil {
				t.Fatalf("create: %v", err)
			}
			got := &corev1.Pod{}
			if err := env.c.Get(ctxFor(t), client.ObjectKeyFromObject(p), got); err != nil {
				t.Fatal(err)
			}
			if !untouched(got) {
				t.Errorf("pod in %s was changed: %s", ns, summary(got))
			}
		})
	}

	t.Run("the same pod in an ordinary namespace is mutated", func(t *testing.T) {
		p := labelled(control, "control")
		if err := createPod(t, env.c, p); err != nil {
			t.Fatalf("create: %v", err)
		}
		if preStopSleep(p, "app") != 3 {
			t.Errorf("pod in %s not mutated: %s", control, summary(p))
		}
	})

	optOut := func(ns, name string) *corev1.Pod {
		p := newPod(ns, name, 30, "app")
		p.Annotations = map[string]string{policies.AnnotationSkip: "true"}
		return p
	}
	for name, tc := range map[string]struct {
		allow    bool
		wantSkip bool
	}{
		"an opted-out pod is left alone where the policy allows opting out": {allow: true, wantSkip: true},
		"an opted-out pod is mutated where the policy does not allow it":    {allow: false, wantSkip: false},
	} {
		t.Run(name, func(t *testing.T) {
			ns, scenario := newNamespace(t, nil)
			createPolicy(t, "optout-"+scenario, v1alpha1.LifecyclePolicySpec{
				Match:           forScenario(scenario),
				PreStop:         &v1alpha1.PreStopHook{HookAction: sleepHook(4)},
				ShutdownSeconds: ptr.To[int64](5),
				AllowOptOut:     tc.allow,
			})
			waitForMutation(t, newPod(ns, "probe", 30, "app"), "policy in effect", func(p *corev1.Pod) bool { return preStopSleep(p, "app") == 4 })
			p := optOut(ns, "opted-out")
			if err := createPod(t, env.c, p); err != nil {
				t.Fatalf("create: %v", err)
			}
			got := &corev1.Pod{}
			if err := env.c.Get(context.Background(), client.ObjectKeyFromObject(p), got); err != nil {
				t.Fatal(err)
			}
			if tc.wantSkip && !untouched(got) {
				t.Errorf("opted-out pod was changed: %s", summary(got))
			}
			if !tc.wantSkip && preStopSleep(got, "app") != 4 {
				t.Errorf("opt-out honoured though the policy does not allow it: %s", summary(got))
			}
		})
	}
}
