package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr/funcr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gracekeeper/gracekeeper/app"
	"github.com/gracekeeper/gracekeeper/certs"
	"github.com/gracekeeper/gracekeeper/policies"
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
	fs := flag.NewFlagSet("gracekeeper serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o        serveOptions
		excluded string
		certMode string
	)
	w := &o.Webhook
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, in-cluster, then ~/.kube/config)")
	fs.StringVar(&w.Addr, "addr", ":9443", "HTTPS listen address: admission webhooks, /healthz, /readyz and /metrics on one server")
	fs.StringVar(&w.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory with tls.crt and tls.key; reloaded when they change")
	fs.StringVar(&w.TLSMinVersion, "tls-min-version", "1.2", "minimum TLS version: 1.2 or 1.3")
	fs.Int64Var(&w.MaxBodyBytes, "max-body-bytes", 3<<20, "largest admission request body accepted (kube-apiserver sends at most about 3 MiB)")
	fs.DurationVar(&w.DrainDelay, "drain-delay", 5*time.Second, "on shutdown, keep serving this long after /readyz starts failing")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", "0", "plain-HTTP /metrics listen address for Prometheus (e.g. :8080); 0 disables it")
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "elect a leader (Lease gracekeeper-leader in --namespace) for status writes, the finalizer controller and certificate renewal")
	fs.StringVar(&o.Namespace, "namespace", "", "gracekeeper's own namespace: never mutated or validated; holds the leader Lease (required)")
	fs.StringVar(&excluded, "excluded-namespaces", strings.Join(policies.SystemNamespaces(), ","), "comma-separated namespaces never mutated or validated, besides --namespace")
	fs.StringVar(&certMode, "cert-mode", string(app.CertModeFiles), "who writes --cert-dir: files (mounted or given), certManager (its Secret is mounted), self (gracekeeper issues and renews them)")
	fs.StringVar(&o.Certs.SecretName, "cert-secret", "", "self mode: the Secret that keeps the CA and serving certificate")
	fs.StringVar(&o.Certs.ServiceName, "service", "", "self mode: the Service the API server calls (the certificate's DNS names)")
	fs.StringVar(&o.Certs.MutatingWebhookConfiguration, "mutating-webhook-config", "", "self mode: MutatingWebhookConfiguration to write the caBundle into")
	fs.StringVar(&o.Certs.ValidatingWebhookConfiguration, "validating-webhook-config", "", "self mode: ValidatingWebhookConfiguration to write the caBundle into")
	fs.DurationVar(&o.Certs.CALifetime, "ca-lifetime", certs.DefaultCALifetime, "self mode: lifetime of the CA")
	fs.DurationVar(&o.Certs.CertLifetime, "cert-lifetime", certs.DefaultCertLifetime, "self mode: lifetime of the serving certificate (renewed at two thirds)")
	auditFlags(fs, &o.Options)
	fs.IntVar(&o.verbosity, "v", 0, "log verbosity (1: one line per admission request)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: gracekeeper serve --namespace NS [flags]")
		fmt.Fprintln(stderr, "Runs the admission webhook server (mutate and validate pods, validate workloads), the finalizer controller,")
		fmt.Fprintln(stderr, "health and metrics endpoints, and the policy cache. Exit code: 0 after a clean shutdown, 1 on a runtime error, 2 on bad flags.")
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
	if o.Namespace == "" {
		fmt.Fprintln(stderr, "gracekeeper serve: --namespace is required (the chart passes the release namespace)")
		return o, 2, false
	}
	if _, err := webhook.ParseTLSVersion(w.TLSMinVersion); err != nil {
		fmt.Fprintf(stderr, "gracekeeper serve: --tls-min-version: %v\n", err)
		return o, 2, false
	}
	if w.MaxBodyBytes <= 0 {
		fmt.Fprintln(stderr, "gracekeeper serve: --max-body-bytes must be positive")
		return o, 2, false
	}
	o.CertMode = app.CertMode(certMode)
	switch o.CertMode {
	case app.CertModeFiles, app.CertModeCertManager:
	case app.CertModeSelf:
		if o.Certs.SecretName == "" || o.Certs.ServiceName == "" || o.Certs.MutatingWebhookConfiguration == "" || o.Certs.ValidatingWebhookConfiguration == "" {
			fmt.Fprintln(stderr, "gracekeeper serve: --cert-mode=self needs --cert-secret, --service, --mutating-webhook-config and --validating-webhook-config")
			return o, 2, false
		}
	default:
		fmt.Fprintf(stderr, "gracekeeper serve: --cert-mode %q: must be files, certManager or self\n", certMode)
		return o, 2, false
	}
	// app.Run adds --namespace itself.
	for _, n := range strings.Split(excluded, ",") {
		if n = strings.TrimSpace(n); n != "" {
			o.ExcludedNamespaces = append(o.ExcludedNamespaces, n)
		}
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
	if err := app.Run(ctx, cfg, o.Options, lg); err != nil {
		lg.Error(err, "gracekeeper serve stopped")
		return 1
	}
	return 0
}
