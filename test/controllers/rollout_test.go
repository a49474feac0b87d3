package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// rolloutBound is how long the Deployment controller may take to move a
// 2-replica Deployment to a new template here (no kubelet: nothing waits for
// readiness); it takes a few seconds unrefused.
const rolloutBound = 60 * time.Second

// TestRolloutOfPrePolicyDeployment: a Deployment created before a Deny
// policy, with a template the policy would deny, is fixed by its owner (a
// template that fits) and rolls out: the Deployment controller creates the
// new ReplicaSet and scales the old one to 0 with UPDATEs of its
// spec.replicas and annotations (pkg/controller/deployment/rolling.go,
// sync.go), which gracekeeper must not refuse although the old ReplicaSet's
// template still does not fit.
func TestRolloutOfPrePolicyDeployment(t *testing.T) {
	ns, scenario := newNamespace(t)
	d := newDeployment(ns, "web", 2, tightGrace)
	rollingAllAtOnce(d)
	if err := env.c.Create(ctxFor(t, 30*time.Second), d); err != nil {
		t.Fatal(err)
	}
	waitPods(t, ns, "web", 2, nil)
	var oldRS string
	eventually(t, "the first ReplicaSet", 30*time.Second, func(ctx context.Context) (bool, string) {
		rss, err := replicaSets(ctx, ns, "web")
		if err != nil || len(rss) != 1 {
			return false, fmt.Sprintf("%d ReplicaSets, %v", len(rss), err)
		}
		oldRS = rss[0].Name
		return true, ""
	})

	createPolicy(t, ns, "rollout-"+scenario, denyPolicy(scenario))

	// The owner's fix: a template that fits (its own UPDATE, judged).
	start := time.Now()
	if err := updateDeployment(t, ns, "web", func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](roomyGrace)
	}); err != nil {
		t.Fatalf("the fitting template was refused: %v", err)
	}

	err := poll(rolloutBound, func(ctx context.Context) (bool, string) {
		return rolledOut(ctx, ns, "web", oldRS, 2)
	})
	if err != nil {
		t.Fatalf("rollout of the fixed template did not complete: %v\nwarning events:%s", err, recentEvents(ns))
	}
	t.Logf("rolled out in %s: old ReplicaSet %s at 0, new one at 2 with gracekeeper's hooks", time.Since(start).Round(100*time.Millisecond), oldRS)
}

// TestScalePrePolicyDeployment: scaling (what kubectl scale and the HPA do,
// through the scale subresource) a Deployment created before a Deny policy
// reaches its ReplicaSet: the Deployment controller's UPDATE of the
// ReplicaSet's spec.replicas must pass even though its template does not fit.
// Scaling down needs no new pod, so nothing here is for the policy to deny.
func TestScalePrePolicyDeployment(t *testing.T) {
	ns, scenario := newNamespace(t)
	if err := env.c.Create(ctxFor(t, 30*time.Second), newDeployment(ns, "web", 3, tightGrace)); err != nil {
		t.Fatal(err)
	}
	waitPods(t, ns, "web", 3, nil)

	createPolicy(t, ns, "scale-"+scenario, denyPolicy(scenario))

	ctx := ctxFor(t, 30*time.Second)
	scale, err := env.cs.AppsV1().Deployments(ns).GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 1
	if _, err := env.cs.AppsV1().Deployments(ns).UpdateScale(ctx, "web", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("scale subresource refused: %v", err)
	}
	err = poll(rolloutBound, func(ctx context.Context) (bool, string) {
		rss, err := replicaSets(ctx, ns, "web")
		if err != nil || len(rss) != 1 {
			return false, fmt.Sprintf("%d ReplicaSets, %v", len(rss), err)
		}
		rs := rss[0]
		return ptr.Deref(rs.Spec.Replicas, -1) == 1 && rs.Status.Replicas == 1,
			fmt.Sprintf("ReplicaSet %s spec.replicas %d status.replicas %d", rs.Name, ptr.Deref(rs.Spec.Replicas, -1), rs.Status.Replicas)
	})
	if err != nil {
		t.Fatalf("scaling the pre-policy Deployment to 1 did not reach its ReplicaSet: %v\nwarning events:%s", err, recentEvents(ns))
	}
	waitPods(t, ns, "web", 1, nil)
}

// rolledOut reports whether Deployment name has rolled out to its current
// template as far as a control plane without a kubelet can: observed its
// generation, every replica updated, the old ReplicaSet at 0 (spec and
// status) and the new one at want, with pods gracekeeper mutated.
func rolledOut(ctx context.Context, ns, name, oldRS string, want int32) (bool, string) {
	d := &appsv1.Deployment{}
	if err := env.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
		return false, err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "deployment generation %d observed %d updated %d replicas %d;", d.Generation, d.Status.ObservedGeneration, d.Status.UpdatedReplicas, d.Status.Replicas)
	rss, err := replicaSets(ctx, ns, name)
	if err != nil {
		return false, err.Error()
	}
	var oldDown, newUp bool
	var newRS string
	for _, rs := range rss {
		fmt.Fprintf(&b, " rs %s spec %d status %d;", rs.Name, ptr.Deref(rs.Spec.Replicas, -1), rs.Status.Replicas)
		if rs.Name == oldRS {
			oldDown = ptr.Deref(rs.Spec.Replicas, -1) == 0 && rs.Status.Replicas == 0
		} else if ptr.Deref(rs.Spec.Replicas, -1) == want && rs.Status.Replicas == want {
			newUp, newRS = true, rs.Name
		}
	}
	if !(d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want && d.Status.Replicas == want && oldDown && newUp) {
		return false, b.String()
	}
	// The new pods went through gracekeeper's mutation.
	var pods corev1.PodList
	if err := env.c.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": name}); err != nil {
		return false, err.Error()
	}
	mutated := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && len(p.OwnerReferences) == 1 && p.OwnerReferences[0].Name == newRS && preStopSleep(&p) == 25 {
			mutated++
		}
	}
	fmt.Fprintf(&b, " %d pods of %s with the injected preStop", mutated, newRS)
	return mutated == int(want) && len(pods.Items) == int(want), b.String()
}

// preStopSleep is the native sleep preStop seconds of the pod's first
// container, or -1.
func preStopSleep(p *corev1.Pod) int64 {
	if c := p.Spec.Containers[0]; c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		return c.Lifecycle.PreStop.Sleep.Seconds
	}
	return -1
}

// updateDeployment applies change to the current Deployment, retrying on
// conflicts with the Deployment controller's own writes.
func updateDeployment(t *testing.T, ns, name string, change func(*appsv1.Deployment)) error {
	t.Helper()
	var last error
	for range 10 {
		ctx := ctxFor(t, 30*time.Second)
		d := &appsv1.Deployment{}
		if err := env.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
			return err
		}
		change(d)
		last = env.c.Update(ctx, d)
		if last == nil || !apierrors.IsConflict(last) {
			return last
		}
	}
	return last
}
