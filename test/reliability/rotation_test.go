// Package reliability holds fault tests of gracekeeper's serving path that
// need no control plane: traffic on loopback only, bounded in count and time.
package reliability

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/gracekeeper/gracekeeper/certs"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/test/internal/httpjson"
	"github.com/gracekeeper/gracekeeper/webhook"
)

const (
	namespace = "gk-system"
	service   = "gracekeeper"
	// serverName is what the API server verifies: the Service's DNS name.
	serverName = service + "." + namespace + ".svc"
)

// trust is what the API server trusts: the caBundle in the webhook
// configuration, re-read whenever it changes.
type trust struct {
	mu     sync.Mutex
	bundle []byte
	pool   *x509.CertPool
}

func (tr *trust) set(b []byte) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if bytes.Equal(b, tr.bundle) {
		return nil
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return errors.New("caBundle holds no certificate")
	}
	tr.bundle, tr.pool = b, p
	return nil
}

func (tr *trust) roots() *x509.CertPool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.pool
}

// TestCertRotationUnderLoad: the self-managed serving certificate (package
// certs, as `serve --cert-mode=self` runs it) is renewed again and again,
// the CA too, while workers send admission reviews to the real server over
// loopback, half of them on a new TLS connection per request; no request
// fails. Time is a fake clock shared by the certificate manager and the
// clients' certificate checks, stepped to each renewal, so a year of
// rotations takes seconds. Trust is what the API server has: the caBundle
// injected into the webhook configuration, re-read as soon as it changes.
func TestCertRotationUnderLoad(t *testing.T) {
	const (
		rotations   = 12
		workers     = 8
		maxRequests = 50_000
		maxDuration = 90 * time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), maxDuration)
	defer cancel()

	clk := clocktesting.NewFakePassiveClock(time.Now())
	cs := fake.NewClientset(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "gracekeeper-tls"}},
		&admissionregistrationv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "gracekeeper"},
			Webhooks:   []admissionregistrationv1.ValidatingWebhook{{Name: "validate-pods.gracekeeper.dev"}},
		},
	)
	dir := filepath.Join(t.TempDir(), "certs")
	cm, err := certs.New(cs, certs.Options{
		Namespace: namespace, SecretName: "gracekeeper-tls", ServiceName: service,
		ValidatingWebhookConfiguration: "gracekeeper", CertDir: dir,
		// Short lifetimes: the serving certificate is due every 40 min, the
		// CA every 2 h.
		CertLifetime: time.Hour, CALifetime: 3 * time.Hour, Clock: clk,
		// The API server here is in-process: its caBundle watch delivers
		// in well under this.
		TrustDelay: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cm.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}

	// The API server's view of the caBundle, kept current by a watch.
	tr := &trust{}
	readBundle := func() []byte {
		vwc, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "gracekeeper", metav1.GetOptions{})
		if err != nil || len(vwc.Webhooks) == 0 {
			return nil
		}
		return vwc.Webhooks[0].ClientConfig.CABundle
	}
	if err := tr.set(readBundle()); err != nil {
		t.Fatalf("no caBundle injected at bootstrap: %v", err)
	}
	w, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	go func() {
		for ev := range w.ResultChan() {
			if vwc, ok := ev.Object.(*admissionregistrationv1.ValidatingWebhookConfiguration); ok && len(vwc.Webhooks) > 0 {
				if err := tr.set(vwc.Webhooks[0].ClientConfig.CABundle); err != nil {
					t.Errorf("injected caBundle: %v", err)
				}
			}
		}
	}()

	// The real admission server, serving from the cert dir (certwatcher).
	set, _ := policies.NewSet(policies.Config{}, nil)
	srv, err := webhook.NewServer(webhook.Config{Addr: "127.0.0.1:0", CertDir: dir, DrainDelay: -1},
		webhook.StaticSource{Policies: set}, nil, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	addr, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	srvCtx, stopSrv := context.WithCancel(context.Background())
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Start(srvCtx) }()
	defer func() {
		stopSrv()
		if err := <-srvDone; err != nil {
			t.Errorf("server: %v", err)
		}
	}()
	url := "https://" + addr.String() + webhook.RouteValidatePods

	tlsConfig := func() *tls.Config {
		return &tls.Config{
			ServerName: serverName, MinVersion: tls.VersionTLS12, Time: clk.Now,
			// The roots are read per handshake: a new caBundle applies to the
			// next connection, as when the API server rebuilds its client.
			InsecureSkipVerify: true, //nolint:gosec // verified below, against the current caBundle
			VerifyConnection: func(cs tls.ConnectionState) error {
				inter := x509.NewCertPool()
				for _, c := range cs.PeerCertificates[1:] {
					inter.AddCert(c)
				}
				_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
					Roots: tr.roots(), Intermediates: inter, DNSName: serverName, CurrentTime: clk.Now(),
				})
				return err
			},
		}
	}
	served := func() (*x509.Certificate, error) {
		d := &net.Dialer{Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", addr.String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading the served certificate
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0], nil
	}

	body := review(t)
	var sent, failed atomic.Int64
	// gen counts rotations served; done[i] is the gen at which worker i
	// started its last finished request. The clock is stepped again only
	// once every worker has finished a request begun on the current
	// certificate: compressed time must not expire a certificate during a
	// handshake that started before the previous step.
	var gen atomic.Int64
	done := make([]atomic.Int64, workers)
	var firstErr atomic.Value
	stopLoad := make(chan struct{})
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig: tlsConfig(), DisableKeepAlives: i%2 == 0, ForceAttemptHTTP2: false,
			}}
			defer hc.CloseIdleConnections()
			for {
				select {
				case <-stopLoad:
					return
				case <-ctx.Done():
					return
				default:
				}
				if sent.Add(1) > maxRequests {
					sent.Add(-1)
					return
				}
				g := gen.Load()
				if err := send(ctx, hc, url, body); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				done[i].Store(g)
			}
		}()
	}

	// Rotate: step the clock to the next renewal, run the leader's pass, wait
	// until the server serves the new certificate, with load all along.
	var caRenewals, servingRenewals int
	prev, err := served()
	if err != nil {
		t.Fatal(err)
	}
	for range rotations {
		before := sent.Load()
		// One minute past the first renewal due (serving certificate or
		// CA), well before anything served expires: as the rotator, which
		// runs every minute, renews in a cluster.
		sec, err := cs.CoreV1().Secrets(namespace).Get(ctx, "gracekeeper-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := certs.ParseBundle(sec.Data)
		if err != nil {
			t.Fatal(err)
		}
		due := certs.RenewAt(b.Cert)
		if caDue := certs.RenewAt(b.CA); caDue.Before(due) {
			due = caDue
		}
		clk.SetTime(due.Add(time.Minute))
		d, err := cm.Reconcile(ctx)
		if err != nil {
			t.Fatalf("rotation: %v", err)
		}
		switch d.Action {
		case certs.ActionRenewCA:
			caRenewals++
		case certs.ActionRenewServing:
			servingRenewals++
		default:
			t.Fatalf("clock stepped past the renewal but the pass decided %s (%s)", d.Action, d.Reason)
		}
		deadline := time.Now().Add(20 * time.Second) // certwatcher: fsnotify, else its 10 s poll
		for {
			cur, err := served()
			if err == nil && !cur.Equal(prev) {
				prev = cur
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the renewed certificate was not served within 20s (%v)", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Load kept flowing across this rotation, on the new certificate.
		g := gen.Add(1)
		for i := range done {
			for done[i].Load() < g && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
		}
		if sent.Load() < before+workers {
			t.Errorf("only %d requests across rotation %d", sent.Load()-before, g)
		}
	}
	close(stopLoad)
	wg.Wait()

	t.Logf("requests sent %d, failed %d; rotations observed %d (serving %d, CA %d)", sent.Load(), failed.Load(), caRenewals+servingRenewals, servingRenewals, caRenewals)
	if os.Getenv("GRACEKEEPER_RELIABILITY_REPORT") != "" {
		fmt.Printf("| serving certificate rotated %d times (%d with a new CA) under load, self mode | %d requests over loopback | %d failed |\n",
			caRenewals+servingRenewals, caRenewals, sent.Load(), failed.Load())
	}
	if ctx.Err() != nil {
		t.Fatalf("not done within %s", maxDuration)
	}
	if caRenewals == 0 || servingRenewals == 0 {
		t.Errorf("rotations: serving %d, CA %d; want both kinds", servingRenewals, caRenewals)
	}
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
}

// send posts one review and checks the answer is an allowed AdmissionReview.
func send(ctx context.Context, hc *http.Client, url string, body []byte) error {
	code, out, err := httpjson.Post(ctx, hc, url, body)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", code, out)
	}
	var rev admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &rev); err != nil || rev.Response == nil || !rev.Response.Allowed {
		return fmt.Errorf("not an allowed AdmissionReview (%v): %s", err, out)
	}
	return nil
}

// review is a pod CREATE AdmissionReview.
func review(t *testing.T) []byte {
	t.Helper()
	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid": "rot", "kind": map[string]any{"group": "", "version": "v1", "kind": "Pod"},
			"resource":  map[string]any{"group": "", "version": "v1", "resource": "pods"},
			"namespace": "shop", "operation": "CREATE", "object": json.RawMessage(raw),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
