package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"mime"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Server is the HTTPS admission server. It implements controller-runtime's
// manager.Runnable (Start) and runs on every replica, leader or not.
type Server struct {
	cfg      Config
	minTLS   uint16
	src      Source
	m        *metrics
	log      logr.Logger
	handler  http.Handler
	draining atomic.Bool
	slots    inFlight

	mu       sync.Mutex
	listener net.Listener
}

// NewServer builds the server; metrics are registered on reg (nil: none).
// Nothing listens until Listen or Start.
func NewServer(cfg Config, src Source, reg prometheus.Registerer, lg logr.Logger) (*Server, error) {
	cfg = cfg.WithDefaults()
	minTLS, err := ParseTLSVersion(cfg.TLSMinVersion)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	s := &Server{cfg: cfg, minTLS: minTLS, src: src, m: m, log: lg, slots: newInFlight(cfg)}
	gatherer, _ := reg.(prometheus.Gatherer)
	s.handler = s.routes(gatherer)
	return s, nil
}

// Handler is the server's whole HTTP handler (routes and middleware).
func (s *Server) Handler() http.Handler { return s.handler }

// NeedLeaderElection is false: every replica answers admission requests.
func (s *Server) NeedLeaderElection() bool { return false }

// Ready reports whether /readyz succeeds: the policy cache has synced and
// the server is not draining.
func (s *Server) Ready() bool { return !s.draining.Load() && s.src.Set() != nil }

func (s *Server) routes(g prometheus.Gatherer) http.Handler {
	r := mux.NewRouter()
	for _, route := range []string{RouteMutatePods, RouteValidatePods, RouteValidateWorkloads} {
		r.Handle(route, s.admission(route)).Methods(http.MethodPost)
	}
	r.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	}).Methods(http.MethodGet)
	r.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			http.Error(w, "not ready: policy cache not synced or shutting down", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	}).Methods(http.MethodGet)
	if g != nil {
		r.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{})).Methods(http.MethodGet)
	}
	r.Use(s.recoverer)
	return r
}

// recoverer turns a panic into a 500 so one bad request never takes the
// server down (net/http would recover too, but drop the connection silently).
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error(fmt.Errorf("panic: %v", p), "handler panicked", "path", r.URL.Path)
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// admission is the HTTP side of one admission route: content type, an
// in-flight slot, body limit, then Review.
func (s *Server) admission(route string) http.Handler {
	lg := s.log.WithValues("route", route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		outcome := outcomeError
		defer func() {
			s.m.latency.WithLabelValues(route, outcome).Observe(time.Since(start).Seconds())
		}()
		ctx := log.IntoContext(r.Context(), lg)
		if !isJSON(r.Header.Get("Content-Type")) {
			http.Error(w, fmt.Sprintf("unsupported content type %q: send application/json", r.Header.Get("Content-Type")), http.StatusUnsupportedMediaType)
			return
		}
		if r.ContentLength > s.cfg.MaxBodyBytes {
			// Refused before a byte of it is read.
			w.Header().Set("Connection", "close")
			http.Error(w, fmt.Sprintf("request body of %d bytes is larger than the limit of %d bytes", r.ContentLength, s.cfg.MaxBodyBytes), http.StatusRequestEntityTooLarge)
			return
		}
		release, ok := s.slots.acquire(r.ContentLength)
		if !ok {
			outcome = outcomeOverloaded
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Connection", "close")
			http.Error(w, "too many admission requests in flight; retry", http.StatusTooManyRequests)
			return
		}
		defer release()
		body, err := readBody(w, r, s.cfg.MaxBodyBytes)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				http.Error(w, fmt.Sprintf("request body larger than the limit of %d bytes", s.cfg.MaxBodyBytes), http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "reading request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		code, out, oc := s.Review(ctx, route, body)
		outcome = oc
		if code == http.StatusOK {
			w.Header().Set("Content-Type", "application/json")
		} else {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
		w.WriteHeader(code)
		_, _ = w.Write(out)
	})
}

// Listen binds the address and returns it (useful with port 0). Start calls
// it when it has not been called.
func (s *Server) Listen() (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener != nil {
		return s.listener.Addr(), nil
	}
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return nil, err
	}
	s.listener = l
	return l.Addr(), nil
}

