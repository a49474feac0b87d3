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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// loadPolicies reads the LifecyclePolicy documents of a YAML file.
func loadPolicies(t *testing.T, path string) []v1alpha1.LifecyclePolicy {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pols []v1alpha1.LifecyclePolicy
	r := utilyaml.NewYAMLReader(bufioReader(raw))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return pols
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(doc), []byte("---")))) == 0 {
			continue
		}
		var p v1alpha1.LifecyclePolicy
		if err := yaml.UnmarshalStrict(doc, &p); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		pols = append(pols, p)
	}
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
	gc.pols = loadPolicies(t, filepath.Join(dir, "policies.yaml"))
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

// TestGoldenCasesInBothModes runs every engine golden case, and every pod
// CREATE case of the webhook's goldens, through the real API server in
// each admission mode: apiserver (the case's policies
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
	type namedCase struct {
		name string
		load func(t *testing.T) goldenCase
	}
	var cases []namedCase
	entries, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		dir := filepath.Join(goldenDir, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "pod.yaml")); err == nil {
			cases = append(cases, namedCase{"policies/" + e.Name(), func(t *testing.T) goldenCase { return loadGolden(t, dir) }})
		}
	}
	n := len(cases)
	// The webhook package's pod CREATE cases, with its shared policies.
	entries, err = os.ReadDir(webhookCaseDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		dir := filepath.Join(webhookCaseDir, e.Name())
		if gc, ok := loadWebhookCase(t, dir); ok {
			cases = append(cases, namedCase{"webhook/" + e.Name(), func(*testing.T) goldenCase { return gc }})
		}
	}
	if n < 20 || len(cases)-n < 8 {
		t.Fatalf("only %d engine and %d webhook pod cases found", n, len(cases)-n)
	}
	t.Run("apiserver", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) { runGolden(t, c.load(t), admissionpolicy.ModeAPIServer) })
		}
	})
	t.Run("webhook", func(t *testing.T) {
		startWebhookMode(t)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) { runGolden(t, c.load(t), admissionpolicy.ModeWebhook) })
		}
	})
}

// webhookCaseDir holds the webhook package's golden AdmissionReviews.
const webhookCaseDir = "../../webhook/testdata/cases"

// loadWebhookCase reads a webhook golden case that reviews a pod CREATE
// (ok false for the others: workloads and UPDATEs stay on the webhook in
// both modes), with the webhook tests' policies and exclusions.
func loadWebhookCase(t *testing.T, dir string) (goldenCase, bool) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "request.json"))
	if err != nil {
		return goldenCase{}, false
	}
	var review struct {
		Request struct {
			Kind      metav1.GroupVersionKind `json:"kind"`
			Namespace string                  `json:"namespace"`
			Operation string                  `json:"operation"`
			Object    corev1.Pod              `json:"object"`
		} `json:"request"`
	}
	if err := yaml.Unmarshal(raw, &review); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	r := review.Request
	if r.Kind.Kind != "Pod" || r.Operation != "CREATE" {
		return goldenCase{}, false
	}
	gc := goldenCase{pod: r.Object.DeepCopy(), ns: policies.Namespace{Name: r.Namespace}, excluded: []string{"kube-system"}}
	gc.pod.Namespace = r.Namespace
	gc.pols = loadPolicies(t, filepath.Join(filepath.Dir(webhookCaseDir), "policies.yaml"))
	return gc, true
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
	invalid := false // a pod the API server refuses whatever admission says
	if !want.Denied() {
		stored = want.Pod.DeepCopy()
		stored.Namespace = plain
		if err := cluster.Create(ctx, stored, client.DryRunAll); apierrors.IsInvalid(err) {
			invalid = true
		} else if err != nil {
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
		if invalid {
			if !apierrors.IsInvalid(err) {
				return fmt.Sprintf("the pod is invalid to the API server, yet: %v", err)
			}
			return ""
		}
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
