// Package controlplane starts the real kube-apiserver and etcd that
// `make test-assets` builds from k8s.io/kubernetes (see test/tools), through
// controller-runtime's envtest, for the integration, finalizer and chart tests.
package controlplane

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubernetesVersion is the version test/tools builds; bin/k8s/<version> caches it.
const KubernetesVersion = "v1.37.2"

// RepoRoot walks up from this source file to the directory holding go.mod.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir is where `make test-assets` puts kube-apiserver, etcd and kubectl.
// GRACEKEEPER_TEST_ASSETS overrides it.
func AssetsDir() string {
	if d := os.Getenv("GRACEKEEPER_TEST_ASSETS"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "bin", "k8s", KubernetesVersion)
}

// CheckAssets returns an error naming the missing binary and the command that builds it.
func CheckAssets() error {
	dir := AssetsDir()
	for _, b := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("%s not found in %s: run `make test-assets` (builds it from k8s.io/kubernetes %s)", b, dir, KubernetesVersion)
		}
	}
	return nil
}

// CRDDir holds the generated LifecyclePolicy CRD.
func CRDDir() string { return filepath.Join(RepoRoot(), "config", "crd") }

// New returns an envtest environment over the cached binaries, with the
// LifecyclePolicy CRD. Callers add WebhookInstallOptions and call Start.
func New() *envtest.Environment {
	return &envtest.Environment{
		BinaryAssetsDirectory: AssetsDir(),
		CRDDirectoryPaths:     []string{CRDDir()},
		ErrorIfCRDPathMissing: true,
	}
}

// Start starts a control plane for one test and stops it when the test
// ends: skipped under -short, a failure (naming `make test-assets`) when the
// binaries are missing.
func Start(t testing.TB) *rest.Config {
	t.Helper()
	_, cfg := StartEnv(t)
	return cfg
}

// StartEnv is Start that also returns the environment, for what runs beside
// the API server (StartControllerManagerT).
func StartEnv(t testing.TB) (*envtest.Environment, *rest.Config) {
	t.Helper()
	SkipIfShort(t)
	if err := CheckAssets(); err != nil {
		t.Fatalf("needs the control-plane binaries (make test builds them): %v", err)
	}
	env := New()
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver + etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	return env, cfg
}

// SkipIfShort skips a test that starts a real kube-apiserver under
// `go test -short` (`make unit`); `make test` runs it.
func SkipIfShort(t interface{ Skip(...any) }) {
	if testing.Short() {
		t.Skip("-short: this test starts a real kube-apiserver and etcd; `make test` runs it")
	}
}
