package finalizer

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const keep = "example.com/keep"

// TestTerminationRecords deletes pods the way a user does, reports their
// containers' ends as the kubelet would, and checks the one Event on the
// right owner, the metrics, and that only gracekeeper's finalizer went.
func TestTerminationRecords(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := newNamespace(t)
	reg := prometheus.NewRegistry()
	startManager(t, Options{Registerer: reg, NodeGoneMargin: 2 * time.Second}, nil)

	// A Deployment -> ReplicaSet chain (no controllers run here: made by hand).
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "shop"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "x"}}}}}}
	if err := c.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "shop-5d8f", Namespace: ns,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID, Controller: ptr.To(true)}}},
		Spec: appsv1.ReplicaSetSpec{Selector: dep.Spec.Selector, Template: dep.Spec.Template}}
	if err := c.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	rsRef := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}
	stsRef := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", UID: "sts-uid", Controller: ptr.To(true)}
	goneRSRef := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "cart-7c9b", UID: "rs-gone", Controller: ptr.To(true)}

	// A node whose kubelet stopped reporting: Ready=False.
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-notready"}}
	if err := c.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletStopped"}}
	if err := c.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, node) })

	type endFn func(deadline time.Time) []corev1.ContainerState
	cases := map[string]struct {
		spec        podSpec
		phase       corev1.PodPhase
		end         endFn // nil: no status is ever reported
		confirm     bool  // the kubelet's final delete follows the status
		wantKind    string
		wantName    string
		wantReason  string
		wantMessage []string
	}{
		"completed under a Deployment": {
			spec:  podSpec{node: "node-a", grace: 30, owner: rsRef},
			phase: corev1.PodSucceeded,
			end: func(d time.Time) []corev1.ContainerState {
				return []corev1.ContainerState{terminated(0, "Completed", d.Add(-27*time.Second))}
			},
			wantKind: "Deployment", wantName: "shop", wantReason: "PodTerminated", wantMessage: []string{"web exit 0 Completed after 3s of 30s"},
		},
		"OOMKilled in a StatefulSet": {
			spec: podSpec{node: "node-a", grace: 30, owner: stsRef},
			end: func(d time.Time) []corev1.ContainerState {
				return []corev1.ContainerState{terminated(137, "OOMKilled", d.Add(-20*time.Second))}
			},
			wantKind: "StatefulSet", wantName: "db", wantReason: "OOMKilled", wantMessage: []string{"web exit 137 OOMKilled SIGKILL after 10s of 30s"},
		},
		"overrun: exit 137 at the deadline, bare pod": {
			spec: podSpec{node: "node-a", grace: 20},
			end: func(d time.Time) []corev1.ContainerState {
				return []corev1.ContainerState{terminated(137, "Error", d.Add(time.Second))}
			},
			confirm:  true,
			wantKind: "Pod", wantReason: "ShutdownOverrun", wantMessage: []string{"web exit 137 Error SIGKILL", "killed at the grace deadline"},
		},
		"ReplicaSet already gone: Deployment from the hash": {
			spec: podSpec{node: "node-a", grace: 30, owner: goneRSRef, labels: map[string]string{"pod-template-hash": "7c9b"}},
			end: func(d time.Time) []corev1.ContainerState {
				return []corev1.ContainerState{terminated(143, "Error", d.Add(-25*time.Second))}
			},
			wantKind: "Deployment", wantName: "cart", wantReason: "PodTerminated", wantMessage: []string{"exit 143 Error SIGTERM after 5s"},
		},
		"never scheduled: finalized right away": {
			spec:     podSpec{grace: 30},
			wantKind: "Pod", wantReason: "PodTerminated", wantMessage: []string{"deleted before it was scheduled"},
		},
		"node NotReady past the deadline and margin": {
			spec:     podSpec{node: "node-notready", grace: 1},
			wantKind: "Pod", wantReason: "NodeLost", wantMessage: []string{"node node-notready is gone or NotReady"},
		},
		"node gone past the deadline and margin": {
			spec:     podSpec{node: "node-that-left", grace: 1},
			wantKind: "Pod", wantReason: "NodeLost", wantMessage: []string{"node node-that-left is gone", "web state unknown"},
		},
	}
	i := 0
	for name, tc := range cases {
		i++
		t.Run(name, func(t *testing.T) {
			s := tc.spec
			s.name = "p" + strings.Repeat("x", i)
			s.finalizers = []string{keep, TerminationRecord}
			p := createPod(t, ns, s)
			deletePod(t, p)
			if tc.end != nil {
				setStatus(t, p, tc.phase, tc.end(p.DeletionTimestamp.Time)...)
				if tc.confirm {
					// Races with the controller: it may see either deletion state.
					kubeletConfirmsDeletion(t, p)
				}
			}
			waitFinalizers(t, ns, p.Name, []string{keep}, 20*time.Second)

			var mine []corev1.Event
			for _, e := range ourEvents(t, ns) {
				if e.Name == TerminationEventName(p) {
					mine = append(mine, e)
				}
			}
			if len(mine) != 1 {
				t.Fatalf("termination events for %s = %d, want 1", p.Name, len(mine))
			}
			e := mine[0]
			wantName := tc.wantName
			if tc.wantKind == "Pod" {
				wantName = p.Name
			}
			if e.InvolvedObject.Kind != tc.wantKind || e.InvolvedObject.Name != wantName || e.Reason != tc.wantReason {
				t.Errorf("event on %s/%s reason %s; want %s/%s %s", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, tc.wantKind, wantName, tc.wantReason)
			}
			if tc.wantKind != "Pod" && (e.Related == nil || e.Related.UID != p.UID) {
				t.Errorf("event does not name the pod as related: %+v", e.Related)
			}
			for _, m := range tc.wantMessage {
				if !strings.Contains(e.Message, m) {
					t.Errorf("message %q lacks %q", e.Message, m)
				}
			}
			removeFinalizer(t, p, keep)
		})
	}
	// Metrics: one pod per case, counted by cause and reason, one overrun.
	for labels, want := range map[string]float64{"Ended": 4, "NeverScheduled": 1, "NodeLost": 2} {
		if got := counter(t, reg, "gracekeeper_finalizer_pods_recorded_total", map[string]string{"cause": labels}); got != want {
			t.Errorf("pods_recorded_total{cause=%s} = %v, want %v", labels, got, want)
		}
	}
	for labels, want := range map[string]float64{"Completed": 1, "OOMKilled": 1, "Error": 2, "Unknown": 3} {
		if got := counter(t, reg, "gracekeeper_finalizer_container_terminations_total", map[string]string{"reason": labels}); got != want {
			t.Errorf("container_terminations_total{reason=%s} = %v, want %v", labels, got, want)
		}
	}
	if got := counter(t, reg, "gracekeeper_finalizer_shutdown_overruns_total", nil); got != 1 {
		t.Errorf("shutdown_overruns_total = %v, want 1", got)
	}
}

