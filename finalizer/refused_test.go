package finalizer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/gracekeeper/gracekeeper/policies"
)

var eventsGR = schema.GroupResource{Resource: "events"}

// namespaceTerminating is the NamespaceLifecycle admission plugin's refusal
// (plugin/pkg/admission/namespace/lifecycle/admission.go), cause included.
func namespaceTerminating(ns string) error {
	err := apierrors.NewForbidden(eventsGR, "", fmt.Errorf("unable to create new content in namespace %s because it is being terminated", ns))
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
		Type: corev1.NamespaceTerminatingCause, Message: "namespace " + ns + " is being terminated", Field: "metadata.namespace"})
	return err
}

// refusals are the ways the API server refuses an Event, as it words them.
var refusals = map[string]struct {
	err        error
	wantReason string
}{
	"namespace terminating": {namespaceTerminating("shop"), RefusedNamespaceTerminating},
	"ResourceQuota on events": {apierrors.NewForbidden(eventsGR, "x", errors.New("exceeded quota: no-events, requested: count/events=1, used: count/events=0, limited: count/events=0")),
		RefusedForbidden},
	"RBAC without events create": {apierrors.NewForbidden(eventsGR, "x", errors.New(`User "system:serviceaccount:gracekeeper:gracekeeper" cannot create resource "events" in API group "" in the namespace "shop"`)),
		RefusedForbidden},
	"admission webhook denies (400)": {apierrors.NewBadRequest(`admission webhook "deny-events.example.com" denied the request: no events here`), RefusedRejected},
	"admission policy denies (422)":  {apierrors.NewInvalid(schema.GroupKind{Kind: "Event"}, "x", nil), RefusedRejected},
}

// fakeCluster is a fake API server holding objs whose Event creates fail
// with refuse (nil: accepted) and whose Node reads fail with nodeErr.
type fakeCluster struct {
	client.WithWatch
	mu      sync.Mutex
	refuse  error
	nodeErr error
	events  int // Event creates accepted
}

func newFakeCluster(refuse error, objs ...client.Object) *fakeCluster {
	f := &fakeCluster{refuse: refuse}
	f.WithWatch = fake.NewClientBuilder().WithScheme(testScheme).WithObjects(objs...).
		WithInterceptorFuncs(interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				if _, ok := obj.(*corev1.Event); ok {
					f.mu.Lock()
					defer f.mu.Unlock()
					if f.refuse != nil {
						return f.refuse
					}
					f.events++
				}
				return c.Create(ctx, obj, opts...)
			},
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if _, ok := obj.(*corev1.Node); ok && f.nodeErr != nil {
					return f.nodeErr
				}
				return c.Get(ctx, key, obj, opts...)
			},
		}).Build()
	return f
}

// logBuffer collects JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }

func (b *logBuffer) ctx() context.Context {
	lg := funcr.NewJSON(func(s string) { b.mu.Lock(); b.buf.WriteString(s + "\n"); b.mu.Unlock() }, funcr.Options{})
	return log.IntoContext(context.Background(), lg)
}

// reconcileUntilGone runs Reconcile as the workqueue would, advancing the
// clock to each requested requeue, until the pod is gone; it returns the
// time that took on the fake clock.
func reconcileUntilGone(t *testing.T, ctx context.Context, r *Reconciler, clk *clocktesting.FakeClock, c client.Client, key client.ObjectKey) time.Duration {
	t.Helper()
	start := clk.Now()
	for i := 0; i < 100; i++ {
		if err := c.Get(ctx, key, &corev1.Pod{}); apierrors.IsNotFound(err) {
			return clk.Now().Sub(start)
		}
		// Both controllers, as the manager runs them.
		res, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: key})
		res2, err2 := r.reconcileCleanups(ctx, reconcile.Request{NamespacedName: key})
		res.RequeueAfter, err = minPositive(res.RequeueAfter, res2.RequeueAfter), errors.Join(err, err2)
		switch {
		case res.RequeueAfter > 0:
			clk.Step(res.RequeueAfter)
		case err != nil:
			clk.Step(time.Second) // the workqueue's rate limiter
		}
	}
	t.Fatalf("pod %s still held after 100 reconciles", key)
	return 0
}

