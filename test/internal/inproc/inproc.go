// Package inproc runs `gracekeeper serve` (app.Run) in the test process
// against a test control plane, for the suites that need the real manager,
// admission server and controllers.
package inproc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	"github.com/gracekeeper/gracekeeper/app"
)

// Gracekeeper is one app.Run in a goroutine.
type Gracekeeper struct {
	BaseURL string       // https://<o.Webhook.Addr>
	HTTP    *http.Client // trusts the serving CA, after WaitReady
	done    chan error
}

// Start runs app.Run(ctx, cfg, o, lg) until ctx is cancelled.
func Start(ctx context.Context, cfg *rest.Config, o app.Options, lg logr.Logger) *Gracekeeper {
	g := &Gracekeeper{BaseURL: "https://" + strings.TrimPrefix(o.Webhook.Addr, "https://"), done: make(chan error, 1)}
	go func() { g.done <- app.Run(ctx, cfg, o, lg) }()
	return g
}

// Wait blocks until Run has returned (after its context is cancelled).
func (g *Gracekeeper) Wait() {
	if err := <-g.done; err != nil {
		fmt.Println("gracekeeper stopped:", err)
	}
}

// WaitReady polls /readyz (ready once the policy cache has synced) over TLS
// with the serving CA, then keeps that client in HTTP.
func (g *Gracekeeper) WaitReady(ctx context.Context, ca []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("no CA certificate in the serving CA data")
	}
	g.HTTP = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		select {
		case err := <-g.done:
			g.done <- err // for Wait
			return false, fmt.Errorf("gracekeeper exited before ready: %v", err)
		default:
		}
		resp, err := g.HTTP.Get(g.BaseURL + "/readyz")
		if err != nil {
			last = err
			return false, nil
		}
		resp.Body.Close()
		last = fmt.Errorf("/readyz: %s", resp.Status)
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("gracekeeper not ready at %s: %v (%v)", g.BaseURL, err, last)
	}
	return nil
}
