package webhook

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MetricsServer serves /metrics as plain HTTP on its own port, for
// Prometheus scrapers that do not speak the webhook's TLS. It runs on every
// replica (NeedLeaderElection false) and stops when its context ends.
type MetricsServer struct {
	addr string
	h    http.Handler
	log  logr.Logger
}

// NewMetricsServer serves g at addr (e.g. ":8080").
func NewMetricsServer(addr string, g prometheus.Gatherer, lg logr.Logger) *MetricsServer {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return &MetricsServer{addr: addr, h: mux, log: lg}
}

// NeedLeaderElection is false: every replica is scraped.
func (m *MetricsServer) NeedLeaderElection() bool { return false }

// Start listens and serves until ctx ends.
func (m *MetricsServer) Start(ctx context.Context) error {
	l, err := net.Listen("tcp", m.addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: m.h, ReadHeaderTimeout: defaultReadHeaderTimeout}
	m.log.Info("serving metrics", "addr", l.Addr().String())
	// Nothing to drain: Prometheus retries a missed scrape.
	return serveUntil(ctx, hs, l, 0, 5*time.Second, func() {})
}
