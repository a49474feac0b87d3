package chart

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/test/chartrender"
)

// TestOptionalObjects: the ServiceMonitor scrapes a port the Service really
// has, and each packaged library policy renders as a LifecyclePolicy.
func TestOptionalObjects(t *testing.T) {
	objs := render(t, map[string]any{"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}}})
	sm := find(t, objs, "ServiceMonitor", "gracekeeper")
	if sm.GetAPIVersion() != "monitoring.coreos.com/v1" || sm.GetLabels()["release"] != "prom" {
		t.Errorf("ServiceMonitor apiVersion/labels wrong: %s %v", sm.GetAPIVersion(), sm.GetLabels())
	}
	var svc corev1.Service
	into(t, find(t, objs, "Service", "gracekeeper"), &svc)
	eps := sm.Object["spec"].(map[string]any)["endpoints"].([]any)
	port := eps[0].(map[string]any)["port"]
	found := false
	for _, p := range svc.Spec.Ports {
		found = found || p.Name == port
	}
	if !found {
		t.Errorf("ServiceMonitor scrapes port %v, which the Service does not have", port)
	}
	if count(render(t, nil), "ServiceMonitor") != 0 || count(render(t, nil), "LifecyclePolicy") != 0 {
		t.Error("optional objects rendered by default")
	}

	files, _ := filepath.Glob(filepath.Join(chartrender.ChartDir(), "files", "policies", "*.yaml"))
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run("default policy "+name, func(t *testing.T) {
			objs := render(t, map[string]any{"defaultPolicy": map[string]any{"enabled": true, "name": name}})
			p := find(t, objs, "LifecyclePolicy", "")
			raw, _ := os.ReadFile(f)
			var want map[string]any
			if err := yaml.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			if p.GetName() != want["metadata"].(map[string]any)["name"] {
				t.Errorf("rendered policy %q differs from %s", p.GetName(), f)
			}
		})
	}
	if len(files) > 0 {
		// The value's default must name a packaged policy.
		raw, _ := os.ReadFile(filepath.Join(chartrender.ChartDir(), "values.yaml"))
		var v struct {
			DefaultPolicy struct{ Name string } `json:"defaultPolicy"`
		}
		if err := yaml.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(chartrender.ChartDir(), "files", "policies", v.DefaultPolicy.Name+".yaml")); err != nil {
			t.Errorf("values.yaml defaultPolicy.name %q is not in files/policies", v.DefaultPolicy.Name)
		}
	}
}
