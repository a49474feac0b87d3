package finalizer

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
)

// testScheme knows core types and LifecyclePolicy.
var testScheme = func() *runtime.Scheme {
	s, err := clientscheme.New()
	utilruntime.Must(err)
	return s
}()

// cleanupPolicy is a LifecyclePolicy that declares one cleanup step.
func cleanupPolicy(name, finalizer, url string, timeout int32, giveUp int64) *v1alpha1.LifecyclePolicy {
	return &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.LifecyclePolicySpec{
		Cleanup: &v1alpha1.Cleanup{Finalizer: finalizer, URL: url, TimeoutSeconds: timeout, GiveUpAfterSeconds: ptr.To(giveUp)}}}
}

// createPolicy applies the policy that a cleanup record names, as an admin
// would, and returns the record the webhook would write on a pod.
func createPolicy(t *testing.T, name, finalizer, url string, timeout int32, giveUp int64) policies.CleanupRecord {
	t.Helper()
	pol := cleanupPolicy(name, finalizer, url, timeout, giveUp)
	if err := cluster(t).Create(context.Background(), pol); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster(t).Delete(context.Background(), pol) })
	return policies.CleanupRecord{Policy: name, Finalizer: finalizer, URL: url, TimeoutSeconds: timeout, GiveUpAfterSeconds: giveUp}
}

// One control plane for the package, started by the first test that needs it.
var cp struct {
	once sync.Once
	env  *envtest.Environment
	cfg  *rest.Config
	c    client.Client
	err  error
}

func TestMain(m *testing.M) {
	// Managers get their own logger; this only silences controller-runtime's
	// "SetLogger was never called" notice for code that logs before that.
	ctrllog.SetLogger(logr.Discard())
	code := m.Run()
	if cp.env != nil {
		if err := cp.env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop control plane:", err)
		}
	}
	os.Exit(code)
}

// cluster returns a client of the shared kube-apiserver + etcd.
func cluster(t *testing.T) client.Client {
	t.Helper()
	controlplane.SkipIfShort(t)
	cp.once.Do(func() {
		if cp.err = controlplane.CheckAssets(); cp.err != nil {
			return
		}
		cp.env = controlplane.New()
		if cp.cfg, cp.err = cp.env.Start(); cp.err != nil {
			return
		}
		cp.c, cp.err = client.New(cp.cfg, client.Options{Scheme: testScheme})
	})
	if cp.err != nil {
		t.Fatalf("control plane: %v", cp.err)
	}
	return cp.c
}

func podKey(ns, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: ns, Name: name}
}

// startManager runs the controller in a manager of its own, as `serve` does
// (CacheOptions, no leader election here: one replica). The returned stop
// cancels it and waits until it has returned. wrap, when set, builds the
// reconciler's client (fault injection).
func startManager(t *testing.T, opts Options, wrap func(client.Client) client.Client) (stop func()) {
	t.Helper()
	cluster(t)
	return startManagerAs(t, cp.cfg, opts, wrap)
}

// startManagerAs is startManager with the given identity.
func startManagerAs(t *testing.T, cfg *rest.Config, opts Options, wrap func(client.Client) client.Client) (stop func()) {
	t.Helper()
	mgr, err := manager.New(cfg, manager.Options{
		Scheme:                 testScheme,
		Cache:                  CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Logger:                 testr.NewWithOptions(t, testr.Options{Verbosity: 0}),
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := mgr.GetClient()
	if wrap != nil {
		c = wrap(c)
	}
	r, err := NewReconciler(c, mgr.GetAPIReader(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "fin-"}}
	if err := cluster(t).Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// podSpec is a pod as the webhook leaves it: label, finalizers, cleanup annotation.
type podSpec struct {
	name       string
	node       string
	grace      int64
	finalizers []string
	cleanup    string // JSON of []policies.CleanupRecord
	owner      *metav1.OwnerReference
	labels     map[string]string
}

func createPod(t *testing.T, ns string, s podSpec) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: ns, Finalizers: s.finalizers,
			Labels: map[string]string{"gracekeeper.dev/finalize": "true"}},
		Spec: corev1.PodSpec{NodeName: s.node, TerminationGracePeriodSeconds: ptr.To(s.grace),
			Containers: []corev1.Container{{Name: "web", Image: "registry.k8s.io/pause:3.10"}}},
	}
	for k, v := range s.labels {
		p.Labels[k] = v
	}
	if s.cleanup != "" {
		p.Annotations = map[string]string{"gracekeeper.dev/cleanup": s.cleanup}
	}
	if s.owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*s.owner}
	}
	if err := cluster(t).Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// setStatus reports container states through the status subresource, as the
