package policies

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// -update rewrites the golden files from what the engine does now; review the
// diff before committing it.
var update = flag.Bool("update", false, "rewrite testdata/*/want.golden.yaml")

// A golden case is a directory testdata/<case>/ holding these files.
const (
	podFile       = "pod.yaml"         // required: the pod as submitted
	policiesFile  = "policies.yaml"    // required: LifecyclePolicy documents
	namespaceFile = "namespace.yaml"   // optional: a Namespace (name and labels)
	configFile    = "config.yaml"      // optional: a Config (excludedNamespaces)
	goldenFile    = "want.golden.yaml" // the Review result: mutated pod and findings
	caseDir       = "testdata"
)

// goldenFinding is Finding with stable YAML keys.
type goldenFinding struct {
	Policy    string                    `json:"policy,omitempty"`
	Container string                    `json:"container,omitempty"`
	Action    v1alpha1.ValidationAction `json:"action"`
	Reason    Reason                    `json:"reason"`
	Message   string                    `json:"message"`
}

type goldenOut struct {
	SetFindings []goldenFinding `json:"setFindings,omitempty"`
	Changed     bool            `json:"changed"`
	Denied      bool            `json:"denied"`
	Policies    []string        `json:"policies"`
	Findings    []goldenFinding `json:"findings"`
	Pod         *corev1.Pod     `json:"pod"`
}

func toGolden(fs []Finding) []goldenFinding {
	out := []goldenFinding{}
	for _, f := range fs {
		out = append(out, goldenFinding(f))
	}
	return out
}

// readDocs splits multi-document YAML.
func readDocs(t *testing.T, path string) [][]byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufioReader(raw))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(bytes.TrimSpace(doc)) > 0 && !bytes.Equal(bytes.TrimSpace(doc), []byte("---")) {
			docs = append(docs, doc)
		}
	}
}

func strictInto(t *testing.T, path string, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func loadPolicies(t *testing.T, path string) []v1alpha1.LifecyclePolicy {
	t.Helper()
	var pols []v1alpha1.LifecyclePolicy
	for _, doc := range readDocs(t, path) {
		var p v1alpha1.LifecyclePolicy
		strictInto(t, path, doc, &p)
		pols = append(pols, p)
	}
	return pols
}

type goldenCase struct {
	set   *Set
	setFs []Finding
	pod   *corev1.Pod
	ns    Namespace
}

func loadCase(t *testing.T, dir string) goldenCase {
	t.Helper()
	var gc goldenCase
	var cfg Config
	if _, err := os.Stat(filepath.Join(dir, configFile)); err == nil {
		p := filepath.Join(dir, configFile)
		raw, _ := os.ReadFile(p)
		var c struct {
			ExcludedNamespaces []string `json:"excludedNamespaces"`
		}
		strictInto(t, p, raw, &c)
		cfg.ExcludedNamespaces = c.ExcludedNamespaces
	}
	gc.set, gc.setFs = NewSet(cfg, loadPolicies(t, filepath.Join(dir, policiesFile)))
	p := filepath.Join(dir, podFile)
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	gc.pod = &corev1.Pod{}
	strictInto(t, p, raw, gc.pod)
	gc.ns = Namespace{Name: gc.pod.Namespace}
	if _, err := os.Stat(filepath.Join(dir, namespaceFile)); err == nil {
		p := filepath.Join(dir, namespaceFile)
		raw, _ := os.ReadFile(p)
		var n corev1.Namespace
		strictInto(t, p, raw, &n)
		gc.ns = Namespace{Name: n.Name, Labels: n.Labels}
	}
	return gc
}

// TestGolden runs Review (Mutate then Validate) on each case and compares
// the result with its golden file; a second pass over the output must change
// nothing and say the same (the webhook's reinvocationPolicy: IfNeeded).
func TestGolden(t *testing.T) {
	entries, err := os.ReadDir(caseDir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(caseDir, e.Name())
		if _, err := os.Stat(filepath.Join(dir, podFile)); err != nil {
			continue // reported by TestGoldenStale
		}
		n++
		t.Run(e.Name(), func(t *testing.T) {
			gc := loadCase(t, dir)
			input := gc.pod.DeepCopy()
			d := gc.set.Review(gc.pod, gc.ns)
			if !reflect.DeepEqual(input, gc.pod) {
				t.Fatal("Review modified its input pod")
			}
			if d.Changed == reflect.DeepEqual(input, d.Pod) {
				t.Fatalf("Changed = %v but the output pod differs from the input: %v", d.Changed, !reflect.DeepEqual(input, d.Pod))
			}
			if !d.Changed && d.Pod != gc.pod {
				t.Fatal("an unchanged Decision must return the input pod itself, not a copy")
			}
			got, err := yaml.Marshal(goldenOut{SetFindings: toGolden(gc.setFs), Changed: d.Changed, Denied: d.Denied(),
				Policies: d.Policies, Findings: toGolden(d.Findings), Pod: d.Pod})
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join(dir, goldenFile)
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./policies -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs (rerun with -update and review the diff):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}

			t.Run("second pass", func(t *testing.T) {
				again := gc.set.Review(d.Pod, gc.ns)
				if again.Changed {
					t.Fatalf("second pass changed the pod:\n%s", diffYAML(t, d.Pod, again.Pod))
				}
				if again.Pod != d.Pod {
					t.Fatal("second pass returned a copy instead of its input")
				}
				if !reflect.DeepEqual(toGolden(again.Findings), toGolden(d.Findings)) {
					t.Fatalf("second pass findings differ:\n got %+v\nwant %+v", again.Findings, d.Findings)
				}
			})
		})
	}
	if n < 12 {
		t.Fatalf("only %d golden cases; the suite expects at least 12", n)
	}
}

// TestGoldenStale fails when a case directory has a golden file but no input,
// input but no golden file, or files the harness does not read.
func TestGoldenStale(t *testing.T) {
	entries, err := os.ReadDir(caseDir)
	if err != nil {
		t.Fatal(err)
	}
	known := []string{podFile, policiesFile, namespaceFile, configFile, goldenFile}
	for _, e := range entries {
		if !e.IsDir() {
			t.Errorf("%s: stray file in %s (cases are directories)", e.Name(), caseDir)
			continue
		}
		if e.Name() == "fuzz" {
			continue // the fuzz targets' corpus (go test's fixed location)
		}
		dir := filepath.Join(caseDir, e.Name())
		files, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, f := range files {
			have[f.Name()] = true
			if !slices.Contains(known, f.Name()) {
				t.Errorf("%s: unknown file %s", dir, f.Name())
			}
		}
		switch {
		case have[goldenFile] && (!have[podFile] || !have[policiesFile]):
			t.Errorf("%s: stale golden: %s without %s and %s", dir, goldenFile, podFile, policiesFile)
		case !have[goldenFile] && !*update:
			t.Errorf("%s: no %s (run with -update)", dir, goldenFile)
		}
	}
}

func diffYAML(t *testing.T, a, b *corev1.Pod) string {
	ya, _ := yaml.Marshal(a)
	yb, _ := yaml.Marshal(b)
	return "--- first\n" + string(ya) + "--- second\n" + string(yb)
}
