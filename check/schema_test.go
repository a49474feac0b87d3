package check

import (
	"context"
	"strings"
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

// TestPolicySchemaCEL: the CRD's schema and CEL rules refuse what they can
// cheaply express of the API server's pod rules (port numbers, header names,
// the finalizer's domain length), naming the field, and accept the edges
// that are valid; the rest is the policy webhook's. Compile errors in a rule
// would show here too.
func TestPolicySchemaCEL(t *testing.T) {
	s, err := newPolicySchema()
	if err != nil {
		t.Fatal(err)
	}
	httpGet := func(port any, headers ...string) map[string]any {
		g := map[string]any{"port": port, "budgetSeconds": int64(5)}
		var hs []any
		for _, h := range headers {
			hs = append(hs, map[string]any{"name": h, "value": "1"})
		}
		if hs != nil {
			g["httpHeaders"] = hs
		}
		return map[string]any{"preStop": map[string]any{"httpGet": g}}
	}
	selector := func(op string, values ...any) map[string]any {
		e := map[string]any{"key": "app", "operator": op}
		if values != nil {
			e["values"] = values
		}
		return map[string]any{"match": map[string]any{"podSelector": map[string]any{"matchExpressions": []any{e}}}}
	}
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) + ".com/x"
	for name, tc := range map[string]struct {
		spec  map[string]any
		field string // "" = accepted
	}{
		"port 0":     {httpGet(int64(0)), "spec.preStop.httpGet.port"},
		"port 65536": {httpGet(int64(65536)), "spec.preStop.httpGet.port"},
		"port 1":     {httpGet(int64(1)), ""},
		"port name":  {httpGet("http-alt"), ""},
		// Port names and selectors are the policy webhook's (ValidatePolicy).
		"bad port name (webhook's)":      {httpGet("Http_Port"), ""},
		"digits-only name":               {httpGet("8080x"), ""},
		"header with space":              {httpGet(int64(80), "X Drain"), "spec.preStop.httpGet.httpHeaders[0].name"},
		"header ok":                      {httpGet(int64(80), "X-Drain"), ""},
		"In without values (webhook's)":  {selector("In"), ""},
		"In with values":                 {selector("In", "a"), ""},
		"Exists with values (webhook's)": {selector("Exists", "a"), ""},
		"DoesNotExist":                   {selector("DoesNotExist"), ""},
		"finalizer domain>253":           {map[string]any{"cleanup": map[string]any{"finalizer": long, "url": "https://x.example"}}, "spec.cleanup.finalizer"},
	} {
		t.Run(name, func(t *testing.T) {
			obj := map[string]any{"apiVersion": "gracekeeper.dev/v1alpha1", "kind": "LifecyclePolicy",
				"metadata": map[string]any{"name": "p"}, "spec": tc.spec}
			errs := s.defaultAndValidate(context.Background(), obj)
			if tc.field == "" {
				if len(errs) > 0 {
					t.Errorf("refused: %v", errs)
				}
				return
			}
			if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), tc.field) {
				t.Errorf("errors %v, want one naming %s", errs, tc.field)
			}
		})
	}
}
