package policies

import (
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// FuzzSeconds: the duration parser accepts exactly the whole numbers
// 0..86400 and nothing else.
func FuzzSeconds(f *testing.F) {
	for _, s := range []string{"0", "5", "86400", "86401", "-1", "+5", "05", " 5", "5s", "1e3", "0x10", "9223372036854775808", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := seconds(s)
		if !ok {
			if n != 0 {
				t.Fatalf("seconds(%q) = %d, false", s, n)
			}
			return
		}
		if n < 0 || n > maxSeconds {
			t.Fatalf("seconds(%q) = %d: out of range", s, n)
		}
		if back, err := strconv.ParseInt(s, 10, 64); err != nil || back != n {
			t.Fatalf("seconds(%q) = %d, but it does not parse back: %v", s, n, err)
		}
	})
}

// FuzzAnnotations: whatever a pod author writes in gracekeeper.dev/*
// annotations (and in the exec preStop that the duration annotations are
// about), under a Deny policy that allows neither opting out nor lowering:
// a pod denied without the annotations is still denied with them, the
// mutation is idempotent, and nothing panics.
func FuzzAnnotations(f *testing.F) {
	f.Add("0", "0", "true", "/drain", int64(10))
	f.Add("", "99999", "false", "sleep 3", int64(30))
	f.Add("86400", "-1", "yes", "", int64(0))
	f.Add("5", "3", "", "sh -c sleep 5", int64(25))
	set := mustSet(f,
		pol("strict", func(s *v1alpha1.LifecyclePolicySpec) {
			s.ShutdownSeconds = i64(20)
			s.PreStop = &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Exec: &v1alpha1.ExecAction{Command: []string{"/drain"}, BudgetSeconds: i64(15)}}}
			s.Validation = &v1alpha1.Validation{Action: v1alpha1.ActionDeny}
		}),
		pol("fit", func(s *v1alpha1.LifecyclePolicySpec) {
			s.Priority = -1
			s.TerminationGracePeriod = &v1alpha1.TerminationGracePeriod{Fit: true, MaxSeconds: i64(40)}
		}),
	)
	f.Fuzz(func(t *testing.T, shutdown, prestop, skip, ownHook string, grace int64) {
		base := podWith(nil, "app")
		base.Spec.TerminationGracePeriodSeconds = &grace
		if ownHook != "" {
			base.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", ownHook}}}}
		}
		annotated := base.DeepCopy()
		annotated.Annotations = map[string]string{}
		for k, v := range map[string]string{AnnotationShutdownSeconds: shutdown, AnnotationPreStopSeconds: prestop, AnnotationSkip: skip} {
			if v != "" {
				annotated.Annotations[k] = v
			}
		}
		plain := set.Review(base, Namespace{Name: "shop"})
		d := set.Review(annotated, Namespace{Name: "shop"})
		if plain.Denied() && !d.Denied() {
			t.Fatalf("annotations %v turned a denied pod into an allowed one: %+v", annotated.Annotations, d.Findings)
		}
		if again := set.Mutate(d.Pod, Namespace{Name: "shop"}); again.Changed {
			t.Fatalf("second mutation changed the pod (annotations %v)", annotated.Annotations)
		}
	})
}
