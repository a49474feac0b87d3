package finalizer

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/gracekeeper/gracekeeper/policies"
)

// loopback is a cleanup endpoint on 127.0.0.1 that counts requests.
type loopback struct {
	*httptest.Server
	hits atomic.Int32
}

// hangs answers nothing until the connection closes (the client gives up,
// or the test ends). The body is read first: net/http notices a closed
// connection only once the handler has read the request body.
func hangs(_ http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}

func newLoopback(t *testing.T, h http.HandlerFunc) *loopback {
	l := &loopback{}
	l.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(func() {
		l.CloseClientConnections()
		l.Close()
	})
	return l
}

// cleanupPod is a deleted, never scheduled pod holding one cleanup finalizer
// with the given annotation record; deleted at t0 (deletionTimestamp t0).
func cleanupPod(t *testing.T, rec policies.CleanupRecord) *corev1.Pod {
	p := deletedPod(0, "", []string{"web"})
	p.Finalizers = []string{keep, rec.Finalizer}
	p.Annotations = map[string]string{policies.AnnotationCleanup: cleanupJSON(t, rec)}
	return p
}

func finalizersOf(t *testing.T, c client.Client, p *corev1.Pod) []string {
	t.Helper()
	got := &corev1.Pod{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(p), got); err != nil {
		t.Fatal(err)
	}
	return got.Finalizers
}

// TestForgedCleanupNeverCalled: a pod author's annotation names a URL, a
// timeout or a policy; only a current policy's own cleanup is ever called.
// Each forged record is abandoned with a record, no request is made.
func TestForgedCleanupNeverCalled(t *testing.T) {
	attacker := newLoopback(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	admin := newLoopback(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	real := cleanupPolicy("ipam", "example.com/release-ip", admin.URL+"/release", 5, 600)
	scoped := cleanupPolicy("ipam-prod", "example.com/release-prod-ip", admin.URL+"/release", 5, 600)
	scoped.Spec.Match.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
	shop := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"env": "dev"}}}
	cases := map[string]policies.CleanupRecord{
		"no such policy":                      {Policy: "made-up", Finalizer: "example.com/release-ip", URL: attacker.URL, TimeoutSeconds: 60, GiveUpAfterSeconds: 0},
		"real policy, another finalizer":      {Policy: "ipam", Finalizer: "example.com/steal", URL: attacker.URL, TimeoutSeconds: 60},
		"policy not selecting this namespace": {Policy: "ipam-prod", Finalizer: "example.com/release-prod-ip", URL: attacker.URL},
	}
	for name, rec := range cases {
		t.Run(name, func(t *testing.T) {
			pod := cleanupPod(t, rec)
			f := newFakeCluster(nil, pod, real, scoped, shop)
			reg := prometheus.NewRegistry()
			r, _ := NewReconciler(f, f, Options{Registerer: reg, Clock: clocktesting.NewFakeClock(t0), HTTPClient: attacker.Client()})
			if _, err := r.reconcileCleanups(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(pod)}); err != nil {
				t.Fatal(err)
			}
			if n := attacker.hits.Load() + admin.hits.Load(); n != 0 {
				t.Errorf("requests = %d, want 0", n)
			}
			if got := finalizersOf(t, f, pod); len(got) != 1 || got[0] != keep {
				t.Errorf("finalizers = %v, want the forged one released", got)
			}
			if n := counter(t, reg, "gracekeeper_finalizer_cleanup_requests_total", map[string]string{"result": "abandoned"}); n != 1 {
				t.Errorf("abandoned = %v, want 1", n)
			}
		})
	}
	// The annotation's URL and timeout are ignored even for a real step: the
	// policy's URL is called.
	t.Run("real policy, forged URL", func(t *testing.T) {
		rec := policies.CleanupRecord{Policy: "ipam", Finalizer: "example.com/release-ip", URL: attacker.URL + "/steal", TimeoutSeconds: 60}
		pod := cleanupPod(t, rec)
		f := newFakeCluster(nil, pod, real, shop)
		r, _ := NewReconciler(f, f, Options{Registerer: prometheus.NewRegistry(), Clock: clocktesting.NewFakeClock(t0), HTTPClient: admin.Client()})
		before := attacker.hits.Load()
		if _, err := r.reconcileCleanups(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(pod)}); err != nil {
			t.Fatal(err)
		}
		// Both test servers listen on 127.0.0.1 with their own ports.
		if attacker.hits.Load() != before || admin.hits.Load() != 1 {
			t.Errorf("attacker hits %d, admin hits %d; want 0 and 1", attacker.hits.Load()-before, admin.hits.Load())
		}
	})
}

