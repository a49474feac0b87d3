// Package chart tests charts/gracekeeper: rendered with Helm's own engine,
// linted, its schema's refusals, and every object applied to a real
// kube-apiserver (test/controlplane), with its RBAC proven by impersonation.
package chart

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gracekeeper/gracekeeper/test/chartrender"
)

// modes are the value sets every render/apply test covers, keyed by description.
func modes() map[string]map[string]any {
	return map[string]map[string]any{
		"defaults (self-managed certificates)": nil,
		"certManager mode":                     {"certificates": map[string]any{"mode": "certManager"}},
		"everything optional on": {
			"serviceMonitor":            map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}},
			"webhook":                   map[string]any{"mutating": map[string]any{"failurePolicy": "Fail"}, "validating": map[string]any{"failurePolicy": "Fail"}, "timeoutSeconds": 10},
			"replicas":                  3,
			"imagePullSecrets":          []any{map[string]any{"name": "regcred"}},
			"priorityClassName":         "",
			"releaseFinalizersHook":     map[string]any{"enabled": true},
			"podDisruptionBudget":       map[string]any{"enabled": true, "minAvailable": 2},
			"nodeSelector":              map[string]any{"kubernetes.io/os": "linux"},
			"tolerations":               []any{map[string]any{"operator": "Exists"}},
			"grafana":                   map[string]any{"dashboard": map[string]any{"enabled": true}},
			"defaultPolicy":             map[string]any{"enabled": true, "name": "http-drain"},
			"serviceAccount":            map[string]any{"annotations": map[string]any{"iam.example.com/role": "gk"}},
			"topologySpreadConstraints": []any{map[string]any{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}},
			"extraArgs":                 []any{"--tls-min-version=1.3"},
			"extraEnv":                  []any{map[string]any{"name": "GOMEMLIMIT", "value": "200MiB"}},
		},
		"CRD and ServiceAccount managed elsewhere, required anti-affinity": {
			"crds":            map[string]any{"enabled": false},
			"serviceAccount":  map[string]any{"create": false, "name": "platform-sa"},
			"podAntiAffinity": map[string]any{"required": true},
		},
		"optional parts off": {
			"podDisruptionBudget":   map[string]any{"enabled": false},
			"releaseFinalizersHook": map[string]any{"enabled": false},
			"podAntiAffinity":       map[string]any{"enabled": false},
			"leaderElection":        map[string]any{"enabled": false},
			"replicas":              1,
		},
	}
}

func render(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	objs, err := chartrender.Render(values)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return objs
}

// find returns the one object of kind (and name, if not empty).
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	var hits []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			hits = append(hits, o)
		}
	}
	if len(hits) != 1 {
		t.Fatalf("want exactly one %s %q, found %d", kind, name, len(hits))
	}
	return hits[0]
}

func count(objs []*unstructured.Unstructured, kind string) int {
	n := 0
	for _, o := range objs {
		if o.GetKind() == kind {
			n++
		}
	}
	return n
}

// into converts a rendered object into its typed API struct, refusing unknown fields.
func into(t *testing.T, u *unstructured.Unstructured, out any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
		t.Fatalf("%s %s does not decode strictly into %T: %v", u.GetKind(), u.GetName(), out, err)
	}
}
