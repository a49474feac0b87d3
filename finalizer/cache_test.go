package finalizer

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestCacheSelectsAndStrips: the cache built from CacheOptions holds only
// labelled pods, stripped to what the controller reads.
func TestCacheSelectsAndStrips(t *testing.T) {
	c := cluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)
	labelled := createPod(t, ns, podSpec{name: "labelled", node: "node-a", grace: 30, finalizers: []string{TerminationRecord}})
	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "x"}}, TerminationGracePeriodSeconds: ptr.To[int64](0)}}
	if err := c.Create(ctx, plain); err != nil {
		t.Fatal(err)
	}

	opts := CacheOptions()
	opts.Scheme = clientgoscheme.Scheme
	ca, err := cache.New(cp.cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = ca.Start(ctx) }()
	var got corev1.Pod
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		return ca.Get(ctx, client.ObjectKeyFromObject(labelled), &got) == nil, nil
	}); err != nil {
		t.Fatalf("labelled pod never cached: %v", err)
	}
	if got.Spec.Containers[0].Name != "web" || got.Spec.Containers[0].Image != "" || got.ManagedFields != nil || got.Spec.NodeName != "node-a" {
		t.Errorf("cached pod not stripped as expected: containers %+v, managedFields %d, node %q", got.Spec.Containers, len(got.ManagedFields), got.Spec.NodeName)
	}
	l := &corev1.PodList{}
	if err := ca.List(ctx, l, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 1 || l.Items[0].Name != "labelled" {
		t.Errorf("cached pods in %s = %d, want only the labelled one", ns, len(l.Items))
	}
	removeFinalizer(t, labelled, TerminationRecord)
	_ = c.Delete(ctx, labelled, client.GracePeriodSeconds(0))
	_ = c.Delete(ctx, plain, client.GracePeriodSeconds(0))
}
