// Package chartrender renders charts/gracekeeper with Helm's own engine (the
// helm.sh/helm/v3 library, the same code `helm template` runs), so tests can
// install exactly what users install.
package chartrender

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/test/controlplane"
)

const (
	// ReleaseName and Namespace are what Render installs as; the
	// ServiceAccount is therefore system:serviceaccount:gracekeeper-system:gracekeeper.
	ReleaseName = "gracekeeper"
	Namespace   = "gracekeeper-system"
	// KubeVersion is the cluster version the capabilities report (the test control plane's).
	KubeVersion = controlplane.KubernetesVersion
)

// ChartDir is charts/gracekeeper in this checkout.
func ChartDir() string { return filepath.Join(controlplane.RepoRoot(), "charts", "gracekeeper") }

// Load reads the chart from ChartDir.
func Load() (*chart.Chart, error) {
	c, err := loader.Load(ChartDir())
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", ChartDir(), err)
	}
	return c, nil
}

// Render renders the chart with values (merged over values.yaml and checked
// against values.schema.json) as release "gracekeeper" in "gracekeeper-system".
// It returns the CustomResourceDefinitions first (Helm installs that kind
// first), then every template's objects in a stable order (file name, then
// position), hooks included (hooks carry the helm.sh/hook annotation).
func Render(values map[string]any) ([]*unstructured.Unstructured, error) {
	files, err := RenderFiles(values)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []*unstructured.Unstructured
	for _, n := range names {
		objs, err := decode(n, files[n])
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	slices.SortStableFunc(out, func(a, b *unstructured.Unstructured) int {
		return cmp.Compare(crdFirst(a), crdFirst(b))
	})
	return out, nil
}

func crdFirst(u *unstructured.Unstructured) int {
	if u.GetKind() == "CustomResourceDefinition" {
		return 0
	}
	return 1
}

// RenderFiles renders the chart and returns manifest text keyed by file
// (crds/..., if the chart had any, and templates/...), with empty renders and
// NOTES.txt left out.
func RenderFiles(values map[string]any) (map[string]string, error) {
	c, err := Load()
	if err != nil {
		return nil, err
	}
	caps := chartutil.DefaultCapabilities.Copy()
	kv, err := chartutil.ParseKubeVersion(KubeVersion)
	if err != nil {
		return nil, err
	}
	caps.KubeVersion = *kv
	vals, err := chartutil.ToRenderValues(c, values, chartutil.ReleaseOptions{
		Name: ReleaseName, Namespace: Namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, err
	}
	rendered, err := engine.Render(c, vals)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, crd := range c.CRDObjects() {
		// Sort CRDs before templates: "0" sorts before "t".
		out["0-"+crd.Filename] = string(crd.File.Data)
	}
	for name, body := range rendered {
		if strings.HasSuffix(name, "NOTES.txt") || strings.TrimSpace(body) == "" {
			continue
		}
		out[name] = body
	}
	return out, nil
}

func decode(file, body string) ([]*unstructured.Unstructured, error) {
	docs := releaseutil.SplitManifests(body)
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	// SplitManifests keys are "manifest-N"; sort numerically for file order.
	sort.Slice(keys, func(i, j int) bool { return manifestIndex(keys[i]) < manifestIndex(keys[j]) })
	var out []*unstructured.Unstructured
	for _, k := range keys {
		doc := strings.TrimSpace(docs[k])
		if doc == "" {
			continue
		}
		m := map[string]any{}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", file, err, doc)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("%s: document without apiVersion/kind:\n%s", file, doc)
		}
		out = append(out, u)
	}
	return out, nil
}

func manifestIndex(k string) int {
	var n int
	_, _ = fmt.Sscanf(k, "manifest-%d", &n)
	return n
}

// IsHook reports whether obj is a Helm hook (installed by Helm around, not as part of, the release).
func IsHook(obj *unstructured.Unstructured) bool {
	_, ok := obj.GetAnnotations()["helm.sh/hook"]
	return ok
}
