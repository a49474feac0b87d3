package controllers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	"github.com/gracekeeper/gracekeeper/app"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/test/integration/install"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// gracekeeper is `gracekeeper serve` (app.Run: policy cache, admission
// server, finalizer controller) run in-process against the control plane.
type gracekeeper struct {
	baseURL string
	done    chan error
}

func startGracekeeper(ctx context.Context, cfg *rest.Config, certDir, host string, port int, lg logr.Logger) *gracekeeper {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	g := &gracekeeper{baseURL: "https://" + addr, done: make(chan error, 1)}
	o := app.Options{
		// No drain: it is stopped only when the suite ends.
		Webhook:            webhook.Config{Addr: addr, CertDir: certDir, DrainDelay: -1},
		Namespace:          install.Namespace,
		ExcludedNamespaces: policies.SystemNamespaces(),
		CertMode:           app.CertModeFiles, // envtest writes the serving pair
	}
	go func() { g.done <- app.Run(ctx, cfg, o, lg) }()
	return g
}

// wait blocks until Run has returned (after its context is cancelled).
func (g *gracekeeper) wait() {
	if err := <-g.done; err != nil {
		fmt.Println("gracekeeper stopped:", err)
	}
}

// waitReady polls /readyz (ready once the policy cache has synced) over TLS
// with the serving CA.
func (g *gracekeeper) waitReady(ctx context.Context, ca []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("no CA certificate in the serving CA data")
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer hc.CloseIdleConnections()
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		select {
		case err := <-g.done:
			g.done <- err // for wait
			return false, fmt.Errorf("gracekeeper exited before ready: %v", err)
		default:
		}
		resp, err := hc.Get(g.baseURL + "/readyz")
		if err != nil {
			last = err
			return false, nil
		}
		resp.Body.Close()
		last = fmt.Errorf("/readyz: %s", resp.Status)
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("gracekeeper not ready at %s: %v (%v)", g.baseURL, err, last)
	}
	return nil
}