// TestRefusedEventStillReleases: whatever way the API server refuses the
// termination Event, the finalizer goes at once, the record is logged with
// its fields and counted by reason, and a second pass logs nothing twice.
func TestRefusedEventStillReleases(t *testing.T) {
	for name, tc := range refusals {
		t.Run(name, func(t *testing.T) {
			pod := deletedPod(30, "n1", []string{"web"}, corev1.ContainerStatus{Name: "web", State: terminated(143, "Error", t0.Add(5*time.Second))})
			pod.Finalizers = []string{TerminationRecord, keep}
			f := newFakeCluster(tc.err, pod)
			reg := prometheus.NewRegistry()
			clk := clocktesting.NewFakeClock(t0.Add(10 * time.Second))
			r, err := NewReconciler(f, f, Options{Registerer: reg, Clock: clk})
			if err != nil {
				t.Fatal(err)
			}
			var logs logBuffer
			key := client.ObjectKeyFromObject(pod)
			res, err := r.Reconcile(logs.ctx(), reconcile.Request{NamespacedName: key})
			if err != nil || res.RequeueAfter != 0 {
				t.Fatalf("reconcile = %+v, %v; want done in one pass", res, err)
			}
			got := &corev1.Pod{}
			if err := f.Get(context.Background(), key, got); err != nil || fmt.Sprint(got.Finalizers) != fmt.Sprint([]string{keep}) {
				t.Fatalf("finalizers = %v (%v), want only %s", got.Finalizers, err, keep)
			}
			if n := counter(t, reg, "gracekeeper_finalizer_records_unwritten_total", map[string]string{"record": "termination", "reason": tc.wantReason}); n != 1 {
				t.Errorf("records_unwritten_total{reason=%s} = %v, want 1", tc.wantReason, n)
			}
			if n := counter(t, reg, "gracekeeper_finalizer_pods_recorded_total", map[string]string{"cause": "Ended"}); n != 1 {
				t.Errorf("pods_recorded_total = %v, want 1: the record counts though the Event was refused", n)
			}
			out := logs.String()
			for _, want := range []string{`"refusal":"` + tc.wantReason + `"`, `"pod":"web-1"`, `"namespace":"shop"`, `"uid":"` + string(pod.UID) + `"`,
				`"cause":"Ended"`, `"exitCode":143`, `"eventReason":"PodTerminated"`, `web exit 143 Error SIGTERM after 5s of 30s`} {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks %s:\n%s", want, out)
				}
			}
			// A second controller pass (the pod is still there: foreign finalizer) does nothing.
			if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: key}); err != nil {
				t.Fatal(err)
			}
			if n := counter(t, reg, "gracekeeper_finalizer_records_unwritten_total", map[string]string{"record": "termination", "reason": tc.wantReason}); n != 1 {
				t.Errorf("second pass counted again: %v", n)
			}
		})
	}
}

// TestUnavailableEventRetriedThenLogged: an API server failing Event writes
// (5xx) is retried with backoff for EventRetryWindow, then the record is
// logged and the finalizer removed: the bound holds.
func TestUnavailableEventRetriedThenLogged(t *testing.T) {
	pod := deletedPod(30, "", []string{"web"})
	pod.Finalizers = []string{TerminationRecord}
	f := newFakeCluster(apierrors.NewServiceUnavailable("etcd leader changed"), pod)
	reg := prometheus.NewRegistry()
	clk := clocktesting.NewFakeClock(t0)
	r, err := NewReconciler(f, f, Options{Registerer: reg, Clock: clk, BackoffBase: time.Second, BackoffMax: 8 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	took := reconcileUntilGone(t, context.Background(), r, clk, f, client.ObjectKeyFromObject(pod))
	if took < DefaultEventRetryWindow || took > DefaultEventRetryWindow+8*time.Second {
		t.Errorf("released after %v, want within [%v, %v]", took, DefaultEventRetryWindow, DefaultEventRetryWindow+8*time.Second)
	}
	if n := counter(t, reg, "gracekeeper_finalizer_records_unwritten_total", map[string]string{"record": "termination", "reason": RefusedUnavailable}); n != 1 {
		t.Errorf("records_unwritten_total{unavailable} = %v, want 1", n)
	}

	// It comes back within the window: the Event is written, nothing logged.
	pod = deletedPod(30, "", []string{"web"})
	pod.Finalizers = []string{TerminationRecord}
	f = newFakeCluster(apierrors.NewTooManyRequests("slow down", 1), pod)
	r, _ = NewReconciler(f, f, Options{Registerer: prometheus.NewRegistry(), Clock: clk})
	key := client.ObjectKeyFromObject(pod)
	res, _ := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: key})
	if res.RequeueAfter <= 0 {
		t.Fatalf("a transient failure was not retried: %+v", res)
	}
	f.mu.Lock()
	f.refuse = nil
	f.mu.Unlock()
	clk.Step(res.RequeueAfter)
	reconcileUntilGone(t, context.Background(), r, clk, f, key)
	if f.events != 1 {
		t.Errorf("events written = %d, want 1", f.events)
	}
}

