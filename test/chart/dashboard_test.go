package chart

import (
	"encoding/json"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/gracekeeper/gracekeeper/audit"
	"github.com/gracekeeper/gracekeeper/finalizer"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// describingRegistry registers on a real registry and remembers the name of
// every metric each collector describes: a vector with no observation yet is
// absent from Gather but present here.
type describingRegistry struct {
	*prometheus.Registry
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r describingRegistry) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return r.Registry.Register(c)
}

func (r describingRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// exportedMetrics is every metric name `gracekeeper serve` exports: the
// webhook server's and the finalizer controller's, registered by their
// real constructors, and what controller-runtime's registry (process and Go
// collectors) gathers. Histograms also export _bucket, _sum and _count.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg := describingRegistry{Registry: prometheus.NewRegistry(), names: map[string]bool{}}
	if _, err := webhook.NewServer(webhook.Config{}, webhook.StaticSource{}, reg, logr.Discard()); err != nil {
		t.Fatal(err)
	}
	if err := audit.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := finalizer.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		reg.names[mf.GetName()] = true
	}
	out := map[string]bool{}
	for n := range reg.names {
		out[n] = true
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			out[n+s] = true
		}
	}
	return out
}

// selector matches a metric name followed by its label matchers; the
// dashboard writes every series selector with {job=~"$job", ...}.
var selector = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{`)

// TestDashboardQueriesExportedMetrics: the Grafana dashboard renders as a
// ConfigMap the Grafana sidecar picks up, and every query of every panel and
// variable names only metrics the binary really registers.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	if count(render(t, nil), "ConfigMap") != 0 {
		t.Error("the dashboard ConfigMap renders by default")
	}
	objs := render(t, map[string]any{"grafana": map[string]any{"dashboard": map[string]any{"enabled": true, "annotations": map[string]any{"grafana_folder": "Platform"}}}})
	var cm corev1.ConfigMap
	into(t, find(t, objs, "ConfigMap", "gracekeeper-dashboard"), &cm)
	if cm.Labels["grafana_dashboard"] != "1" || cm.Annotations["grafana_folder"] != "Platform" {
		t.Errorf("ConfigMap labels %v annotations %v: want the sidecar's grafana_dashboard: \"1\" and the folder annotation", cm.Labels, cm.Annotations)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal([]byte(cm.Data["gracekeeper.json"]), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	exported := exportedMetrics(t)
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			exprs = append(exprs, v.Definition)
		}
	}
	used := map[string]bool{}
	for _, e := range exprs {
		names := selector.FindAllStringSubmatch(e, -1)
		if len(names) == 0 {
			t.Errorf("query %q names no metric selector", e)
		}
		for _, m := range names {
			used[m[1]] = true
			if !exported[m[1]] {
				t.Errorf("query %q uses %s, which gracekeeper does not export", e, m[1])
			}
		}
	}
	// Every gracekeeper metric has a panel.
	var missing []string
	for n := range exported {
		if strings.HasPrefix(n, "gracekeeper_") && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_bucket") && !strings.HasSuffix(n, "_count") {
			found := used[n]
			for _, s := range []string{"_bucket", "_count"} {
				found = found || used[n+s]
			}
			if !found {
				missing = append(missing, n)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("metrics without a panel: %v", missing)
	}
}
