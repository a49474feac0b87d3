package certs_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/gracekeeper/gracekeeper/certs"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
)

const ns = "gk-system"

func startAPIServer(t *testing.T) kubernetes.Interface {
	t.Helper()
	cfg := controlplane.Start(t)
	return kubernetes.NewForConfigOrDie(cfg)
}

func webhook(name string) (admissionregistrationv1.WebhookClientConfig, string) {
	return admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
		Namespace: ns, Name: "gk", Path: ptr.To("/" + name), Port: ptr.To[int32](443),
	}}, name + ".gracekeeper.dev"
}

// seed creates what the chart creates: the namespace, the empty Secret and
// both webhook configurations without caBundle, plus someone else's config.
func seed(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	none := admissionregistrationv1.SideEffectClassNone
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}))
	must(cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "gk-tls"}}, metav1.CreateOptions{}))
	cc, name := webhook("mutate-pods")
	must(cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "gk"},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: name, ClientConfig: cc, SideEffects: &none, AdmissionReviewVersions: []string{"v1"}}},
	}, metav1.CreateOptions{}))
	var vwh []admissionregistrationv1.ValidatingWebhook
	for _, p := range []string{"validate-pods", "validate-workloads"} {
		cc, name := webhook(p)
		vwh = append(vwh, admissionregistrationv1.ValidatingWebhook{Name: name, ClientConfig: cc, SideEffects: &none, AdmissionReviewVersions: []string{"v1"}})
	}
	must(cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "gk"}, Webhooks: vwh,
	}, metav1.CreateOptions{}))
	other := vwh[:1]
	must(cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "someone-else"}, Webhooks: other,
	}, metav1.CreateOptions{}))
}

