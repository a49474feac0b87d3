package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	"github.com/gracekeeper/gracekeeper/app"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// gracekeeper is the real process of `gracekeeper serve` (app.Run: the
// manager with the policy cache, the admission server and the finalizer
// controller), run in-process against the test control plane.
type gracekeeper struct {
	baseURL    string
	metricsURL string
	http       *http.Client // trusts the serving CA
	done       chan error
}

// webhookConfig names the chart's two webhook configurations, which
// gracekeeper keeps narrowed to the policies (as the chart runs it).
func startGracekeeper(ctx context.Context, cfg *rest.Config, certDir, host string, port int, namespace, webhookConfig string) *gracekeeper {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	g := &gracekeeper{baseURL: "https://" + addr, done: make(chan error, 1)}
	// Metrics on their own loopback port, plain HTTP (the opt-in mode): the
	// suite reads counters; test/chart and app test the authenticated mode.
	metricsAddr := freeLoopbackAddr()
	g.metricsURL = "http://" + metricsAddr + "/metrics"
	o := app.Options{
		// No drain: the suite stops it only at the end, or to prove failurePolicy.
		Webhook:            webhook.Config{Addr: addr, CertDir: certDir, DrainDelay: -1},
		MetricsAddr:        metricsAddr,
		MetricsInsecure:    true,
		Namespace:          namespace,
		ExcludedNamespaces: []string{"kube-system", "kube-node-lease"},
		CertMode:           app.CertModeFiles, // envtest writes the serving pair
		NarrowWebhooks:     true,
	}
	o.Certs.MutatingWebhookConfiguration, o.Certs.ValidatingWebhookConfiguration = webhookConfig, webhookConfig
	go func() { g.done <- app.Run(ctx, cfg, o, logr.Discard()) }()
	return g
}

// wait blocks until Run has returned (after its context is cancelled).
func (g *gracekeeper) wait() {
	if err := <-g.done; err != nil {
		fmt.Println("gracekeeper stopped:", err)
	}
}

// waitReady polls /readyz (ready once the policy cache has synced) over TLS
// with the serving CA, then keeps that client (it also scrapes /metrics).
func (g *gracekeeper) waitReady(ctx context.Context, ca []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("no CA certificate in the serving CA data")
	}
	g.http = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		select {
		case err := <-g.done:
			g.done <- err // for wait
			return false, fmt.Errorf("gracekeeper exited before ready: %v", err)
		default:
		}
		resp, err := g.http.Get(g.baseURL + "/readyz")
		if err != nil {
			last = err
			return false, nil
		}
		resp.Body.Close()
		last = fmt.Errorf("/readyz: %s", resp.Status)
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("gracekeeper not ready at %s: %v (%v)", g.baseURL, err, last)
	}
	return nil
}

// auditCount scrapes /metrics, as Prometheus would, and returns the Audit
// findings counted for policy.
func (g *gracekeeper) auditCount(t *testing.T, policy string) float64 {
	t.Helper()
	resp, err := g.http.Get(g.metricsURL)
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

// freeLoopbackAddr is a loopback address with a port free a moment ago.
func freeLoopbackAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}
