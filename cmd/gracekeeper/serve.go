package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gracekeeper/gracekeeper/admissionpolicy"
	"github.com/gracekeeper/gracekeeper/app"
	"github.com/gracekeeper/gracekeeper/certs"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// serveOptions are the flags of `gracekeeper serve`: app.Options plus what
// only the command needs.
type serveOptions struct {
	app.Options
	kubeconfig string
	verbosity  int
}

// parseServeFlags returns the options, or an exit code (0 for -h, 2 for bad
// flags) when serve must not run. The chart's Deployment passes these flags.
func parseServeFlags(args []string, stderr io.Writer) (serveOptions, int, bool) {
	fs := newFlagSet("serve", stderr,
		"usage: gracekeeper serve --namespace NS [flags]",
		"Runs the admission webhook server (mutate and validate pods, validate workloads), the finalizer controller,",
		"health and metrics endpoints, and the policy cache. Exit code: 0 after a clean shutdown, 1 on a runtime error, 2 on bad flags.")
	var (
		o        serveOptions
		scope    scopeFlags
		certMode string
		mode     string
	)
	w := &o.Webhook
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, in-cluster, then ~/.kube/config)")
	fs.StringVar(&w.Addr, "addr", ":9443", "HTTPS listen address: admission webhooks, /healthz and /readyz (metrics: --metrics-bind-address)")
	fs.StringVar(&w.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory with tls.crt and tls.key; reloaded when they change")
	fs.StringVar(&w.TLSMinVersion, "tls-min-version", "1.2", "minimum TLS version: 1.2 or 1.3")
	fs.Int64Var(&w.MaxBodyBytes, "max-body-bytes", webhook.DefaultMaxBodyBytes, "largest admission request body accepted (an UPDATE review carries the object and its old version)")
	fs.DurationVar(&w.RequestTimeout, "request-timeout", 30*time.Second, "the webhooks' timeoutSeconds: a request must be read within it (the chart passes its webhook.timeoutSeconds)")
	fs.DurationVar(&w.DrainDelay, "drain-delay", 5*time.Second, "on shutdown, keep serving this long after /readyz starts failing")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", "0", "/metrics listen address (e.g. :8443): HTTPS, each scrape authenticated and authorized by the API server (TokenReview, SubjectAccessReview for GET /metrics); 0 disables it")
	fs.StringVar(&o.PprofAddr, "pprof-bind-address", "0", "serve net/http/pprof here, e.g. 127.0.0.1:6060 (unauthenticated: loopback only); 0 disables it")
	fs.BoolVar(&o.MetricsInsecure, "metrics-insecure", false, "serve --metrics-bind-address as plain HTTP without authentication (opt-in; restrict who reaches the port)")
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "elect a leader (Lease gracekeeper-leader in --namespace) for status writes, the finalizer controller and certificate renewal")
	fs.StringVar(&o.Namespace, "namespace", "", "gracekeeper's own namespace: never mutated or validated; holds the leader Lease (required)")
	scope.register(fs)
	fs.StringVar(&certMode, "cert-mode", string(app.CertModeFiles), "who writes --cert-dir: files (mounted or given), certManager (its Secret is mounted), self (gracekeeper issues and renews them)")
	fs.StringVar(&o.Certs.SecretName, "cert-secret", "", "self mode: the Secret that keeps the CA and serving certificate")
	fs.StringVar(&o.Certs.ServiceName, "service", "", "self mode: the Service the API server calls (the certificate's DNS names)")
	fs.StringVar(&o.Certs.MutatingWebhookConfiguration, "mutating-webhook-config", "", "gracekeeper's MutatingWebhookConfiguration: self mode writes the caBundle into it, --narrow-webhooks narrows it")
	fs.StringVar(&o.Certs.ValidatingWebhookConfiguration, "validating-webhook-config", "", "gracekeeper's ValidatingWebhookConfiguration: self mode writes the caBundle into it, --narrow-webhooks narrows it")
	fs.BoolVar(&o.NarrowWebhooks, "narrow-webhooks", false, "keep the pod webhooks' namespaceSelector and matchConditions in step with the LifecyclePolicies (leader only), so pods no policy selects cost no webhook call")
	fs.DurationVar(&o.Certs.CALifetime, "ca-lifetime", certs.DefaultCALifetime, "self mode: lifetime of the CA")
	fs.DurationVar(&o.Certs.CertLifetime, "cert-lifetime", certs.DefaultCertLifetime, "self mode: lifetime of the serving certificate (renewed at two thirds)")
	auditFlags(fs, &o.Options)
	fs.StringVar(&mode, "admission-mode", string(admissionpolicy.ModeWebhook), "where pods are admitted: webhook (gracekeeper's webhooks mutate and validate them) or apiserver (each policy is compiled into a MutatingAdmissionPolicy and a ValidatingAdmissionPolicy the API server evaluates, so a Deny policy holds while gracekeeper is down; the chart's admission.mode)")
	fs.IntVar(&o.verbosity, "v", 0, "log verbosity (1: one line per admission request)")
	switch parseFlags(fs, args, stderr, "") {
	case parsedHelp:
		return o, 0, false
	case parsedBad:
		return o, 2, false
	}
	o.CertMode = app.CertMode(certMode)
	o.AdmissionMode = admissionpolicy.Mode(mode)
	o.ExcludedNamespaces = scope.namespaces() // app adds --namespace
	o.IgnoreLabel = scope.label()
	if err := o.Validate(); err != nil {
		fmt.Fprintf(stderr, "gracekeeper serve: %v\n", err)
		return o, 2, false
	}
	// Events name the replica that wrote them; the chart sets POD_NAME.
	o.Finalizer.ReportingInstance = os.Getenv("POD_NAME")
	return o, 0, true
}

// runServe is `gracekeeper serve`.
func runServe(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) int {
	o, code, ok := parseServeFlags(args, stderr)
	if !ok {
		return code
	}
	lg := newLogger(stderr, o.verbosity)
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "gracekeeper serve: %v\n", err)
		return 2
	}
	if err := app.Run(ctx, cfg, o.Options, lg); err != nil {
		lg.Error(err, "gracekeeper serve stopped")
		return 1
	}
	return 0
}
