package finalizer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// fakeLogs stands in for the kubelet's log endpoint (the test control plane
// has no kubelet): it returns 10 numbered lines per container instance.
type fakeLogs struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeLogs) TailLog(_ context.Context, _, pod, container string, previous bool, lines, limitBytes int64) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("%s/%s previous=%v lines=%d limit=%d", pod, container, previous, lines, limitBytes))
	var b strings.Builder
	for i := range 10 {
		fmt.Fprintf(&b, "%s log line %d\n", container, i)
	}
	return []byte(b.String()), nil
}

// exitStatus reports one container status of the pod "web" container, as
// the kubelet would.
func exitStatus(t *testing.T, p *corev1.Pod, s corev1.ContainerStatus) {
	t.Helper()
	c := cluster(t)
	s.Name, s.Image = "web", "registry.k8s.io/pause:3.10"
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		cur := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(p), cur); err != nil {
			return false, err
		}
		cur.Status.Phase = corev1.PodRunning
		cur.Status.ContainerStatuses = []corev1.ContainerStatus{s}
		if err := c.Status().Update(ctx, cur); err != nil {
			return false, nil
		}
		*p = *cur
		return true, nil
	})
	if err != nil {
		t.Fatalf("set status of %s: %v", p.Name, err)
	}
}

// exitEvents are our Events about container exits in ns, by name.
func exitEvents(t *testing.T, ns string) map[string]corev1.Event {
	t.Helper()
	out := map[string]corev1.Event{}
	for _, e := range ourEvents(t, ns) {
		if e.Action == "Exit" {
			out[e.Name] = e
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 15*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	}); err != nil {
		t.Fatalf("never: %s", what)
	}
}

func podAnnotation(t *testing.T, p *corev1.Pod, key string) string {
	t.Helper()
	cur := &corev1.Pod{}
	if err := cluster(t).Get(context.Background(), client.ObjectKeyFromObject(p), cur); err != nil {
		t.Fatal(err)
	}
	return cur.Annotations[key]
}

