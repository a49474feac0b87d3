package chart

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
		// The metrics listener (serve --metrics-bind-address), not the webhook's port.
		found = found || (p.Name == sm.Spec.Endpoints[0].Port && p.TargetPort.String() == "metrics")
	}
	// HTTPS with Prometheus's own token, the server verified against the chart's CA.
	ep := sm.Spec.Endpoints[0]
	if ep.Scheme == nil || *ep.Scheme != "https" || ep.BearerTokenFile != "/var/run/secrets/kubernetes.io/serviceaccount/token" { //nolint:staticcheck // the operator still honours it; kubebuilder scaffolds it
		t.Errorf("ServiceMonitor endpoint scheme %v, bearerTokenFile %q: want https with the scraper's ServiceAccount token", ep.Scheme, ep.BearerTokenFile) //nolint:staticcheck
	}
	if tc := ep.TLSConfig; tc == nil || tc.ServerName == nil || *tc.ServerName != svc.Name+"."+svc.Namespace+".svc" || tc.CA.Secret == nil || tc.CA.Secret.Key != "ca.crt" || tc.InsecureSkipVerify != nil && *tc.InsecureSkipVerify {
		t.Errorf("ServiceMonitor tlsConfig %+v: want the Service's DNS name verified against ca.crt of the TLS Secret", tc)
	}
	plain := render(t, map[string]any{"serviceMonitor": map[string]any{"enabled": true}, "metrics": map[string]any{"insecure": true}})
	var smPlain monitoringv1.ServiceMonitor
	strictInto(t, find(t, plain, "ServiceMonitor", "gracekeeper"), &smPlain)
	if e := smPlain.Spec.Endpoints[0]; e.Scheme == nil || *e.Scheme != "http" || e.BearerTokenFile != "" || e.TLSConfig != nil { //nolint:staticcheck
		t.Errorf("with metrics.insecure the ServiceMonitor should scrape plain HTTP without a token: %+v", e)
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

// TestMetricsRBAC: by default gracekeeper may ask the API server to review
// scrapers' tokens and access, and a metrics-reader ClusterRole exists for
// scrapers; with metrics.insecure the review rights are not granted.
func TestMetricsRBAC(t *testing.T) {
	has := func(objs []*unstructured.Unstructured, group, resource string) bool {
		var cr rbacv1.ClusterRole
		into(t, find(t, objs, "ClusterRole", "gracekeeper"), &cr)
		for _, r := range cr.Rules {
			if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Equal(r.Verbs, []string{"create"}) {
				return true
			}
		}
		return false
	}
	def := render(t, nil)
	if !has(def, "authentication.k8s.io", "tokenreviews") || !has(def, "authorization.k8s.io", "subjectaccessreviews") {
		t.Error("the ClusterRole lacks tokenreviews/subjectaccessreviews create, which the metrics filter needs")
	}
	var reader rbacv1.ClusterRole
	into(t, find(t, def, "ClusterRole", "gracekeeper-metrics-reader"), &reader)
	if len(reader.Rules) != 1 || !slices.Equal(reader.Rules[0].NonResourceURLs, []string{"/metrics"}) || !slices.Equal(reader.Rules[0].Verbs, []string{"get"}) {
		t.Errorf("metrics-reader rules %+v, want GET on /metrics only", reader.Rules)
	}
	plain := render(t, map[string]any{"metrics": map[string]any{"insecure": true}})
	if has(plain, "authentication.k8s.io", "tokenreviews") {
		t.Error("tokenreviews granted though metrics are plain HTTP")
	}
}

// TestPodLogsRBAC: gracekeeper may read pods' logs (for the last lines of
// an exited container in its record) only when containerExits.readLogs
// grants it, and then only get on pods/log.
func TestPodLogsRBAC(t *testing.T) {
	logRules := func(objs []*unstructured.Unstructured) []rbacv1.PolicyRule {
		var out []rbacv1.PolicyRule
		for _, o := range objs {
			if o.GetKind() != "ClusterRole" && o.GetKind() != "Role" {
				continue
			}
			var r rbacv1.ClusterRole
			into(t, o, &r)
			for _, rule := range r.Rules {
				if slices.Contains(rule.Resources, "pods/log") || slices.Contains(rule.Resources, "pods/*") || slices.Contains(rule.Resources, "*") {
					out = append(out, rule)
				}
			}
		}
		return out
	}
	if got := logRules(render(t, nil)); len(got) != 0 {
		t.Errorf("pods/log granted by default: %+v", got)
	}
	got := logRules(render(t, map[string]any{"containerExits": map[string]any{"readLogs": true}}))
	if len(got) != 1 || !slices.Equal(got[0].Resources, []string{"pods/log"}) || !slices.Equal(got[0].Verbs, []string{"get"}) {
		t.Errorf("with containerExits.readLogs: %+v, want one rule: get on pods/log", got)
	}
}

// TestNetworkPolicy: off by default; when on, it selects gracekeeper's pods
// and admits the webhook port from anywhere (or webhookFrom) and the metrics
// port only from the configured namespaces.
func TestNetworkPolicy(t *testing.T) {
	if count(render(t, nil), "NetworkPolicy") != 0 {
		t.Fatal("NetworkPolicy rendered by default")
	}
	objs := render(t, map[string]any{"networkPolicy": map[string]any{"enabled": true,
		"metricsNamespaceSelector": map[string]any{"matchLabels": map[string]any{"team": "observability"}}}})
	var np networkingv1.NetworkPolicy
	strictInto(t, find(t, objs, "NetworkPolicy", "gracekeeper"), &np)
	var dep appsv1.Deployment
	into(t, find(t, objs, "Deployment", "gracekeeper"), &dep)
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Fatalf("NetworkPolicy podSelector %v does not select gracekeeper's pods", np.Spec.PodSelector)
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(np.Spec.Ingress) != 2 {
		t.Fatalf("want Ingress only, two rules: %+v", np.Spec)
	}
	byPort := map[string]networkingv1.NetworkPolicyIngressRule{}
	for _, r := range np.Spec.Ingress {
		if len(r.Ports) != 1 {
			t.Fatalf("rule %+v: want one port", r)
		}
		byPort[r.Ports[0].Port.String()] = r
	}
	if r, ok := byPort["webhook"]; !ok || len(r.From) != 0 {
		t.Errorf("webhook port rule %+v: want it open to any source (the API server's addresses are cluster-specific)", r)
	}
	m, ok := byPort["metrics"]
	if !ok || len(m.From) != 1 || m.From[0].NamespaceSelector == nil || m.From[0].NamespaceSelector.MatchLabels["team"] != "observability" {
		t.Errorf("metrics port rule %+v: want only the configured namespaces", m)
	}
	// Named ports must exist on the container, or the rule admits nothing.
	for _, name := range []string{"webhook", "metrics"} {
		found := false
		for _, p := range dep.Spec.Template.Spec.Containers[0].Ports {
			found = found || p.Name == name
		}
		if !found {
			t.Errorf("the container has no port named %q", name)
		}
	}
	narrowed := render(t, map[string]any{"networkPolicy": map[string]any{"enabled": true,
		"webhookFrom": []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.0/24"}}}}})
	strictInto(t, find(t, narrowed, "NetworkPolicy", "gracekeeper"), &np)
	if f := np.Spec.Ingress[0].From; len(f) != 1 || f[0].IPBlock == nil || f[0].IPBlock.CIDR != "10.0.0.0/24" {
		t.Errorf("webhookFrom not applied: %+v", np.Spec.Ingress[0])
	}
}