// TestCleanupNoRedirect: a 307 to another URL is a failed POST, not followed.
func TestCleanupNoRedirect(t *testing.T) {
	inner := newLoopback(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	outer := newLoopback(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, inner.URL+"/internal", http.StatusTemporaryRedirect)
	})
	pol := cleanupPolicy("ipam", "example.com/release-ip", outer.URL+"/release", 5, 600)
	pod := cleanupPod(t, policies.CleanupRecord{Policy: "ipam", Finalizer: "example.com/release-ip"})
	f := newFakeCluster(nil, pod, pol)
	reg := prometheus.NewRegistry()
	// The test server's client would follow redirects; the controller must not.
	r, _ := NewReconciler(f, f, Options{Registerer: reg, Clock: clocktesting.NewFakeClock(t0), HTTPClient: outer.Client()})
	res, err := r.reconcileCleanups(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(pod)})
	if err != nil || res.RequeueAfter <= 0 {
		t.Fatalf("reconcile = %+v, %v; want a retry", res, err)
	}
	if outer.hits.Load() != 1 || inner.hits.Load() != 0 {
		t.Errorf("hits outer %d inner %d, want 1 and 0", outer.hits.Load(), inner.hits.Load())
	}
	if got := finalizersOf(t, f, pod); len(got) != 2 {
		t.Errorf("finalizers = %v: a 3xx must not count as done", got)
	}
	if n := counter(t, reg, "gracekeeper_finalizer_cleanup_requests_total", map[string]string{"result": "failure"}); n != 1 {
		t.Errorf("failures = %v, want 1", n)
	}
}

// TestCleanupCutAtTimeout: a server that never answers is cut at the
// policy's timeoutSeconds, not held.
func TestCleanupCutAtTimeout(t *testing.T) {
	hang := newLoopback(t, hangs)
	pol := cleanupPolicy("ipam", "example.com/release-ip", hang.URL, 1, 600)
	pod := cleanupPod(t, policies.CleanupRecord{Policy: "ipam", Finalizer: "example.com/release-ip", TimeoutSeconds: 3600})
	f := newFakeCluster(nil, pod, pol)
	r, _ := NewReconciler(f, f, Options{Registerer: prometheus.NewRegistry(), Clock: clocktesting.NewFakeClock(t0), HTTPClient: hang.Client()})
	start := time.Now()
	res, err := r.reconcileCleanups(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(pod)})
	took := time.Since(start)
	if err != nil || res.RequeueAfter <= 0 {
		t.Fatalf("reconcile = %+v, %v; want a retry", res, err)
	}
	if took < time.Second || took > 5*time.Second {
		t.Errorf("POST took %v, want cut at the policy's 1s (not the annotation's 3600s)", took)
	}
}

// TestGiveUpDuringPost: the give-up time falls inside a POST: the POST is cut
// there and the next pass releases the pod with a record.
func TestGiveUpDuringPost(t *testing.T) {
	hang := newLoopback(t, hangs)
	pol := cleanupPolicy("ipam", "example.com/release-ip", hang.URL, 60, 2)
	pod := cleanupPod(t, policies.CleanupRecord{Policy: "ipam", Finalizer: "example.com/release-ip"})
	f := newFakeCluster(nil, pod, pol)
	reg := prometheus.NewRegistry()
	// One second after the deletion: give-up (2s) comes before the timeout (60s).
	clk := clocktesting.NewFakeClock(t0.Add(time.Second))
	r, _ := NewReconciler(f, f, Options{Registerer: reg, Clock: clk, HTTPClient: hang.Client()})
	key := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(pod)}
	start := time.Now()
	res, err := r.reconcileCleanups(context.Background(), key)
	if took := time.Since(start); took > 5*time.Second || err != nil {
		t.Fatalf("first pass took %v (err %v), want the POST cut at the give-up, 1s away", took, err)
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > time.Second {
		t.Errorf("requeue after %v, want at most the 1s left to the give-up", res.RequeueAfter)
	}
	clk.Step(time.Second)
	if _, err := r.reconcileCleanups(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if got := finalizersOf(t, f, pod); len(got) != 1 || got[0] != keep {
		t.Errorf("finalizers = %v, want released at the give-up", got)
	}
	if n := counter(t, reg, "gracekeeper_finalizer_cleanup_requests_total", map[string]string{"result": "abandoned"}); n != 1 {
		t.Errorf("abandoned = %v, want 1", n)
	}
}
