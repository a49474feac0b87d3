package webhook

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// MetricsConfig configures the /metrics listener.
type MetricsConfig struct {
	// Addr is the listen address, e.g. ":8443".
	Addr string
	// Insecure serves plain HTTP with no authentication: opt-in only, for
	// scrapers that cannot present a token (then restrict who reaches the
	// port, e.g. with the chart's NetworkPolicy).
	Insecure bool
	// Filter wraps the handler when serving HTTPS: controller-runtime's
	// filters.WithAuthenticationAndAuthorization (TokenReview, then a
	// SubjectAccessReview for GET on the /metrics non-resource URL), as
	// kubebuilder scaffolds it. Required unless Insecure.
	Filter metricsserver.Filter
	// CertDir, CertName and KeyName: the serving pair (the webhook's; it
	// is reloaded when it rotates). Missing files: a self-signed pair.
	CertDir, CertName, KeyName string
	// TLSMinVersion as for Config.
	TLSMinVersion uint16
}

// MetricsServer serves /metrics on its own port, so the admission port
// answers only admission and health, and only authenticated, authorized
// callers read metrics. It runs on every replica (NeedLeaderElection
// false) and stops when its context ends.
type MetricsServer struct {
	cfg MetricsConfig
	h   http.Handler
	log logr.Logger
}

// NewMetricsServer serves g as cfg says.
func NewMetricsServer(cfg MetricsConfig, g prometheus.Gatherer, lg logr.Logger) (*MetricsServer, error) {
	var h http.Handler = promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	if !cfg.Insecure {
		if cfg.Filter == nil {
			return nil, fmt.Errorf("metrics over HTTPS need an authentication and authorization filter")
		}
		var err error
		if h, err = cfg.Filter(lg, h); err != nil {
			return nil, fmt.Errorf("metrics authentication filter: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	if cfg.CertName == "" {
		cfg.CertName = "tls.crt"
	}
	if cfg.KeyName == "" {
		cfg.KeyName = "tls.key"
	}
	return &MetricsServer{cfg: cfg, h: mux, log: lg}, nil
}

// NeedLeaderElection is false: every replica is scraped.
func (m *MetricsServer) NeedLeaderElection() bool { return false }

// Start listens and serves until ctx ends.
func (m *MetricsServer) Start(ctx context.Context) error {
	l, err := net.Listen("tcp", m.cfg.Addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: m.h, ReadHeaderTimeout: defaultReadHeaderTimeout,
		// HTTP/2 off, as on the admission port (CVE-2023-44487).
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	if !m.cfg.Insecure {
		tc, err := m.tlsConfig(ctx)
		if err != nil {
			l.Close()
			return err
		}
		l = tls.NewListener(l, tc)
	}
	m.log.Info("serving metrics", "addr", l.Addr().String(), "https", !m.cfg.Insecure)
	// Nothing to drain: Prometheus retries a missed scrape.
	return serveUntil(ctx, hs, l, 0, 5*time.Second, func() {})
}

// tlsConfig serves the webhook's certificate (reloaded on rotation) when
// its files exist by the time metrics start, else a self-signed one, as
// controller-runtime's metrics server does.
func (m *MetricsServer) tlsConfig(ctx context.Context) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: max(m.cfg.TLSMinVersion, tls.VersionTLS12), NextProtos: []string{"http/1.1"}}
	crt, key := filepath.Join(m.cfg.CertDir, m.cfg.CertName), filepath.Join(m.cfg.CertDir, m.cfg.KeyName)
	if _, err := os.Stat(crt); err == nil && m.cfg.CertDir != "" {
		w, err := certwatcher.New(crt, key)
		if err != nil {
			return nil, fmt.Errorf("metrics certificate: %w", err)
		}
		go func() {
			if err := w.Start(ctx); err != nil {
				m.log.Error(err, "metrics certificate watcher stopped")
			}
		}()
		tc.GetCertificate = w.GetCertificate
		return tc, nil
	}
	c, k, err := certutil.GenerateSelfSignedCertKey("localhost", []net.IP{{127, 0, 0, 1}}, nil)
	if err != nil {
		return nil, fmt.Errorf("self-signed metrics certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		return nil, err
	}
	tc.Certificates = []tls.Certificate{pair}
	return tc, nil
}