// TestRunningPodKeepsFinalizers: a pod whose containers still run keeps its
// finalizer (node present and Ready would be the real case; here the
// margin is long), and a pod not deleted is never touched.
func TestRunningPodKeepsFinalizers(t *testing.T) {
	ns := newNamespace(t)
	startManager(t, Options{NodeGoneMargin: time.Hour}, nil)
	alive := createPod(t, ns, podSpec{name: "alive", node: "node-a", grace: 30, finalizers: []string{TerminationRecord}})
	dying := createPod(t, ns, podSpec{name: "dying", node: "node-a", grace: 30, finalizers: []string{TerminationRecord, keep}})
	setStatus(t, dying, corev1.PodRunning, corev1.ContainerState{Running: &corev1.ContainerStateRunning{}})
	deletePod(t, dying)
	// Give the controller time to act wrongly, then look: nothing may have changed.
	time.Sleep(time.Second)
	waitFinalizers(t, ns, alive.Name, []string{TerminationRecord}, time.Second)
	waitFinalizers(t, ns, dying.Name, []string{TerminationRecord, keep}, time.Second)
	if ev := ourEvents(t, ns); len(ev) != 0 {
		t.Errorf("events for running pods: %v", ev)
	}
	// The kubelet reports the end: now it is recorded.
	setStatus(t, dying, corev1.PodFailed, terminated(143, "Error", time.Now()))
	waitFinalizers(t, ns, dying.Name, []string{keep}, 10*time.Second)
	removeFinalizer(t, dying, keep)
}
