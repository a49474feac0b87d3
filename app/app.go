// Package app wires gracekeeper's packages into the running process of
// `gracekeeper serve`: one controller-runtime manager holding the policy
// cache (webhook.PolicyStore), the admission server (webhook.Server), the
// finalizer controller (finalizer) and, in self-managed mode, the
// certificate rotator (certs). cmd/gracekeeper parses flags into Options;
// the integration suite runs the same Run in-process.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	orv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"

	"github.com/gracekeeper/gracekeeper/admissionpolicy"
	"github.com/gracekeeper/gracekeeper/audit"
	"github.com/gracekeeper/gracekeeper/certs"
	"github.com/gracekeeper/gracekeeper/finalizer"
	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/webhook"
	"github.com/gracekeeper/gracekeeper/webhookconfig"
)

// CertMode says who writes the serving certificate files into CertDir.
type CertMode string

const (
	// CertModeFiles: someone else writes them (a mounted Secret, a test).
	CertModeFiles CertMode = "files"
	// CertModeCertManager: cert-manager's Secret is mounted; same as files,
	// named for the chart's value.
	CertModeCertManager CertMode = "certManager"
	// CertModeSelf: gracekeeper issues and rotates them itself (package certs).
	CertModeSelf CertMode = "self"
)

// Options configure Run. Namespace is required; the rest have defaults.
type Options struct {
	// Webhook configures the HTTPS admission server.
	Webhook webhook.Config
	// MetricsAddr serves /metrics on its own port (the admission port
	// serves only admission and health): HTTPS with the webhook's serving
	// certificate, each request authenticated (TokenReview) and authorized
	// (SubjectAccessReview, GET on the non-resource URL /metrics); "" or "0"
	// disables it.
	MetricsAddr string
	// MetricsInsecure serves MetricsAddr as plain HTTP with no
	// authentication instead: opt-in only.
	MetricsInsecure bool
	// Namespace is gracekeeper's own: never mutated or validated, holds the
	// leader Lease and, in self mode, the certificate Secret.
	Namespace string
	// ExcludedNamespaces are never mutated or validated (Namespace is added).
	ExcludedNamespaces []string
	// IgnoreLabel: namespaces with this label set to "true" are never
	// mutated or validated (default policies.DefaultIgnoreLabel).
	IgnoreLabel string
	// LeaderElect elects one replica for status writes, the finalizer
	// controller and certificate renewal.
	LeaderElect bool
	// CertMode picks who writes the certificate files (default files).
	CertMode CertMode
	// Certs configures self mode (Namespace and CertDir are filled in).
	Certs certs.Options
	// Finalizer configures the finalizer controller (Registerer is filled in).
	Finalizer finalizer.Options
	// AuditEnabled runs the background audit on the leader; Audit
	// configures it (Excluded and Registerer are filled in).
	AuditEnabled bool
	Audit        audit.Options
	// PprofAddr serves net/http/pprof on this address (controller-runtime's
	// pprof server); "" or "0" disables it. For profiling on loopback only.
	PprofAddr string
	// NarrowWebhooks keeps the pod webhooks of the configurations named in
	// Certs (MutatingWebhookConfiguration, ValidatingWebhookConfiguration)
	// narrowed to what the policies select (leader only; webhookconfig).
	NarrowWebhooks bool
	// AdmissionMode: webhook (default) admits pods through gracekeeper's
	// webhooks; apiserver compiles each policy into admission policies the
	// API server evaluates itself (package admissionpolicy).
	AdmissionMode admissionpolicy.Mode
}

