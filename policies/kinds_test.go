package policies

import (
	"reflect"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// workload returns an object of kind k named name in namespace shop whose
// template has labels app=web and one container "web".
func workload(t *testing.T, k Kind, name string) runtime.Object {
	t.Helper()
	obj := k.New()
	if rc, ok := obj.(*corev1.ReplicationController); ok {
		rc.Spec.Template = &corev1.PodTemplateSpec{}
	}
	meta := obj.(metav1.Object)
	meta.SetName(name)
	meta.SetNamespace("shop")
	tmpl, _ := k.Template(obj)
	tmpl.Labels = map[string]string{"app": "web"}
	tmpl.Spec.Containers = []corev1.Container{{Name: "web", Image: "nginx"}}
	tmpl.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
	return obj
}

// TestKindsRegistry: every kind's constructor, template accessor and
// controller labels, as the controller sources cited in kinds.go set them.
func TestKindsRegistry(t *testing.T) {
	type want struct {
		pointer string
		known   map[string]string
		unknown []string
	}
	wants := map[string]want{
		"Deployment":            {"/spec/template", nil, []string{"pod-template-hash"}},
		"StatefulSet":           {"/spec/template", nil, []string{"controller-revision-hash", "statefulset.kubernetes.io/pod-name", "apps.kubernetes.io/pod-index"}},
		"DaemonSet":             {"/spec/template", nil, []string{"controller-revision-hash", "pod-template-generation"}},
		"ReplicaSet":            {"/spec/template", nil, nil},
		"ReplicationController": {"/spec/template", nil, nil},
		"Job": {"/spec/template", map[string]string{"batch.kubernetes.io/job-name": "w", "job-name": "w"},
			[]string{"batch.kubernetes.io/controller-uid", "controller-uid"}},
		"CronJob": {"/spec/jobTemplate/spec/template", nil,
			[]string{"batch.kubernetes.io/job-name", "job-name", "batch.kubernetes.io/controller-uid", "controller-uid"}},
	}
	seen := map[string]bool{}
	for _, k := range Kinds() {
		t.Run(k.GVK.Kind, func(t *testing.T) {
			w, ok := wants[k.GVK.Kind]
			if !ok {
				t.Fatalf("no expectation for kind %s: add it here", k.GVK.Kind)
			}
			seen[k.GVK.Kind] = true
			if got, ok := KindFor(k.GVK); !ok || got.Resource != k.Resource {
				t.Errorf("KindFor(%v) = %v, %v", k.GVK, got.GVK, ok)
			}
			if got, ok := KindOf(k.New()); !ok || got.GVK != k.GVK {
				t.Errorf("KindOf(New()) = %v, %v", got.GVK, ok)
			}
			if items := reflect.ValueOf(k.NewList()).Elem().FieldByName("Items"); !items.IsValid() || items.Type().Elem() != reflect.TypeOf(k.New()).Elem() {
				t.Errorf("NewList() = %T, not a list of %T", k.NewList(), k.New())
			}
			obj := workload(t, k, "w")
			tm, ok := TemplateFor(obj)
			if !ok {
				t.Fatal("TemplateFor: no template")
			}
			if tm.Pointer != w.pointer || tm.Pod.Namespace != "shop" || tm.Pod.Labels["app"] != "web" {
				t.Errorf("pointer %q namespace %q labels %v", tm.Pointer, tm.Pod.Namespace, tm.Pod.Labels)
			}
			for key, v := range w.known {
				if tm.Pod.Labels[key] != v {
					t.Errorf("label %s = %q, want %q", key, tm.Pod.Labels[key], v)
				}
			}
			if len(tm.Pod.Labels) != 1+len(w.known) {
				t.Errorf("labels %v, want app plus %v", tm.Pod.Labels, w.known)
			}
			if !slices.Equal(tm.Unknown, w.unknown) {
				t.Errorf("unknown labels %v, want %v", tm.Unknown, w.unknown)
			}
			// The template itself is never changed.
			tmpl, _ := k.Template(obj)
			if len(tmpl.Labels) != 1 {
				t.Errorf("template labels changed: %v", tmpl.Labels)
			}
		})
	}
	for k := range wants {
		if !seen[k] {
			t.Errorf("kind %s expected but not in Kinds()", k)
		}
	}
}

// TestJobLabelsFollowTheStrategy: the API server adds the Job labels only
// without manualSelector and keeps keys the template has; an Indexed Job's
// pods get the completion index.
func TestJobLabelsFollowTheStrategy(t *testing.T) {
	k, _ := KindFor(batchv1.SchemeGroupVersion.WithKind("Job"))
	for name, tc := range map[string]struct {
		edit    func(*batchv1.Job)
		known   map[string]string
		unknown []string
	}{
		"manual selector: none": {
			edit: func(j *batchv1.Job) { j.Spec.ManualSelector = ptr.To(true) },
		},
		"own job-name kept": {
			edit: func(j *batchv1.Job) {
				j.Spec.ManualSelector = ptr.To(false)
				j.Spec.Template.Labels["job-name"] = "mine"
			},
			known:   map[string]string{"batch.kubernetes.io/job-name": "w", "job-name": "mine"},
			unknown: []string{"batch.kubernetes.io/controller-uid", "controller-uid"},
		},
		"indexed: completion index": {
			edit: func(j *batchv1.Job) {
				j.Spec.ManualSelector = ptr.To(true)
				j.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
			},
			unknown: []string{"batch.kubernetes.io/job-completion-index"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			obj := workload(t, k, "w").(*batchv1.Job)
			tc.edit(obj)
			tm, _ := TemplateFor(obj)
			for key, v := range tc.known {
				if tm.Pod.Labels[key] != v {
					t.Errorf("label %s = %q, want %q", key, tm.Pod.Labels[key], v)
				}
			}
			if len(tm.Pod.Labels) != 1+len(tc.known) {
				t.Errorf("labels %v, want app plus %v", tm.Pod.Labels, tc.known)
			}
			if !slices.Equal(tm.Unknown, tc.unknown) {
				t.Errorf("unknown %v, want %v", tm.Unknown, tc.unknown)
			}
		})
	}
}

// TestControllerLabelOverridesTemplate: a Deployment template that sets
// pod-template-hash itself still gets the controller's (unknown) value.
func TestControllerLabelOverridesTemplate(t *testing.T) {
	k, _ := KindFor(appsv1.SchemeGroupVersion.WithKind("Deployment"))
	obj := workload(t, k, "w").(*appsv1.Deployment)
	obj.Spec.Template.Labels["pod-template-hash"] = "abc"
	tm, _ := TemplateFor(obj)
	if _, ok := tm.Pod.Labels["pod-template-hash"]; ok || !slices.Equal(tm.Unknown, []string{"pod-template-hash"}) {
		t.Errorf("labels %v unknown %v: want pod-template-hash unknown", tm.Pod.Labels, tm.Unknown)
	}
}

// TestWorkloadsJudgedAsTheirPods runs every workload kind against policies
// that select on controller labels, with the rule for unknown values:
// Exists holds, DoesNotExist fails, In/NotIn/=/!= may hold and count as
// holding (so the template is refused if any of its pods could be).
func TestWorkloadsJudgedAsTheirPods(t *testing.T) {
	deny := func(name string, sel *metav1.LabelSelector) v1alpha1.LifecyclePolicy {
		// preStop 40s + 0 > 30s: Deny on any pod it selects.
		return v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.LifecyclePolicySpec{
			Match:   v1alpha1.Match{PodSelector: sel},
			PreStop: &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Exec: &v1alpha1.ExecAction{Command: []string{"drain"}, BudgetSeconds: ptr.To[int64](40)}}},
		}}
	}
	expr := func(key string, op metav1.LabelSelectorOperator, vals ...string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: vals}}}
	}
	cases := map[string]struct {
		sel    *metav1.LabelSelector
		denied map[string]bool // by kind; absent = false
	}{
		"pod-template-hash Exists": {expr("pod-template-hash", metav1.LabelSelectorOpExists), map[string]bool{"Deployment": true}},
		"pod-template-hash In [x]": {expr("pod-template-hash", metav1.LabelSelectorOpIn, "x"), map[string]bool{"Deployment": true}},
		"pod-template-hash DoesNotExist": {expr("pod-template-hash", metav1.LabelSelectorOpDoesNotExist), map[string]bool{
			"StatefulSet": true, "DaemonSet": true, "ReplicaSet": true, "ReplicationController": true, "Job": true, "CronJob": true}},
		"controller-revision-hash Exists": {expr("controller-revision-hash", metav1.LabelSelectorOpExists), map[string]bool{"StatefulSet": true, "DaemonSet": true}},
		"controller-revision-hash NotIn [x]": {expr("controller-revision-hash", metav1.LabelSelectorOpNotIn, "x"), map[string]bool{
			// NotIn on an absent key holds (labels.Selector semantics); on an unknown value it may.
			"Deployment": true, "StatefulSet": true, "DaemonSet": true, "ReplicaSet": true, "ReplicationController": true, "Job": true, "CronJob": true}},
		"statefulset pod-name matchLabels": {&metav1.LabelSelector{MatchLabels: map[string]string{"statefulset.kubernetes.io/pod-name": "w-0"}}, map[string]bool{"StatefulSet": true}},
		"pod-index In [0]":                 {expr("apps.kubernetes.io/pod-index", metav1.LabelSelectorOpIn, "0"), map[string]bool{"StatefulSet": true}},
		"pod-template-generation Exists":   {expr("pod-template-generation", metav1.LabelSelectorOpExists), map[string]bool{"DaemonSet": true}},
		"job-name Exists (library/batch)":  {expr("batch.kubernetes.io/job-name", metav1.LabelSelectorOpExists), map[string]bool{"Job": true, "CronJob": true}},
		// A Job's name is known: only the Job named w matches; a CronJob's
		// Jobs have unknown names, so it may.
		"job-name In [w]":       {expr("job-name", metav1.LabelSelectorOpIn, "w"), map[string]bool{"Job": true, "CronJob": true}},
		"job-name In [other]":   {expr("job-name", metav1.LabelSelectorOpIn, "other"), map[string]bool{"CronJob": true}},
		"controller-uid Exists": {expr("controller-uid", metav1.LabelSelectorOpExists), map[string]bool{"Job": true, "CronJob": true}},
		"app=web and hash DoesNotExist": {&metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "controller-uid", Operator: metav1.LabelSelectorOpDoesNotExist}}},
			map[string]bool{"Deployment": true, "StatefulSet": true, "DaemonSet": true, "ReplicaSet": true, "ReplicationController": true}},
		"app=db (template label decides)": {&metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, nil},
	}
	// The selectors a bare pod labelled app=web matches.
	bare := map[string]bool{"pod-template-hash DoesNotExist": true, "controller-revision-hash NotIn [x]": true, "app=web and hash DoesNotExist": true}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s, fs := NewSet(Config{}, []v1alpha1.LifecyclePolicy{deny("p", tc.sel)})
			if len(fs) != 0 {
				t.Fatalf("set findings: %v", fs)
			}
			for _, k := range Kinds() {
				tm, _ := TemplateFor(workload(t, k, "w"))
				d := s.ReviewTemplate(tm, Namespace{Name: "shop"})
				if d.Denied() != tc.denied[k.GVK.Kind] {
					t.Errorf("%s: denied=%v (findings %v), want %v", k.GVK.Kind, d.Denied(), d.Findings, tc.denied[k.GVK.Kind])
				}
			}
			// A bare pod with the template's labels only is never judged
			// by a selector on controller labels it lacks.
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop", Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](30), Containers: []corev1.Container{{Name: "web"}}}}
			want := bare[name]
			if got := s.Review(pod, Namespace{Name: "shop"}).Denied(); got != want {
				t.Errorf("bare pod: denied=%v, want %v", got, want)
			}
		})
	}
}
