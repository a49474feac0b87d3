package certs

import (
	"context"
	"errors"
	"fmt"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Defaults for Options.
const (
	DefaultCALifetime   = 10 * 365 * 24 * time.Hour
	DefaultCertLifetime = 90 * 24 * time.Hour
	DefaultSyncInterval = time.Minute
	DefaultTrustDelay   = 10 * time.Second
)

// Options configures a Manager. The names match what the Helm chart creates.
type Options struct {
	// Namespace of the Secret and the Service.
	Namespace string
	// SecretName is the Secret holding the bundle. It must exist (the chart
	// creates it empty): the RBAC grants this one Secret by name, without create.
	SecretName string
	// ServiceName is the webhook Service; the serving certificate covers
	// NAME, NAME.NS, NAME.NS.svc and NAME.NS.svc.cluster.local.
	ServiceName string
	// MutatingWebhookConfiguration and ValidatingWebhookConfiguration get caBundle
	// on every webhook they hold. Empty skips that kind.
	MutatingWebhookConfiguration   string
	ValidatingWebhookConfiguration string
	// CertDir receives tls.crt, tls.key and ca.crt for the webhook server.
	CertDir string
	// CALifetime and CertLifetime: validity of new certificates; each is renewed at 2/3 of it.
	CALifetime   time.Duration
	CertLifetime time.Duration
	// SyncInterval: how often the leader checks for renewal and every replica re-reads the Secret.
	SyncInterval time.Duration
	// TrustDelay is how long the leader waits, after injecting a caBundle
	// that adds a new CA, before it stores (and so before any replica
	// serves) a certificate signed by that CA: each kube-apiserver reads
	// caBundle from its informer cache, and a certificate it does not yet
	// trust fails the call. Default 10s, far above watch latency; negative:
	// no wait. Only CA renewals wait: a renewed serving certificate is
	// signed by a CA already trusted.
	TrustDelay time.Duration
	// Clock is for tests; nil means the real clock.
	Clock clock.PassiveClock
}

// Manager runs the self-managed certificate mode. See the package doc.
type Manager struct {
	cs   kubernetes.Interface
	opts Options
}

// New checks opts, fills defaults, and returns a Manager using cs for API calls.
// It reads only its own Secret by name (no informer), so it needs no list permission.
func New(cs kubernetes.Interface, opts Options) (*Manager, error) {
	var missing []string
	for name, v := range map[string]string{"Namespace": opts.Namespace, "SecretName": opts.SecretName, "ServiceName": opts.ServiceName, "CertDir": opts.CertDir} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("certs: options %v must be set", missing)
	}
	if cs == nil {
		return nil, errors.New("certs: nil clientset")
	}
	if opts.CALifetime == 0 {
		opts.CALifetime = DefaultCALifetime
	}
	if opts.CertLifetime == 0 {
		opts.CertLifetime = DefaultCertLifetime
	}
	if opts.SyncInterval == 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.TrustDelay == 0 {
		opts.TrustDelay = DefaultTrustDelay
	}
	if opts.CALifetime < time.Hour || opts.CertLifetime < time.Hour {
		return nil, fmt.Errorf("certs: lifetimes must be at least 1h (CA %s, serving %s)", opts.CALifetime, opts.CertLifetime)
	}
	if opts.CertLifetime > opts.CALifetime {
		return nil, fmt.Errorf("certs: serving certificate lifetime %s exceeds the CA's %s", opts.CertLifetime, opts.CALifetime)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Manager{cs: cs, opts: opts}, nil
}

// DNSNames are the serving certificate's names for the Service.
func (m *Manager) DNSNames() []string {
	s, ns := m.opts.ServiceName, m.opts.Namespace
	return []string{s, s + "." + ns, s + "." + ns + ".svc", s + "." + ns + ".svc.cluster.local"}
}

// Bootstrap must run before the webhook server starts (it needs the files).
// It fills the Secret if it is empty or unreadable (and then injects its
// caBundle) and writes the files.
// Any replica may do the first fill: the update carries the resourceVersion it
// read, so when two replicas race one wins and the other re-reads the winner's
// bundle. Later renewals are the leader's alone (Rotator).
func (m *Manager) Bootstrap(ctx context.Context) error {
	var lastErr error
	for range 5 {
		b, d, err := m.ensure(ctx, true)
		if err == nil {
			if d.Action == ActionIssue {
				// This replica filled the Secret: make it trusted now rather
				// than at the leader's next pass.
				if _, err := m.injectCABundle(ctx, b.CABundle); err != nil {
					return err
				}
			}
			_, err = WriteFiles(m.opts.CertDir, b)
			return err
		}
		if !apierrors.IsConflict(err) {
			return err
		}
		lastErr = err
	}
	return fmt.Errorf("certs: bootstrap kept conflicting: %w", lastErr)
}

// Reconcile is one pass of the leader: read the Secret, renew what is due
// (see Decide), store it, put caBundle into both webhook configurations, and
// write the files. It returns what it decided.
func (m *Manager) Reconcile(ctx context.Context) (Decision, error) {
	b, d, err := m.ensure(ctx, false)
	if err != nil {
		return d, err
	}
	if _, err := m.injectCABundle(ctx, b.CABundle); err != nil {
		return d, err
	}
	if _, err := WriteFiles(m.opts.CertDir, b); err != nil {
		return d, err
	}
	return d, nil
}

// Sync is one pass of a non-leader: copy the Secret into the cert dir. It
// reports whether the files changed. An empty Secret is left to the leader.
func (m *Manager) Sync(ctx context.Context) (bool, error) {
	s, err := m.cs.CoreV1().Secrets(m.opts.Namespace).Get(ctx, m.opts.SecretName, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("certs: read secret %s/%s: %w", m.opts.Namespace, m.opts.SecretName, err)
	}
	b, err := ParseBundle(s.Data)
	if err != nil {
		return false, fmt.Errorf("certs: secret %s/%s: %w (the leader will reissue it)", m.opts.Namespace, m.opts.SecretName, err)
	}
	return WriteFiles(m.opts.CertDir, b)
}

// ensure reads the Secret and, when due (or, with onlyIfEmpty, only when it
// holds no usable bundle), stores a new bundle, conditioned on the
// resourceVersion it read.
func (m *Manager) ensure(ctx context.Context, onlyIfEmpty bool) (*Bundle, Decision, error) {
	secrets := m.cs.CoreV1().Secrets(m.opts.Namespace)
	s, err := secrets.Get(ctx, m.opts.SecretName, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, Decision{}, fmt.Errorf("certs: secret %s/%s not found: the Helm chart creates it empty (certificates.mode=self); create it or reinstall", m.opts.Namespace, m.opts.SecretName)
		}
		return nil, Decision{}, fmt.Errorf("certs: read secret %s/%s: %w", m.opts.Namespace, m.opts.SecretName, err)
	}
	prev, perr := ParseBundle(s.Data)
	if perr != nil {
		prev = nil
	}
	now := m.opts.Clock.Now()
	d := Decide(prev, perr, m.DNSNames(), now)
	if d.Action == ActionNone || (onlyIfEmpty && d.Action != ActionIssue) {
		return prev, d, nil
	}
	next, err := Apply(d, prev, m.opts.ServiceName, m.DNSNames(), now, m.opts.CALifetime, m.opts.CertLifetime)
	if err != nil {
		return nil, d, err
	}
	data, err := next.Data()
	if err != nil {
		return nil, d, err
	}
	if prev != nil {
		// Trust first, then serve: the new caBundle (new CA and the previous
		// one) reaches the API server before any replica can read the new
		// certificate from the Secret and serve it.
		if _, err := m.injectCABundle(ctx, next.CABundle); err != nil {
			return nil, d, err
		}
		if d.Action == ActionRenewCA && m.opts.TrustDelay > 0 {
			logf.FromContext(ctx).Info("new CA injected; waiting before serving a certificate it signed", "delay", m.opts.TrustDelay.String())
			select {
			case <-ctx.Done():
				return nil, d, ctx.Err()
			case <-time.After(m.opts.TrustDelay):
			}
		}
	}
	s.Data = data
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		return nil, d, fmt.Errorf("certs: store bundle in secret %s/%s (%s): %w", m.opts.Namespace, m.opts.SecretName, d.Reason, err)
	}
	logf.FromContext(ctx).Info("stored new certificates", "action", d.Action, "reason", d.Reason,
		"secret", m.opts.SecretName, "notAfter", next.Cert.NotAfter)
	return next, d, nil
}

