package admissionmodes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/admissionpolicy"
	"github.com/gracekeeper/gracekeeper/app"
	"github.com/gracekeeper/gracekeeper/test/integration/install"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// startWebhookMode runs gracekeeper serve (app.Run, webhook mode) on the
// envtest serving certificate and registers the chart's webhook
// configurations pointed at it, until the test ends.
func startWebhookMode(t *testing.T) {
	t.Helper()
	ensureNamespace(t, install.Namespace, nil)
	addr := net.JoinHostPort(serving.LocalServingHost, strconv.Itoa(serving.LocalServingPort))
	o := app.Options{
		Webhook:            webhook.Config{Addr: addr, CertDir: serving.LocalServingCertDir, DrainDelay: -1},
		Namespace:          install.Namespace,
		ExcludedNamespaces: []string{"kube-system", "kube-node-lease"},
		CertMode:           app.CertModeFiles,
		AdmissionMode:      admissionpolicy.ModeWebhook,
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, clusterConfig, o, logr.Discard()) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("gracekeeper: %v", err)
		}
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(serving.LocalServingCAData)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	err := wait.PollUntilContextTimeout(ctxT(t), 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		resp, err := hc.Get("https://" + addr + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatal("gracekeeper not ready")
	}
	mut, val, err := install.Webhooks(install.DefaultOptions(), "https://"+addr, serving.LocalServingCAData)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []client.Object{mut, val} {
		createAll(t, w)
	}
}