// kubelet does.
func setStatus(t *testing.T, p *corev1.Pod, phase corev1.PodPhase, states ...corev1.ContainerState) {
	t.Helper()
	c := cluster(t)
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		cur := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(p), cur); err != nil {
			return false, err
		}
		cur.Status.Phase = phase
		cur.Status.ContainerStatuses = nil
		for i, st := range states {
			cur.Status.ContainerStatuses = append(cur.Status.ContainerStatuses, corev1.ContainerStatus{
				Name: cur.Spec.Containers[i].Name, Image: cur.Spec.Containers[i].Image, State: st})
		}
		if err := c.Status().Update(ctx, cur); err != nil {
			if apierrors.IsConflict(err) {
				return false, nil
			}
			return false, err
		}
		*p = *cur
		return true, nil
	})
	if err != nil {
		t.Fatalf("set status of %s: %v", p.Name, err)
	}
}

func deletePod(t *testing.T, p *corev1.Pod) {
	t.Helper()
	c := cluster(t)
	if err := c.Delete(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(p), p); err != nil {
		t.Fatal(err)
	}
}

// waitFinalizers waits until the pod's finalizers are exactly want (nil: the pod is gone).
func waitFinalizers(t *testing.T, ns, name string, want []string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p := &corev1.Pod{}
		err := cluster(t).Get(ctx, podKey(ns, name), p)
		if apierrors.IsNotFound(err) {
			last = nil
			return want == nil, nil
		}
		if err != nil {
			return false, err
		}
		last = p
		return want != nil && fmt.Sprint(p.Finalizers) == fmt.Sprint(want), nil
	})
	if err != nil {
		got := "gone"
		if last != nil {
			got = fmt.Sprint(last.Finalizers)
		}
		t.Fatalf("pod %s/%s finalizers = %s, want %v: %v", ns, name, got, want, err)
	}
	return last
}

// kubeletConfirmsDeletion is the kubelet's last word on a pod whose
// containers ended: a delete with grace 0 (pkg/kubelet/status/status_manager.go).
// A gracefully deleted pod is removed only after that and once its finalizers are gone.
func kubeletConfirmsDeletion(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if err := cluster(t).Delete(context.Background(), p, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

// removeFinalizer is what the owner of a foreign finalizer does; then the pod goes.
func removeFinalizer(t *testing.T, p *corev1.Pod, f string) {
	t.Helper()
	c := cluster(t)
	cur := &corev1.Pod{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(p), cur); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(cur.DeepCopy())
	var keep []string
	for _, x := range cur.Finalizers {
		if x != f {
			keep = append(keep, x)
		}
	}
	cur.Finalizers = keep
	if err := c.Patch(context.Background(), cur, patch); err != nil {
		t.Fatal(err)
	}
	if cur.Spec.NodeName != "" {
		kubeletConfirmsDeletion(t, cur)
	}
	waitFinalizers(t, p.Namespace, p.Name, nil, 10*time.Second)
}

// ourEvents lists the Events gracekeeper wrote in ns.
func ourEvents(t *testing.T, ns string) []corev1.Event {
	t.Helper()
	l := &corev1.EventList{}
	if err := cluster(t).List(context.Background(), l, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Event
	for _, e := range l.Items {
		if e.ReportingController == ReportingController {
			out = append(out, e)
		}
	}
	return out
}

// counter reads one counter from the registry (0 when absent).
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