// TestContainerExitsExactlyOnce: through a real API server, every exit of
// a running pod's container (an OOM kill restarted in place, a crash) gets
// one Event on the pod with the log's last lines, one aggregate on its
// owner, one exit cleanup call and one count, across two controller
// restarts, one of them while an exit happened; an exit nobody saw is
// reported as missed.
func TestContainerExitsExactlyOnce(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := newNamespace(t)
	ep := &endpoint{bodies: map[string][]CleanupRequest{}, keys: map[string][]string{}, calls: map[string]*atomic.Int32{}}
	srv := httpsServer(t, ep)
	pol := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "exits-" + ns}, Spec: v1alpha1.LifecyclePolicySpec{
		Finalizers:     []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer},
		ContainerExits: &v1alpha1.ContainerExits{LogLines: 3},
		Cleanup: &v1alpha1.Cleanup{Finalizer: "example.com/scratch", URL: srv.URL + "/ok", TimeoutSeconds: 2,
			When: []v1alpha1.CleanupTrigger{v1alpha1.CleanupOnDeletion, v1alpha1.CleanupOnContainerExit}}}}
	if err := c.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, pol) })
	rec := policies.CleanupRecord{Policy: pol.Name, Finalizer: "example.com/scratch"}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: ns, Finalizers: []string{TerminationRecord, rec.Finalizer},
			Labels:          map[string]string{policies.LabelFinalize: "true"},
			Annotations:     map[string]string{policies.AnnotationCleanup: cleanupJSON(t, rec), policies.AnnotationPolicies: pol.Name},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", UID: "sts-uid", Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "web", Image: "registry.k8s.io/pause:3.10",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}}}},
	}
	if err := c.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	now := time.Now() // exit cleanups give up giveUpAfterSeconds after the exit
	logs := &fakeLogs{}
	run := func() (*prometheus.Registry, func()) {
		reg := prometheus.NewRegistry()
		return reg, startManager(t, Options{Registerer: reg, HTTPClient: srv.Client(), Logs: logs}, nil)
	}
	reg, stop := run()
	// expect waits for the record of exit #restart and for the pod to say
	// it is done, and returns the record.
	expect := func(restart int32) corev1.Event {
		t.Helper()
		name := ExitEventName(p, "web", restart)
		waitFor(t, fmt.Sprintf("exit #%d is recorded", restart), func() bool { _, ok := exitEvents(t, ns)[name]; return ok })
		done := fmt.Sprintf(`{"web":%d}`, restart)
		waitFor(t, "the exits annotation says "+done, func() bool { return podAnnotation(t, p, AnnotationExits) == done })
		return exitEvents(t, ns)[name]
	}

	// 1. OOM-killed, waiting out its back-off: exit #0.
	exitStatus(t, p, corev1.ContainerStatus{ContainerID: cid("a"), State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: ended(137, "OOMKilled", cid("a"), now)}})
	ev := expect(0)
	for _, want := range []string{"OOMKilled", "memory limit 64Mi", "restart count 0", "last 3 log line(s):\nweb log line 7\nweb log line 8\nweb log line 9"} {
		if !strings.Contains(ev.Message, want) {
			t.Errorf("exit Event message %q lacks %q", ev.Message, want)
		}
	}
	if ev.Reason != "OOMKilled" || ev.InvolvedObject.Kind != "Pod" || ev.InvolvedObject.UID != p.UID || ev.Type != corev1.EventTypeWarning {
		t.Errorf("exit Event %s %s about %s/%s, want Warning OOMKilled about the pod", ev.Type, ev.Reason, ev.InvolvedObject.Kind, ev.InvolvedObject.Name)
	}
	// The restarted instance runs: the same exit, now one instance back.
	exitStatus(t, p, corev1.ContainerStatus{ContainerID: cid("b"), RestartCount: 1, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		LastTerminationState: corev1.ContainerState{Terminated: ended(137, "OOMKilled", cid("a"), now)}})
	time.Sleep(time.Second)
	stop()

	// 2. While no controller runs, it exits 3 and is restarted.
	exitStatus(t, p, corev1.ContainerStatus{ContainerID: cid("c"), RestartCount: 2, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		LastTerminationState: corev1.ContainerState{Terminated: ended(3, "Error", cid("b"), now)}})
	reg2, stop2 := run()
	if m := expect(1).Message; !strings.Contains(m, "exited with 3 Error") || strings.Contains(m, "earlier exit") {
		t.Errorf("second exit's message %q", m)
	}
	stop2()

	// 3. Two exits happen unseen: the kubelet shows only the last (#3); #2 is missed.
	exitStatus(t, p, corev1.ContainerStatus{ContainerID: cid("e"), RestartCount: 4, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		LastTerminationState: corev1.ContainerState{Terminated: ended(1, "Error", cid("d"), now)}})
	reg3, stop3 := run()
	if m := expect(3).Message; !strings.Contains(m, "1 earlier exit(s) of this container were not recorded") {
		t.Errorf("fourth exit's message %q does not say one exit was missed", m)
	}
	time.Sleep(time.Second)
	stop3()

	evs := exitEvents(t, ns)
	podEvents, agg := 0, corev1.Event{}
	for _, e := range evs {
		switch e.InvolvedObject.Kind {
		case "Pod":
			podEvents++
		case "StatefulSet":
			agg = e
		}
	}
	if podEvents != 3 {
		t.Errorf("%d exit Events on the pod, want 3 (#0, #1, #3)", podEvents)
	}
	if agg.Count != 4 || agg.Reason != "ContainerExits" || agg.Related == nil || agg.Related.Name != p.Name {
		t.Errorf("owner aggregate: count %d reason %s related %v; want count 4 (restart count 3 + 1) about the pod", agg.Count, agg.Reason, agg.Related)
	}
	keys := map[string]int{}
	ep.mu.Lock()
	for _, k := range ep.keys["/ok"] {
		keys[k]++
	}
	bodies := ep.bodies["/ok"]
	ep.mu.Unlock()
	for _, n := range []int{0, 1, 3} {
		if k := fmt.Sprintf("%s/web/%d", p.UID, n); keys[k] != 1 {
			t.Errorf("exit cleanup calls with key %s = %d, want 1 (all keys: %v)", k, keys[k], keys)
		}
	}
	if len(bodies) != 3 {
		t.Fatalf("%d exit cleanup calls, want 3", len(bodies))
	}
	if bodies[0].Cause != CauseContainerExit || bodies[0].Exit == nil || bodies[0].Exit.Reason != "OOMKilled" ||
		bodies[0].Exit.Log == nil || bodies[0].Exit.Log.Lines != 3 {
		t.Errorf("exit cleanup bodies: %d, first %+v", len(bodies), bodies[0])
	}
	// Each controller counted what it recorded, and nothing twice.
	for i, c := range []struct {
		reg    *prometheus.Registry
		reason string
	}{{reg, "OOMKilled"}, {reg2, "Error"}, {reg3, "Error"}} {
		if n := counter(t, c.reg, "gracekeeper_container_exits_total", map[string]string{"reason": c.reason}); n != 1 {
			t.Errorf("controller %d: container_exits_total{%s} = %v, want 1", i+1, c.reason, n)
		}
		if n := counter(t, c.reg, "gracekeeper_container_exit_cleanups_total", map[string]string{"result": "success"}); n != 1 {
			t.Errorf("controller %d: exit cleanups = %v, want 1", i+1, n)
		}
	}
	if n := counter(t, reg3, "gracekeeper_container_exits_missed_total", nil); n != 1 {
		t.Errorf("container_exits_missed_total = %v, want 1", n)
	}
	logs.mu.Lock()
	t.Logf("log reads: %v", logs.calls)
	if len(logs.calls) != 3 || !strings.Contains(logs.calls[0], "previous=true lines=3 limit=65536") {
		t.Errorf("log reads %v, want one per recorded exit, previous=true, 3 lines, bounded bytes", logs.calls)
	}
	logs.mu.Unlock()
}

