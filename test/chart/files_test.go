package chart

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/gracekeeper/gracekeeper/test/chartrender"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
)

// TestCRDIsTheGeneratedOne: crds/ holds exactly what controller-gen makes
// (`make manifests` copies it), so the chart never installs a stale schema.
func TestCRDIsTheGeneratedOne(t *testing.T) {
	gen, err := os.ReadFile(filepath.Join(controlplane.CRDDir(), "gracekeeper.dev_lifecyclepolicies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	chartCRD, err := os.ReadFile(filepath.Join(chartrender.ChartDir(), "crds", "gracekeeper.dev_lifecyclepolicies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gen, chartCRD) {
		t.Fatal("charts/gracekeeper/crds differs from config/crd: run `make manifests`")
	}
}

// TestPolicyFilesMatchLibrary: Helm can only read files inside the chart, so
// files/policies is a copy of policies/library; this keeps the two identical
// in both directions.
func TestPolicyFilesMatchLibrary(t *testing.T) {
	lib := filepath.Join(controlplane.RepoRoot(), "policies", "library")
	copyDir := filepath.Join(chartrender.ChartDir(), "files", "policies")
	libFiles, _ := filepath.Glob(filepath.Join(lib, "*.yaml"))
	chartFiles, _ := filepath.Glob(filepath.Join(copyDir, "*.yaml"))
	for _, f := range libFiles {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(copyDir, filepath.Base(f)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("charts/gracekeeper/files/policies/%s is missing or stale: cp %s %s/", filepath.Base(f), f, copyDir)
		}
	}
	for _, f := range chartFiles {
		if _, err := os.Stat(filepath.Join(lib, filepath.Base(f))); err != nil {
			t.Errorf("charts/gracekeeper/files/policies/%s has no source in policies/library", filepath.Base(f))
		}
	}
}
