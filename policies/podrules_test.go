package policies

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

func rulesPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](30),
			InitContainers: []corev1.Container{{Name: "init"}, {Name: "side", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}},
			Containers:     []corev1.Container{{Name: "web"}}},
	}
}

// TestTouchedErrors: each API server rule on a field mutation writes
// refuses a mutated pod that breaks it, naming the field; what the input
// already had is not ours to report.
func TestTouchedErrors(t *testing.T) {
	sleep := func(s int64) *corev1.Lifecycle {
		return &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: s}}}
	}
	for name, tc := range map[string]struct {
		edit  func(before, after *corev1.Pod)
		field string // "" = valid
	}{
		"valid hook":              {func(_, a *corev1.Pod) { a.Spec.Containers[0].Lifecycle = sleep(30) }, ""},
		"sleep over grace":        {func(_, a *corev1.Pod) { a.Spec.Containers[0].Lifecycle = sleep(31) }, "spec.containers[0].lifecycle.preStop.sleep"},
		"negative sleep":          {func(_, a *corev1.Pod) { a.Spec.Containers[0].Lifecycle = sleep(-1) }, "spec.containers[0].lifecycle.preStop.sleep"},
		"lifecycle on plain init": {func(_, a *corev1.Pod) { a.Spec.InitContainers[0].Lifecycle = sleep(1) }, "spec.initContainers[0].lifecycle"},
		"lifecycle on sidecar":    {func(_, a *corev1.Pod) { a.Spec.InitContainers[1].Lifecycle = sleep(1) }, ""},
		"port 0": {func(_, a *corev1.Pod) {
			a.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(0), Scheme: "HTTP"}}}
		}, "spec.containers[0].lifecycle.preStop.httpGet.port"},
		"header with space": {func(_, a *corev1.Pod) {
			a.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80), Scheme: "HTTP",
				HTTPHeaders: []corev1.HTTPHeader{{Name: "a b"}}}}}
		}, "spec.containers[0].lifecycle.postStart.httpGet.httpHeaders[0].name"},
		"no path": {func(_, a *corev1.Pod) {
			a.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80), Scheme: "HTTP"}}}
		}, "spec.containers[0].lifecycle.preStop.httpGet.path"},
		"empty handler": {func(_, a *corev1.Pod) {
			a.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{}}
		}, "spec.containers[0].lifecycle.preStop"},
		"negative grace": {func(_, a *corev1.Pod) { a.Spec.TerminationGracePeriodSeconds = ptr.To[int64](-2) }, "spec.terminationGracePeriodSeconds"},
		"grace under own sleep": {func(b, a *corev1.Pod) {
			b.Spec.Containers[0].Lifecycle, a.Spec.Containers[0].Lifecycle = sleep(20), sleep(20)
			a.Spec.TerminationGracePeriodSeconds = ptr.To[int64](10)
		}, "spec.containers[0].lifecycle.preStop.sleep"},
		"finalizer domain > 253": {func(_, a *corev1.Pod) {
			a.Finalizers = []string{strings.Repeat("a.", 127) + "com/x"}
		}, "metadata.finalizers"},
		"bad label value": {func(_, a *corev1.Pod) { a.Labels["gracekeeper.dev/finalize"] = "not ok!" }, "metadata.labels"},
		"annotations too large": {func(_, a *corev1.Pod) {
			a.Annotations = map[string]string{"gracekeeper.dev/cleanup": strings.Repeat("x", 256*1024)}
		}, "metadata.annotations"},
		"input's own bad label is not ours": {func(b, a *corev1.Pod) {
			b.Labels["bad key!"], a.Labels["bad key!"] = "x", "x"
			a.Labels["gracekeeper.dev/finalize"] = "true"
		}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			before := rulesPod()
			after := before.DeepCopy()
			tc.edit(before, after)
			errs := touchedErrors(before, after)
			if tc.field == "" {
				if len(errs) != 0 {
					t.Errorf("errors %v, want none", errs)
				}
				return
			}
			if len(errs) == 0 || !strings.HasPrefix(errs.ToAggregate().Error(), tc.field+":") && !strings.Contains(errs.ToAggregate().Error(), tc.field+":") {
				t.Errorf("errors %v, want one on %s", errs, tc.field)
			}
		})
	}
}

// TestUnsafeMutationAdmitsUnchanged: a policy that got past validation (built
// in Go, never applied) but would make the pod invalid leaves the pod as it
// came, with a Warn finding that names the field.
func TestUnsafeMutationAdmitsUnchanged(t *testing.T) {
	p := v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "huge"}, Spec: v1alpha1.LifecyclePolicySpec{
		Cleanup: &v1alpha1.Cleanup{Finalizer: "example.com/release", URL: "https://" + strings.Repeat("x", 300*1024)},
	}}
	s, fs := NewSet(Config{}, []v1alpha1.LifecyclePolicy{p})
	if len(fs) != 0 {
		t.Fatal(fs)
	}
	pod := rulesPod()
	d := s.Mutate(pod, Namespace{Name: "shop"})
	if d.Changed || d.Pod != pod {
		t.Fatal("the pod was changed")
	}
	if len(d.Findings) != 1 || d.Findings[0].Reason != ReasonUnsafeMutation || d.Findings[0].Action != v1alpha1.ActionWarn ||
		!strings.Contains(d.Findings[0].Message, "metadata.annotations") {
		t.Errorf("findings %+v, want one UnsafeMutation warning naming metadata.annotations", d.Findings)
	}
}
