package policies

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// benchSet has n policies, each selecting app=svc-NNNN; only svc-0000
// matches benchPod. Every fourth one also has a namespace selector, as real
// clusters mix both.
func benchSet(tb testing.TB, n int) *Set {
	tb.Helper()
	pols := make([]v1alpha1.LifecyclePolicy, 0, n)
	for i := range n {
		name := fmt.Sprintf("svc-%04d", i)
		pols = append(pols, pol(name, func(s *v1alpha1.LifecyclePolicySpec) {
			s.Priority = int32(i % 7)
			s.Match.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
			if i%4 == 3 {
				s.Match.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
			}
			s.Match.ExcludeContainers = []string{"istio-proxy"}
			s.PreStop = sleepPreStop(5)
			s.ShutdownSeconds = i64(10)
			s.TerminationGracePeriod = &v1alpha1.TerminationGracePeriod{Fit: true, MaxSeconds: i64(120)}
			s.Finalizers = []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer}
		}))
	}
	s, fs := NewSet(Config{ExcludedNamespaces: []string{"kube-system"}}, pols)
	if len(fs) > 0 {
		tb.Fatalf("NewSet: %+v", fs)
	}
	return s
}

func benchPod() *corev1.Pod {
	p := podWith(map[string]string{"app": "svc-0000", "pod-template-hash": "5d8f7c", "version": "v2"}, "web", "istio-proxy")
	p.Spec.InitContainers = []corev1.Container{sidecar("log-shipper")}
	return p
}

func benchNS() Namespace {
	return Namespace{Name: "shop", Labels: map[string]string{"env": "prod", corev1.LabelMetadataName: "shop"}}
}

func benchMutate(b *testing.B, n int) {
	s, pod, ns := benchSet(b, n), benchPod(), benchNS()
	b.ReportAllocs()
	for b.Loop() {
		if d := s.Mutate(pod, ns); !d.Changed {
			b.Fatal("expected a change")
		}
	}
}

// BenchmarkMutate compares 10 and 1,000 policies of which one matches; the
// index should keep the ratio near 1 (target: at most 2).
func BenchmarkMutate(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) { benchMutate(b, n) })
	}
}

// BenchmarkMutateRatio times both sizes interleaved in one loop, so machine
// noise hits both alike, and reports 1,000-policy time / 10-policy time.
// (testing.Benchmark cannot be nested in a running benchmark: it deadlocks.)
func BenchmarkMutateRatio(b *testing.B) {
	small, large, pod, ns := benchSet(b, 10), benchSet(b, 1000), benchPod(), benchNS()
	var ts, tl time.Duration
	for b.Loop() {
		t0 := time.Now()
		small.Mutate(pod, ns)
		t1 := time.Now()
		large.Mutate(pod, ns)
		tl += time.Since(t1)
		ts += t1.Sub(t0)
	}
	b.ReportMetric(float64(tl)/float64(ts), "x-1000-vs-10")
}
