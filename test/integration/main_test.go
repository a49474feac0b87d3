// Package integration proves gracekeeper's admission behaviour through a real
// kube-apiserver + etcd (test/controlplane): the API server calls the real
// gracekeeper server over TLS, applies our patches and validates the result
// exactly as a cluster does. One control plane serves the whole package.
package integration

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
	"github.com/gracekeeper/gracekeeper/test/integration/install"
)

// ownNamespace is where gracekeeper "runs" (the chart's release namespace):
// the webhook configurations exclude it.
const ownNamespace = install.Namespace

// suite is the control plane and the running gracekeeper every test shares.
// TestMain sets env once, before any test runs; tests only read it.
type suite struct {
	cfg        *rest.Config
	c          client.Client
	scheme     *runtime.Scheme
	kubeconfig string // for kubectl
	kubectl    string
	gk         *gracekeeper
	caBundle   []byte
	// webhookName names the installed Mutating/ValidatingWebhookConfiguration.
	webhookName string
}

var env *suite

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("SKIP: -short: the integration suite starts a real kube-apiserver and etcd; `make test` runs it")
		return 0
	}
	if err := controlplane.CheckAssets(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, stop, err := startSuite()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration suite:", err)
		stop()
		return 1
	}
	env = s
	code := m.Run()
	stop()
	return code
}

// startSuite starts the control plane, gracekeeper and the webhook
// registration; stop undoes whatever was started, also after an error.
func startSuite() (*suite, func(), error) {
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	cp := controlplane.New()
	// envtest generates a CA and a serving certificate for 127.0.0.1 in a temp
	// dir (removed by Stop) and picks a free port: what gracekeeper serves on.
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
	scheme, err := clientscheme.New()
	if err != nil {
		return nil, stop, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, stop, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ownNamespace}}); err != nil {
		return nil, stop, err
	}

	wio := cp.WebhookInstallOptions
	runCtx, stopGK := context.WithCancel(context.Background())
	gk, err := startGracekeeper(runCtx, cfg, wio.LocalServingCertDir, wio.LocalServingHost, wio.LocalServingPort, ownNamespace, install.WebhookConfigName)
	if err != nil {
		stopGK()
		return nil, stop, err
	}
	stops = append(stops, func() { stopGK(); gk.Wait() })
	if err := gk.WaitReady(ctx, wio.LocalServingCAData); err != nil {
		return nil, stop, err
	}

	webhookName, err := installWebhooks(ctx, c, install.DefaultOptions(), gk.BaseURL, wio.LocalServingCAData)
	if err != nil {
		return nil, stop, fmt.Errorf("install webhook configurations: %w", err)
	}

	kcDir, err := os.MkdirTemp("", "gracekeeper-integration-")
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, func() { _ = os.RemoveAll(kcDir) })
	user, err := cp.AddUser(envtest.User{Name: "kubectl", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, stop, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, stop, err
	}
	kubeconfig := filepath.Join(kcDir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return nil, stop, err
	}
	return &suite{
		cfg: cfg, c: c, scheme: scheme, gk: gk, caBundle: wio.LocalServingCAData, webhookName: webhookName,
		kubeconfig: kubeconfig, kubectl: filepath.Join(controlplane.AssetsDir(), "kubectl"),
	}, stop, nil
}

// installWebhooks creates gracekeeper's two webhook configurations as the
// chart renders them, pointed at the local server.
func installWebhooks(ctx context.Context, c client.Client, opts install.Options, baseURL string, ca []byte) (string, error) {
	mut, val, err := install.Webhooks(opts, baseURL, ca)
	if err != nil {
		return "", err
	}
	for _, o := range []client.Object{mut, val} {
		if o.GetName() != install.WebhookConfigName {
			return "", fmt.Errorf("the chart renders %s %s, gracekeeper narrows %s", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), install.WebhookConfigName)
		}
		if err := c.Create(ctx, o); err != nil {
			return "", err
		}
	}
	return mut.Name, nil
}
