package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// namespaceDeletionBound is how long deleting a namespace may take with
// gracekeeper installed. The namespace controller alone takes a few
// seconds here; the bound leaves room for the finalizer controller's
// retries on a shared machine, and is far below "forever".
const namespaceDeletionBound = 60 * time.Second

// TestNamespaceDeletionCompletes: a namespace holding pods with
// gracekeeper's termination-record finalizer (standalone and owned by a
// Deployment's ReplicaSet) and a Deployment that a Deny policy selects but
// that predates it, is deleted by the namespace controller within
// namespaceDeletionBound. In a Terminating namespace the API server refuses
// every create, the termination Event included
// (plugin/pkg/admission/namespace/lifecycle), so gracekeeper must release
// its finalizers without that Event; the namespace controller waits for
// every pod to be gone (pkg/controller/namespace/deletion).
func TestNamespaceDeletionCompletes(t *testing.T) {
	ns, scenario := newNamespace(t)

	// A workload from before the policy: it would be denied today.
	old := newDeployment(ns, "legacy", 2, tightGrace)
	if err := env.c.Create(ctxFor(t, 30*time.Second), old); err != nil {
		t.Fatal(err)
	}
	waitPods(t, ns, "legacy", 2, nil)

	createPolicy(t, ns, "nsdel-"+scenario, denyPolicy(scenario, v1alpha1.TerminationRecordFinalizer))

	for i := range 3 {
		p := newPod(ns, fmt.Sprintf("solo-%d", i), roomyGrace)
		p.Labels["app"] = "solo"
		if err := env.c.Create(ctxFor(t, 30*time.Second), p); err != nil {
			t.Fatalf("create pod: %v", err)
		}
		if !hasFinalizer(p) {
			t.Fatalf("pod %s has no termination-record finalizer: %v %v", p.Name, p.Finalizers, p.Labels)
		}
	}
	if err := env.c.Create(ctxFor(t, 30*time.Second), newDeployment(ns, "web", 2, roomyGrace)); err != nil {
		t.Fatal(err)
	}
	// The ReplicaSet controller's pods get the finalizer too; their Event
	// would go on the ReplicaSet.
	waitPods(t, ns, "web", 2, hasFinalizer)

	nsObj := &corev1.Namespace{}
	if err := env.c.Get(ctxFor(t, 10*time.Second), client.ObjectKey{Name: ns}, nsObj); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := env.c.Delete(ctxFor(t, 10*time.Second), nsObj); err != nil {
		t.Fatal(err)
	}
	err := poll(namespaceDeletionBound, func(ctx context.Context) (bool, string) {
		err := env.c.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		return false, namespaceState(ctx, ns)
	})
	if err != nil {
		t.Fatalf("namespace %s still there %s after its deletion: %v", ns, namespaceDeletionBound, err)
	}
	t.Logf("namespace with 5 finalized pods and a pre-policy Deployment deleted in %s (bound %s)",
		time.Since(start).Round(100*time.Millisecond), namespaceDeletionBound)
}

// namespaceState says why a namespace is still there: its conditions and
// the pods left, with their finalizers.
func namespaceState(ctx context.Context, ns string) string {
	var b strings.Builder
	n := &corev1.Namespace{}
	if err := env.c.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
		return err.Error()
	}
	fmt.Fprintf(&b, "phase %s", n.Status.Phase)
	for _, c := range n.Status.Conditions {
		if c.Status == corev1.ConditionTrue {
			fmt.Fprintf(&b, "; %s: %s", c.Type, c.Message)
		}
	}
	var pods corev1.PodList
	if err := env.c.List(ctx, &pods, client.InNamespace(ns)); err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "; pod %s finalizers %v", p.Name, p.Finalizers)
		}
	}
	return b.String()
}
