//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/gracekeeper/gracekeeper/finalizer"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// This file is named to sort before e2e_test.go, whose last subtest may
// uninstall gracekeeper.

// exitSink is the cleanup endpoint of the test: it listens on the node's
// address inside the test's own network namespace (make e2e-local runs the
// suite there) and counts each idempotency key it is called with.
type exitSink struct {
	mu     sync.Mutex
	keys   map[string]int
	bodies []finalizer.CleanupRequest
	srv    *http.Server
	port   int
}

func (k *exitSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body finalizer.CleanupRequest
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	_ = json.Unmarshal(raw, &body)
	k.mu.Lock()
	k.keys[r.Header.Get("Idempotency-Key")]++
	k.bodies = append(k.bodies, body)
	k.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (k *exitSink) calls(key string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys[key]
}

func (k *exitSink) body(key string) *finalizer.CleanupRequest {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := range k.bodies {
		if k.bodies[i].IdempotencyKey == key {
			return &k.bodies[i]
		}
	}
	return nil
}

// nodeAddress is the node's InternalIP.
func (s *suite) nodeAddress(t *testing.T) string {
	t.Helper()
	nodes, err := s.cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 1 {
		t.Skipf("the container-exit cleanup check needs exactly one node (the local node of make e2e-local): %d nodes, %v", len(nodes.Items), err)
	}
	for _, a := range nodes.Items[0].Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	t.Skip("the node has no InternalIP")
	return ""
}

// startSink listens on the node's address; that address belongs to the
// test's network namespace only on the local node (make e2e-local).
func startSink(t *testing.T, addr string) *exitSink {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Skipf("cannot listen on the node address %s from the test (make e2e-local runs the suite in the node's network namespace; kind does not): %v", addr, err)
	}
	k := &exitSink{keys: map[string]int{}, port: l.Addr().(*net.TCPAddr).Port}
	k.srv = &http.Server{Handler: k, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = k.srv.Serve(l) }()
	t.Cleanup(func() { _ = k.srv.Close() })
	return k
}

// sinkHost is the cluster-local name the gracekeeper pods resolve to the
// sink (a hostAliases entry): a policy's plain-http URL must name a .svc host.
const sinkHost = "exit-sink.gracekeeper-e2e.svc"

// withHostAlias rolls the gracekeeper Deployment out with sinkHost -> ip in
// its pods' /etc/hosts (and out again when the test ends).
func (s *suite) withHostAlias(t *testing.T, ip string) {
	t.Helper()
	ctx := context.Background()
	relNS, rel := env("GRACEKEEPER_E2E_NAMESPACE", "gracekeeper-system"), env("GRACEKEEPER_E2E_RELEASE", "gracekeeper")
	set := func(aliases []corev1.HostAlias) {
		raw, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"hostAliases": aliases}}}})
		if _, err := s.cs.AppsV1().Deployments(relNS).Patch(ctx, rel, types.StrategicMergePatchType, raw, metav1.PatchOptions{}); err != nil {
			t.Fatalf("patch deployment %s/%s: %v", relNS, rel, err)
		}
		s.waitRollout(t, relNS, rel)
	}
	set([]corev1.HostAlias{{IP: ip, Hostnames: []string{sinkHost}}})
	t.Cleanup(func() { set(nil) })
}

// waitRollout waits until the Deployment's pods are all of its current
// template, none of the old ones is left (a terminating old pod still
// leads while it drains), and one of the new ones holds the leader lease.
func (s *suite) waitRollout(t *testing.T, ns, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := s.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		want := ptr.Deref(d.Spec.Replicas, 1)
		if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas != want || d.Status.ReadyReplicas != want || d.Status.Replicas != want {
			return false, nil
		}
		sel, _ := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		pods, err := s.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil || int32(len(pods.Items)) != want {
			return false, nil
		}
		l, err := s.cs.CoordinationV1().Leases(ns).Get(ctx, "gracekeeper-leader", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return false, nil
		}
		holder, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				return false, nil
			}
		}
		for _, p := range pods.Items {
			if p.Name == holder {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("deployment %s/%s never rolled out with a new leader", ns, name)
	}
}

// killLeader deletes the gracekeeper pod that holds the leader lease with
// grace 0 (SIGKILL: no drain, the lease is not released) and waits until
// another replica holds the lease, which it may take only once the lease
// has expired.
func (s *suite) killLeader(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	relNS := env("GRACEKEEPER_E2E_NAMESPACE", "gracekeeper-system")
	holder := func() string {
		l, err := s.cs.CoordinationV1().Leases(relNS).Get(ctx, "gracekeeper-leader", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		pod, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
		return pod
	}
	old := holder()
	if old == "" {
		t.Fatal("no leader holds the lease gracekeeper-leader")
	}
	start := time.Now()
	if err := s.cs.CoreV1().Pods(relNS).Delete(ctx, old, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatalf("delete leader pod %s: %v", old, err)
	}
	var now string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		now = holder()
		return now != "" && now != old, nil
	})
	if err != nil {
		t.Fatalf("no new leader after %s was killed", old)
	}
	t.Logf("leader %s killed; %s leads %v later", old, now, time.Since(start).Round(100*time.Millisecond))
}

