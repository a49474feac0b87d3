package check

import (
	"context"
	"testing"
)

// TestPolicySchemaDefaults: the embedded CRD's defaults are applied as the
// API server applies them, so the engine sees the same policy offline.
func TestPolicySchemaDefaults(t *testing.T) {
	s, err := newPolicySchema()
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]any{
		"apiVersion": "gracekeeper.dev/v1alpha1",
		"kind":       "LifecyclePolicy",
		"metadata":   map[string]any{"name": "p"},
		"spec": map[string]any{
			"terminationGracePeriod": map[string]any{"fit": true},
			"validation":             map[string]any{},
			"cleanup":                map[string]any{"finalizer": "example.com/x", "url": "https://x.example.com/"},
		},
	}
	if errs := s.defaultAndValidate(context.Background(), obj); len(errs) > 0 {
		t.Fatalf("valid policy refused: %v", errs)
	}
	spec := obj["spec"].(map[string]any)
	checks := map[string]struct{ got, want any }{
		"terminationGracePeriod.maxSeconds": {spec["terminationGracePeriod"].(map[string]any)["maxSeconds"], int64(300)},
		"validation.action":                 {spec["validation"].(map[string]any)["action"], "Deny"},
		"cleanup.timeoutSeconds":            {spec["cleanup"].(map[string]any)["timeoutSeconds"], int64(5)},
		"cleanup.giveUpAfterSeconds":        {spec["cleanup"].(map[string]any)["giveUpAfterSeconds"], int64(600)},
		"priority":                          {spec["priority"], int64(0)},
	}
	for field, c := range checks {
		if c.got != c.want {
			t.Errorf("%s defaulted to %#v, want %#v", field, c.got, c.want)
		}
	}
}