// injectCABundle writes caBundle into every webhook of both configurations,
// updating only when it differs. Get + Update keeps the resourceVersion check;
// a conflict (another replica, or Helm, wrote meanwhile) is retried on a fresh read.
func (m *Manager) injectCABundle(ctx context.Context, caBundle []byte) (int, error) {
	ar := m.cs.AdmissionregistrationV1()
	mutating, err := inject(ctx, ar.MutatingWebhookConfigurations(), "MutatingWebhookConfiguration", m.opts.MutatingWebhookConfiguration, caBundle,
		func(c *admissionregistrationv1.MutatingWebhookConfiguration) []*admissionregistrationv1.WebhookClientConfig {
			return clientConfigs(c.Webhooks, func(w *admissionregistrationv1.MutatingWebhook) *admissionregistrationv1.WebhookClientConfig {
				return &w.ClientConfig
			})
		})
	if err != nil {
		return mutating, err
	}
	validating, err := inject(ctx, ar.ValidatingWebhookConfigurations(), "ValidatingWebhookConfiguration", m.opts.ValidatingWebhookConfiguration, caBundle,
		func(c *admissionregistrationv1.ValidatingWebhookConfiguration) []*admissionregistrationv1.WebhookClientConfig {
			return clientConfigs(c.Webhooks, func(w *admissionregistrationv1.ValidatingWebhook) *admissionregistrationv1.WebhookClientConfig {
				return &w.ClientConfig
			})
		})
	return mutating + validating, err
}

