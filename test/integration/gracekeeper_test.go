package integration

import (
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"

	"github.com/gracekeeper/gracekeeper/app"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
	"github.com/gracekeeper/gracekeeper/test/internal/inproc"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// gracekeeper is the real process of `gracekeeper serve` (app.Run: the
// manager with the policy cache, the admission server and the finalizer
// controller), run in-process against the test control plane, with its
// metrics on a plain-HTTP loopback port the suite scrapes.
type gracekeeper struct {
	*inproc.Gracekeeper
	metricsURL string
}

// webhookConfig names the chart's two webhook configurations, which
// gracekeeper keeps narrowed to the policies (as the chart runs it).
func startGracekeeper(ctx context.Context, cfg *rest.Config, certDir, host string, port int, namespace, webhookConfig string) (*gracekeeper, error) {
	// Metrics on their own loopback port, plain HTTP (the opt-in mode): the
	// suite reads counters; test/chart and app test the authenticated mode.
	metricsPort, err := controlplane.FreeLoopbackPort()
	if err != nil {
		return nil, err
	}
	metricsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(metricsPort))
	o := app.Options{
		// No drain: the suite stops it only at the end, or to prove failurePolicy.
		Webhook:            webhook.Config{Addr: net.JoinHostPort(host, strconv.Itoa(port)), CertDir: certDir, DrainDelay: -1},
		MetricsAddr:        metricsAddr,
		MetricsInsecure:    true,
		Namespace:          namespace,
		ExcludedNamespaces: []string{"kube-system", "kube-node-lease"},
		CertMode:           app.CertModeFiles, // envtest writes the serving pair
		NarrowWebhooks:     true,
	}
	o.Certs.MutatingWebhookConfiguration, o.Certs.ValidatingWebhookConfiguration = webhookConfig, webhookConfig
	return &gracekeeper{Gracekeeper: inproc.Start(ctx, cfg, o, logr.Discard()), metricsURL: "http://" + metricsAddr + "/metrics"}, nil
}

// auditCount scrapes /metrics, as Prometheus would, and returns the Audit
// findings counted for policy.
func (g *gracekeeper) auditCount(t *testing.T, policy string) float64 {
	t.Helper()
	resp, err := g.HTTP.Get(g.metricsURL)
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	const name = "gracekeeper_webhook_findings_total"
	fam, ok := families[name]
	if !ok {
		return 0 // no finding counted yet: the family appears with its first sample
	}
	var sum float64
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["policy"] == policy && labels["action"] == "Audit" {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