// TestExitStateForgedStaysInItsPod: a pod author's forged exits annotation
// suppresses at most that pod's own records; another pod's are unaffected,
// and an unreadable one is replaced by the controller's own.
func TestExitStateForgedStaysInItsPod(t *testing.T) {
	ns := newNamespace(t)
	reg := prometheus.NewRegistry()
	startManager(t, Options{Registerer: reg}, nil)
	mk := func(name, annotation string) *corev1.Pod {
		p := createPod(t, ns, podSpec{name: name, node: "node-a", grace: 30, finalizers: []string{TerminationRecord}})
		if annotation != "" {
			patch := client.MergeFrom(p.DeepCopy())
			p.Annotations = map[string]string{AnnotationExits: annotation}
			if err := cluster(t).Patch(context.Background(), p, patch); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	forged := mk("forged", `{"web":2147483647}`)
	garbage := mk("garbage", strings.Repeat("{", 5000))
	plain := mk("plain", "")
	for _, p := range []*corev1.Pod{forged, garbage, plain} {
		exitStatus(t, p, corev1.ContainerStatus{ContainerID: cid("b"), RestartCount: 1, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
			LastTerminationState: corev1.ContainerState{Terminated: ended(2, "Error", cid("a"), t0)}})
	}
	waitFor(t, "the plain and garbage pods' exits are recorded", func() bool {
		evs := exitEvents(t, ns)
		_, a := evs[ExitEventName(plain, "web", 0)]
		_, b := evs[ExitEventName(garbage, "web", 0)]
		return a && b
	})
	waitFor(t, "the garbage annotation is replaced", func() bool { return podAnnotation(t, garbage, AnnotationExits) == `{"web":0}` })
	time.Sleep(time.Second)
	if _, ok := exitEvents(t, ns)[ExitEventName(forged, "web", 0)]; ok {
		t.Error("the forged pod's exit was recorded: its own annotation says it is done")
	}
	if got := podAnnotation(t, forged, AnnotationExits); got != `{"web":2147483647}` {
		t.Errorf("the forged annotation was rewritten to %q", got)
	}
	if n := counter(t, reg, "gracekeeper_container_exits_total", map[string]string{"reason": "Error"}); n != 2 {
		t.Errorf("container_exits_total{Error} = %v, want 2", n)
	}
}

// TestExitCleanupGivesUp: an exit cleanup is given up, with a Warning and
// nothing called, giveUpAfterSeconds after the exit; once the same container
// has exited again it gets one more try and is given up when that fails (the
// newer exit gets its own call); a failing one is retried until it answers,
// and only then is the exit done.
func TestExitCleanupGivesUp(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := newNamespace(t)
	ep := &endpoint{bodies: map[string][]CleanupRequest{}, keys: map[string][]string{}, calls: map[string]*atomic.Int32{}}
	ep.down.Store(true)
	srv := httpsServer(t, ep)
	pol := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "exits-" + ns}, Spec: v1alpha1.LifecyclePolicySpec{
		Cleanup: &v1alpha1.Cleanup{Finalizer: "example.com/scratch", URL: srv.URL + "/down", TimeoutSeconds: 1, GiveUpAfterSeconds: ptr.To[int64](600),
			When: []v1alpha1.CleanupTrigger{v1alpha1.CleanupOnDeletion, v1alpha1.CleanupOnContainerExit}}}}
	if err := c.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, pol) })
	rec := policies.CleanupRecord{Policy: pol.Name, Finalizer: "example.com/scratch"}
	reg := prometheus.NewRegistry()
	startManager(t, Options{Registerer: reg, HTTPClient: srv.Client(), BackoffBase: 100 * time.Millisecond, BackoffMax: 500 * time.Millisecond}, nil)
	old := createPod(t, ns, podSpec{name: "old", node: "node-a", grace: 30, finalizers: []string{rec.Finalizer}, cleanup: cleanupJSON(t, rec)})
	twice := createPod(t, ns, podSpec{name: "twice", node: "node-a", grace: 30, finalizers: []string{rec.Finalizer}, cleanup: cleanupJSON(t, rec)})
	// An exit an hour old: past giveUpAfterSeconds (600) already.
	exitStatus(t, old, corev1.ContainerStatus{ContainerID: cid("b"), RestartCount: 1, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		LastTerminationState: corev1.ContainerState{Terminated: ended(1, "Error", cid("a"), time.Now().Add(-time.Hour))}})
	// Two exits visible at once: #0 is superseded by #1.
	exitStatus(t, twice, corev1.ContainerStatus{ContainerID: cid("b"), RestartCount: 1,
		State:                corev1.ContainerState{Terminated: ended(2, "Error", cid("b"), time.Now())},
		LastTerminationState: corev1.ContainerState{Terminated: ended(1, "Error", cid("a"), time.Now())}})
	abandoned := func(p *corev1.Pod, restart int32) bool {
		for _, e := range ourEvents(t, ns) {
			if e.Name == ExitAbandonEventName(p, rec.Finalizer, "web", restart) && e.Reason == "CleanupAbandoned" && e.Type == corev1.EventTypeWarning {
				return true
			}
		}
		return false
	}
	waitFor(t, "the old exit's cleanup is given up", func() bool { return abandoned(old, 0) })
	waitFor(t, "the old pod's exit is done", func() bool { return podAnnotation(t, old, AnnotationExits) == `{"web":0}` })
	waitFor(t, "the superseded exit's cleanup is given up", func() bool { return abandoned(twice, 0) })
	waitFor(t, "the newer exit is tried", func() bool { return ep.count("/down") >= 2 })
	waitFor(t, "the superseded exit is done, the newer not while its cleanup fails", func() bool {
		return podAnnotation(t, twice, AnnotationExits) == `{"web":0}`
	})
	ep.down.Store(false)
	waitFor(t, "the newer exit is done once its cleanup answers", func() bool { return podAnnotation(t, twice, AnnotationExits) == `{"web":1}` })
	calls := map[string]int{}
	ep.mu.Lock()
	for _, k := range ep.keys["/down"] {
		calls[k]++
	}
	ep.mu.Unlock()
	if n := calls[fmt.Sprintf("%s/web/0", twice.UID)]; n != 1 {
		t.Errorf("the superseded exit was tried %d times, want once", n)
	}
	if n := calls[fmt.Sprintf("%s/web/1", twice.UID)]; n < 2 {
		t.Errorf("the newer exit was tried %d times, want retries until it answered", n)
	}
	if len(calls) != 2 {
		t.Errorf("calls by key %v: the old pod's exit, past its give-up, may not be called", calls)
	}
	if n := counter(t, reg, "gracekeeper_container_exit_cleanups_total", map[string]string{"result": "abandoned"}); n != 2 {
		t.Errorf("abandoned exit cleanups = %v, want 2", n)
	}
	if n := counter(t, reg, "gracekeeper_container_exit_cleanups_total", map[string]string{"result": "success"}); n != 1 {
		t.Errorf("successful exit cleanups = %v, want 1", n)
	}
	if n := len(exitEvents(t, ns)); n != 0 {
		t.Errorf("%d exit records for pods without the termination-record finalizer", n)
	}
}
