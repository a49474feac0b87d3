package finalizer

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// refusingNamespace makes a namespace whose Event creates the real API
// server refuses, in one of two ways; it waits until a probe Event is
// refused and returns the API server's words.
type refusingNamespace func(t *testing.T, c client.Client, ns string)

var refusingNamespaces = map[string]struct {
	make       refusingNamespace
	wantReason string
}{
	// A namespace with the "kubernetes" finalizer in spec.finalizers stays
	// Terminating until the namespace controller empties it: without
	// kube-controller-manager, for good.
	"namespace terminating": {func(t *testing.T, c client.Client, ns string) {
		if err := c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}, RefusedNamespaceTerminating},
	// (A ResourceQuota on count/events is not this test's: kube-apiserver
	// ignores events for quota by default, pkg/quota/v1/install/registry.go
	// ignoredResources; measured here, Events stayed accepted. The refusal
	// a quota would give, 403 "exceeded quota", is in TestRefusedEventStillReleases.)
	// An admission policy (in-process, like a webhook) that denies Events.
	"admission policy denies Events": {func(t *testing.T, c client.Client, ns string) {
		ctx := context.Background()
		fail := admissionregistrationv1.Fail
		pol := &admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny-events-" + ns},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				FailurePolicy: &fail,
				MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
						Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"events"}}}}}},
				Validations: []admissionregistrationv1.Validation{{Expression: "false", Message: "no events in this namespace"}},
			}}
		if err := c.Create(ctx, pol); err != nil {
			t.Fatal(err)
		}
		b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: pol.Name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: pol.Name,
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
				MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
					MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}}}}
		if err := c.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(ctx, b); _ = c.Delete(ctx, pol) })
	}, RefusedRejected},
}

// waitEventsRefused probes until the API server refuses an Event in ns.
func waitEventsRefused(t *testing.T, c client.Client, ns string) error {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Namespace: ns},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "x", Namespace: ns}, Reason: "Probe", Message: "probe", Type: corev1.EventTypeNormal}
		last = c.Create(ctx, ev)
		if last == nil {
			_ = c.Delete(ctx, ev)
		}
		return last != nil && !apierrors.IsAlreadyExists(last), nil
	})
	if err != nil {
		t.Fatalf("Events are still accepted in %s: %v", ns, err)
	}
	return last
}

// TestRefusedEventsThroughAPIServer: with the real API server refusing the
// Events (a Terminating namespace, an admission policy), every
// gracekeeper finalizer still goes, within seconds of the pod's end and,
// for a cleanup, of its give-up, and each record is counted by reason.
func TestRefusedEventsThroughAPIServer(t *testing.T) {
	c := cluster(t)
	reg := prometheus.NewRegistry()
	ep := &endpoint{bodies: map[string][]CleanupRequest{}, keys: map[string][]string{}, calls: map[string]*atomic.Int32{}}
	ep.down.Store(true)
	srv := httpsServer(t, ep)
	startManager(t, Options{Registerer: reg, HTTPClient: srv.Client(), BackoffBase: 200 * time.Millisecond, BackoffMax: time.Second}, nil)
	for name, tc := range refusingNamespaces {
		t.Run(name, func(t *testing.T) {
			ns := newNamespace(t)
			rec := createPolicy(t, "ipam-"+ns, "example.com/release-ip", srv.URL+"/down", 1, 2)
			ended := createPod(t, ns, podSpec{name: "ended", node: "node-a", grace: 30, finalizers: []string{keep, TerminationRecord}})
			setStatus(t, ended, corev1.PodSucceeded, terminated(0, "Completed", time.Now()))
			never := createPod(t, ns, podSpec{name: "never", grace: 30, finalizers: []string{keep, TerminationRecord, rec.Finalizer}, cleanup: cleanupJSON(t, rec)})
			tc.make(t, c, ns)
			refused := waitEventsRefused(t, c, ns)
			t.Logf("the API server says: %v", refused)
			if got, _ := refusal(refused); got != tc.wantReason {
				t.Fatalf("refusal(%v) = %s, want %s", refused, got, tc.wantReason)
			}
			before := counter(t, reg, "gracekeeper_finalizer_records_unwritten_total", map[string]string{"record": "termination", "reason": tc.wantReason})
			start := time.Now()
			deletePod(t, ended)
			deletePod(t, never)
			waitFinalizers(t, ns, ended.Name, []string{keep}, 10*time.Second)
			t.Logf("ended pod released %v after its deletion", time.Since(start).Round(10*time.Millisecond))
			// The cleanup endpoint is down: given up at deletion + 2s.
			waitFinalizers(t, ns, never.Name, []string{keep}, 15*time.Second)
			took := time.Since(start)
			t.Logf("never-scheduled pod with a failing cleanup released %v after its deletion (giveUpAfterSeconds 2)", took.Round(10*time.Millisecond))
			if took > 2*time.Second+10*time.Second {
				t.Errorf("released %v after the deletion, want within giveUpAfterSeconds + 10s", took)
			}
			if n := counter(t, reg, "gracekeeper_finalizer_records_unwritten_total", map[string]string{"record": "termination", "reason": tc.wantReason}) - before; n != 2 {
				t.Errorf("termination records_unwritten_total{%s} grew by %v, want 2", tc.wantReason, n)
			}
			if n := len(ourEvents(t, ns)); n != 0 {
				t.Errorf("%d Events of ours got through", n)
			}
			for _, p := range []*corev1.Pod{ended, never} {
				removeFinalizer(t, p, keep)
			}
		})
	}
	if n := counter(t, reg, "gracekeeper_finalizer_records_unwritten_total", map[string]string{"record": "cleanup_abandoned", "reason": RefusedNamespaceTerminating}); n != 1 {
		t.Errorf("cleanup_abandoned records_unwritten_total{namespace_terminating} = %v, want 1", n)
	}
}

// TestReleaseAllInTerminatingNamespace: release-finalizers frees pods whose
// Events are refused (their namespace is being deleted), running or not.
func TestReleaseAllInTerminatingNamespace(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := newNamespace(t)
	alive := createPod(t, ns, podSpec{name: "alive", node: "node-a", grace: 30, finalizers: []string{keep, TerminationRecord}})
	dying := createPod(t, ns, podSpec{name: "dying", node: "node-a", grace: 30, finalizers: []string{keep, TerminationRecord}})
	setStatus(t, dying, corev1.PodRunning, corev1.ContainerState{Running: &corev1.ContainerStateRunning{}})
	deletePod(t, dying)
	refusingNamespaces["namespace terminating"].make(t, c, ns)
	waitEventsRefused(t, c, ns)
	reg := prometheus.NewRegistry()
	rep, err := ReleaseAll(ctx, c, ReleaseOptions{Options: Options{Registerer: reg}})
	if err != nil || rep.Failed != 0 {
		t.Fatalf("report %v, err %v", rep, err)
	}
	for _, p := range []*corev1.Pod{alive, dying} {
		waitFinalizers(t, ns, p.Name, []string{keep}, time.Second)
	}
	if n := counter(t, reg, "gracekeeper_finalizer_records_unwritten_total", map[string]string{"record": "termination", "reason": RefusedNamespaceTerminating}); n != 1 {
		t.Errorf("records_unwritten_total = %v, want 1 (the dying pod; the running one has nothing to record)", n)
	}
	for _, p := range []*corev1.Pod{alive, dying} {
		if err := c.Delete(ctx, p, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		removeFinalizer(t, p, keep)
	}
}