// tlsConfig serves the certificate certwatcher holds.
//
// HTTP/2 is off: the HTTP/2 "rapid reset" attack (CVE-2023-44487) and
// stream-multiplexing resource exhaustion made controller-runtime disable
// it by default for webhook servers (pkg/webhook/server.go, EnableHTTP2
// defaults to false); the API server talks HTTP/1.1 to webhooks fine.
func (s *Server) tlsConfig(w *certwatcher.CertWatcher) *tls.Config {
	return &tls.Config{
		MinVersion:     s.minTLS,
		GetCertificate: w.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}
}

// Start serves until ctx is cancelled, then drains: /readyz fails at once,
// requests are still served for DrainDelay (so endpoints catch up and the
// API server stops sending), then Shutdown waits for in-flight requests.
func (s *Server) Start(ctx context.Context) error {
	w, err := certwatcher.New(filepath.Join(s.cfg.CertDir, s.cfg.CertName), filepath.Join(s.cfg.CertDir, s.cfg.KeyName))
	if err != nil {
		return fmt.Errorf("loading TLS certificate from %s: %w", s.cfg.CertDir, err)
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go func() {
		if err := w.Start(watchCtx); err != nil {
			s.log.Error(err, "certificate watcher stopped")
		}
	}()
	if _, err := s.Listen(); err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		// A request's body must arrive within the time the API server waits
		// for the answer, and the answer be written soon after: a client
		// slower than that is not the API server, and gets its connection
		// closed instead of holding a slot and memory.
		ReadTimeout:  s.cfg.RequestTimeout,
		WriteTimeout: s.cfg.RequestTimeout + writeSlack,
		IdleTimeout:  s.cfg.IdleTimeout,
		// A non-nil empty map disables HTTP/2 (net/http docs).
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		BaseContext:  func(net.Listener) context.Context { return log.IntoContext(context.Background(), s.log) },
		// TLS handshake failures and the like, through our logger (V(1):
		// scanners and load balancer probes make them routine).
		ErrorLog: stdlog.New(logWriter{s.log.V(1)}, "", 0),
	}
	s.mu.Lock()
	l := tls.NewListener(s.listener, s.tlsConfig(w))
	s.mu.Unlock()
	s.log.Info("serving admission webhooks", "addr", l.Addr().String(), "tlsMinVersion", tls.VersionName(s.minTLS))
	return serveUntil(ctx, hs, l, s.cfg.DrainDelay, s.cfg.ShutdownTimeout, func() {
		s.draining.Store(true)
		s.log.Info("draining before shutdown", "delay", s.cfg.DrainDelay.String())
	})
}

// serveUntil serves l until ctx ends, then calls stopping, keeps serving for
// drain and shuts down, waiting at most timeout for requests in flight.
func serveUntil(ctx context.Context, hs *http.Server, l net.Listener, drain, timeout time.Duration, stopping func()) error {
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stopping()
	select {
	case <-time.After(drain):
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// readBody reads the body through http.MaxBytesReader (max bytes, then an
// error that answers 413 and closes the connection). The buffer grows with
// what has arrived; Content-Length, which any client can announce, only
// sizes the first allocation up to bodyHint, so a connection that
// announces megabytes and trickles bytes costs what it sent.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, max)
	hint := int64(bytes.MinRead)
	if n := r.ContentLength; n > 0 {
		hint = min(n+1, bodyHint) // +1: ReadFrom sees EOF without growing
	}
	buf := bytes.NewBuffer(make([]byte, 0, hint))
	if _, err := buf.ReadFrom(body); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// logWriter adapts net/http's *log.Logger output to logr.
type logWriter struct{ l logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}

// isJSON accepts application/json with or without parameters (charset).
func isJSON(contentType string) bool {
	if contentType == "application/json" { // what the API server sends
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}