// TestGiveUpWithEventRefused: a cleanup past giveUpAfterSeconds is abandoned
// and its finalizer removed although its Warning Event is refused too.
func TestGiveUpWithEventRefused(t *testing.T) {
	rec := policies.CleanupRecord{Policy: "ipam", Finalizer: "example.com/release-ip", URL: "https://ipam.example.invalid/release", TimeoutSeconds: 5, GiveUpAfterSeconds: 60}
	pod := deletedPod(30, "", []string{"web"})
	pod.Finalizers = []string{TerminationRecord, rec.Finalizer}
	pod.Annotations = map[string]string{policies.AnnotationCleanup: cleanupJSON(t, rec)}
	f := newFakeCluster(namespaceTerminating("shop"), pod, cleanupPolicy(rec.Policy, rec.Finalizer, rec.URL, 5, 60))
	reg := prometheus.NewRegistry()
	// Past the give-up: no POST is made (the URL does not resolve anyway).
	clk := clocktesting.NewFakeClock(t0.Add(30*time.Second + 61*time.Second))
	r, _ := NewReconciler(f, f, Options{Registerer: reg, Clock: clk})
	var logs logBuffer
	reconcileUntilGone(t, logs.ctx(), r, clk, f, client.ObjectKeyFromObject(pod))
	for record, want := range map[string]float64{"termination": 1, "cleanup_abandoned": 1} {
		if n := counter(t, reg, "gracekeeper_finalizer_records_unwritten_total", map[string]string{"record": record, "reason": RefusedNamespaceTerminating}); n != want {
			t.Errorf("records_unwritten_total{record=%s} = %v, want %v", record, n, want)
		}
	}
	if !strings.Contains(logs.String(), `"eventReason":"CleanupAbandoned"`) || !strings.Contains(logs.String(), `"finalizer":"example.com/release-ip"`) {
		t.Errorf("abandon record not logged:\n%s", logs.String())
	}
}

// TestNodeUnreadableStillReleases: gracekeeper's RBAC lost nodes get; past
// the grace deadline and margin the pod is recorded (containers unknown) and
// released instead of waiting forever.
func TestNodeUnreadableStillReleases(t *testing.T) {
	pod := deletedPod(30, "n1", []string{"web"})
	pod.Finalizers = []string{TerminationRecord}
	f := newFakeCluster(nil, pod)
	f.nodeErr = apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "n1", errors.New("RBAC: nodes get not allowed"))
	clk := clocktesting.NewFakeClock(t0)
	r, _ := NewReconciler(f, f, Options{Registerer: prometheus.NewRegistry(), Clock: clk, NodeGoneMargin: time.Minute})
	took := reconcileUntilGone(t, context.Background(), r, clk, f, client.ObjectKeyFromObject(pod))
	// deletionTimestamp is t0+30s; + the margin.
	if want := 30*time.Second + time.Minute; took != want {
		t.Errorf("released after %v, want %v (grace deadline + margin)", took, want)
	}
	if f.events != 1 {
		t.Errorf("events = %d, want the one termination record", f.events)
	}
}

// TestReleaseAllWithEventsRefused: release-finalizers (uninstall) removes
// every gracekeeper finalizer although no Event can be written, and logs
// each record.
func TestReleaseAllWithEventsRefused(t *testing.T) {
	var objs []client.Object
	for i := range 5 {
		p := deletedPod(30, "", []string{"web"})
		p.Name, p.UID = fmt.Sprintf("web-%d", i), types.UID(fmt.Sprintf("uid-%04d", i))
		p.Labels = map[string]string{policies.LabelFinalize: "true"}
		p.Finalizers = []string{keep, TerminationRecord}
		objs = append(objs, p)
	}
	f := newFakeCluster(namespaceTerminating("shop"), objs...)
	reg := prometheus.NewRegistry()
	var logs logBuffer
	rep, err := ReleaseAll(logs.ctx(), f, ReleaseOptions{Options: Options{Registerer: reg}})
	if err != nil || rep.Released != 5 || rep.Failed != 0 {
		t.Fatalf("report %v, err %v; want 5 released", rep, err)
	}
	l := &corev1.PodList{}
	if err := f.List(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	for _, p := range l.Items {
		if fmt.Sprint(p.Finalizers) != fmt.Sprint([]string{keep}) {
			t.Errorf("pod %s finalizers %v", p.Name, p.Finalizers)
		}
	}
	if n := counter(t, reg, "gracekeeper_finalizer_records_unwritten_total", map[string]string{"record": "termination", "reason": RefusedNamespaceTerminating}); n != 5 {
		t.Errorf("records_unwritten_total = %v, want 5", n)
	}
	if got := strings.Count(logs.String(), `"refusal":"namespace_terminating"`); got != 5 {
		t.Errorf("logged records = %d, want 5", got)
	}
}
