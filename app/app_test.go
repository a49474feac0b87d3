package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gracekeeper/gracekeeper/admissionpolicy"
	"github.com/gracekeeper/gracekeeper/certs"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// TestEngine: the engine gets our own namespace, the excluded ones and the
// ignore label (the default one when none is given).
func TestEngine(t *testing.T) {
	e := Options{Namespace: "gk", ExcludedNamespaces: []string{"kube-system", "gk", ""}}.Engine()
	if strings.Join(e.ExcludedNamespaces, ",") != "gk,kube-system" || e.IgnoreLabel != "gracekeeper.dev/ignore" {
		t.Errorf("Engine() = %+v", e)
	}
	if e := (Options{Namespace: "gk", IgnoreLabel: "example.com/skip"}).Engine(); e.IgnoreLabel != "example.com/skip" {
		t.Errorf("IgnoreLabel not passed: %+v", e)
	}
}

func TestValidate(t *testing.T) {
	tests := map[string]struct {
		o       Options
		wantErr string
	}{
		"minimal":           {o: Options{Namespace: "gk"}},
		"no namespace":      {o: Options{}, wantErr: "namespace is required"},
		"unknown cert mode": {o: Options{Namespace: "gk", CertMode: "vault"}, wantErr: `--cert-mode "vault"`},
		"self with one webhook configuration": {o: Options{Namespace: "gk", CertMode: CertModeSelf,
			Certs: certs.Options{SecretName: "s", ServiceName: "svc", ValidatingWebhookConfiguration: "gk"}}},
		"bad excluded namespace": {o: Options{Namespace: "gk", ExcludedNamespaces: []string{"Kube_System"}}, wantErr: `excluded namespace "Kube_System"`},
		"bad ignore label":       {o: Options{Namespace: "gk", IgnoreLabel: "no spaces/allowed here"}, wantErr: `ignore label "no spaces/allowed here"`},
		"negative body limit":    {o: Options{Namespace: "gk", Webhook: webhook.Config{MaxBodyBytes: -1}}, wantErr: "--max-body-bytes"},
		"apiserver admission":    {o: Options{Namespace: "gk", AdmissionMode: admissionpolicy.ModeAPIServer}},
		"unknown admission mode": {o: Options{Namespace: "gk", AdmissionMode: "both"}, wantErr: `--admission-mode "both": must be webhook or apiserver`},
		"self without names": {o: Options{Namespace: "gk", CertMode: CertModeSelf},
			wantErr: "needs the Secret and Service names"},
		"self without webhook configs": {o: Options{Namespace: "gk", CertMode: CertModeSelf, Certs: certs.Options{SecretName: "s", ServiceName: "svc"}},
			wantErr: "webhook configuration names"},
		"bad TLS":                {o: Options{Namespace: "gk", Webhook: webhook.Config{TLSMinVersion: "1.0"}}, wantErr: "TLS"},
		"pprof on loopback":      {o: Options{Namespace: "gk", PprofAddr: "127.0.0.1:6060"}},
		"pprof on every address": {o: Options{Namespace: "gk", PprofAddr: ":6060"}, wantErr: "--pprof-bind-address"},
		"pprof on another host":  {o: Options{Namespace: "gk", PprofAddr: "10.0.0.1:6060"}, wantErr: "--pprof-bind-address"},
		"narrow without names":   {o: Options{Namespace: "gk", NarrowWebhooks: true}, wantErr: "--narrow-webhooks needs"},
		"narrow with names":      {o: Options{Namespace: "gk", NarrowWebhooks: true, Certs: certs.Options{MutatingWebhookConfiguration: "gk"}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.o.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestRunSelfManaged runs gracekeeper as the chart's default install does
// (self-managed certificates, leader election, authenticated metrics) against a
// real kube-apiserver: it fills the empty Secret, injects the CA into both
// webhook configurations, serves TLS the API server can verify for the
// Service name, takes the Lease, exports its own and controller-runtime's
// metrics, and releases the Lease on shutdown.
func TestRunSelfManaged(t *testing.T) {
	cfg := controlplane.Start(t)
	ctrllog.SetLogger(logr.Discard())
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(cfg)
	const ns = "gk-system"
	mustCreate(t, func() error {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		return err
	})
	// The chart creates the Secret empty; self mode only fills it.
	mustCreate(t, func() error {
		_, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "gk-tls"}}, metav1.CreateOptions{})
		return err
	})
	none := admissionregistrationv1.SideEffectClassNone
	ignore := admissionregistrationv1.Ignore
	svc := &admissionregistrationv1.ServiceReference{Namespace: ns, Name: "gk", Path: ptr("/mutate-pods")}
	// Selects no namespace: only the caBundle matters here.
	nothing := &metav1.LabelSelector{MatchLabels: map[string]string{"app-test": "nothing"}}
	mustCreate(t, func() error {
		_, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "gk"},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "mutate.gracekeeper.dev", ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: svc},
				SideEffects: &none, FailurePolicy: &ignore, AdmissionReviewVersions: []string{"v1"}, NamespaceSelector: nothing}},
		}, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, func() error {
		_, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "gk"},
			Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "validate.gracekeeper.dev", ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: svc},
				SideEffects: &none, FailurePolicy: &ignore, AdmissionReviewVersions: []string{"v1"}, NamespaceSelector: nothing}},
		}, metav1.CreateOptions{})
		return err
	})

	addr, metricsAddr := freeAddr(t), freeAddr(t)
	o := Options{
		Webhook:     webhook.Config{Addr: addr, CertDir: filepath.Join(t.TempDir(), "certs"), DrainDelay: 100 * time.Millisecond},
		MetricsAddr: metricsAddr,
		Namespace:   ns,
		LeaderElect: true,
		CertMode:    CertModeSelf,
		Certs: certs.Options{SecretName: "gk-tls", ServiceName: "gk",
			MutatingWebhookConfiguration: "gk", ValidatingWebhookConfiguration: "gk"},
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, cfg, o, testr.New(t)) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cancel()
			<-done
		}
	})

	var caBundle []byte
	eventually(t, "the CA injected into the MutatingWebhookConfiguration", func() bool {
		m, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "gk", metav1.GetOptions{})
		if err != nil {
			return false
		}
		caBundle = m.Webhooks[0].ClientConfig.CABundle
		return len(caBundle) > 0
	})
	v, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "gk", metav1.GetOptions{})
	if err != nil || string(v.Webhooks[0].ClientConfig.CABundle) != string(caBundle) {
		t.Fatalf("validating configuration caBundle differs from the mutating one (err %v)", err)
	}
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, "gk-tls", metav1.GetOptions{})
	if err != nil || len(sec.Data[certs.KeyTLSCert]) == 0 {
		t.Fatalf("the Secret was not filled (err %v)", err)
	}

	// Verify as the API server does: the injected bundle, the Service's DNS name.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		t.Fatal("caBundle holds no certificate")
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: "gk." + ns + ".svc", MinVersion: tls.VersionTLS12}}}
	eventually(t, "/readyz over TLS verified for gk."+ns+".svc", func() bool {
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		resp, err := hc.Get("https://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	eventually(t, "the leader Lease held", func() bool {
		l, err := cs.CoordinationV1().Leases(ns).Get(ctx, "gracekeeper-leader", metav1.GetOptions{})
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != ""
	})

	// /metrics: its own port, HTTPS with the serving certificate, each
	// scrape's token reviewed by the API server.
	metricsGet := func(token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+metricsAddr+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	reader, nobody := scraperToken(t, cs, ns, "scraper", true), scraperToken(t, cs, ns, "nobody", false)
	eventually(t, "/metrics with an authorized ServiceAccount token: the webhook's and the finalizer controller's metrics", func() bool {
		code, s := metricsGet(reader)
		return code == http.StatusOK && strings.Contains(s, "gracekeeper_") &&
			strings.Contains(s, `controller_runtime_reconcile_total{controller="gracekeeper-finalizer"`) && strings.Contains(s, "go_goroutines")
	})
	for name, tc := range map[string]struct {
		token string
		want  []int
	}{
		"no token": {"", []int{http.StatusUnauthorized}},
		// The API server's TokenReview rejects it; controller-runtime's filter
		// answers an authenticator error with 500 "Authentication failed".
		"a forged token":               {"not-a-token", []int{http.StatusUnauthorized, http.StatusInternalServerError}},
		"a token not allowed /metrics": {nobody, []int{http.StatusForbidden}},
	} {
		if code, body := metricsGet(tc.token); !slices.Contains(tc.want, code) || strings.Contains(body, "gracekeeper_") {
			t.Errorf("%s: HTTP %d, want %v (body %.80q)", name, code, tc.want, body)
		}
	}
	if resp, err := hc.Get("https://" + addr + "/metrics"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("the admission port answers /metrics: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	cancel()
	stopped = true
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("Run did not stop within 40s")
	}
	// LeaderElectionReleaseOnCancel: the next replica need not wait out the lease.
	var l *coordinationv1.Lease
	if l, err = cs.CoordinationV1().Leases(ns).Get(ctx, "gracekeeper-leader", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
		t.Errorf("lease still held by %q after shutdown", *l.Spec.HolderIdentity)
	}
}

func mustCreate(t *testing.T, f func() error) {
	t.Helper()
	if err := f(); err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scraperToken creates a ServiceAccount, binds it to GET /metrics when
// allowed (as the chart's metrics-reader ClusterRole does), and returns a
// token for it.
func scraperToken(t *testing.T, cs kubernetes.Interface, ns, name string, allowed bool) string {
	t.Helper()
	ctx := context.Background()
	mustCreate(t, func() error {
		_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		return err
	})
	if allowed {
		mustCreate(t, func() error {
			_, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "metrics-reader-" + name},
				Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{})
			return err
		})
		mustCreate(t, func() error {
			_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "metrics-reader-" + name},
				RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "metrics-reader-" + name},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}}, metav1.CreateOptions{})
			return err
		})
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s: %v", name, err)
	}
	return tr.Status.Token
}