// webhookConfigs is the part of the typed client of either webhook
// configuration kind that inject needs.
type webhookConfigs[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// inject sets caBundle on every client config of the configuration of kind
// called name (none when name is empty) and updates it when something
// changed; it returns 1 if it wrote.
func inject[T any](ctx context.Context, api webhookConfigs[T], kind, name string, caBundle []byte, configs func(T) []*admissionregistrationv1.WebhookClientConfig) (int, error) {
	if name == "" {
		return 0, nil
	}
	updated := 0
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		changed := false
		for _, cc := range configs(c) {
			changed = setBundle(cc, caBundle) || changed
		}
		if !changed {
			return nil
		}
		if _, err := api.Update(ctx, c, metav1.UpdateOptions{}); err != nil {
			return err
		}
		updated = 1
		return nil
	})
	if err != nil {
		return updated, fmt.Errorf("certs: write caBundle into %s %s: %w", kind, name, err)
	}
	return updated, nil
}

// clientConfigs is where each webhook's clientConfig sits, for the
// mutating and validating webhooks alike.
func clientConfigs[W any](webhooks []W, of func(*W) *admissionregistrationv1.WebhookClientConfig) []*admissionregistrationv1.WebhookClientConfig {
	var cc []*admissionregistrationv1.WebhookClientConfig
	for i := range webhooks {
		cc = append(cc, of(&webhooks[i]))
	}
	return cc
}

func setBundle(cc *admissionregistrationv1.WebhookClientConfig, b []byte) bool {
	if string(cc.CABundle) == string(b) {
		return false
	}
	cc.CABundle = b
	return true
}

// Runnable is a controller-runtime Runnable that says whether it needs the leader lease.
type Runnable interface {
	manager.Runnable
	manager.LeaderElectionRunnable
}

// runnable adapts a periodic pass to controller-runtime's manager.Runnable.
type runnable struct {
	leader   bool
	interval time.Duration
	pass     func(context.Context) error
	name     string
}

func (r runnable) NeedLeaderElection() bool { return r.leader }

func (r runnable) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName(r.name)
	ctx = logf.IntoContext(ctx, log)
	wait.JitterUntilWithContext(ctx, func(ctx context.Context) {
		if err := r.pass(ctx); err != nil {
			log.Error(err, "certificate pass failed; retrying next interval")
		}
	}, r.interval, 0.1, true)
	return nil
}

// Rotator returns the leader-only Runnable that renews and injects (Reconcile
// every SyncInterval).
func (m *Manager) Rotator() Runnable {
	return runnable{leader: true, interval: m.opts.SyncInterval, name: "cert-rotator", pass: func(ctx context.Context) error {
		_, err := m.Reconcile(ctx)
		return err
	}}
}

// Syncer returns the Runnable every replica runs (no leader election) that
// copies the Secret into the cert dir (Sync every SyncInterval).
func (m *Manager) Syncer() Runnable {
	return runnable{leader: false, interval: m.opts.SyncInterval, name: "cert-syncer", pass: func(ctx context.Context) error {
		_, err := m.Sync(ctx)
		return err
	}}
}

// AddToManager adds Rotator and Syncer to mgr. Call Bootstrap before mgr.Start.
func (m *Manager) AddToManager(mgr manager.Manager) error {
	if err := mgr.Add(m.Rotator()); err != nil {
		return err
	}
	return mgr.Add(m.Syncer())
}