func newManager(t *testing.T, cs kubernetes.Interface, clk *clocktesting.FakeClock, dir string) *certs.Manager {
	t.Helper()
	m, err := certs.New(cs, certs.Options{
		Namespace: ns, SecretName: "gk-tls", ServiceName: "gk",
		MutatingWebhookConfiguration: "gk", ValidatingWebhookConfiguration: "gk",
		CertDir: dir, CALifetime: 300 * time.Hour, CertLifetime: 30 * time.Hour, Clock: clk,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// caBundles returns every caBundle in the gk configurations (3 webhooks).
func caBundles(t *testing.T, cs kubernetes.Interface) [][]byte {
	t.Helper()
	ctx := context.Background()
	mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "gk", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vwc, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "gk", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, w := range mwc.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	for _, w := range vwc.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	return out
}

func secretData(t *testing.T, cs kubernetes.Interface) (map[string][]byte, string) {
	t.Helper()
	s, err := cs.CoreV1().Secrets(ns).Get(context.Background(), "gk-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Data, s.ResourceVersion
}

// assertServes checks that every webhook's caBundle trusts the certificate in
// dir for the Service's DNS name, as the API server will.
func assertServes(t *testing.T, cs kubernetes.Interface, dir string, now time.Time) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, certs.CertFile), filepath.Join(dir, certs.KeyFile))
	if err != nil {
		t.Fatalf("cert dir holds no usable pair: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range caBundles(t, cs) {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			t.Fatalf("webhook %d has no caBundle", i)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "gk.gk-system.svc", CurrentTime: now}); err != nil {
			t.Fatalf("webhook %d's caBundle does not trust the served certificate: %v", i, err)
		}
	}
	return leaf
}

func TestSelfManagedCertificatesAgainstAPIServer(t *testing.T) {
	cs := startAPIServer(t)
	seed(t, cs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := clocktesting.NewFakeClock(time.Now())
	dirA, dirB := t.TempDir(), t.TempDir()
	leader, follower := newManager(t, cs, clk, dirA), newManager(t, cs, clk, dirB)

	// Two replicas start at once on the empty Secret: exactly one bundle wins
	// and both serve it.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, m := range []*certs.Manager{leader, follower} {
		wg.Go(func() { errs[i] = m.Bootstrap(ctx) })
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("bootstrap: %v / %v", errs[0], errs[1])
	}
	data, rv := secretData(t, cs)
	for _, dir := range []string{dirA, dirB} {
		got, err := os.ReadFile(filepath.Join(dir, certs.CertFile))
		if err != nil || !bytes.Equal(got, data[certs.KeyTLSCert]) {
			t.Fatalf("%s/tls.crt differs from the Secret after a racing bootstrap (err %v)", dir, err)
		}
	}
	first := assertServes(t, cs, dirA, clk.Now())

	// The real certwatcher the webhook server uses, reloading from dirB.
	cw, err := certwatcher.New(filepath.Join(dirB, certs.CertFile), filepath.Join(dirB, certs.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	cw = cw.WithWatchInterval(200 * time.Millisecond)
	go func() { _ = cw.Start(ctx) }()
	served := func() *x509.Certificate {
		c, err := cw.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		return leaf
	}
	waitServed := func(want *x509.Certificate) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !served().Equal(want) {
			if time.Now().After(deadline) {
				t.Fatal("certwatcher never reloaded the rotated certificate")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitServed(first)

	t.Run("nothing due: no writes", func(t *testing.T) {
		d, err := leader.Reconcile(ctx)
		if err != nil || d.Action != certs.ActionNone {
			t.Fatalf("Reconcile = %v, %v; want None", d, err)
		}
		if _, rv2 := secretData(t, cs); rv2 != rv {
			t.Errorf("Secret rewritten although nothing was due (rv %s -> %s)", rv, rv2)
		}
	})

	var servingRenewed *x509.Certificate
	t.Run("serving certificate renewed at 2/3 of its life", func(t *testing.T) {
		before := caBundles(t, cs)[0]
		clk.SetTime(certs.RenewAt(first).Add(time.Minute))
		d, err := leader.Reconcile(ctx)
		if err != nil || d.Action != certs.ActionRenewServing {
			t.Fatalf("Reconcile = %v, %v; want RenewServing", d, err)
		}
		servingRenewed = assertServes(t, cs, dirA, clk.Now())
		if servingRenewed.Equal(first) {
			t.Fatal("leader's files still hold the old certificate")
		}
		if !bytes.Equal(caBundles(t, cs)[0], before) {
			t.Error("caBundle changed although the CA did not")
		}
		changed, err := follower.Sync(ctx)
		if err != nil || !changed {
			t.Fatalf("follower Sync = %v, %v; want changed", changed, err)
		}
		if changed, _ := follower.Sync(ctx); changed {
			t.Error("second Sync rewrote unchanged files")
		}
		waitServed(servingRenewed) // reloaded without restart
	})

	t.Run("CA renewed: old CA stays in caBundle", func(t *testing.T) {
		data, _ := secretData(t, cs)
		oldCA, err := certs.ParseBundle(data)
		if err != nil {
			t.Fatal(err)
		}
		clk.SetTime(certs.RenewAt(oldCA.CA).Add(time.Minute))
		d, err := leader.Reconcile(ctx)
		if err != nil || d.Action != certs.ActionRenewCA {
			t.Fatalf("Reconcile = %v, %v; want RenewCA", d, err)
		}
		leaf := assertServes(t, cs, dirA, clk.Now())
		bundles := caBundles(t, cs)
		for i, b := range bundles {
			if !bytes.Equal(b, bundles[0]) {
				t.Errorf("webhook %d has a different caBundle", i)
			}
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(bundles[0])
		// The follower has not synced yet: its certificate, signed by the old CA, is still trusted.
		if _, err := servingRenewed.Verify(x509.VerifyOptions{Roots: pool, DNSName: "gk.gk-system.svc", CurrentTime: servingRenewed.NotBefore.Add(time.Minute)}); err != nil {
			t.Errorf("un-synced replica's certificate no longer trusted: %v", err)
		}
		if _, err := follower.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		waitServed(leaf)
	})

	t.Run("someone else's webhook configuration untouched", func(t *testing.T) {
		o, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "someone-else", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(o.Webhooks[0].ClientConfig.CABundle) != 0 {
			t.Error("caBundle written into a configuration that is not ours")
		}
	})

	t.Run("an emptied Secret is reissued by the leader", func(t *testing.T) {
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, "gk-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Data = map[string][]byte{certs.KeyTLSCert: []byte("garbage")}
		if _, err := cs.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := follower.Sync(ctx); err == nil {
			t.Error("follower accepted a garbage Secret")
		}
		d, err := leader.Reconcile(ctx)
		if err != nil || d.Action != certs.ActionIssue {
			t.Fatalf("Reconcile = %v, %v; want Issue", d, err)
		}
		assertServes(t, cs, dirA, clk.Now())
	})
}

func TestNewRefusesBadOptions(t *testing.T) {
	good := certs.Options{Namespace: "n", SecretName: "s", ServiceName: "svc", CertDir: "/tmp"}
	for name, tc := range map[string]struct {
		mutate func(*certs.Options)
		want   string
	}{
		"no namespace":            {func(o *certs.Options) { o.Namespace = "" }, "Namespace"},
		"no cert dir":             {func(o *certs.Options) { o.CertDir = "" }, "CertDir"},
		"serving outlives the CA": {func(o *certs.Options) { o.CALifetime, o.CertLifetime = 2*time.Hour, 3*time.Hour }, "exceeds"},
		"lifetime too short":      {func(o *certs.Options) { o.CertLifetime = time.Minute }, "at least 1h"},
	} {
		t.Run(name, func(t *testing.T) {
			o := good
			tc.mutate(&o)
			_, err := certs.New(neverCalled(), o)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Fatalf("New error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	if _, err := certs.New(neverCalled(), good); err != nil {
		t.Fatalf("good options refused: %v", err)
	}
}
