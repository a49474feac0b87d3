package main

import (
	"context"
	"errors"
	"net"
	"strconv"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// startInProcess runs gracekeeper's webhook server and policy store inside
// the demo (--in-process), wired as `serve` wires them.
func startInProcess(cfg *rest.Config, dir string) (*gracekeeperProc, error) {
	certDir, ca, port, err := prepare(dir)
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := errors.Join(clientgoscheme.AddToScheme(scheme), v1alpha1.AddToScheme(scheme)); err != nil {
		return nil, err
	}
	lg := logr.Discard()
	mgr, err := manager.New(cfg, manager.Options{Scheme: scheme, Logger: lg, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return nil, err
	}
	store := webhook.NewPolicyStore(webhook.StoreConfig{
		Engine: policies.Config{ExcludedNamespaces: []string{gkNamespace, "kube-system", "kube-node-lease"}},
	}, lg)
	if err := store.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	srv, err := webhook.NewServer(webhook.Config{Addr: addr, CertDir: certDir, DrainDelay: -1}, store, prometheus.NewRegistry(), lg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &gracekeeperProc{
		desc: "gracekeeper in-process", exited: make(chan error, 1), caBundle: ca, baseURL: "https://" + addr,
		halt: func() error { cancel(); return nil }, cleanup: cancel,
	}
	results := make(chan error, 2)
	go func() { results <- mgr.Start(ctx) }()
	go func() { results <- srv.Start(ctx) }()
	go func() { g.exited <- errors.Join(<-results, <-results) }()
	return g, nil
}
