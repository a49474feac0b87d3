// Package controllers proves, through the real control plane with the real
// Kubernetes controllers running (kube-apiserver + etcd from
// test/controlplane, plus kube-controller-manager), that installing
// gracekeeper never wedges a cluster: namespaces it holds pods in are still
// deleted, Deployments created before a Deny policy still roll out and
// scale, and foreground deletion still finishes. gracekeeper runs as
// `gracekeeper serve` does (app.Run), registered with the webhook
// configurations the chart renders. One control plane serves the package.
package controllers

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
	"github.com/gracekeeper/gracekeeper/test/integration/install"
)

// suite is what every test shares; TestMain sets env once, tests only read it.
type suite struct {
	cfg    *rest.Config
	c      client.Client
	cs     kubernetes.Interface
	kcm    *controlplane.ControllerManager
	gkLog  string // gracekeeper's log file
	logDir string
}

var env *suite

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("SKIP: -short: this suite starts kube-apiserver, etcd and kube-controller-manager; `make test` runs it")
		return 0
	}
	if err := controlplane.CheckAssets(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := controlplane.CheckControllerManager(); err != nil {
		fmt.Println("SKIP: needs kube-controller-manager:", err)
		return 0
	}
	s, stop, err := startSuite()
	if err != nil {
		fmt.Fprintln(os.Stderr, "controllers suite:", err)
		stop()
		return 1
	}
	env = s
	code := m.Run()
	if code != 0 {
		fmt.Printf("gracekeeper log (tail):\n%s\n", controlplane.TailFile(s.gkLog, 8000))
		fmt.Printf("kube-controller-manager log (tail):\n%s\n", s.kcm.LogTail())
	}
	stop()
	return code
}

// startSuite starts the control plane, kube-controller-manager, gracekeeper
// and the chart's webhook configurations; stop undoes whatever was started.
func startSuite() (*suite, func(), error) {
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	cp := controlplane.New()
	// envtest generates a serving CA and certificate for 127.0.0.1 and picks
	// a free port: what gracekeeper serves on.
	cp.WebhookInstallOptions = envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1"}
	cfg, err := cp.Start()
	stops = append(stops, func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop control plane:", err)
		}
	})
	if err != nil {
		return nil, stop, fmt.Errorf("start control plane: %w", err)
	}
	kcm, err := controlplane.StartControllerManager(cp, controlplane.ControllerManagerOptions{})
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, func() {
		if err := kcm.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	})

	scheme, err := clientscheme.New()
	if err != nil {
		return nil, stop, err
	}
	// Polls list several kinds every 200 ms: above client-go's default 5 QPS.
	testCfg := rest.CopyConfig(cfg)
	testCfg.QPS, testCfg.Burst = 50, 100
	c, err := client.New(testCfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, stop, err
	}
	cs, err := kubernetes.NewForConfig(testCfg)
	if err != nil {
		return nil, stop, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: install.Namespace}}); err != nil {
		return nil, stop, err
	}

	logDir, err := os.MkdirTemp("", "gracekeeper-controllers-")
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, func() { _ = os.RemoveAll(logDir) })
	gkLog := filepath.Join(logDir, "gracekeeper.log")
	lg, closeLog, err := fileLogger(gkLog)
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, closeLog)

	wio := cp.WebhookInstallOptions
	runCtx, stopGK := context.WithCancel(context.Background())
	gk := startGracekeeper(runCtx, cfg, wio.LocalServingCertDir, wio.LocalServingHost, wio.LocalServingPort, lg)
	stops = append(stops, func() { stopGK(); gk.Wait() })
	if err := gk.WaitReady(ctx, wio.LocalServingCAData); err != nil {
		return nil, stop, err
	}
	// Fail, as install.DefaultOptions says: a gracekeeper that cannot answer
	// shows as a refusal, so nothing here passes by being ignored.
	mut, val, err := install.Webhooks(install.DefaultOptions(), gk.BaseURL, wio.LocalServingCAData)
	if err != nil {
		return nil, stop, fmt.Errorf("render webhook configurations: %w", err)
	}
	for _, o := range []client.Object{mut, val} {
		if err := c.Create(ctx, o); err != nil {
			return nil, stop, fmt.Errorf("install webhook configurations: %w", err)
		}
	}
	return &suite{cfg: cfg, c: c, cs: cs, kcm: kcm, gkLog: gkLog, logDir: logDir}, stop, nil
}

// fileLogger logs gracekeeper's lines to path (printed when a test fails).
func fileLogger(path string) (logr.Logger, func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return logr.Discard(), func() {}, err
	}
	var mu sync.Mutex
	lg := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(f, time.Now().UTC().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{Verbosity: 1})
	return lg, func() { mu.Lock(); defer mu.Unlock(); f.Close() }, nil
}
