package chart

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/test/chartrender"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
)

// TestCRDIsTheGeneratedOne: the chart installs exactly what controller-gen
// makes (`make manifests` copies it into files/crds), so it never installs a
// stale schema; as a template (so `helm upgrade` updates it) with the chart's
// labels, kept on uninstall unless crds.keep is false, and left out when
// crds.enabled is false.
func TestCRDIsTheGeneratedOne(t *testing.T) {
	gen, err := os.ReadFile(filepath.Join(controlplane.CRDDir(), "gracekeeper.dev_lifecyclepolicies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	chartCRD, err := os.ReadFile(filepath.Join(chartrender.ChartDir(), "files", "crds", "gracekeeper.dev_lifecyclepolicies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gen, chartCRD) {
		t.Fatal("charts/gracekeeper/files/crds differs from config/crd: run `make manifests`")
	}
	if m, _ := filepath.Glob(filepath.Join(chartrender.ChartDir(), "crds", "*")); len(m) > 0 {
		t.Errorf("charts/gracekeeper/crds/ holds %v: Helm never upgrades crds/; the CRD is a template", m)
	}
	var want map[string]any
	if err := yaml.Unmarshal(gen, &want); err != nil {
		t.Fatal(err)
	}

	for name, tc := range map[string]struct {
		values map[string]any
		keep   bool
	}{
		"defaults: installed and kept":   {values: nil, keep: true},
		"crds.keep false: not kept":      {values: map[string]any{"crds": map[string]any{"keep": false}}},
		"certManager mode: the same CRD": {values: map[string]any{"certificates": map[string]any{"mode": "certManager"}}, keep: true},
	} {
		t.Run(name, func(t *testing.T) {
			crd := find(t, render(t, tc.values), "CustomResourceDefinition", "lifecyclepolicies.gracekeeper.dev")
			got := crd.DeepCopy().Object
			md := got["metadata"].(map[string]any)
			ann, _ := md["annotations"].(map[string]any)
			if kept := ann["helm.sh/resource-policy"] == "keep"; kept != tc.keep {
				t.Errorf("helm.sh/resource-policy: keep = %v, want %v (annotations %v)", kept, tc.keep, ann)
			}
			if crd.GetLabels()["app.kubernetes.io/managed-by"] != "Helm" || crd.GetLabels()["app.kubernetes.io/instance"] != chartrender.ReleaseName {
				t.Errorf("CRD labels %v: want the chart's labels", crd.GetLabels())
			}
			// Apart from what the chart adds, the generated object itself.
			delete(ann, "helm.sh/resource-policy")
			delete(md, "labels")
			if !equality.Semantic.DeepEqual(got, want) {
				t.Errorf("rendered CRD differs from config/crd (beyond the chart's labels and keep annotation)")
			}
		})
	}
	if n := count(render(t, map[string]any{"crds": map[string]any{"enabled": false}}), "CustomResourceDefinition"); n != 0 {
		t.Errorf("crds.enabled false rendered %d CRDs", n)
	}
}

// TestDefaultPolicyAfterTheCRD: with the CRD in the same release Helm cannot
// map a LifecyclePolicy before installing it, so the default policy is a
// post-install/post-upgrade hook; with crds.enabled false (the CRD installed
// beforehand) it is an ordinary object of the release.
func TestDefaultPolicyAfterTheCRD(t *testing.T) {
	on := map[string]any{"enabled": true, "name": "http-drain"}
	p := find(t, render(t, map[string]any{"defaultPolicy": on}), "LifecyclePolicy", "")
	if h := p.GetAnnotations()["helm.sh/hook"]; h != "post-install,post-upgrade" {
		t.Errorf("default policy with the chart's CRD: helm.sh/hook = %q, want post-install,post-upgrade", h)
	}
	if p.GetAnnotations()["helm.sh/hook-delete-policy"] != "before-hook-creation" {
		t.Errorf("default policy hook-delete-policy %q: an upgrade would fail on the existing object", p.GetAnnotations()["helm.sh/hook-delete-policy"])
	}
	raw, err := os.ReadFile(filepath.Join(chartrender.ChartDir(), "files", "policies", "http-drain.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := yaml.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(p.Object["spec"], want["spec"]) {
		t.Errorf("the hook changed the policy's spec: %v, want %v", p.Object["spec"], want["spec"])
	}
	p = find(t, render(t, map[string]any{"defaultPolicy": on, "crds": map[string]any{"enabled": false}}), "LifecyclePolicy", "")
	if chartrender.IsHook(p) {
		t.Errorf("crds.enabled false: the default policy is a hook (%v), want an object of the release", p.GetAnnotations())
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
