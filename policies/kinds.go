package policies

import (
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Kind is one workload kind whose pod template gracekeeper judges: how to
// recognise it, make one to decode into, find its template, and which
// labels its pods get besides the template's. This table is the one list of
// workload kinds: the webhook's decode switch, `check`, the engine and the
// chart's validate-workloads rules (tested) all read it, so adding a kind is
// one entry here plus goldens.
type Kind struct {
	// GVK is the group, version and kind the API server serves.
	GVK schema.GroupVersionKind
	// Resource is the plural resource name, as in webhook rules and RBAC.
	Resource string
	// New returns an empty object of the kind, to decode into.
	New func() runtime.Object
	// NewList returns an empty list of the kind, to list into.
	NewList func() runtime.Object
	// Template returns the object's pod template and the JSON pointer at
	// which it sits; nil when the object creates no pods (a
	// ReplicationController without a template).
	Template func(runtime.Object) (*corev1.PodTemplateSpec, string)
	// PodLabels are the labels the controller (or the API server, for Jobs)
	// sets on every pod it creates from the template, overriding the
	// template's own for the same key.
	PodLabels func(runtime.Object) []PodLabel
}

// PodLabel is a label a workload's pods get from their controller. When
// Known is false the value depends on the pod (a hash, an ordinal, a UID)
// and cannot be known from the template: selection judges it as unknown
// (docs/policies.md, "How a selector judges an unknown value").
type PodLabel struct {
	Key   string
	Value string
	Known bool
}

func unknown(keys ...string) []PodLabel {
	out := make([]PodLabel, len(keys))
	for i, k := range keys {
		out[i] = PodLabel{Key: k}
	}
	return out
}

// Label keys controllers set on pods. The constants of k8s.io/api are used
// where it has them; pod-template-generation exists only in the internal
// API (pkg/apis/apps/types.go DaemonSetTemplateGenerationKey).
const (
	labelDaemonSetTemplateGeneration = "pod-template-generation"
	labelLegacyJobName               = "job-name"       // pkg/apis/batch/types.go LegacyJobNameLabel
	labelLegacyControllerUID         = "controller-uid" // pkg/apis/batch/types.go LegacyControllerUidLabel
)

// Kinds returns the workload kinds, a new slice each call.
func Kinds() []Kind {
	return []Kind{
		{
			GVK: appsv1.SchemeGroupVersion.WithKind("Deployment"), Resource: "deployments",
			New: func() runtime.Object { return &appsv1.Deployment{} }, NewList: func() runtime.Object { return &appsv1.DeploymentList{} },
			Template: func(o runtime.Object) (*corev1.PodTemplateSpec, string) {
				return &o.(*appsv1.Deployment).Spec.Template, "/spec/template"
			},
			// The Deployment controller gives each ReplicaSet's template (and
			// so its pods) pod-template-hash, the hash of the template
			// (pkg/controller/deployment/sync.go getNewReplicaSet).
			PodLabels: func(runtime.Object) []PodLabel { return unknown(appsv1.DefaultDeploymentUniqueLabelKey) },
		},
		{
			GVK: appsv1.SchemeGroupVersion.WithKind("StatefulSet"), Resource: "statefulsets",
			New: func() runtime.Object { return &appsv1.StatefulSet{} }, NewList: func() runtime.Object { return &appsv1.StatefulSetList{} },
			Template: func(o runtime.Object) (*corev1.PodTemplateSpec, string) {
				return &o.(*appsv1.StatefulSet).Spec.Template, "/spec/template"
			},
			// pkg/controller/statefulset/stateful_set_utils.go: updateIdentity
			// sets the pod's name and ordinal, setPodRevision the revision.
			PodLabels: func(runtime.Object) []PodLabel {
				return unknown(appsv1.StatefulSetRevisionLabel, appsv1.StatefulSetPodNameLabel, appsv1.PodIndexLabel)
			},
		},
		{
			GVK: appsv1.SchemeGroupVersion.WithKind("DaemonSet"), Resource: "daemonsets",
			New: func() runtime.Object { return &appsv1.DaemonSet{} }, NewList: func() runtime.Object { return &appsv1.DaemonSetList{} },
			Template: func(o runtime.Object) (*corev1.PodTemplateSpec, string) {
				return &o.(*appsv1.DaemonSet).Spec.Template, "/spec/template"
			},
			// pkg/controller/daemon/util/daemonset_util.go CreatePodTemplate:
			// the template generation (from the annotation the v1 API always
			// sets) and the revision hash.
			PodLabels: func(runtime.Object) []PodLabel {
				return unknown(appsv1.DefaultDaemonSetUniqueLabelKey, labelDaemonSetTemplateGeneration)
			},
		},
		{
			GVK: appsv1.SchemeGroupVersion.WithKind("ReplicaSet"), Resource: "replicasets",
			New: func() runtime.Object { return &appsv1.ReplicaSet{} }, NewList: func() runtime.Object { return &appsv1.ReplicaSetList{} },
			Template: func(o runtime.Object) (*corev1.PodTemplateSpec, string) {
				return &o.(*appsv1.ReplicaSet).Spec.Template, "/spec/template"
			},
			// The ReplicaSet controller copies the template's labels only
			// (pkg/controller/controller_utils.go GetPodFromTemplate); a
			// Deployment's ReplicaSet already has pod-template-hash in its template.
			PodLabels: func(runtime.Object) []PodLabel { return nil },
		},
		{
			GVK: corev1.SchemeGroupVersion.WithKind("ReplicationController"), Resource: "replicationcontrollers",
			New: func() runtime.Object { return &corev1.ReplicationController{} }, NewList: func() runtime.Object { return &corev1.ReplicationControllerList{} },
			Template: func(o runtime.Object) (*corev1.PodTemplateSpec, string) {
				if t := o.(*corev1.ReplicationController).Spec.Template; t != nil {
					return t, "/spec/template"
				}
				return nil, ""
			},
			// pkg/controller/replication runs the ReplicaSet controller's code.
			PodLabels: func(runtime.Object) []PodLabel { return nil },
		},
		{
			GVK: batchv1.SchemeGroupVersion.WithKind("Job"), Resource: "jobs",
			New: func() runtime.Object { return &batchv1.Job{} }, NewList: func() runtime.Object { return &batchv1.JobList{} },
			Template: func(o runtime.Object) (*corev1.PodTemplateSpec, string) {
				return &o.(*batchv1.Job).Spec.Template, "/spec/template"
			},
			PodLabels: func(o runtime.Object) []PodLabel {
				j := o.(*batchv1.Job)
				return jobPodLabels(&j.Spec, &j.Spec.Template, j.Name, true)
			},
		},
		{
			GVK: batchv1.SchemeGroupVersion.WithKind("CronJob"), Resource: "cronjobs",
			New: func() runtime.Object { return &batchv1.CronJob{} }, NewList: func() runtime.Object { return &batchv1.CronJobList{} },
			Template: func(o runtime.Object) (*corev1.PodTemplateSpec, string) {
				return &o.(*batchv1.CronJob).Spec.JobTemplate.Spec.Template, "/spec/jobTemplate/spec/template"
			},
			// Each Job is named <cronjob>-<scheduled minute>
			// (pkg/controller/cronjob/cronjob_controllerv2.go getJobName), so
			// its name labels are unknown here.
			PodLabels: func(o runtime.Object) []PodLabel {
				cj := o.(*batchv1.CronJob)
				return jobPodLabels(&cj.Spec.JobTemplate.Spec, &cj.Spec.JobTemplate.Spec.Template, "", false)
			},
		},
	}
}

// jobPodLabels are the labels a Job's pods get. Unless manualSelector is
// set, the API server adds job-name and controller-uid (both spellings) to
// the Job's template at creation, keeping keys the template already has
// (pkg/registry/batch/job/strategy.go generateSelector); an Indexed Job's
// controller adds the completion index
// (pkg/controller/job/indexed_job_utils.go addCompletionIndexLabel).
func jobPodLabels(spec *batchv1.JobSpec, tmpl *corev1.PodTemplateSpec, name string, nameKnown bool) []PodLabel {
	var out []PodLabel
	add := func(k, v string, known bool) {
		if _, own := tmpl.Labels[k]; !own {
			out = append(out, PodLabel{Key: k, Value: v, Known: known})
		}
	}
	if spec.ManualSelector == nil || !*spec.ManualSelector {
		add(batchv1.JobNameLabel, name, nameKnown)
		add(labelLegacyJobName, name, nameKnown)
		add(batchv1.ControllerUidLabel, "", false)
		add(labelLegacyControllerUID, "", false)
	}
	if spec.CompletionMode != nil && *spec.CompletionMode == batchv1.IndexedCompletion {
		out = append(out, PodLabel{Key: batchv1.JobCompletionIndexAnnotation})
	}
	return out
}

// KindFor returns the workload kind served as gvk.
func KindFor(gvk schema.GroupVersionKind) (Kind, bool) {
	for _, k := range Kinds() {
		if k.GVK == gvk {
			return k, true
		}
	}
	return Kind{}, false
}

// KindNamed returns the workload kind called kind, whatever its version (for
// a message that names the version the API server serves).
func KindNamed(kind string) (Kind, bool) {
	for _, k := range Kinds() {
		if k.GVK.Kind == kind {
			return k, true
		}
	}
	return Kind{}, false
}

// KindList describes the kinds for messages, e.g. "apps/v1 Deployment, ...".
func KindList() string {
	var s string
	for i, k := range Kinds() {
		if i > 0 {
			s += ", "
		}
		s += k.GVK.GroupVersion().String() + " " + k.GVK.Kind
	}
	return s
}

// Template is a workload's pod template as the pods its controller creates:
// the pod admission will see, with the labels the controller adds whose
// values are known, and the keys of those whose values are not.
type Template struct {
	Kind Kind
	// Pod is built from the template in the workload's namespace.
	Pod *corev1.Pod
	// Pointer is where the template sits in the object, for patches.
	Pointer string
	// Unknown are label keys every pod carries with a value that depends
	// on the pod.
	Unknown []string
}

// TemplateFor returns obj's template as its pods; ok is false for an object
// that is not a workload kind or creates no pods.
func TemplateFor(obj runtime.Object) (Template, bool) {
	if k, ok := KindOf(obj); ok {
		tmpl, ptr := k.Template(obj)
		if tmpl == nil {
			return Template{}, false
		}
		t := Template{Kind: k, Pointer: ptr}
		meta, ok := obj.(metav1.Object)
		if !ok {
			return Template{}, false
		}
		t.Pod = PodFromTemplate(meta, k.GVK.Kind, tmpl)
		for _, l := range k.PodLabels(obj) {
			if l.Known {
				if t.Pod.Labels == nil {
					t.Pod.Labels = map[string]string{}
				}
				t.Pod.Labels[l.Key] = l.Value
				continue
			}
			delete(t.Pod.Labels, l.Key)
			t.Unknown = append(t.Unknown, l.Key)
		}
		return t, true
	}
	return Template{}, false
}

// KindOf returns the workload kind of a typed object.
func KindOf(obj runtime.Object) (Kind, bool) {
	for _, k := range Kinds() {
		if reflect.TypeOf(k.New()) == reflect.TypeOf(obj) {
			return k, true
		}
	}
	return Kind{}, false
}
