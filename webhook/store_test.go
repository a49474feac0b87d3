package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
)

// TestPolicyStore runs the store in a controller-runtime manager against a
// real kube-apiserver + etcd: policies created, edited and deleted take
// effect without restart, namespace labels come from the cache, and each
// policy's status says Ready (or Invalid, with the compile error).
func TestPolicyStore(t *testing.T) {
	cfg := controlplane.Start(t)
	scheme, err := clientscheme.New()
	if err != nil {
		t.Fatal(err)
	}
	lg := testr(t)
	// controller-runtime warns (with a stack) when its package logger is never
	// set; the manager itself logs through Options.Logger.
	log.SetLogger(logr.Discard())
	mgr, err := manager.New(cfg, manager.Options{Scheme: scheme, Logger: lg, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	store := NewPolicyStore(StoreConfig{
		Engine:      policies.Config{ExcludedNamespaces: []string{"kube-system"}},
		Debounce:    50 * time.Millisecond,
		WriteStatus: true,
	}, lg)
	if err := store.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	srv, _ := newTestServer(t, store, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "store ready", func() (bool, string) { return store.Ready() && srv.Ready(), "not ready" })

	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"env": "prod"}}})
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "dev", Labels: map[string]string{"env": "dev"}}})

	// preStop reports the preStop sleep the mutation gives a pod in ns (0: none).
	preStop := func(ns string) int64 {
		body := podReview(t, ns)
		code, out, _ := srv.Review(context.Background(), RouteMutatePods, body)
		if code != 200 {
			t.Fatalf("HTTP %d: %s", code, out)
		}
		var rev admissionv1.AdmissionReview
		if err := json.Unmarshal(out, &rev); err != nil {
			t.Fatal(err)
		}
		var ops []struct {
			Path  string          `json:"path"`
			Value json.RawMessage `json:"value"`
		}
		if rev.Response.Patch != nil {
			if err := json.Unmarshal(rev.Response.Patch, &ops); err != nil {
				t.Fatal(err)
			}
		}
		for _, op := range ops {
			if op.Path == "/spec/containers/0/lifecycle" {
				var l corev1.Lifecycle
				if err := json.Unmarshal(op.Value, &l); err != nil {
					t.Fatal(err)
				}
				return l.PreStop.Sleep.Seconds
			}
		}
		return 0
	}

	pol := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "prod-drain"}}
	pol.Spec.Match.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
	pol.Spec.PreStop = &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: 5}}}
	mustCreate(t, c, pol)

	t.Run("a new policy takes effect, selected by cached namespace labels", func(t *testing.T) {
		eventually(t, "preStop 5 in shop", func() (bool, string) {
			got := preStop("shop")
			return got == 5, fmt.Sprint(got)
		})
		if got := preStop("dev"); got != 0 {
			t.Errorf("dev namespace (env=dev) got preStop %d", got)
		}
	})
	t.Run("status says Ready for the observed generation", func(t *testing.T) {
		eventually(t, "Ready status", func() (bool, string) {
			var p v1alpha1.LifecyclePolicy
			if err := c.Get(context.Background(), client.ObjectKey{Name: "prod-drain"}, &p); err != nil {
				return false, err.Error()
			}
			cond := apimeta.FindStatusCondition(p.Status.Conditions, ConditionReady)
			return cond != nil && cond.Status == metav1.ConditionTrue && p.Status.ObservedGeneration == p.Generation,
				fmt.Sprintf("%+v", p.Status)
		})
	})
	t.Run("an edit takes effect", func(t *testing.T) {
		var p v1alpha1.LifecyclePolicy
		if err := c.Get(context.Background(), client.ObjectKey{Name: "prod-drain"}, &p); err != nil {
			t.Fatal(err)
		}
		p.Spec.PreStop.Sleep.Seconds = 7
		if err := c.Update(context.Background(), &p); err != nil {
			t.Fatal(err)
		}
		eventually(t, "preStop 7", func() (bool, string) { got := preStop("shop"); return got == 7, fmt.Sprint(got) })
	})
	t.Run("namespace label change is seen", func(t *testing.T) {
		var ns corev1.Namespace
		if err := c.Get(context.Background(), client.ObjectKey{Name: "dev"}, &ns); err != nil {
			t.Fatal(err)
		}
		ns.Labels["env"] = "prod"
		if err := c.Update(context.Background(), &ns); err != nil {
			t.Fatal(err)
		}
		eventually(t, "dev now selected", func() (bool, string) { got := preStop("dev"); return got == 7, fmt.Sprint(got) })
	})
	t.Run("a policy that cannot compile is Invalid and left out", func(t *testing.T) {
		bad := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "bad-glob"}}
		bad.Spec.Match.Containers = []string{"web-["}
		bad.Spec.PreStop = &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: 9}}}
		mustCreate(t, c, bad)
		eventually(t, "Invalid status", func() (bool, string) {
			var p v1alpha1.LifecyclePolicy
			if err := c.Get(context.Background(), client.ObjectKey{Name: "bad-glob"}, &p); err != nil {
				return false, err.Error()
			}
			cond := apimeta.FindStatusCondition(p.Status.Conditions, ConditionReady)
			return cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == ReasonInvalid &&
				strings.Contains(cond.Message, "web-["), fmt.Sprintf("%+v", p.Status)
		})
		if got := preStop("shop"); got != 7 {
			t.Errorf("the valid policy must still apply, preStop %d", got)
		}
	})
	t.Run("a deleted policy stops applying", func(t *testing.T) {
		for _, n := range []string{"prod-drain", "bad-glob"} {
			if err := c.Delete(context.Background(), &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "no preStop", func() (bool, string) { got := preStop("shop"); return got == 0, fmt.Sprint(got) })
	})
}

func mustCreate(t *testing.T, c client.Client, o client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond for up to 10s: "within seconds" is the promise.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s; last: %s", what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// podReview is a pod CREATE review in namespace ns with one container "web".
func podReview(t *testing.T, ns string) []byte {
	t.Helper()
	pod := map[string]any{"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "p", "namespace": ns},
		"spec":     map[string]any{"containers": []any{map[string]any{"name": "web", "image": "nginx"}}, "terminationGracePeriodSeconds": 30}}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{"uid": "u", "kind": map[string]any{"group": "", "version": "v1", "kind": "Pod"},
			"namespace": ns, "operation": "CREATE", "object": pod}}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
