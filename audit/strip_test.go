package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

func docs(t *testing.T, path string) [][]byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	var out [][]byte
	for {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(d)) > 0 {
			out = append(out, d)
		}
	}
}

// TestStripKeepsTheJudgement: every engine golden case (policies/testdata),
// and pods with what strip must keep (finalizers, probe grace, sidecars, a
// mirror pod), is judged the same whether the pod is stripped as the
// audit's cache stores it or not: same policies, findings and change.
func TestStripKeepsTheJudgement(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("..", "policies", "testdata", "*", "pod.yaml"))
	if err != nil || len(dirs) < 10 {
		t.Fatalf("engine golden cases: %v (%d found)", err, len(dirs))
	}
	type tc struct {
		pod  *corev1.Pod
		pols []v1alpha1.LifecyclePolicy
		ns   policies.Namespace
	}
	cases := map[string]tc{}
	for _, podFile := range dirs {
		dir := filepath.Dir(podFile)
		c := tc{pod: &corev1.Pod{}}
		if err := yaml.Unmarshal(docs(t, podFile)[0], c.pod); err != nil {
			t.Fatal(err)
		}
		for _, d := range docs(t, filepath.Join(dir, "policies.yaml")) {
			var p v1alpha1.LifecyclePolicy
			if err := yaml.Unmarshal(d, &p); err != nil {
				t.Fatal(err)
			}
			c.pols = append(c.pols, p)
		}
		c.ns = policies.Namespace{Name: c.pod.Namespace}
		if raw, err := os.ReadFile(filepath.Join(dir, "namespace.yaml")); err == nil {
			var ns corev1.Namespace
			if err := yaml.Unmarshal(raw, &ns); err != nil {
				t.Fatal(err)
			}
			c.ns = policies.Namespace{Name: ns.Name, Labels: ns.Labels}
		}
		cases[filepath.Base(dir)] = c
	}
	sleep := func(s int64) *v1alpha1.PreStopHook {
		return &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: s}}}
	}
	pol := v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1alpha1.LifecyclePolicySpec{
		PreStop: sleep(20), ShutdownSeconds: ptr.To[int64](5), Match: v1alpha1.Match{IncludeSidecars: true},
		Finalizers: []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer}, Validation: &v1alpha1.Validation{Action: v1alpha1.ActionWarn}}}
	full := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "n", Labels: map[string]string{"app": "x"},
		Finalizers:      []string{string(v1alpha1.TerminationRecordFinalizer)},
		Annotations:     map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{}", policies.AnnotationShutdownSeconds: "9"},
		OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "x", UID: "u"}}},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](20),
			InitContainers: []corev1.Container{{Name: "proxy", Image: "p", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}},
			Containers: []corev1.Container{{Name: "app", Image: "a", Env: []corev1.EnvVar{{Name: "A", Value: "1"}},
				LivenessProbe: &corev1.Probe{TerminationGracePeriodSeconds: ptr.To[int64](3), PeriodSeconds: 5}}}}}
	cases["finalizers, sidecar, probe grace, annotations"] = tc{pod: full, pols: []v1alpha1.LifecyclePolicy{pol}, ns: policies.Namespace{Name: "n"}}
	mirror := full.DeepCopy()
	mirror.Annotations[corev1.MirrorPodAnnotationKey] = "abc"
	cases["mirror pod"] = tc{pod: mirror, pols: []v1alpha1.LifecyclePolicy{pol}, ns: policies.Namespace{Name: "n"}}

	// What admission stored: judged again it needs no change, which only
	// holds if strip keeps the hooks, finalizers and labels it added.
	set, _ := policies.NewSet(policies.Config{}, []v1alpha1.LifecyclePolicy{pol})
	admitted := set.Review(full, policies.Namespace{Name: "n"}).Pod
	cases["as admission stored it"] = tc{pod: admitted, pols: []v1alpha1.LifecyclePolicy{pol}, ns: policies.Namespace{Name: "n"}}

	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			set, _ := policies.NewSet(policies.Config{}, c.pols)
			want := set.Review(c.pod, c.ns)
			stripped, _ := strip(c.pod.DeepCopy())
			got := set.Review(stripped.(*corev1.Pod), c.ns)
			if want.Changed != got.Changed || !apiequality.Semantic.DeepEqual(want.Policies, got.Policies) ||
				!apiequality.Semantic.DeepEqual(want.Findings, got.Findings) {
				t.Errorf("judged differently once stripped:\nfull:     changed=%v %v %+v\nstripped: changed=%v %v %+v",
					want.Changed, want.Policies, want.Findings, got.Changed, got.Policies, got.Findings)
			}
		})
	}
}

