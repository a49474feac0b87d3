package chart

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/test/chartrender"
)

// TestOptionalObjects: the ServiceMonitor scrapes a port the Service really
// has, and each packaged library policy renders as a LifecyclePolicy.
func TestOptionalObjects(t *testing.T) {
	objs := render(t, map[string]any{"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}}})
	// Decoded strictly into prometheus-operator's own types: a misspelt or
	// misplaced field fails here, as the operator's CRD would refuse it.
	var sm monitoringv1.ServiceMonitor
	strictInto(t, find(t, objs, "ServiceMonitor", "gracekeeper"), &sm)
	if sm.APIVersion != "monitoring.coreos.com/v1" || sm.Labels["release"] != "prom" {
		t.Errorf("ServiceMonitor apiVersion/labels wrong: %s %v", sm.APIVersion, sm.Labels)
	}
	var svc corev1.Service
	into(t, find(t, objs, "Service", "gracekeeper"), &svc)
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(svc.Labels)) {
		t.Errorf("ServiceMonitor selector %v does not select the Service (labels %v): %v", sm.Spec.Selector, svc.Labels, err)
	}
	if len(sm.Spec.NamespaceSelector.MatchNames) != 1 || sm.Spec.NamespaceSelector.MatchNames[0] != svc.Namespace {
		t.Errorf("ServiceMonitor namespaceSelector %v, want the release namespace %s", sm.Spec.NamespaceSelector.MatchNames, svc.Namespace)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Fatalf("ServiceMonitor endpoints %+v, want one on /metrics", sm.Spec.Endpoints)
	}
	found := false
	for _, p := range svc.Spec.Ports {
		// The plain-HTTP metrics listener (serve --metrics-bind-address), not the webhook's TLS port.
		found = found || (p.Name == sm.Spec.Endpoints[0].Port && p.TargetPort.String() == "metrics")
	}
	if !found {
		t.Errorf("ServiceMonitor scrapes port %q, which the Service does not route to the metrics container port", sm.Spec.Endpoints[0].Port)
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
