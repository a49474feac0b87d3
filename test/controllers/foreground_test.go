package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// foregroundBound is how long a foreground deletion of a 2-replica
// Deployment may take; the garbage collector alone takes a few seconds.
const foregroundBound = 60 * time.Second

// TestForegroundDeletionCompletes: deleting, with propagationPolicy
// Foreground (kubectl delete --cascade=foreground), a Deployment that a Deny
// policy selects but that predates it finishes: the API server puts the
// foregroundDeletion finalizer on the Deployment, the garbage collector
// deletes its ReplicaSet (also in the foreground) and pods, then removes the
// finalizer from each owner with a PATCH, an UPDATE to admission
// (pkg/controller/garbagecollector/garbagecollector.go,
// removeFinalizer), which gracekeeper must not refuse.
func TestForegroundDeletionCompletes(t *testing.T) {
	ns, scenario := newNamespace(t)
	if err := env.c.Create(ctxFor(t, 30*time.Second), newDeployment(ns, "web", 2, tightGrace)); err != nil {
		t.Fatal(err)
	}
	waitPods(t, ns, "web", 2, nil)

	createPolicy(t, ns, "foreground-"+scenario, denyPolicy(scenario))

	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
	start := time.Now()
	if err := env.c.Delete(ctxFor(t, 30*time.Second), d, client.PropagationPolicy(metav1.DeletePropagationForeground)); err != nil {
		t.Fatal(err)
	}
	err := poll(foregroundBound, func(ctx context.Context) (bool, string) {
		left := ""
		got := &appsv1.Deployment{}
		if err := env.c.Get(ctx, client.ObjectKeyFromObject(d), got); !apierrors.IsNotFound(err) {
			left += fmt.Sprintf("deployment finalizers %v (err %v); ", got.Finalizers, err)
		}
		var rss appsv1.ReplicaSetList
		if err := env.c.List(ctx, &rss, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		for _, rs := range rss.Items {
			left += fmt.Sprintf("rs %s finalizers %v; ", rs.Name, rs.Finalizers)
		}
		var pods corev1.PodList
		if err := env.c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		if len(pods.Items) > 0 {
			left += fmt.Sprintf("%d pods", len(pods.Items))
		}
		return left == "", left
	})
	if err != nil {
		t.Fatalf("foreground deletion of the pre-policy Deployment did not finish: %v\nwarning events:%s", err, recentEvents(ns))
	}
	t.Logf("foreground deletion finished in %s (bound %s)", time.Since(start).Round(100*time.Millisecond), foregroundBound)
}