// TestStripEveryKind: each kind of the registry is stripped as a pod is
// (managed fields, other annotations, env) in its metadata and template, and
// loses its status, while what the engine reads stays.
func TestStripEveryKind(t *testing.T) {
	statuses := map[string]string{ // a non-empty status of each kind
		"Deployment":            `{"replicas": 1}`,
		"StatefulSet":           `{"replicas": 1}`,
		"DaemonSet":             `{"numberReady": 1}`,
		"ReplicaSet":            `{"replicas": 1}`,
		"ReplicationController": `{"replicas": 1}`,
		"Job":                   `{"active": 1}`,
		"CronJob":               `{"lastScheduleTime": "2026-01-01T00:00:00Z"}`,
	}
	annotations := map[string]string{"gracekeeper.dev/skip": "true", "kubectl.kubernetes.io/last-applied-configuration": "{}"}
	for _, k := range policies.Kinds() {
		t.Run(k.GVK.Kind, func(t *testing.T) {
			status, ok := statuses[k.GVK.Kind]
			if !ok {
				t.Fatalf("no status for kind %s: add one here", k.GVK.Kind)
			}
			obj := k.New()
			doc := `{"metadata": {"name": "w", "managedFields": [{"manager": "kubectl"}]}, "spec": {"template": {}}, "status": ` + status + `}`
			if err := json.Unmarshal([]byte(doc), obj); err != nil {
				t.Fatal(err)
			}
			if reflect.ValueOf(obj).Elem().FieldByName("Status").IsZero() {
				t.Fatal("the status to strip is empty: the test would prove nothing")
			}
			meta := obj.(metav1.Object)
			meta.SetAnnotations(map[string]string{})
			for a, v := range annotations {
				meta.GetAnnotations()[a] = v
			}
			tmpl, _ := k.Template(obj)
			if tmpl == nil {
				t.Fatal("no template")
			}
			tmpl.Annotations = map[string]string{}
			for a, v := range annotations {
				tmpl.Annotations[a] = v
			}
			tmpl.Spec.Containers = []corev1.Container{{Name: "app", Image: "nginx", Env: []corev1.EnvVar{{Name: "A", Value: "1"}}}}

			if _, err := strip(obj); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"gracekeeper.dev/skip": "true"}
			if meta.GetManagedFields() != nil || !reflect.DeepEqual(meta.GetAnnotations(), want) {
				t.Errorf("metadata: managed fields %v, annotations %v", meta.GetManagedFields(), meta.GetAnnotations())
			}
			if meta.GetName() != "w" {
				t.Errorf("name %q, want w", meta.GetName())
			}
			if !reflect.DeepEqual(tmpl.Annotations, want) {
				t.Errorf("template annotations %v", tmpl.Annotations)
			}
			if c := tmpl.Spec.Containers; len(c) != 1 || c[0].Name != "app" || c[0].Image != "" || c[0].Env != nil {
				t.Errorf("template containers %+v", c)
			}
			if st := reflect.ValueOf(obj).Elem().FieldByName("Status"); !st.IsZero() {
				t.Errorf("status kept: %+v", st.Interface())
			}
		})
	}
}
