package finalizer

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/gracekeeper/gracekeeper/policies"
)

// MaxCachedPodBytes is the stated upper bound on one cached pod, serialized
// as JSON, whatever its author put in it (docs/finalizers.md).
const MaxCachedPodBytes = 40 << 10

// hostilePod is as large as a pod author can make the fields the cache
// reads: n finalizers, containers and init containers with the longest
// names, 4 KiB termination messages, a 256 KiB gracekeeper.dev annotation,
// a cleanup annotation of the given size, 1,000 labels and 100 owners.
func hostilePod(n, cleanupBytes int) *corev1.Pod {
	p := deletedPod(30, "node-a", nil)
	p.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	p.Name = strings.Repeat("p", 253)
	p.Namespace = strings.Repeat("n", 63)
	p.Annotations = map[string]string{"gracekeeper.dev/anything": strings.Repeat("x", 256<<10)}
	p.Labels = map[string]string{"pod-template-hash": strings.Repeat("h", 63)}
	for i := range 1000 {
		p.Labels[fmt.Sprintf("l%04d", i)] = strings.Repeat("v", 63)
	}
	for i := range 100 {
		p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet",
			Name: strings.Repeat("o", 250) + fmt.Sprint(i), UID: "u", Controller: ptr.To(i == 0)})
	}
	var recs []policies.CleanupRecord
	for i := range n {
		f := fmt.Sprintf("%s.example.com/%s%03d", strings.Repeat("d", 240), strings.Repeat("f", 59), i)
		p.Finalizers = append(p.Finalizers, f)
		recs = append(recs, policies.CleanupRecord{Policy: strings.Repeat("q", 250) + fmt.Sprint(i%100), Finalizer: f, URL: "https://x.example.com/" + strings.Repeat("u", 2000)})
	}
	p.Annotations[policies.AnnotationPolicies] = strings.Repeat("q", maxPoliciesAnnotation)
	exits := map[string]int64{}
	for i := range n {
		exits[fmt.Sprintf("%s%03d", strings.Repeat("c", 60), i)] = 1<<31 - 1
		exits["i"+fmt.Sprintf("%s%03d", strings.Repeat("c", 59), i)] = 1<<31 - 1
	}
	for i := range 100 {
		exits[fmt.Sprintf("%s%03d", strings.Repeat("x", 60), i)] = 1<<31 - 1 // no such container
	}
	raw, _ := json.Marshal(exits)
	p.Annotations[AnnotationExits] = string(raw)
	raw, _ = json.Marshal(recs)
	s := string(raw)
	if len(s) < cleanupBytes {
		s = strings.TrimSuffix(s, "]") + strings.Repeat(" ", cleanupBytes-len(s)) + "]"
	}
	p.Annotations[policies.AnnotationCleanup] = s
	st := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: strings.Repeat("r", 1024),
		Message: strings.Repeat("m", 4096), FinishedAt: metav1.NewTime(t0), ContainerID: strings.Repeat("c", 100)}}
	for i := range n {
		name := fmt.Sprintf("%s%03d", strings.Repeat("c", 60), i)
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: name, Image: strings.Repeat("i", 1000),
			Env: []corev1.EnvVar{{Name: "BIG", Value: strings.Repeat("e", 4096)}}})
		p.Spec.Containers[i].Resources = hostileResources()
		p.Spec.Containers[i].RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: name, State: st, LastTerminationState: st,
			RestartCount: 1 << 30, ContainerID: strings.Repeat("c", 100), Image: strings.Repeat("i", 1000)})
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "i" + name[1:], RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
			Resources: hostileResources()})
		p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, corev1.ContainerStatus{Name: "i" + name[1:], State: st, LastTerminationState: st,
			RestartCount: 1 << 30, ContainerID: strings.Repeat("c", 100)})
	}
	return p
}

// hostileResources are a container's resources with every kind set, the
// memory ones in their longest form.
func hostileResources() corev1.ResourceRequirements {
	q := resource.MustParse("123456789123456789123456789m")
	l := corev1.ResourceList{corev1.ResourceMemory: q, corev1.ResourceCPU: q, "example.com/gpu": q, corev1.ResourceEphemeralStorage: q}
	return corev1.ResourceRequirements{Limits: l, Requests: l}
}

func size(t *testing.T, v any) int {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return len(b)
}

