package chartrender

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestRender: CRDs come first (Helm installs them first), the order is
// stable across calls, hooks are marked, and bad values are refused.
func TestRender(t *testing.T) {
	a, err := Render(nil)
	if err != nil {
		t.Fatal(err)
	}
	if a[0].GetKind() != "CustomResourceDefinition" || a[0].GetName() != "lifecyclepolicies.gracekeeper.dev" {
		t.Errorf("first object is %s %s, want the LifecyclePolicy CRD", a[0].GetKind(), a[0].GetName())
	}
	b, err := Render(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("renders differ in length: %d vs %d", len(a), len(b))
	}
	hooks := 0
	for i := range a {
		if a[i].GetKind() != b[i].GetKind() || a[i].GetName() != b[i].GetName() {
			t.Errorf("object %d: %s/%s then %s/%s: order not stable", i, a[i].GetKind(), a[i].GetName(), b[i].GetKind(), b[i].GetName())
		}
		if IsHook(a[i]) {
			hooks++
			if a[i].GetKind() != "Job" {
				t.Errorf("unexpected hook %s %s", a[i].GetKind(), a[i].GetName())
			}
		}
		if ns := a[i].GetNamespace(); ns != "" && ns != Namespace {
			t.Errorf("%s %s in namespace %q, want %q", a[i].GetKind(), a[i].GetName(), ns, Namespace)
		}
	}
	if hooks != 1 {
		t.Errorf("hooks = %d, want the release-finalizers Job", hooks)
	}
	if _, err := Render(map[string]any{"replicas": 0}); err == nil || !strings.Contains(err.Error(), "replicas") {
		t.Errorf("replicas 0: err = %v, want a schema error naming replicas", err)
	}
}

func TestPointWebhooksAt(t *testing.T) {
	objs, err := Render(nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := PointWebhooksAt(objs, "https://127.0.0.1:9443/", []byte("CA"))
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("rewrote %d webhooks, want 4 (mutate-pods, validate-pods, validate-workloads, validate-policies)", n)
	}
	urls := map[string]bool{}
	for _, o := range objs {
		hooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
		for _, h := range hooks {
			cc := h.(map[string]any)["clientConfig"].(map[string]any)
			if _, svc := cc["service"]; svc {
				t.Errorf("service reference left in %s", o.GetName())
			}
			urls[cc["url"].(string)] = true
			// Rules and selectors are untouched (LifecyclePolicy is
			// cluster-scoped: its webhook has no namespaceSelector).
			if _, ok := h.(map[string]any)["namespaceSelector"]; !ok && !strings.HasSuffix(cc["url"].(string), "/validate-policies") {
				t.Errorf("namespaceSelector lost")
			}
		}
	}
	for _, u := range []string{"https://127.0.0.1:9443/mutate-pods", "https://127.0.0.1:9443/validate-pods", "https://127.0.0.1:9443/validate-workloads", "https://127.0.0.1:9443/validate-policies"} {
		if !urls[u] {
			t.Errorf("no webhook calls %s (got %v)", u, urls)
		}
	}
}
