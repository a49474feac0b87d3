package integration

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// meshInjector is a tiny mutating webhook that, like a service-mesh injector,
// appends a proxy container (once) to every pod it sees.
func meshInjector(t *testing.T) (*httptest.Server, *atomic.Int64) {
	calls := new(atomic.Int64)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		var pod corev1.Pod
		if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
			http.Error(w, "bad pod", http.StatusBadRequest)
			return
		}
		resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		if !slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == "mesh-proxy" }) {
			patch, _ := json.Marshal([]map[string]any{{"op": "add", "path": "/spec/containers/-", "value": container("mesh-proxy")}})
			pt := admissionv1.PatchTypeJSONPatch
			resp.Patch, resp.PatchType = patch, &pt
		}
		review.Response, review.Request = resp, nil
		_ = json.NewEncoder(w).Encode(review)
	}))
	t.Cleanup(srv.Close)
	return srv, calls
}

// TestReinvocation: a second mutating webhook that runs after gracekeeper
// (configurations are called in name order) adds a container; the API server
// calls gracekeeper again (reinvocationPolicy IfNeeded), which hooks the new
// container and changes nothing it already did.
func TestReinvocation(t *testing.T) {
	ns, scenario := newNamespace(t, nil)
	pol := createPolicy(t, "reinvoke-"+scenario, v1alpha1.LifecyclePolicySpec{
		Match:                  forScenario(scenario),
		PreStop:                &v1alpha1.PreStopHook{HookAction: sleepHook(5)},
		ShutdownSeconds:        ptr.To[int64](20),
		TerminationGracePeriod: &v1alpha1.TerminationGracePeriod{Fit: true},
		Finalizers:             []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer},
	})
	waitForMutation(t, newPod(ns, "probe", 30, "app"), "policy in effect", func(p *corev1.Pod) bool { return preStopSleep(p, "app") == 5 })

	srv, calls := meshInjector(t)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	none := admissionregistrationv1.SideEffectClassNone
	never := admissionregistrationv1.NeverReinvocationPolicy
	url := srv.URL + "/inject"
	injector := &admissionregistrationv1.MutatingWebhookConfiguration{
		// "zz-" sorts after gracekeeper's configuration, so it runs after us.
		ObjectMeta: metav1.ObjectMeta{Name: "zz-mesh-injector-" + scenario},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         "inject.mesh.example.com",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{scenarioLabel: scenario}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             &none,
			ReinvocationPolicy:      &never,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	if err := env.c.Create(ctxFor(t), injector); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.c.Delete(ctxFor(t), injector) })
	waitForMutation(t, newPod(ns, "probe", 30, "app"), "injector in effect", func(p *corev1.Pod) bool { return len(p.Spec.Containers) == 2 })

	t.Run("the injected container gets the hook and the pod carries each change once", func(t *testing.T) {
		before := calls.Load()
		p := newPod(ns, "meshed", 30, "app")
		if err := createPod(t, env.c, p); err != nil {
			t.Fatalf("create: %v", err)
		}
		if calls.Load() == before {
			t.Fatal("the injector was not called")
		}
		got := &corev1.Pod{}
		if err := env.c.Get(ctxFor(t), client.ObjectKeyFromObject(p), got); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range got.Spec.Containers {
			names = append(names, c.Name)
		}
		if !slices.Equal(names, []string{"app", "mesh-proxy"}) {
			t.Fatalf("containers = %v, want [app mesh-proxy]", names)
		}
		for _, c := range names {
			if s := preStopSleep(got, c); s != 5 {
				t.Errorf("container %s preStop sleep = %d, want 5 (%s)", c, s, summary(got))
			}
		}
		if g := ptr.Deref(got.Spec.TerminationGracePeriodSeconds, -1); g != 30 {
			// 5 + 20 = 25 fits in 30; fit never lowers it.
			t.Errorf("terminationGracePeriodSeconds = %d, want 30", g)
		}
		var n int
		for _, f := range got.Finalizers {
			if f == string(v1alpha1.TerminationRecordFinalizer) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("finalizer %s appears %d times, want once: %v", v1alpha1.TerminationRecordFinalizer, n, got.Finalizers)
		}
		if a := got.Annotations[policies.AnnotationPolicies]; a != pol.Name || strings.Contains(a, ",") {
			t.Errorf("annotation %s = %q, want %q once", policies.AnnotationPolicies, a, pol.Name)
		}
	})
}
