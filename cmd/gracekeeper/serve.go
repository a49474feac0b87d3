package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// serveOptions are the flags of `gracekeeper serve`.
type serveOptions struct {
	kubeconfig         string
	addr               string
	certDir            string
	tlsMinVersion      string
	maxBodyBytes       int64
	drainDelay         time.Duration
	leaderElect        bool
	namespace          string
	excludedNamespaces []string
	verbosity          int
}

// parseServeFlags returns the options, or an exit code (0 for -h, 2 for bad
// flags) when serve must not run.
func parseServeFlags(args []string, stderr io.Writer) (serveOptions, int, bool) {
	fs := flag.NewFlagSet("gracekeeper serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o serveOptions
	var excluded string
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, in-cluster, then ~/.kube/config)")
	fs.StringVar(&o.addr, "addr", ":9443", "HTTPS listen address: admission webhooks, /healthz, /readyz and /metrics on one server")
	fs.StringVar(&o.certDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory with tls.crt and tls.key; reloaded when they change")
	fs.StringVar(&o.tlsMinVersion, "tls-min-version", "1.2", "minimum TLS version: 1.2 or 1.3")
	fs.Int64Var(&o.maxBodyBytes, "max-body-bytes", 3<<20, "largest admission request body accepted (kube-apiserver sends at most about 3 MiB)")
	fs.DurationVar(&o.drainDelay, "drain-delay", 5*time.Second, "on shutdown, keep serving this long after /readyz starts failing")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "elect a leader (Lease gracekeeper-leader in --namespace) for status writes and the finalizer controller")
	fs.StringVar(&o.namespace, "namespace", "", "gracekeeper's own namespace: never mutated or validated; holds the leader Lease (required)")
	fs.StringVar(&excluded, "excluded-namespaces", "kube-system,kube-node-lease", "comma-separated namespaces never mutated or validated, besides --namespace")
	fs.IntVar(&o.verbosity, "v", 0, "log verbosity (1: one line per admission request)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: gracekeeper serve --namespace NS [flags]")
		fmt.Fprintln(stderr, "Runs the admission webhook server (mutate and validate pods, validate workloads), health and metrics endpoints,")
		fmt.Fprintln(stderr, "and the policy cache. Exit code: 0 after a clean shutdown, 1 on a runtime error, 2 on bad flags.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, 0, false
		}
		return o, 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gracekeeper serve: unexpected argument %q\n", fs.Arg(0))
		return o, 2, false
	}
	if o.namespace == "" {
		fmt.Fprintln(stderr, "gracekeeper serve: --namespace is required (the chart passes the release namespace)")
		return o, 2, false
	}
	if _, err := webhook.ParseTLSVersion(o.tlsMinVersion); err != nil {
		fmt.Fprintf(stderr, "gracekeeper serve: --tls-min-version: %v\n", err)
		return o, 2, false
	}
	if o.maxBodyBytes <= 0 {
		fmt.Fprintln(stderr, "gracekeeper serve: --max-body-bytes must be positive")
		return o, 2, false
	}
	o.excludedNamespaces = []string{o.namespace}
	for _, n := range strings.Split(excluded, ",") {
		if n = strings.TrimSpace(n); n != "" && n != o.namespace {
			o.excludedNamespaces = append(o.excludedNamespaces, n)
		}
	}
	return o, 0, true
}

// runServe is `gracekeeper serve`.
func runServe(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) int {
	o, code, ok := parseServeFlags(args, stderr)
	if !ok {
		return code
	}
	// JSON lines on stderr (logr's funcr: no logging framework to carry).
	lg := funcr.NewJSON(func(obj string) { fmt.Fprintln(stderr, obj) }, funcr.Options{Verbosity: o.verbosity, LogTimestamp: true})
	// controller-runtime logs through its own package logger; give it ours.
	ctrllog.SetLogger(lg)
	var (
		cfg *rest.Config
		err error
	)
	if o.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	} else {
		cfg, err = config.GetConfig()
	}
	if err != nil {
		fmt.Fprintf(stderr, "gracekeeper serve: %v\n", err)
		return 2
	}
	if err := serve(ctx, cfg, o, lg, serveExtras{}); err != nil {
		lg.Error(err, "gracekeeper serve stopped")
		return 1
	}
	return 0
}

// serveExtras are the parts wired into the manager besides the webhook.
// WIRING SPOT (lead): the finalizer controller
// (finalizer.Setup(mgr, finalizer.Options{Registerer: reg}) and its
// finalizer.CacheOptions() merged into the cache options) and self-managed
// certificates (certs.Manager.AddToManager) are added here.
type serveExtras struct {
	// Setup runs after the policy store and server are added, before the
	// manager starts; it may add runnables and controllers.
	Setup func(mgr manager.Manager, reg *prometheus.Registry) error
	// Cache adjusts the manager's cache options (e.g. the finalizer's pod
	// label selector and transform).
	Cache func(*cache.Options)
}

// serve builds the manager, the policy store and the server and runs them
// until ctx ends.
func serve(ctx context.Context, cfg *rest.Config, o serveOptions, lg logr.Logger, extras serveExtras) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	cacheOpts := cache.Options{DefaultTransform: cache.TransformStripManagedFields()}
	if extras.Cache != nil {
		extras.Cache(&cacheOpts)
	}
	wcfg := webhook.Config{
		Addr: o.addr, CertDir: o.certDir, TLSMinVersion: o.tlsMinVersion,
		MaxBodyBytes: o.maxBodyBytes, DrainDelay: o.drainDelay,
	}
	mgr, err := manager.New(cfg, manager.Options{
		Scheme: scheme,
		Logger: lg,
		Cache:  cacheOpts,
		// We serve /metrics, /healthz and /readyz on the webhook server.
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "gracekeeper-leader",
		LeaderElectionNamespace:       o.namespace,
		LeaderElectionReleaseOnCancel: true,
		// Long enough for the server's drain and shutdown.
		GracefulShutdownTimeout: durationPtr(o.drainDelay + 15*time.Second),
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	store := webhook.NewPolicyStore(webhook.StoreConfig{
		Engine:      policies.Config{ExcludedNamespaces: o.excludedNamespaces},
		WriteStatus: true,
	}, lg.WithName("policies"))
	if err := store.SetupWithManager(mgr); err != nil {
		return err
	}
	srv, err := webhook.NewServer(wcfg, store, reg, lg.WithName("webhook"))
	if err != nil {
		return err
	}
	if err := mgr.Add(srv); err != nil {
		return err
	}
	if extras.Setup != nil {
		if err := extras.Setup(mgr, reg); err != nil {
			return err
		}
	}
	return mgr.Start(ctx)
}

func durationPtr(d time.Duration) *time.Duration { return &d }
