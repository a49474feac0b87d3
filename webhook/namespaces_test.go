package webhook

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// countingLive is the API server as seen through a client that counts its
// reads; gate, when set, holds every read until closed.
func countingLive(t *testing.T, reads *atomic.Int64, gate <-chan struct{}, objs ...client.Object) client.Reader {
	t.Helper()
	return fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			reads.Add(1)
			if gate != nil {
				<-gate
			}
			return c.Get(ctx, key, obj, opts...)
		},
	}).Build()
}

func emptyCache() client.Reader {
	return fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).Build()
}

// TestNamespaceLookupRandomNames: 200 reviews naming made-up namespaces
// cost the API server at most the rate limiter's burst (plus what its rate
// refills meanwhile), and those over it are answered with an error (the
// webhook's failurePolicy decides), never judged with guessed labels.
func TestNamespaceLookupRandomNames(t *testing.T) {
	var reads atomic.Int64
	clk := clocktesting.NewFakePassiveClock(time.Now())
	nl := NewNamespaceLookup(NamespaceLookupConfig{Burst: 20, ReadsPerSecond: 5, Clock: clk}, emptyCache(), countingLive(t, &reads, nil))
	set, _ := policies.NewSet(policies.Config{}, nil)
	s, _ := newTestServer(t, StaticSource{Policies: set}, Config{})
	s.src = lookupSource{set: set, nl: nl}
	refused := 0
	start := time.Now()
	for i := range 200 {
		name := fmt.Sprintf("made-up-%d-%x", i, rand.Uint64())
		code, _, _ := s.Review(context.Background(), RouteValidatePods, reviewIn(name))
		if code != 200 {
			refused++
		}
	}
	// The limiter refills in real time: allow what 5/s adds while the loop ran.
	limit := int64(20 + 5*time.Since(start).Seconds() + 1)
	if n := reads.Load(); n > limit || n < 20 {
		t.Fatalf("%d live reads for 200 made-up namespaces, want 20..%d", n, limit)
	}
	if refused < 200-int(limit) {
		t.Fatalf("only %d of 200 reviews refused", refused)
	}
	// The same names again within the interval cost nothing more for those
	// already answered.
	before := reads.Load()
	for range 50 {
		if _, err := nl.Namespace(context.Background(), "made-up-again"); err != nil {
			t.Logf("refused: %v", err)
		}
	}
	if n := reads.Load() - before; n > 1 {
		t.Fatalf("one name asked 50 times cost %d reads, want at most 1", n)
	}
}

// TestNamespaceLookupCoalesces: concurrent reviews of one missing name
// share a single live read, and its answer is reused until Interval passes.
func TestNamespaceLookupCoalesces(t *testing.T) {
	var reads atomic.Int64
	gate := make(chan struct{})
	clk := clocktesting.NewFakePassiveClock(time.Now())
	nl := NewNamespaceLookup(NamespaceLookupConfig{Interval: 10 * time.Second, Clock: clk}, emptyCache(), countingLive(t, &reads, gate))
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := nl.Namespace(context.Background(), "ghost"); err != nil {
				t.Error(err)
			}
		})
	}
	// Let the goroutines pile up behind the one read in flight.
	time.Sleep(200 * time.Millisecond)
	close(gate)
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Fatalf("50 concurrent lookups of one name made %d live reads, want 1", n)
	}
	if _, err := nl.Namespace(context.Background(), "ghost"); err != nil || reads.Load() != 1 {
		t.Fatalf("within the interval: %v, %d reads", err, reads.Load())
	}
	clk.SetTime(clk.Now().Add(11 * time.Second))
	if _, err := nl.Namespace(context.Background(), "ghost"); err != nil || reads.Load() != 2 {
		t.Fatalf("after the interval: %v, %d reads, want 2", err, reads.Load())
	}
}

// TestNamespaceLookupBounded: the remembered answers never exceed Remember.
func TestNamespaceLookupBounded(t *testing.T) {
	var reads atomic.Int64
	nl := NewNamespaceLookup(NamespaceLookupConfig{Remember: 8, Burst: 1000, ReadsPerSecond: 1000}, emptyCache(), countingLive(t, &reads, nil))
	for i := range 100 {
		if _, err := nl.Namespace(context.Background(), fmt.Sprintf("n-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := nl.recent.Len(); n != 8 {
		t.Fatalf("%d names remembered, want the bound 8", n)
	}
}

// TestNamespaceCreatedJustBefore: a namespace the informer cache has not
// seen yet (created a moment before its first pod) is read live once, and
// the pod is judged with its labels: the namespaceSelector policy applies.
func TestNamespaceCreatedJustBefore(t *testing.T) {
	var reads atomic.Int64
	fresh := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fresh", Labels: map[string]string{"env": "prod"}}}
	nl := NewNamespaceLookup(NamespaceLookupConfig{}, emptyCache(), countingLive(t, &reads, nil, fresh))
	ten := int64(60)
	pol := v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "prod-only"}}
	pol.Spec.Match.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
	pol.Spec.ShutdownSeconds = &ten
	set, fs := policies.NewSet(policies.Config{}, []v1alpha1.LifecyclePolicy{pol})
	if len(fs) > 0 {
		t.Fatal(fs)
	}
	s, _ := newTestServer(t, StaticSource{Policies: set}, Config{})
	s.src = lookupSource{set: set, nl: nl}
	code, out, outcome := s.Review(context.Background(), RouteValidatePods, reviewIn("fresh"))
	if code != 200 || outcome != outcomeDenied {
		t.Fatalf("HTTP %d, outcome %s, want the prod-only policy to deny (shutdown 60s > grace 30s): %s", code, outcome, out)
	}
	if reads.Load() != 1 {
		t.Fatalf("%d live reads, want 1", reads.Load())
	}
	// In the cache: no live read at all.
	cached := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(fresh.DeepCopy()).Build()
	reads.Store(0)
	nl2 := NewNamespaceLookup(NamespaceLookupConfig{}, cached, countingLive(t, &reads, nil))
	if ns, err := nl2.Namespace(context.Background(), "fresh"); err != nil || ns.Labels["env"] != "prod" || reads.Load() != 0 {
		t.Fatalf("cached: %+v, %v, %d live reads", ns, err, reads.Load())
	}
}

type lookupSource struct {
	set *policies.Set
	nl  *NamespaceLookup
}

func (l lookupSource) Set() *policies.Set { return l.set }
func (l lookupSource) Namespace(ctx context.Context, name string) (policies.Namespace, error) {
	return l.nl.Namespace(ctx, name)
}

func reviewIn(ns string) []byte {
	return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-` + ns + `","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"` + ns + `","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"i"}]}}}}`)
}
