package policies

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

func sleepPolicy(name string, sel *metav1.LabelSelector, seconds int64) v1alpha1.LifecyclePolicy {
	return v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.LifecyclePolicySpec{
		Match:   v1alpha1.Match{PodSelector: sel},
		PreStop: &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: seconds}}},
	}}
}

func webPod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop", Labels: map[string]string{"app": "dup"}},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](30), Containers: []corev1.Container{{Name: "web"}}}}
}

// TestDuplicateInSelectsOnce: a policy whose In list repeats the pod's value
// is selected once: one name in gracekeeper.dev/policies, findings once.
func TestDuplicateInSelectsOnce(t *testing.T) {
	p := sleepPolicy("dup", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"dup", "dup", "other", "dup"}}}}, 40)
	s, _ := NewSet(Config{}, []v1alpha1.LifecyclePolicy{p})
	d := s.Review(webPod(), Namespace{Name: "shop"})
	if len(d.Policies) != 1 || d.Pod.Annotations[AnnotationPolicies] != "dup" {
		t.Errorf("policies %v, annotation %q; want dup once", d.Policies, d.Pod.Annotations[AnnotationPolicies])
	}
	if len(d.Findings) != 1 {
		t.Errorf("findings %v, want the skipped hook once", d.Findings)
	}
}

// TestNegativeTemplateGrace: a template's negative grace period is judged as
// the 1 its pods get (SetDefaults_Pod), not as -1.
func TestNegativeTemplateGrace(t *testing.T) {
	s, _ := NewSet(Config{}, []v1alpha1.LifecyclePolicy{sleepPolicy("one", nil, 1)})
	pod := webPod()
	pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](-1)
	d := s.Review(pod, Namespace{Name: "shop"})
	if d.Denied() || len(d.Findings) != 0 {
		t.Fatalf("findings %v: a 1s sleep fits the grace period of 1 the pod will have", d.Findings)
	}
	if c := d.Pod.Spec.Containers[0]; c.Lifecycle == nil || c.Lifecycle.PreStop.Sleep.Seconds != 1 {
		t.Errorf("sleep 1 not injected: %+v", c.Lifecycle)
	}
	s, _ = NewSet(Config{}, []v1alpha1.LifecyclePolicy{sleepPolicy("two", nil, 2)})
	d = s.Review(pod, Namespace{Name: "shop"})
	if len(d.Findings) != 1 || d.Findings[0].Reason != ReasonHookSkipped || !strings.Contains(d.Findings[0].Message, "(1s)") {
		t.Errorf("findings %v, want the 2s sleep skipped against a grace period of 1s", d.Findings)
	}
}

// TestMirrorPodsLeftAlone: a mirror pod is neither mutated nor validated;
// validation (and so check) reports it with an Audit finding.
func TestMirrorPodsLeftAlone(t *testing.T) {
	s, _ := NewSet(Config{}, []v1alpha1.LifecyclePolicy{sleepPolicy("deny", nil, 40)})
	pod := webPod()
	pod.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "abc"}
	if m := s.Mutate(pod, Namespace{Name: "shop"}); m.Changed || len(m.Findings) != 0 {
		t.Errorf("mutated: %+v", m)
	}
	d := s.Review(pod, Namespace{Name: "shop"})
	if d.Changed || d.Denied() || len(d.Findings) != 1 || d.Findings[0].Reason != ReasonMirrorPod || d.Findings[0].Action != v1alpha1.ActionAudit {
		t.Errorf("review %+v, want unchanged with one MirrorPod audit finding", d)
	}
	// The same pod without the annotation is refused: the policy applies.
	if !s.Review(webPod(), Namespace{Name: "shop"}).Denied() && len(s.Review(webPod(), Namespace{Name: "shop"}).Findings) == 0 {
		t.Error("control: the policy does not apply to the plain pod")
	}
}
