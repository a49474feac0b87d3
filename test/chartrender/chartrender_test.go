package chartrender

import (
	"strings"
	"testing"
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
