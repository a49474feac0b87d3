package policies

import (
	"bufio"
	"bytes"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

func i64(n int64) *int64 { return &n }

// pol builds a policy; edit tweaks its spec.
func pol(name string, edit func(*v1alpha1.LifecyclePolicySpec)) v1alpha1.LifecyclePolicy {
	p := v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if edit != nil {
		edit(&p.Spec)
	}
	return p
}

func sleepPreStop(n int64) *v1alpha1.PreStopHook {
	return &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: n}}}
}

// podWith builds a pod in namespace "shop" with the named regular containers.
func podWith(labels map[string]string, names ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop", Labels: labels}}
	for _, n := range names {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n, Image: "img"})
	}
	return p
}

func sidecar(name string) corev1.Container {
	always := corev1.ContainerRestartPolicyAlways
	return corev1.Container{Name: name, Image: "img", RestartPolicy: &always}
}

func mustSet(t interface{ Fatalf(string, ...any) }, pols ...v1alpha1.LifecyclePolicy) *Set {
	s, fs := NewSet(Config{}, pols)
	if len(fs) > 0 {
		t.Fatalf("NewSet findings: %+v", fs)
	}
	return s
}

func reasons(fs []Finding) []Reason {
	out := []Reason{}
	for _, f := range fs {
		out = append(out, f.Reason)
	}
	return out
}

func equalPods(a, b *corev1.Pod) bool { return equality.Semantic.DeepEqual(a, b) }

func equalHandlers(a, b *corev1.LifecycleHandler) bool { return equality.Semantic.DeepEqual(a, b) }
