package admissionpolicy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// goldenDir holds the engine's golden cases (policies/golden_test.go).
const goldenDir = "../policies/testdata"

type goldenCase struct {
	pod      *corev1.Pod
	pols     []v1alpha1.LifecyclePolicy
	ns       policies.Namespace
	excluded []string
}

func loadGolden(t *testing.T, dir string) goldenCase {
	t.Helper()
	var gc goldenCase
	read := func(name string) []byte {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		return raw
	}
	gc.pod = &corev1.Pod{}
	if err := yaml.UnmarshalStrict(read("pod.yaml"), gc.pod); err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufioReader(read("policies.yaml")))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(doc), []byte("---")))) == 0 {
			continue
		}
		var p v1alpha1.LifecyclePolicy
		if err := yaml.UnmarshalStrict(doc, &p); err != nil {
			t.Fatal(err)
		}
		gc.pols = append(gc.pols, p)
	}
	gc.ns = policies.Namespace{Name: gc.pod.Namespace}
	if raw := read("namespace.yaml"); raw != nil {
		var n corev1.Namespace
		if err := yaml.UnmarshalStrict(raw, &n); err != nil {
			t.Fatal(err)
		}
		gc.ns = policies.Namespace{Name: n.Name, Labels: n.Labels}
	}
	if raw := read("config.yaml"); raw != nil {
		var c struct {
			ExcludedNamespaces []string `json:"excludedNamespaces"`
		}
		if err := yaml.UnmarshalStrict(raw, &c); err != nil {
			t.Fatal(err)
		}
		gc.excluded = c.ExcludedNamespaces
	}
	return gc
}

// TestGoldenCasesInAPIServerMode runs every engine golden case through the
// real API server with the case's policies compiled (Compile, Mutate on):
// the pod the API server admits must be the engine's pod as the API
// server stores it (the engine's output created with no admission), a pod
// the engine denies must be refused with the engine's Deny messages, and
// the admitted pod created again must come back unchanged (reinvocation:
// the patch of a second pass is empty).
func TestGoldenCasesInAPIServerMode(t *testing.T) {
	needCluster(t)
	entries, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		dir := filepath.Join(goldenDir, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "pod.yaml")); err != nil {
			continue
		}
		n++
		t.Run(e.Name(), func(t *testing.T) { runGolden(t, loadGolden(t, dir)) })
	}
	if n < 20 {
		t.Fatalf("only %d golden cases found in %s", n, goldenDir)
	}
}

func runGolden(t *testing.T, gc goldenCase) {
	ctx := ctxT(t)
	nsName := gc.ns.Name
	ensureNamespace(t, nsName, gc.ns.Labels)
	plain := ensureNamespace(t, "plain-"+nsName, map[string]string{"gracekeeper.dev/ignore": "true"})
	// Policies through the API server: its schema defaults are what both
	// modes see; one it refuses is left out, as the engine leaves it out.
	var pols []v1alpha1.LifecyclePolicy
	for i := range gc.pols {
		p := gc.pols[i].DeepCopy()
		if err := cluster.Create(ctx, p); err != nil {
			t.Logf("policy %s refused by the API server (the engine leaves it out too): %v", p.Name, err)
			continue
		}
		t.Cleanup(func() { _ = cluster.Delete(ctxT(t), p) })
		pols = append(pols, *p)
	}
	excluded := gc.excluded
	if excluded == nil {
		excluded = policies.SystemNamespaces()
	}
	set, _ := policies.NewSet(policies.Config{ExcludedNamespaces: excluded, IgnoreLabel: policies.DefaultIgnoreLabel}, pols)
	var valid []v1alpha1.LifecyclePolicy
	for _, p := range pols {
		if len(policies.ValidatePolicy(&p)) == 0 {
			valid = append(valid, p)
		}
	}
	compiledObjects(t, valid, Config{ExcludedNamespaces: excluded, IgnoreLabel: policies.DefaultIgnoreLabel, Mutate: true})
	waitEffective(t, true)

	want := set.Review(gc.pod, gc.ns)
	got := gc.pod.DeepCopy()
	err := cluster.Create(ctx, got, client.DryRunAll)
	if want.Denied() {
		if err == nil {
			t.Fatalf("admitted; the engine denies it: %v", want.Findings)
		}
		for _, f := range want.Findings {
			if f.Action == v1alpha1.ActionDeny && !strings.Contains(err.Error(), "gracekeeper: "+f.Message) {
				t.Errorf("refusal does not carry the engine's message\n got: %v\nwant: %s", err, f.Message)
			}
		}
		return
	}
	if err != nil {
		t.Fatalf("refused; the engine admits it: %v", err)
	}
	stored := want.Pod.DeepCopy()
	stored.Namespace = plain
	if err := cluster.Create(ctx, stored, client.DryRunAll); err != nil {
		t.Fatalf("the engine's pod, created with no admission: %v", err)
	}
	if d := podDiff(got, stored); d != "" {
		t.Errorf("apiserver mode admits a different pod than the engine makes:\n%s", d)
	}
	again := got.DeepCopy()
	again.ResourceVersion, again.UID, again.CreationTimestamp = "", "", metavOld()
	if err := cluster.Create(ctx, again, client.DryRunAll); err != nil {
		t.Fatalf("second pass refused: %v", err)
	}
	if d := podDiff(again, got); d != "" {
		t.Errorf("second pass changed the pod:\n%s", d)
	}
}

// podDiff compares what admission decides: spec, labels, annotations and
// finalizers (names, namespaces, uids and timestamps are the server's).
func podDiff(a, b *corev1.Pod) string {
	type view struct {
		Labels, Annotations map[string]string
		Finalizers          []string
		Spec                corev1.PodSpec
	}
	va := view{a.Labels, a.Annotations, a.Finalizers, a.Spec}
	vb := view{b.Labels, b.Annotations, b.Finalizers, b.Spec}
	if equality.Semantic.DeepEqual(va, vb) {
		return ""
	}
	ya, _ := yaml.Marshal(va)
	yb, _ := yaml.Marshal(vb)
	return "--- got\n" + string(ya) + "--- want\n" + string(yb)
}

func metavOld() metav1.Time { return metav1.Time{} }

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