// exitEvent waits for the record of one container exit, on the pod.
func (s *suite) exitEvent(t *testing.T, p *corev1.Pod, container string, restart int32, timeout time.Duration) *corev1.Event {
	t.Helper()
	name := finalizer.ExitEventName(p, container, restart)
	var ev *corev1.Event
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		e, err := s.cs.CoreV1().Events(s.ns).Get(ctx, name, metav1.GetOptions{})
		ev = e
		return err == nil, nil
	})
	if err != nil {
		got, _ := s.cs.CoreV1().Pods(s.ns).Get(context.Background(), p.Name, metav1.GetOptions{})
		t.Fatalf("no record of exit #%d of %s/%s (Event %s); container statuses: %+v", restart, p.Name, container, name, got.Status.ContainerStatuses)
	}
	t.Logf("exit record %s: %s %s: %s", name, ev.Type, ev.Reason, ev.Message)
	return ev
}

// TestContainerExits: on the real node, every exit of a running pod's
// container is recorded once, with its last log lines, and its cleanup
// called once, without deleting the pod, across a change of leader.
func TestContainerExits(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	sink := startSink(t, s.nodeAddress(t))
	s.withHostAlias(t, s.nodeAddress(t))
	s.policy(t, "exits", v1alpha1.LifecyclePolicySpec{
		Finalizers:     []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer},
		ContainerExits: &v1alpha1.ContainerExits{LogLines: 5},
		Cleanup: &v1alpha1.Cleanup{Finalizer: "e2e.gracekeeper.dev/scratch", URL: fmt.Sprintf("http://%s:%d/cleanup", sinkHost, sink.port),
			TimeoutSeconds: 5, GiveUpAfterSeconds: ptr.To[int64](60),
			When: []v1alpha1.CleanupTrigger{v1alpha1.CleanupOnDeletion, v1alpha1.CleanupOnContainerExit}},
	})

	// A Deployment's container (restartPolicy Always) that exceeds its
	// memory limit each run: dd, as PID 1, allocates 64 MiB against 32 MiB.
	// Each run numbers itself in an emptyDir, which outlives the container.
	oomScript := `n=$(( $(cat /runs/n 2>/dev/null || echo 0) + 1 )); echo $n > /runs/n; ` +
		`echo "oom run $n: starting"; echo "oom run $n: allocating 64M against a 32Mi limit"; sleep 2; ` +
		`exec dd if=/dev/zero of=/dev/null bs=64M count=1`
	tmpl := s.pod("exits", "oom", 5, oomScript)
	tmpl.Labels["app"] = "oom"
	tmpl.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}
	tmpl.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "runs", MountPath: "/runs"}}
	tmpl.Spec.Volumes = []corev1.Volume{{Name: "runs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "oom", Namespace: s.ns}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "oom"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: tmpl.Labels}, Spec: tmpl.Spec}}}
	if _, err := s.cs.AppsV1().Deployments(s.ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A bare pod (restartPolicy Always by default) whose container exits 3.
	crash := s.pod("exits", "crash", 5, `echo "crash run: about to exit 3"; sleep 2; exit 3`)
	if err := s.c.Create(ctx, crash); err != nil {
		t.Fatal(err)
	}
	oom := s.podOf(t, "app=oom")

	first := s.exitEvent(t, oom, "app", 0, 2*time.Minute)
	second := s.exitEvent(t, oom, "app", 1, 2*time.Minute)
	// Mid-way, after the second OOM kill and before the third (the
	// kubelet's back-off is 10 s by then): the leader dies, and another
	// takes over once the lease expires.
	s.killLeader(t)
	third := s.exitEvent(t, oom, "app", 2, 3*time.Minute)
	// Its log may be gone if the container exited again in the meantime
	// (the kubelet keeps one dead instance); the record must say which.
	if !strings.Contains(third.Message, "oom run 3: allocating") && !strings.Contains(third.Message, "log unavailable") {
		t.Errorf("third OOM record neither shows its log nor says why not: %q", third.Message)
	}
	for i, ev := range []*corev1.Event{first, second} {
		for _, want := range []string{"exited with 137 OOMKilled SIGKILL", "memory limit 32Mi", fmt.Sprintf("restart count %d", i),
			fmt.Sprintf("oom run %d: allocating 64M against a 32Mi limit", i+1)} {
			if !strings.Contains(ev.Message, want) {
				t.Errorf("OOM record #%d lacks %q: %q", i, want, ev.Message)
			}
		}
		if ev.Reason != "OOMKilled" || ev.Type != corev1.EventTypeWarning || strings.Contains(ev.Message, "not recorded") {
			t.Errorf("OOM record #%d: %s %s %q", i, ev.Type, ev.Reason, ev.Message)
		}
	}
	// As a user finds them: kubectl get events --field-selector reason=OOMKilled.
	l, err := s.cs.CoreV1().Events(s.ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=OOMKilled,involvedObject.uid=" + string(oom.UID)})
	if err != nil || len(l.Items) < 3 {
		t.Errorf("events with reason=OOMKilled on the pod: %d (%v), want at least 3", len(l.Items), err)
	}
	// Aggregated on the Deployment.
	agg, err := s.cs.CoreV1().Events(s.ns).Get(ctx, finalizer.ExitsOwnerEventName(oom, "app"), metav1.GetOptions{})
	if err != nil || agg.InvolvedObject.Kind != "Deployment" || agg.InvolvedObject.Name != "oom" || agg.Count < 3 {
		t.Errorf("aggregate on the Deployment: %v %+v", err, agg)
	}

	crashed := s.exitEvent(t, crash, "app", 0, 2*time.Minute)
	if !strings.Contains(crashed.Message, "exited with 3 Error") || !strings.Contains(crashed.Message, "crash run: about to exit 3") || crashed.Reason != "Error" {
		t.Errorf("crash record: %s %q", crashed.Reason, crashed.Message)
	}

	// The pod was never deleted: these records came from in-place restarts.
	for _, p := range []*corev1.Pod{oom, crash} {
		got, err := s.cs.CoreV1().Pods(s.ns).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil || got.UID != p.UID || got.DeletionTimestamp != nil {
			t.Errorf("pod %s was deleted or replaced", p.Name)
		}
	}
	// One cleanup call per exit, by its idempotency key, after the new
	// leader had every chance to repeat one.
	time.Sleep(5 * time.Second)
	for _, k := range []struct {
		p       *corev1.Pod
		restart int
	}{{oom, 0}, {oom, 1}, {oom, 2}, {crash, 0}} {
		key := fmt.Sprintf("%s/app/%d", k.p.UID, k.restart)
		if n := sink.calls(key); n != 1 {
			t.Errorf("cleanup calls for exit %s: %d, want 1", key, n)
		}
		if b := sink.body(key); b == nil || b.Cause != finalizer.CauseContainerExit || b.Exit == nil || b.Exit.RestartCount != int32(k.restart) {
			t.Errorf("cleanup body for %s: %+v", key, b)
		} else {
			t.Logf("cleanup body for %s: exit %d %s, log %+v", key, b.Exit.ExitCode, b.Exit.Reason, b.Exit.Log)
		}
	}
	// None lost: every exit up to the last one done has its record, for
	// the crash loop too, and none says an earlier one was missed.
	for _, p := range []*corev1.Pod{oom, crash} {
		got, err := s.cs.CoreV1().Pods(s.ns).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var done map[string]int32
		_ = json.Unmarshal([]byte(got.Annotations[finalizer.AnnotationExits]), &done)
		last, ok := done["app"]
		t.Logf("%s: restart count %d, exits done up to #%d (annotation %s)", p.Name, got.Status.ContainerStatuses[0].RestartCount, last, got.Annotations[finalizer.AnnotationExits])
		if !ok {
			t.Errorf("%s: no exits annotation", p.Name)
		}
		for r := int32(0); r <= last; r++ {
			ev, err := s.cs.CoreV1().Events(s.ns).Get(ctx, finalizer.ExitEventName(p, "app", r), metav1.GetOptions{})
			switch {
			case err != nil:
				t.Errorf("%s: exit #%d is marked done but has no record: %v", p.Name, r, err)
			case strings.Contains(ev.Message, "not recorded") || ev.Count != 1:
				t.Errorf("%s: exit #%d record (count %d): %q", p.Name, r, ev.Count, ev.Message)
			}
			key := fmt.Sprintf("%s/app/%d", p.UID, r)
			if n := sink.calls(key); n != 1 {
				t.Errorf("cleanup calls for exit %s: %d, want 1", key, n)
			}
			if b := sink.body(key); b != nil && b.Exit != nil && b.Exit.FinishedAt != nil && ev != nil {
				t.Logf("%s exit #%d: finished %s, recorded %s", p.Name, r, b.Exit.FinishedAt.UTC().Format(time.TimeOnly), ev.FirstTimestamp.UTC().Format(time.TimeOnly))
			}
		}
	}

	// Let the deletion cleanups reach the sink before it closes.
	if err := s.cs.AppsV1().Deployments(s.ns).Delete(ctx, "oom", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.cs.CoreV1().Pods(s.ns).Delete(ctx, crash.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.waitGone(t, crash.Name, 2*time.Minute)
	s.waitGone(t, oom.Name, 2*time.Minute)
	for _, p := range []*corev1.Pod{oom, crash} {
		if n := sink.calls(string(p.UID)); n != 1 {
			t.Errorf("deletion cleanup calls for %s: %d, want 1", p.Name, n)
		}
	}
}

// podOf waits for the one running pod with the label selector.
func (s *suite) podOf(t *testing.T, selector string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := s.cs.CoreV1().Pods(s.ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil || len(l.Items) != 1 || l.Items[0].Spec.NodeName == "" {
			return false, nil
		}
		pod = &l.Items[0]
		return true, nil
	})
	if err != nil {
		t.Fatalf("no pod with %s", selector)
	}
	return pod
}
