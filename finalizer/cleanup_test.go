package finalizer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"github.com/gracekeeper/gracekeeper/policies"
)

// endpoint is a cleanup service run by the test over TLS.
type endpoint struct {
	mu     sync.Mutex
	bodies map[string][]CleanupRequest // by path
	keys   map[string][]string         // Idempotency-Key headers by path
	calls  map[string]*atomic.Int32
	down   atomic.Bool // /down answers 500 while set
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	n := e.calls[r.URL.Path]
	if n == nil {
		n = &atomic.Int32{}
		e.calls[r.URL.Path] = n
	}
	var body CleanupRequest
	raw, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(raw, &body); err == nil {
		e.bodies[r.URL.Path] = append(e.bodies[r.URL.Path], body)
		e.keys[r.URL.Path] = append(e.keys[r.URL.Path], r.Header.Get("Idempotency-Key"))
	}
	e.mu.Unlock()
	call := n.Add(1)
	switch r.URL.Path {
	case "/ok":
		w.WriteHeader(http.StatusNoContent)
	case "/flaky": // 5xx three times, then 2xx
		if call <= 3 {
			http.Error(w, "ipam busy", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	case "/hang": // never answers: the POST times out
		<-r.Context().Done()
	case "/down":
		if e.down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	default:
		http.NotFound(w, r)
	}
}

func (e *endpoint) count(path string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if n := e.calls[path]; n != nil {
		return int(n.Load())
	}
	return 0
}

func httpsServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func cleanupJSON(t *testing.T, recs ...policies.CleanupRecord) string {
	t.Helper()
	b, err := json.Marshal(recs)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCleanup runs the external release step against endpoints that answer
// 2xx, fail for a while, never answer, or are down until they come back.
func TestCleanup(t *testing.T) {
	ep := &endpoint{bodies: map[string][]CleanupRequest{}, keys: map[string][]string{}, calls: map[string]*atomic.Int32{}}
	ep.down.Store(true)
	srv := httpsServer(t, ep)
	ns := newNamespace(t)
	reg := prometheus.NewRegistry()
	startManager(t, Options{Registerer: reg, HTTPClient: srv.Client(), BackoffBase: 100 * time.Millisecond, BackoffMax: 500 * time.Millisecond}, nil)

	rec := func(path string, timeout int32, giveUp int64) policies.CleanupRecord {
		return createPolicy(t, "ipam"+strings.ReplaceAll(path, "/", "-"), "example.com/release"+strings.ReplaceAll(path, "/", "-"), srv.URL+path, timeout, giveUp)
	}

	t.Run("2xx removes the finalizer; the body identifies the pod", func(t *testing.T) {
		t.Parallel()
		r := rec("/ok", 5, 600)
		p := createPod(t, ns, podSpec{name: "ok", node: "node-a", grace: 30, finalizers: []string{keep, r.Finalizer}, cleanup: cleanupJSON(t, r)})
		setStatus(t, p, corev1.PodSucceeded, terminated(0, "Completed", time.Now()))
		deletePod(t, p)
		waitFinalizers(t, ns, p.Name, []string{keep}, 15*time.Second)
		ep.mu.Lock()
		bodies, keys := ep.bodies["/ok"], ep.keys["/ok"]
		ep.mu.Unlock()
		if len(bodies) == 0 {
			t.Fatal("no body received")
		}
		b := bodies[0]
		if b.IdempotencyKey != string(p.UID) || keys[0] != string(p.UID) || b.UID != p.UID || b.Namespace != ns || b.Name != "ok" ||
			b.Node != "node-a" || b.Owner.Kind != "Pod" || b.Finalizer != r.Finalizer || b.Policy != "ipam-ok" {
			t.Errorf("body = %+v, key header %q", b, keys[0])
		}
		if len(b.Containers) != 1 || b.Containers[0].Name != "web" || b.Containers[0].ExitCode == nil || *b.Containers[0].ExitCode != 0 || b.Containers[0].Reason != "Completed" {
			t.Errorf("containers = %+v", b.Containers)
		}
		removeFinalizer(t, p, keep)
	})

	t.Run("5xx then 2xx: retried with backoff", func(t *testing.T) {
		t.Parallel()
		r := rec("/flaky", 5, 600)
		p := createPod(t, ns, podSpec{name: "flaky", grace: 30, finalizers: []string{keep, r.Finalizer}, cleanup: cleanupJSON(t, r)})
		deletePod(t, p)
		waitFinalizers(t, ns, p.Name, []string{keep}, 20*time.Second)
		if n := ep.count("/flaky"); n < 4 {
			t.Errorf("POSTs = %d, want at least 4 (3 failures, 1 success)", n)
		}
		removeFinalizer(t, p, keep)
	})

	t.Run("never answers: given up with a Warning Event", func(t *testing.T) {
		t.Parallel()
		r := rec("/hang", 1, 3)
		p := createPod(t, ns, podSpec{name: "hang", grace: 30, finalizers: []string{keep, r.Finalizer}, cleanup: cleanupJSON(t, r)})
		deletePod(t, p)
		start := time.Now()
		waitFinalizers(t, ns, p.Name, []string{keep}, 30*time.Second)
		// Not before the give-up time (deletion + 3s; allow the 1s truncation of timestamps).
		if d := time.Since(start); d < 2*time.Second {
			t.Errorf("finalizer removed after %v, before giveUpAfterSeconds", d)
		}
		if ep.count("/hang") == 0 {
			t.Error("the endpoint was never called")
		}
		var found int
		for _, e := range ourEvents(t, ns) {
			if e.Name == AbandonEventName(p, r.Finalizer) {
				found++
				if e.Type != corev1.EventTypeWarning || e.Reason != "CleanupAbandoned" || !strings.Contains(e.Message, "abandoned") || !strings.Contains(e.Message, r.Finalizer) {
					t.Errorf("event = %s %s %q", e.Type, e.Reason, e.Message)
				}
			}
		}
		if found != 1 {
			t.Errorf("abandon events = %d, want 1", found)
		}
		removeFinalizer(t, p, keep)
	})

	t.Run("down, never giving up: the pod waits until it is back", func(t *testing.T) {
		t.Parallel()
		r := rec("/down", 5, 0)
		p := createPod(t, ns, podSpec{name: "down", grace: 30, finalizers: []string{TerminationRecord, keep, r.Finalizer}, cleanup: cleanupJSON(t, r)})
		deletePod(t, p)
		// The termination record does not wait for the cleanup.
		waitFinalizers(t, ns, p.Name, []string{keep, r.Finalizer}, 15*time.Second)
		for ep.count("/down") < 3 {
			time.Sleep(50 * time.Millisecond)
		}
		waitFinalizers(t, ns, p.Name, []string{keep, r.Finalizer}, time.Second)
		ep.down.Store(false)
		waitFinalizers(t, ns, p.Name, []string{keep}, 15*time.Second)
		removeFinalizer(t, p, keep)
	})

	t.Cleanup(func() {
		for labels, atLeast := range map[string]float64{"success": 3, "failure": 5, "abandoned": 1} {
			if got := counter(t, reg, "gracekeeper_finalizer_cleanup_requests_total", map[string]string{"result": labels}); got < atLeast {
				t.Errorf("cleanup_requests_total{result=%s} = %v, want >= %v", labels, got, atLeast)
			}
		}
		if got := counter(t, reg, "gracekeeper_finalizer_cleanup_requests_total", map[string]string{"result": "abandoned"}); got != 1 {
			t.Errorf("abandoned = %v, want exactly 1", got)
		}
	})
}

// TestCleanupsDoNotStarveRecords: pods whose cleanup endpoint hangs occupy
// every cleanup worker, yet the termination records of other pods are
// written and their finalizers removed at once.
func TestCleanupsDoNotStarveRecords(t *testing.T) {
	ep := &endpoint{bodies: map[string][]CleanupRequest{}, keys: map[string][]string{}, calls: map[string]*atomic.Int32{}}
	srv := httpsServer(t, ep)
	ns := newNamespace(t)
	startManager(t, Options{Registerer: prometheus.NewRegistry(), HTTPClient: srv.Client(), CleanupWorkers: 2, MaxConcurrentReconciles: 2}, nil)
	rec := createPolicy(t, "ipam-starve", "example.com/release-starve", srv.URL+"/hang", 30, 600)
	var hung, plain []*corev1.Pod
	for i := range 4 {
		hung = append(hung, createPod(t, ns, podSpec{name: fmt.Sprintf("hung-%d", i), grace: 30, finalizers: []string{rec.Finalizer}, cleanup: cleanupJSON(t, rec)}))
	}
	for _, p := range hung {
		deletePod(t, p)
	}
	for ep.count("/hang") < 2 {
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 20 {
		plain = append(plain, createPod(t, ns, podSpec{name: fmt.Sprintf("plain-%d", i), grace: 30, finalizers: []string{TerminationRecord}}))
	}
	start := time.Now()
	for _, p := range plain {
		deletePod(t, p)
	}
	for _, p := range plain {
		waitFinalizers(t, ns, p.Name, nil, 10*time.Second)
	}
	took := time.Since(start)
	t.Logf("20 termination records written and released in %v while %d cleanup POSTs hung", took.Round(time.Millisecond), ep.count("/hang"))
	if took > 10*time.Second {
		t.Errorf("termination records took %v while cleanups hung", took)
	}
	if n := ep.count("/hang"); n > 2 {
		t.Errorf("%d POSTs in flight, want at most the 2 cleanup workers", n)
	}
	// Let the hung pods go: delete the policy; each is abandoned with a record.
	if err := cluster(t).Delete(context.Background(), cleanupPolicy(rec.Policy, "", "", 0, 0)); err != nil {
		t.Fatal(err)
	}
	for _, p := range hung {
		waitFinalizers(t, ns, p.Name, nil, 60*time.Second)
	}
}