// TestCachedPodBounded: hostile pods at and beyond the caps are stripped to
// at most MaxCachedPodBytes; beyond the caps they are marked truncated.
func TestCachedPodBounded(t *testing.T) {
	typical := deletedPod(30, "node-a", []string{"web"}, corev1.ContainerStatus{Name: "web", State: terminated(0, "Completed", t0)})
	typical.Finalizers = []string{TerminationRecord}
	typical.Annotations = map[string]string{policies.AnnotationCleanup: `[{"policy":"ipam","finalizer":"example.com/release-ip","url":"https://ipam.example.com/r","timeoutSeconds":5,"giveUpAfterSeconds":600}]`}
	restarted := typical.DeepCopy()
	restarted.DeletionTimestamp = nil
	restarted.Annotations[AnnotationExits] = `{"web":2}`
	restarted.Status.ContainerStatuses[0] = corev1.ContainerStatus{Name: "web", RestartCount: 3,
		ContainerID: "containerd://" + strings.Repeat("a", 64), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(t0)}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled",
			StartedAt: metav1.NewTime(t0), FinishedAt: metav1.NewTime(t0), ContainerID: "containerd://" + strings.Repeat("b", 64)}}}
	cases := map[string]struct {
		pod           *corev1.Pod
		wantTruncated bool
	}{
		"typical":                         {typical, false},
		"typical, restarted in place":     {restarted, false},
		"every cap reached":               {hostilePod(MaxCachedFinalizers, MaxCleanupAnnotation), false},
		"caps exceeded, 256 KiB cleanup":  {hostilePod(100, 256<<10), true},
		"caps reached, cleanup too large": {hostilePod(MaxCachedFinalizers, MaxCleanupAnnotation+1), true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			in := size(t, tc.pod)
			out, _ := TransformPod(tc.pod.DeepCopy())
			p := out.(*corev1.Pod)
			got := size(t, p)
			t.Logf("%s: %d bytes as written, %d bytes cached", name, in, got)
			if got > MaxCachedPodBytes {
				t.Errorf("cached pod is %d bytes, want at most %d", got, MaxCachedPodBytes)
			}
			if (p.Annotations[annotationTruncated] == "true") != tc.wantTruncated {
				t.Errorf("truncated marker = %q, want %v", p.Annotations[annotationTruncated], tc.wantTruncated)
			}
			if _, ok := p.Annotations["gracekeeper.dev/anything"]; ok {
				t.Error("an unknown gracekeeper.dev annotation was kept")
			}
			if len(p.Labels) > 1 || len(p.OwnerReferences) > 1 {
				t.Errorf("labels %d, owner references %d kept; want pod-template-hash and the controller only", len(p.Labels), len(p.OwnerReferences))
			}
			if !tc.wantTruncated && len(p.Finalizers) != len(tc.pod.Finalizers) {
				t.Errorf("finalizers %d of %d kept under the cap", len(p.Finalizers), len(tc.pod.Finalizers))
			}
			again, _ := TransformPod(p.DeepCopy())
			if a, b := mustJSON(t, p), mustJSON(t, again); a != b {
				t.Error("a second pass changed the cached pod")
			}
		})
	}
}

// TestTruncatedPodReadLive: a pod cut at a cap in the cache is read from the
// API server before its finalizers are patched, so it is still released.
func TestTruncatedPodReadLive(t *testing.T) {
	pod := hostilePod(40, 0)
	pod.Name, pod.Namespace = "big", "shop"
	pod.Annotations = nil
	pod.Finalizers = append(pod.Finalizers, TerminationRecord)
	full := newFakeCluster(nil, pod)
	// The controller's client sees the pod as the cache stores it.
	cached := fake.NewClientBuilder().WithScheme(testScheme).WithObjects(pod).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, _ client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			p := &corev1.Pod{}
			if err := full.Get(ctx, key, p, opts...); err != nil {
				return err
			}
			s, _ := TransformPod(p)
			*(obj.(*corev1.Pod)) = *(s.(*corev1.Pod))
			return nil
		},
		Patch: func(ctx context.Context, _ client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			return full.Patch(ctx, obj, patch, opts...)
		},
		Create: func(ctx context.Context, _ client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			return full.Create(ctx, obj, opts...)
		},
	}).Build()
	r, _ := NewReconciler(cached, full, Options{Registerer: prometheus.NewRegistry(), Clock: clocktesting.NewFakeClock(t0.Add(time.Hour))})
	if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(pod)}); err != nil {
		t.Fatal(err)
	}
	got := &corev1.Pod{}
	if err := full.Get(context.Background(), client.ObjectKeyFromObject(pod), got); err != nil {
		t.Fatal(err)
	}
	if len(got.Finalizers) != 40 || got.Finalizers[39] == TerminationRecord {
		t.Errorf("finalizers left: %d, want the 40 foreign ones", len(got.Finalizers))
	}
	if full.events != 1 {
		t.Errorf("events = %d, want 1", full.events)
	}
}
