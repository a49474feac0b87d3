package policies

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

const libraryDir = "library"

// libraryPolicies loads policies/library/*.yaml strictly: an unknown or
// misspelt field fails, as the API server's strict field validation would.
func libraryPolicies(t *testing.T) ([]v1alpha1.LifecyclePolicy, []string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(libraryDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pols []v1alpha1.LifecyclePolicy
	for _, f := range files {
		ps := loadPolicies(t, f)
		if len(ps) != 1 {
			t.Fatalf("%s: %d documents, want exactly one policy", f, len(ps))
		}
		pols = append(pols, ps[0])
	}
	return pols, files
}

func TestLibraryPoliciesAreValid(t *testing.T) {
	pols, files := libraryPolicies(t)
	readme, err := os.ReadFile(filepath.Join(libraryDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"http-drain.yaml", "termination-record.yaml", "mesh-aware.yaml", "batch.yaml"} {
		if !slices.Contains(files, filepath.Join(libraryDir, want)) {
			t.Errorf("library lacks %s", want)
		}
	}
	for i, p := range pols {
		f := files[i]
		if p.APIVersion != v1alpha1.GroupVersion.String() || p.Kind != "LifecyclePolicy" {
			t.Errorf("%s: apiVersion/kind %s/%s", f, p.APIVersion, p.Kind)
		}
		if base := strings.TrimSuffix(filepath.Base(f), ".yaml"); p.Name != base {
			t.Errorf("%s: metadata.name %q, want %q (the file name)", f, p.Name, base)
		}
		if !strings.Contains(string(readme), "`"+filepath.Base(f)+"`") {
			t.Errorf("README.md has no line for %s", filepath.Base(f))
		}
		// What the CRD's CEL rules require, checked here too so a broken
		// library file fails fast without an API server.
		for _, h := range []*v1alpha1.HookAction{hookOf(p.Spec.PreStop), postHookOf(p.Spec.PostStart)} {
			if h == nil {
				continue
			}
			n := 0
			for _, set := range []bool{h.Sleep != nil, h.Exec != nil, h.HTTPGet != nil} {
				if set {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s: a hook must set exactly one of sleep, exec, httpGet", f)
			}
		}
	}
	if _, fs := NewSet(Config{}, pols); len(fs) > 0 {
		t.Fatalf("library does not compile: %+v", fs)
	}
}

func hookOf(h *v1alpha1.PreStopHook) *v1alpha1.HookAction {
	if h == nil {
		return nil
	}
	return &h.HookAction
}

func postHookOf(h *v1alpha1.PostStartHook) *v1alpha1.HookAction {
	if h == nil {
		return nil
	}
	return &h.HookAction
}

// exampleObject decodes one document of examples/ strictly into its type.
func exampleObject(t *testing.T, path string, doc []byte) (runtime.Object, metav1.Object) {
	t.Helper()
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var obj interface {
		runtime.Object
		metav1.Object
	}
	switch tm.Kind {
	case "Pod":
		obj = &corev1.Pod{}
	case "Deployment":
		obj = &appsv1.Deployment{}
	case "StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "DaemonSet":
		obj = &appsv1.DaemonSet{}
	case "Job":
		obj = &batchv1.Job{}
	case "CronJob":
		obj = &batchv1.CronJob{}
	default:
		t.Fatalf("%s: unexpected kind %q", path, tm.Kind)
	}
	strictInto(t, path, doc, obj)
	return obj, obj
}

// TestLibraryOnExamples runs the whole library over examples/ as `gracekeeper
// check -f examples/ -p policies/library/` does, and checks the outcome
// examples/README.md promises for each.
func TestLibraryOnExamples(t *testing.T) {
	pols, _ := libraryPolicies(t)
	set, fs := NewSet(Config{}, pols)
	if len(fs) > 0 {
		t.Fatal(fs)
	}
	type want struct {
		denied   bool
		policies []string
		reasons  []Reason
		tgps     *int64 // nil: left unset
		hooked   []string
	}
	wants := map[string]want{
		"web-deployment.yaml/Deployment/web": {
			policies: []string{"http-drain", "termination-record"}, reasons: []Reason{}, hooked: []string{"web"},
		},
		"slow-drain-deployment.yaml/Deployment/slow-drain": {
			denied: true, policies: []string{"http-drain", "termination-record"},
			reasons: []Reason{ReasonGraceCapped, ReasonBudgetExceeded}, tgps: i64(60),
		},
		"sidecar-pod.yaml/Pod/checkout": {
			policies: []string{"mesh-aware", "termination-record"}, reasons: []Reason{}, tgps: i64(50),
			hooked: []string{"web", "log-shipper"},
		},
		"exec-hook-pod.yaml/Pod/queue-worker": {
			policies: []string{"http-drain", "termination-record"}, reasons: []Reason{ReasonUnknownPreStop},
		},
		// Its Jobs' pods carry batch.kubernetes.io/job-name (of unknown
		// value): library/batch.yaml selects them, so it judges the CronJob.
		"cronjob.yaml/CronJob/nightly-report": {
			policies: []string{"batch", "termination-record"}, reasons: []Reason{},
		},
		"statefulset.yaml/StatefulSet/postgres": {
			policies: []string{"http-drain", "termination-record"}, reasons: []Reason{}, tgps: i64(60),
		},
	}
	files, err := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		for _, doc := range readDocs(t, f) {
			obj, meta := exampleObject(t, f, doc)
			key := filepath.Base(f) + "/" + obj.GetObjectKind().GroupVersionKind().Kind + "/" + meta.GetName()
			seen[key] = true
			t.Run(key, func(t *testing.T) {
				w, ok := wants[key]
				if !ok {
					t.Fatalf("no expected outcome for %s: add it here and to examples/README.md", key)
				}
				pod, isPod := obj.(*corev1.Pod)
				var (
					d       Decision
					unknown []string
				)
				if isPod {
					d = set.Review(pod, Namespace{Name: pod.Namespace})
				} else {
					// Judged as the pods the controller creates, with its labels.
					tmpl, ok := TemplateFor(obj)
					if !ok {
						t.Fatalf("%s has no pod template", key)
					}
					pod, unknown = tmpl.Pod, tmpl.Unknown
					d = set.ReviewTemplate(tmpl, Namespace{Name: pod.Namespace})
				}
				ns := Namespace{Name: pod.Namespace}
				if d.Denied() != w.denied || !reflect.DeepEqual(d.Policies, w.policies) || !reflect.DeepEqual(reasons(d.Findings), w.reasons) {
					t.Fatalf("denied=%v policies=%v findings=%+v; want denied=%v policies=%v reasons=%v",
						d.Denied(), d.Policies, d.Findings, w.denied, w.policies, w.reasons)
				}
				if got := d.Pod.Spec.TerminationGracePeriodSeconds; !reflect.DeepEqual(got, w.tgps) {
					t.Errorf("terminationGracePeriodSeconds %v, want %v", ptrString(got), ptrString(w.tgps))
				}
				if !slices.Contains(d.Pod.Finalizers, string(v1alpha1.TerminationRecordFinalizer)) || d.Pod.Labels[LabelFinalize] != "true" {
					t.Errorf("no termination-record finalizer and label: %v %v", d.Pod.Finalizers, d.Pod.Labels)
				}
				for _, name := range w.hooked {
					if c := findContainer(d.Pod, name); c == nil || c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
						t.Errorf("container %q did not get the sleep preStop", name)
					}
				}
				if again := set.ReviewTemplate(Template{Pod: d.Pod, Unknown: unknown}, ns); again.Changed {
					t.Error("a second pass changed the pod")
				}
			})
		}
	}
	for key := range wants {
		if !seen[key] {
			t.Errorf("expected example %s not found in examples/", key)
		}
	}
}

func findContainer(p *corev1.Pod, name string) *corev1.Container {
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
	}
	return nil
}

func ptrString(p *int64) string {
	if p == nil {
		return "<unset>"
	}
	return itoa(*p)
}
