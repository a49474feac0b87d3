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
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gracekeeper/gracekeeper/finalizer"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// gracekeeper is the real webhook server and its manager (the informer
// cache behind webhook.PolicyStore, and the finalizer controller), run
// in-process the way `serve` wires them, against the test control plane.
type gracekeeper struct {
	baseURL string
	http    *http.Client // trusts the serving CA
	done    chan error   // one result per started runnable
	started int
}

func startGracekeeper(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, certDir, host string, port int, namespace string) (*gracekeeper, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	g := &gracekeeper{baseURL: "https://" + addr, done: make(chan error, 2)}
	lg := logr.Discard()
	mgr, err := manager.New(cfg, manager.Options{
		Scheme:  scheme,
		Logger:  lg,
		Cache:   finalizer.CacheOptions(),                // pods: only those carrying our label
		Metrics: metricsserver.Options{BindAddress: "0"}, // our metrics are on the webhook server
	})
	if err != nil {
		return g, err
	}
	store := webhook.NewPolicyStore(webhook.StoreConfig{
		Engine:      policies.Config{ExcludedNamespaces: []string{namespace, "kube-system", "kube-node-lease"}},
		WriteStatus: true,
	}, lg)
	if err := store.SetupWithManager(mgr); err != nil {
		return g, err
	}
	reg := prometheus.NewRegistry()
	if err := finalizer.Setup(mgr, finalizer.Options{Registerer: reg}); err != nil {
		return g, err
	}
	srv, err := webhook.NewServer(webhook.Config{Addr: addr, CertDir: certDir, DrainDelay: -1}, store, reg, lg)
	if err != nil {
		return g, err
	}
	for _, r := range []func(context.Context) error{mgr.Start, srv.Start} {
		g.started++
		go func() { g.done <- r(ctx) }()
	}
	return g, nil
}

// wait blocks until the manager and server have returned (after their
// context is cancelled).
func (g *gracekeeper) wait() {
	for ; g.started > 0; g.started-- {
		if err := <-g.done; err != nil {
			fmt.Println("gracekeeper stopped:", err)
		}
	}
}

// waitReady polls /readyz (ready once the policy cache has synced) over TLS
// with the serving CA, then keeps that client for scraping /metrics.
func (g *gracekeeper) waitReady(ctx context.Context, ca []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("no CA certificate in the serving CA data")
	}
	g.http = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
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
		return fmt.Errorf("gracekeeper not ready at %s: %v", g.baseURL, last)
	}
	return nil
}

// auditCount scrapes /metrics, as Prometheus would, and returns the Audit
// findings counted for policy.
func (g *gracekeeper) auditCount(t *testing.T, policy string) float64 {
	t.Helper()
	resp, err := g.http.Get(g.baseURL + "/metrics")
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
