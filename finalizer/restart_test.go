package finalizer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// crashBeforePatch simulates a controller that dies between writing the
// termination Event and removing the finalizer: its finalizer patches of
// the chosen pods fail.
type crashBeforePatch struct {
	client.Client
	crash func(name string) bool
}

func (c crashBeforePatch) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	if _, ok := obj.(*corev1.Pod); ok && c.crash(obj.GetName()) {
		return errors.New("simulated crash before the finalizer patch")
	}
	return c.Client.Patch(ctx, obj, patch, opts...)
}

// TestRestartMidWork deletes 500 pods in bulk, stops the controller in the
// middle (some pods already have their Event but kept the finalizer), starts
// a new one, and checks that every pod is gone with exactly one termination
// Event, and that the metrics (shared registry, as after a restart of the
// controller in one process) count each pod once. The README's reliability
// table reports its numbers.
func TestRestartMidWork(t *testing.T) {
	const n = 500
	c := cluster(t)
	ctx := context.Background()
	ns := newNamespace(t)
	reg := prometheus.NewRegistry()

	// Half scheduled (containers ended, reported as the kubelet would),
	// half never scheduled.
	pods := make([]*corev1.Pod, n)
	parallel(t, n, func(i int) {
		s := podSpec{name: fmt.Sprintf("bulk-%03d", i), grace: 30, finalizers: []string{TerminationRecord}}
		if i%2 == 0 {
			s.node = "node-a"
		}
		pods[i] = createPod(t, ns, s)
		if s.node != "" {
			setStatus(t, pods[i], corev1.PodFailed, terminated(143, "Error", time.Now()))
		}
	})

	start := time.Now()
	stop1 := startManager(t, Options{Registerer: reg, MaxConcurrentReconciles: 2}, func(c client.Client) client.Client {
		return crashBeforePatch{Client: c, crash: func(name string) bool { return strings.HasSuffix(name, "7") }}
	})
	if err := c.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	// The kubelet confirms each scheduled pod's deletion once its containers
	// ended, whatever the finalizers: concurrently with the controller.
	var kubelet sync.WaitGroup
	kubelet.Go(func() {
		parallel(t, n/2, func(i int) { kubeletConfirmsDeletion(t, pods[2*i]) })
	})

	processed := func() int {
		l := &corev1.PodList{}
		if err := c.List(ctx, l, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		left := 0
		for _, p := range l.Items {
			if slices.Contains(p.Finalizers, TerminationRecord) {
				left++
			}
		}
		return n - left
	}
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 120*time.Second, true, func(context.Context) (bool, error) {
		return processed() >= n/6, nil
	}); err != nil {
		t.Fatalf("first controller made no progress: %v", err)
	}
	stop1()
	atStop := processed()
	t.Logf("first controller stopped after %d of %d pods, %v after the bulk delete", atStop, n, time.Since(start).Round(time.Millisecond))
	if atStop >= n {
		t.Fatalf("the first controller finished all %d pods before it could be stopped: the restart was not exercised", n)
	}

	restarted := time.Now()
	startManager(t, Options{Registerer: reg}, nil)
	kubelet.Wait()
	// Bounded: 500 pods on a loaded 2-core VM finish in well under this.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 180*time.Second, true, func(ctx context.Context) (bool, error) {
		l := &corev1.PodList{}
		if err := c.List(ctx, l, client.InNamespace(ns)); err != nil {
			return false, err
		}
		return len(l.Items) == 0, nil
	}); err != nil {
		t.Fatalf("pods left after the restart: %v", err)
	}
	t.Logf("after the restart the remaining %d pods were released and gone in %v (0 stuck)", n-atStop, time.Since(restarted).Round(time.Millisecond))

	perPod := map[string]int{}
	for _, e := range ourEvents(t, ns) {
		if strings.HasSuffix(e.Name, ".termination") {
			perPod[string(e.InvolvedObject.UID)]++
		}
	}
	if len(perPod) != n {
		t.Errorf("pods with a termination Event = %d, want %d", len(perPod), n)
	}
	for _, p := range pods {
		if perPod[string(p.UID)] != 1 {
			t.Errorf("pod %s has %d termination Events, want 1", p.Name, perPod[string(p.UID)])
		}
	}
	ended := counter(t, reg, "gracekeeper_finalizer_pods_recorded_total", map[string]string{"cause": "Ended"})
	never := counter(t, reg, "gracekeeper_finalizer_pods_recorded_total", map[string]string{"cause": "NeverScheduled"})
	// Never twice. A count can be lost only for a pod whose Event create was
	// in flight when the first controller stopped (the API server created
	// it, the stopped client never saw the answer): at most its 2 workers.
	if ended > n/2 || never > n/2 || ended+never < n-2 {
		t.Errorf("pods_recorded_total Ended=%v NeverScheduled=%v, want %d each (at most 2 lost in flight, none doubled)", ended, never, n/2)
	}
}

// parallel runs f(0..n-1) on a few goroutines (the API calls dominate).
func parallel(t *testing.T, n int, f func(i int)) {
	t.Helper()
	var wg sync.WaitGroup
	// Buffered: a worker stopped by t.Fatal must not block the producer.
	next := make(chan int, n)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
