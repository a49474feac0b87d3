package admissionmodes

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/admissionpolicy"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// goldenDir holds the engine's golden cases (policies/golden_test.go).
const goldenDir = "../../policies/testdata"

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

// TestGoldenCasesInBothModes runs every engine golden case through the
// real API server in each admission mode: apiserver (the case's policies
// compiled by admissionpolicy.Compile, gracekeeper not running) and
// webhook (gracekeeper serve, app.Run, behind the chart's webhook
// configurations). In both, the pod the API server admits must be the
// engine's pod as the API server stores it (the engine's output created
// with no admission), a pod the engine denies must be refused with the
// engine's Deny messages, the admitted pod created again must come back
// unchanged (reinvocation), and the warnings must be the engine's Warn
// findings: all of them in webhook mode, the BudgetExceeded one in
// apiserver mode (docs/admission-modes.md says why).
func TestGoldenCasesInBothModes(t *testing.T) {
	needCluster(t)
	entries, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		dir := filepath.Join(goldenDir, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "pod.yaml")); err == nil {
			dirs = append(dirs, dir)
		}
	}
	if len(dirs) < 20 {
		t.Fatalf("only %d golden cases found in %s", len(dirs), goldenDir)
	}
	t.Run("apiserver", func(t *testing.T) {
		for _, dir := range dirs {
			t.Run(filepath.Base(dir), func(t *testing.T) { runGolden(t, loadGolden(t, dir), admissionpolicy.ModeAPIServer) })
		}
	})
	t.Run("webhook", func(t *testing.T) {
		startWebhookMode(t)
		for _, dir := range dirs {
			t.Run(filepath.Base(dir), func(t *testing.T) { runGolden(t, loadGolden(t, dir), admissionpolicy.ModeWebhook) })
		}
	})
}

func runGolden(t *testing.T, gc goldenCase, mode admissionpolicy.Mode) {
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
		t.Cleanup(func() { _ = cluster.Delete(context.Background(), p) })
		pols = append(pols, *p)
	}
	excluded := gc.excluded
	if excluded == nil {
		excluded = policies.SystemNamespaces()
	}
	set, _ := policies.NewSet(policies.Config{ExcludedNamespaces: excluded, IgnoreLabel: policies.DefaultIgnoreLabel}, pols)
	want := set.Review(gc.pod, gc.ns)
	var wantWarn []string
	for _, f := range want.Findings {
		if f.Action == v1alpha1.ActionWarn && (mode == admissionpolicy.ModeWebhook || f.Reason == policies.ReasonBudgetExceeded) {
			wantWarn = append(wantWarn, f.Message)
		}
	}
	var stored *corev1.Pod
	if !want.Denied() {
		stored = want.Pod.DeepCopy()
		stored.Namespace = plain
		if err := cluster.Create(ctx, stored, client.DryRunAll); err != nil {
			t.Fatalf("the engine's pod, created with no admission: %v", err)
		}
	}
	wc, w := warningClient(t)
	// check is one create of the case's pod: "" when it gives the engine's answer.
	check := func() string {
		got := gc.pod.DeepCopy()
		_ = w.take()
		err := wc.Create(ctx, got, client.DryRunAll)
		warned := w.take()
		if want.Denied() {
			if err == nil {
				return fmt.Sprintf("admitted; the engine denies it: %v", want.Findings)
			}
			for _, f := range want.Findings {
				if f.Action == v1alpha1.ActionDeny && !strings.Contains(err.Error(), "gracekeeper: "+f.Message) {
					return fmt.Sprintf("refusal does not carry the engine's message\n got: %v\nwant: %s", err, f.Message)
				}
			}
			return ""
		}
		if err != nil {
			return fmt.Sprintf("refused; the engine admits it: %v", err)
		}
		if d := podDiff(got, stored); d != "" {
			return "admitted a different pod than the engine makes:\n" + d
		}
		if d := warningsDiff(warned, wantWarn); d != "" {
			return d
		}
		again := got.DeepCopy()
		again.ResourceVersion, again.UID, again.CreationTimestamp = "", "", metav1.Time{}
		if err := cluster.Create(ctx, again, client.DryRunAll); err != nil {
			return fmt.Sprintf("second pass refused: %v", err)
		}
		if d := podDiff(again, got); d != "" {
			return "second pass changed the pod:\n" + d
		}
		return ""
	}
	if mode == admissionpolicy.ModeAPIServer {
		var valid []v1alpha1.LifecyclePolicy
		for _, p := range pols {
			if len(policies.ValidatePolicy(&p)) == 0 {
				valid = append(valid, p)
			}
		}
		compiledObjects(t, valid, admissionpolicy.Config{ExcludedNamespaces: excluded, IgnoreLabel: policies.DefaultIgnoreLabel, Mutate: true})
		// The canary makes sure the objects are in effect: one check decides.
		waitEffective(t, true)
		if d := check(); d != "" {
			t.Error(d)
		}
		return
	}
	// Webhook mode: gracekeeper's policy cache catches up with the case's
	// policies (and drops the previous case's) through its informer; the
	// answer must become the engine's within the propagation bound.
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		last = check()
		return last == "", nil
	})
	if err != nil {
		t.Errorf("webhook mode after 20s: %s", last)
	}
}

// warningsDiff: the warnings that come from gracekeeper (webhook answers
// and compiled policies both carry the engine's message) must be want.
func warningsDiff(got, want []string) string {
	var ours []string
	for _, g := range got {
		if i := strings.Index(g, "gracekeeper: "); i >= 0 {
			ours = append(ours, g[i+len("gracekeeper: "):])
		} else if !strings.Contains(g, "ValidatingAdmissionPolicy") {
			ours = append(ours, g)
		}
	}
	slices.Sort(ours)
	w := slices.Clone(want)
	slices.Sort(w)
	if slices.Equal(ours, w) {
		return ""
	}
	return fmt.Sprintf("warnings differ\n got: %q\nwant: %q", ours, w)
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

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
