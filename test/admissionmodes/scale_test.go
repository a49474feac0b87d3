package admissionmodes

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gracekeeper/gracekeeper/admissionpolicy"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// TestCELCostAtScale: twenty overlapping policies that use every merged
// field (priority, container globs, sidecars, postStart, fit, finalizers)
// compile to objects the API server accepts (it refuses an expression
// whose estimated cost is over its limit when the object is written), and
// a pod of 200 containers and 10 native sidecars, which makes every
// per-container pass long, gets the engine's answer rather than a
// runtime cost-limit error.
func TestCELCostAtScale(t *testing.T) {
	needCluster(t)
	const nPolicies, nContainers, nSidecars = 20, 200, 10
	var pols []v1alpha1.LifecyclePolicy
	for i := range nPolicies {
		spec := v1alpha1.LifecyclePolicySpec{
			Priority:        int32(i),
			Match:           v1alpha1.Match{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "big"}}, IncludeSidecars: i%2 == 0},
			PreStop:         &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: int64(1 + i%5)}}},
			ShutdownSeconds: ptr(int64(5 + i)),
			Validation:      &v1alpha1.Validation{Action: v1alpha1.ActionWarn},
		}
		if i%3 == 0 {
			spec.Match.Containers = []string{fmt.Sprintf("c%d*", i%10)}
		}
		if i%4 == 0 {
			spec.PostStart = &v1alpha1.PostStartHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: 1}}}
		}
		if i%5 == 0 {
			spec.TerminationGracePeriod = &v1alpha1.TerminationGracePeriod{Fit: true, MaxSeconds: ptr(int64(120))}
			spec.Finalizers = []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer}
		}
		pols = append(pols, v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("scale-%02d", i)}, Spec: spec})
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "scale", Labels: map[string]string{"app": "big"}},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr(int64(30))}}
	for i := range nContainers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "app"})
	}
	always := corev1.ContainerRestartPolicyAlways
	for i := range nSidecars {
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: fmt.Sprintf("s%d", i), Image: "proxy", RestartPolicy: &always})
	}
	gc := goldenCase{pod: pod, pols: pols,
		ns: policies.Namespace{Name: "scale", Labels: map[string]string{corev1.LabelMetadataName: "scale"}}}
	runGolden(t, gc, admissionpolicy.ModeAPIServer)
}