// Validate says what is wrong with o, naming the option and the serve flag
// that sets it. It is the only check of serve's flags.
func (o Options) Validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("--namespace is required: gracekeeper's own namespace (the chart passes the release namespace)"))
	} else if msgs := validation.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--namespace %q: %s", o.Namespace, strings.Join(msgs, "; ")))
	}
	if err := (policies.Config{ExcludedNamespaces: o.ExcludedNamespaces, IgnoreLabel: o.IgnoreLabel}).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--excluded-namespaces or --ignore-label: %w", err))
	}
	switch o.CertMode {
	case "", CertModeFiles, CertModeCertManager:
	case CertModeSelf:
		if o.Certs.SecretName == "" || o.Certs.ServiceName == "" {
			errs = append(errs, errors.New("cert mode self needs the Secret and Service names (--cert-secret, --service)"))
		}
		// certs injects into whichever of the two is named.
		if o.Certs.MutatingWebhookConfiguration == "" && o.Certs.ValidatingWebhookConfiguration == "" {
			errs = append(errs, errors.New("cert mode self needs the webhook configuration names to inject the caBundle into (--mutating-webhook-config, --validating-webhook-config)"))
		}
	default:
		errs = append(errs, fmt.Errorf("--cert-mode %q: must be self, certManager or files", o.CertMode))
	}
	if o.PprofAddr != "" && o.PprofAddr != "0" {
		// pprof is unauthenticated and shows memory contents: loopback only.
		host, _, err := net.SplitHostPort(o.PprofAddr)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			errs = append(errs, fmt.Errorf("--pprof-bind-address %q: must be a loopback address and port, e.g. 127.0.0.1:6060", o.PprofAddr))
		}
	}
	if o.NarrowWebhooks && o.Certs.MutatingWebhookConfiguration == "" && o.Certs.ValidatingWebhookConfiguration == "" {
		errs = append(errs, errors.New("--narrow-webhooks needs the webhook configuration names (--mutating-webhook-config, --validating-webhook-config)"))
	}
	if _, err := webhook.ParseTLSVersion(o.Webhook.TLSMinVersion); o.Webhook.TLSMinVersion != "" && err != nil {
		errs = append(errs, fmt.Errorf("--tls-min-version: %w", err))
	}
	// 0 is the default; the API server's own limit for timeoutSeconds is 30 s.
	if o.Webhook.RequestTimeout < 0 || o.Webhook.RequestTimeout > 30*time.Second {
		errs = append(errs, fmt.Errorf("--request-timeout %s: must be at most 30s (the API server's limit for timeoutSeconds)", o.Webhook.RequestTimeout))
	}
	if o.AdmissionMode != "" {
		if err := o.AdmissionMode.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("--admission-mode %w", err))
		}
	}
	if o.Webhook.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("--max-body-bytes %d: must not be negative (0 is the default)", o.Webhook.MaxBodyBytes))
	}
	return errors.Join(errs...)
}

// Engine is the policy engine's configuration: the excluded namespaces
// (Excluded) and the ignore label.
func (o Options) Engine() policies.Config {
	l := o.IgnoreLabel
	if l == "" {
		l = policies.DefaultIgnoreLabel
	}
	return policies.Config{ExcludedNamespaces: o.Excluded(), IgnoreLabel: l}
}

