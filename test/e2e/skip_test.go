//go:build !e2e

package e2e

import (
	"os"
	"os/exec"
	"testing"
)

// TestE2ESuiteNeedsACluster is what `go test ./...` shows for this package:
// the suite itself is behind -tags e2e because it needs a real cluster.
func TestE2ESuiteNeedsACluster(t *testing.T) {
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("the e2e suite needs a real cluster: Docker for `make e2e-kind` (kind, via go run sigs.k8s.io/kind@v0.33.0) is not available here (docker info: %v); "+
			"with any cluster, run `KUBECONFIG=... go test -tags e2e ./test/e2e/` after installing the chart", err)
	}
	if os.Getenv("KUBECONFIG") == "" {
		t.Skip("Docker is available: run `make e2e-kind` to create a kind cluster and run the e2e suite (-tags e2e)")
	}
	t.Skip("KUBECONFIG is set: run the suite with `go test -tags e2e ./test/e2e/`")
}
