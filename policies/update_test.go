package policies

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

func updateDeployment() *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Labels: map[string]string{"app": "web"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](30),
					Containers:                    []corev1.Container{{Name: "app", Image: "nginx"}},
				},
			},
		},
	}
}

func updateCronJob() *batchv1.CronJob {
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: "shop"},
		Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Template: updateDeployment().Spec.Template,
		}}},
	}
}

// TestJudgeUpdate: a workload UPDATE is judged only when its pod template
// changed; controller writes (scale, metadata, status, deletion) pass.
func TestJudgeUpdate(t *testing.T) {
	deploy := func(f func(d *appsv1.Deployment)) runtime.Object {
		d := updateDeployment()
		f(d)
		return d
	}
	now := metav1.Now()
	tests := map[string]struct {
		old, obj runtime.Object
		judge    bool
		reason   string
	}{
		"scale (spec.replicas)": {old: updateDeployment(), obj: deploy(func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](0) }), reason: ReasonTemplateUnchanged},
		"label added":           {old: updateDeployment(), obj: deploy(func(d *appsv1.Deployment) { d.Labels["team"] = "a" }), reason: ReasonTemplateUnchanged},
		"annotation (revision)": {old: updateDeployment(), obj: deploy(func(d *appsv1.Deployment) {
			d.Annotations = map[string]string{"deployment.kubernetes.io/revision": "2"}
		}), reason: ReasonTemplateUnchanged},
		"foregroundDeletion finalizer added": {old: updateDeployment(), obj: deploy(func(d *appsv1.Deployment) {
			d.Finalizers = []string{metav1.FinalizerDeleteDependents}
		}), reason: ReasonTemplateUnchanged},
		"ownerReferences changed": {old: updateDeployment(), obj: deploy(func(d *appsv1.Deployment) {
			d.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "x", UID: "u"}}
		}), reason: ReasonTemplateUnchanged},
		"status": {old: updateDeployment(), obj: deploy(func(d *appsv1.Deployment) { d.Status.ReadyReplicas = 2 }), reason: ReasonTemplateUnchanged},
		"nil vs empty slices and maps in the template": {old: updateDeployment(), obj: deploy(func(d *appsv1.Deployment) {
			d.Spec.Template.Annotations = map[string]string{}
			d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{}
			d.Spec.Template.Spec.Volumes = []corev1.Volume{}
		}), reason: ReasonTemplateUnchanged},
		"being deleted, template changed too": {old: updateDeployment(), obj: deploy(func(d *appsv1.Deployment) {
			d.DeletionTimestamp = &now
			d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](1)
		}), reason: ReasonDeleting},
		"grace period changed": {old: updateDeployment(), obj: deploy(func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](10)
		}), judge: true},
		"template label changed": {old: updateDeployment(), obj: deploy(func(d *appsv1.Deployment) {
			d.Spec.Template.Labels["app"] = "strict"
		}), judge: true},
		"template annotation (rollout restart)": {old: updateDeployment(), obj: deploy(func(d *appsv1.Deployment) {
			d.Spec.Template.Annotations = map[string]string{"kubectl.kubernetes.io/restartedAt": "now"}
		}), judge: true},
		"image changed": {old: updateDeployment(), obj: deploy(func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].Image = "nginx:2"
		}), judge: true},
		"no old object":            {obj: updateDeployment(), judge: true},
		"CronJob schedule changed": {old: updateCronJob(), obj: func() runtime.Object { c := updateCronJob(); c.Spec.Schedule = "0 4 * * *"; return c }(), reason: ReasonTemplateUnchanged},
		"CronJob suspended":        {old: updateCronJob(), obj: func() runtime.Object { c := updateCronJob(); c.Spec.Suspend = ptr.To(true); return c }(), reason: ReasonTemplateUnchanged},
		"CronJob job template grace": {old: updateCronJob(), obj: func() runtime.Object {
			c := updateCronJob()
			c.Spec.JobTemplate.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](5)
			return c
		}(), judge: true},
		"ReplicationController without template": {old: &corev1.ReplicationController{}, obj: &corev1.ReplicationController{}, reason: ReasonNoTemplate},
		"ReplicationController template added": {old: &corev1.ReplicationController{}, obj: &corev1.ReplicationController{Spec: corev1.ReplicationControllerSpec{
			Template: &updateDeployment().Spec.Template,
		}}, judge: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := JudgeUpdate(tc.old, tc.obj)
			if got.Judge != tc.judge || got.Reason != tc.reason {
				t.Errorf("JudgeUpdate = %+v, want judge=%v reason=%q", got, tc.judge, tc.reason)
			}
		})
	}
}