// Excluded is the namespaces never mutated or validated: our own first, then
// ExcludedNamespaces without repeats.
func (o Options) Excluded() []string {
	out := []string{o.Namespace}
	for _, n := range o.ExcludedNamespaces {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// Run runs gracekeeper until ctx ends, then shuts down in order: /readyz
// fails, the server drains, the manager stops and releases the lease.
func Run(ctx context.Context, cfg *rest.Config, o Options, lg logr.Logger) error {
	if err := o.Validate(); err != nil {
		return err
	}
	// With the background audit's policy reports (written only when the CRD is served).
	scheme, err := clientscheme.New(orv1alpha1.AddToScheme)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	// controller-runtime keeps the workqueue and reconcile metrics of the
	// finalizer controller, and the Go and process collectors, in its own
	// registry (pkg/metrics/registry.go); export both.
	gatherer := prometheus.Gatherers{reg, ctrlmetrics.Registry}

	// The manager must outwait the server's drain and shutdown.
	wc := o.Webhook.WithDefaults()
	mgr, err := manager.New(cfg, manager.Options{
		Scheme: scheme,
		Logger: lg,
		Cache:  cacheOptions(o.narrowing()),
		// /metrics, /healthz and /readyz are ours (webhook.Server and the
		// metrics listener below, which uses controller-runtime's
		// authentication filter), not controller-runtime's servers.
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		PprofBindAddress:              o.PprofAddr,
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              "gracekeeper-leader",
		LeaderElectionNamespace:       o.Namespace,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       ptr(wc.DrainDelay + wc.ShutdownTimeout + 5*time.Second),
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}

	store := webhook.NewPolicyStore(webhook.StoreConfig{
		Engine:      o.Engine(),
		WriteStatus: true,
	}, lg.WithName("policies"))
	if err := store.SetupWithManager(mgr); err != nil {
		return err
	}
	srv, err := webhook.NewServer(o.Webhook, store, reg, lg.WithName("webhook"))
	if err != nil {
		return err
	}
	if err := mgr.Add(srv); err != nil {
		return err
	}
	if o.MetricsAddr != "" && o.MetricsAddr != "0" {
		mc := webhook.MetricsConfig{Addr: o.MetricsAddr, Insecure: o.MetricsInsecure,
			CertDir: wc.CertDir, CertName: wc.CertName, KeyName: wc.KeyName}
		if !o.MetricsInsecure {
			// As kubebuilder scaffolds it: the API server authenticates the
			// scraper's token and authorizes GET /metrics for it.
			if mc.Filter, err = filters.WithAuthenticationAndAuthorization(cfg, mgr.GetHTTPClient()); err != nil {
				return fmt.Errorf("metrics authentication: %w", err)
			}
		}
		if mc.TLSMinVersion, err = webhook.ParseTLSVersion(wc.TLSMinVersion); err != nil {
			return err
		}
		ms, err := webhook.NewMetricsServer(mc, gatherer, lg.WithName("metrics"))
		if err != nil {
			return err
		}
		if err := mgr.Add(ms); err != nil {
			return err
		}
	}
	if o.AuditEnabled {
		ao := o.Audit
		ao.Excluded, ao.Registerer = o.Excluded(), reg
		if _, err := audit.Setup(mgr, store, ao, lg.WithName("audit")); err != nil {
			return err
		}
	}
	if o.NarrowWebhooks {
		if err := webhookconfig.Setup(mgr, o.narrowing(), lg.WithName("webhook-narrowing")); err != nil {
			return err
		}
	} else if wo := o.widening(); wo.MutatingName != "" || wo.ValidatingName != "" {
		// Narrowing off: undo one written before, once, on the leader
		// (a RunnableFunc needs leader election). Uncached: nothing watches
		// webhook configurations then, and the chart grants get/update only.
		direct, err := client.New(cfg, client.Options{Scheme: scheme, Mapper: mgr.GetRESTMapper()})
		if err != nil {
			return err
		}
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			return webhookconfig.Widen(ctx, direct, wo, lg.WithName("webhook-narrowing"))
		})); err != nil {
			return err
		}
	}
	mode := o.AdmissionMode
	if mode == "" {
		mode = admissionpolicy.ModeWebhook
	}
	eng := o.Engine()
	// In webhook mode it only removes what an earlier apiserver-mode run compiled.
	if err := admissionpolicy.Setup(mgr, &admissionpolicy.Reconciler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Mode: mode,
		Config: admissionpolicy.Config{ExcludedNamespaces: eng.ExcludedNamespaces, IgnoreLabel: eng.IgnoreLabel},
		Log:    lg.WithName("admission-policies")}); err != nil {
		return err
	}
	fo := o.Finalizer
	fo.Registerer = reg
	if err := finalizer.Setup(mgr, fo); err != nil {
		return err
	}

	if o.CertMode == CertModeSelf {
		co := o.Certs
		co.Namespace, co.CertDir = o.Namespace, o.Webhook.CertDir
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		cm, err := certs.New(cs, co)
		if err != nil {
			return err
		}
		// The server needs the files before it starts; any replica may do
		// the first issue, renewals are the leader's (certs.Manager).
		if err := cm.Bootstrap(ctx); err != nil {
			return fmt.Errorf("self-managed certificates: %w", err)
		}
		if err := cm.AddToManager(mgr); err != nil {
			return err
		}
	}
	lg.Info("starting gracekeeper", "namespace", o.Namespace, "leaderElect", o.LeaderElect, "certMode", string(o.CertMode), "admissionMode", string(mode))
	return mgr.Start(ctx)
}

// cacheOptions: managed fields are dropped from everything cached; pods are
// cached only with the finalize label, stripped (finalizer.CacheOptions), so
// memory grows with the pods we hold a finalizer on, not with the cluster.
func cacheOptions(n webhookconfig.Options) cache.Options {
	o := finalizer.CacheOptions()
	o.DefaultTransform = cache.TransformStripManagedFields()
	if n.MutatingName != "" || n.ValidatingName != "" {
		for obj, by := range n.CacheByObject() {
			o.ByObject[obj] = by
		}
	}
	return o
}

// widening names the configurations to restore when narrowing is off.
func (o Options) widening() webhookconfig.Options {
	return webhookconfig.Options{MutatingName: o.Certs.MutatingWebhookConfiguration,
		ValidatingName: o.Certs.ValidatingWebhookConfiguration, Engine: o.Engine()}
}

// narrowing is the narrowing controller's configuration; names are empty
// unless NarrowWebhooks is set, so nothing is watched then.
func (o Options) narrowing() webhookconfig.Options {
	if !o.NarrowWebhooks {
		return webhookconfig.Options{}
	}
	return webhookconfig.Options{MutatingName: o.Certs.MutatingWebhookConfiguration,
		ValidatingName: o.Certs.ValidatingWebhookConfiguration, Engine: o.Engine()}
}

func ptr[T any](v T) *T { return &v }
