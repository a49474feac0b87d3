package podpatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// TestPatchReproducesEngine is the guard Pod relies on: for every
// engine golden case (policies/testdata/*: pod.yaml + policies.yaml), the
// patch applied to the pod as JSON decodes to
// exactly the engine's mutated pod. If the engine starts changing a field
// Pod does not handle, this fails.
func TestPatchReproducesEngine(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("..", "policies", "testdata", "*"))
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	for _, dir := range dirs {
		podFile, polFile := filepath.Join(dir, "pod.yaml"), filepath.Join(dir, "policies.yaml")
		if _, err := os.Stat(podFile); err != nil {
			continue
		}
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var pod corev1.Pod
			readYAML(t, podFile, func(d *yaml.YAMLOrJSONDecoder) bool { return d.Decode(&pod) == nil })
			var pols []v1alpha1.LifecyclePolicy
			if _, err := os.Stat(polFile); err == nil {
				readYAML(t, polFile, func(d *yaml.YAMLOrJSONDecoder) bool {
					var p v1alpha1.LifecyclePolicy
					if err := d.Decode(&p); err != nil {
						if !errors.Is(err, io.EOF) {
							t.Fatal(err)
						}
						return false
					}
					pols = append(pols, p)
					return true
				})
			}
			set, _ := policies.NewSet(policies.Config{ExcludedNamespaces: []string{"kube-system"}}, pols)
			ns := policies.Namespace{Name: pod.Namespace, Labels: map[string]string{"kubernetes.io/metadata.name": pod.Namespace}}
			dec := set.Mutate(&pod, ns)
			if !dec.Changed {
				return
			}
			changed++
			checkPatch(t, &pod, dec.Pod)
		})
	}
	if changed < 10 {
		t.Fatalf("only %d engine cases changed a pod", changed)
	}
}

func checkPatch(t *testing.T, before, after *corev1.Pod) {
	t.Helper()
	ops, err := Pod(before, after)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(before)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := json.Marshal(ops)
	p, err := jsonpatchapply.DecodePatch(pb)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("patch %s does not apply: %v", pb, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(&got, after) {
		want, _ := json.Marshal(after)
		t.Errorf("patch does not reproduce the engine's pod:\npatch %s\ngot  %s\nwant %s", pb, out, want)
	}
}

func readYAML(t *testing.T, file string, each func(*yaml.YAMLOrJSONDecoder) bool) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	d := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for each(d) {
	}
}
