package controllers

import (
	"context"
	"net"
	"strconv"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"

	"github.com/gracekeeper/gracekeeper/app"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/test/integration/install"
	"github.com/gracekeeper/gracekeeper/test/internal/inproc"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// startGracekeeper runs `gracekeeper serve` (app.Run: policy cache,
// admission server, finalizer controller) in-process against the control
// plane.
func startGracekeeper(ctx context.Context, cfg *rest.Config, certDir, host string, port int, lg logr.Logger) *inproc.Gracekeeper {
	o := app.Options{
		// No drain: it is stopped only when the suite ends.
		Webhook:            webhook.Config{Addr: net.JoinHostPort(host, strconv.Itoa(port)), CertDir: certDir, DrainDelay: -1},
		Namespace:          install.Namespace,
		ExcludedNamespaces: policies.SystemNamespaces(),
		CertMode:           app.CertModeFiles, // envtest writes the serving pair
	}
	return inproc.Start(ctx, cfg, o, lg)
}
