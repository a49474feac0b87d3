package chart

import (
	"context"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/utils/ptr"
)

// TestWorkloadMatchConditions evaluates the chart's matchConditions with
// kube-apiserver's own code (k8s.io/apiserver's CEL environment and
// matcher, compiled as the webhook admission plugin does) on typed
// objects as the API server holds them: an UPDATE is sent only when the pod
// template changed and the object is not being deleted, and no case makes
// the expression fail (which would hand the write to failurePolicy).
func TestWorkloadMatchConditions(t *testing.T) {
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	into(t, find(t, render(t, nil), "ValidatingWebhookConfiguration", "gracekeeper"), &vwc)
	var hook *admissionregistrationv1.ValidatingWebhook
	for i := range vwc.Webhooks {
		if vwc.Webhooks[i].Name == "validate-workloads.gracekeeper.dev" {
			hook = &vwc.Webhooks[i]
		}
	}
	if hook == nil {
		t.Fatal("no validate-workloads webhook")
	}
	// Fail: an evaluation error would show as an error here rather than be ignored.
	hook.FailurePolicy = ptr.To(admissionregistrationv1.Fail)
	compiler := plugincel.NewConditionCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	// As the webhook admission plugin compiles them
	// (k8s.io/apiserver/pkg/admission/plugin/webhook/accessors.go).
	var exprs []plugincel.ExpressionAccessor
	for _, mc := range hook.MatchConditions {
		exprs = append(exprs, &matchconditions.MatchCondition{Name: mc.Name, Expression: mc.Expression})
	}
	// What the API server checks when the configuration is written.
	if errs := compiler.CompileCondition(exprs, plugincel.OptionalVariableDeclarations{HasParams: false, HasAuthorizer: true},
		environment.NewExpressions).CompilationErrors(); len(errs) > 0 {
		t.Fatalf("matchConditions do not compile for a new configuration: %v", errs)
	}
	matcher := matchconditions.NewMatcher(compiler.CompileCondition(exprs,
		plugincel.OptionalVariableDeclarations{HasParams: false, HasAuthorizer: true}, environment.StoredExpressions),
		hook.FailurePolicy, "webhook", "validating", hook.Name)

	deploy := func(f func(d *appsv1.Deployment)) *appsv1.Deployment {
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps", Labels: map[string]string{"app": "web"}},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
					Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](30), Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}}},
		}
		if f != nil {
			f(d)
		}
		return d
	}
	cron := func(f func(c *batchv1.CronJob)) *batchv1.CronJob {
		c := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: "apps"},
			Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: deploy(nil).Spec.Template}}}}
		if f != nil {
			f(c)
		}
		return c
	}
	rc := func(withTemplate bool) *corev1.ReplicationController {
		r := &corev1.ReplicationController{ObjectMeta: metav1.ObjectMeta{Name: "rc", Namespace: "apps"}}
		if withTemplate {
			r.Spec.Template = &deploy(nil).Spec.Template
		}
		return r
	}
	now := metav1.Now()
	apps := func(r string) schema.GroupVersionResource {
		return schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: r}
	}
	tests := map[string]struct {
		op        admission.Operation
		obj, old  runtime.Object
		resource  schema.GroupVersionResource
		wantMatch bool
	}{
		"CREATE":                 {op: admission.Create, obj: deploy(nil), resource: apps("deployments"), wantMatch: true},
		"replicas":               {op: admission.Update, obj: deploy(func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](0) }), old: deploy(nil), resource: apps("deployments")},
		"labels and annotations": {op: admission.Update, obj: deploy(func(d *appsv1.Deployment) { d.Labels["x"] = "y"; d.Annotations = map[string]string{"a": "b"} }), old: deploy(nil), resource: apps("deployments")},
		"foregroundDeletion":     {op: admission.Update, obj: deploy(func(d *appsv1.Deployment) { d.Finalizers = []string{"foregroundDeletion"} }), old: deploy(nil), resource: apps("deployments")},
		"ownerReferences": {op: admission.Update, obj: deploy(func(d *appsv1.Deployment) {
			d.OwnerReferences = []metav1.OwnerReference{{Kind: "X", Name: "x", UID: "u"}}
		}), old: deploy(nil), resource: apps("deployments")},
		"status":                 {op: admission.Update, obj: deploy(func(d *appsv1.Deployment) { d.Status.Replicas = 3 }), old: deploy(nil), resource: apps("deployments")},
		"nil vs empty env":       {op: admission.Update, obj: deploy(func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{} }), old: deploy(nil), resource: apps("deployments")},
		"template grace changed": {op: admission.Update, obj: deploy(func(d *appsv1.Deployment) { d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](5) }), old: deploy(nil), resource: apps("deployments"), wantMatch: true},
		"template label changed": {op: admission.Update, obj: deploy(func(d *appsv1.Deployment) { d.Spec.Template.Labels["v"] = "2" }), old: deploy(nil), resource: apps("deployments"), wantMatch: true},
		"being deleted, template changed": {op: admission.Update, obj: deploy(func(d *appsv1.Deployment) {
			d.DeletionTimestamp = &now
			d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](5)
		}), old: deploy(nil), resource: apps("deployments")},
		"CronJob schedule": {op: admission.Update, obj: cron(func(c *batchv1.CronJob) { c.Spec.Schedule = "0 4 * * *" }), old: cron(nil), resource: schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "cronjobs"}},
		"CronJob job template changed": {op: admission.Update, obj: cron(func(c *batchv1.CronJob) {
			c.Spec.JobTemplate.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](5)
		}), old: cron(nil), resource: schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "cronjobs"}, wantMatch: true},
		"CronJob job spec (not template) changed": {op: admission.Update, obj: cron(func(c *batchv1.CronJob) { c.Spec.JobTemplate.Spec.BackoffLimit = ptr.To[int32](2) }), old: cron(nil),
			resource: schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "cronjobs"}},
		"ReplicationController without template": {op: admission.Update, obj: rc(false), old: rc(false), resource: schema.GroupVersionResource{Version: "v1", Resource: "replicationcontrollers"}},
		"ReplicationController template added":   {op: admission.Update, obj: rc(true), old: rc(false), resource: schema.GroupVersionResource{Version: "v1", Resource: "replicationcontrollers"}, wantMatch: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			gvk := tc.obj.GetObjectKind().GroupVersionKind()
			attr := admission.NewAttributesRecord(tc.obj, tc.old, gvk, "apps", "x", tc.resource, "", tc.op, nil, false, nil)
			va, err := admission.NewVersionedAttributes(attr, gvk, nil)
			if err != nil {
				t.Fatal(err)
			}
			res := matcher.Match(context.Background(), va, nil, nil)
			if res.Error != nil {
				t.Fatalf("matchConditions failed to evaluate: %v", res.Error)
			}
			if res.Matches != tc.wantMatch {
				t.Errorf("sent to the webhook = %v, want %v", res.Matches, tc.wantMatch)
			}
		})
	}
}
