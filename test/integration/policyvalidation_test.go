package integration

import (
	"context"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// TestBadPoliciesRefusedWhenApplied: each policy the API server used to
// accept and the engine could not use (or that broke every pod it matched)
// is refused at create, by the CRD's CEL rules or the policy webhook, with
// the field named, as `kubectl apply` shows it.
func TestBadPoliciesRefusedWhenApplied(t *testing.T) {
	httpGet := func(edit func(*v1alpha1.HTTPGetAction)) v1alpha1.LifecyclePolicySpec {
		g := &v1alpha1.HTTPGetAction{Path: "/drain", Port: intstr.FromInt32(8080), BudgetSeconds: ptr.To[int64](5)}
		edit(g)
		return v1alpha1.LifecyclePolicySpec{PreStop: &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{HTTPGet: g}}}
	}
	expr := func(e metav1.LabelSelectorRequirement) v1alpha1.LifecyclePolicySpec {
		return v1alpha1.LifecyclePolicySpec{Match: v1alpha1.Match{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{e}}}}
	}
	longDomain := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 60) + ".com/release"
	for name, tc := range map[string]struct {
		spec  v1alpha1.LifecyclePolicySpec
		field string
	}{
		"port 0":                 {httpGet(func(g *v1alpha1.HTTPGetAction) { g.Port = intstr.FromInt32(0) }), "spec.preStop.httpGet.port"},
		"header name with space": {httpGet(func(g *v1alpha1.HTTPGetAction) { g.HTTPHeaders = []v1alpha1.HTTPHeader{{Name: "X Drain", Value: "1"}} }), "spec.preStop.httpGet.httpHeaders"},
		"invalid port name":      {httpGet(func(g *v1alpha1.HTTPGetAction) { g.Port = intstr.FromString("Http_Port") }), "spec.preStop.httpGet.port"},
		"finalizer domain > 253": {v1alpha1.LifecyclePolicySpec{Cleanup: &v1alpha1.Cleanup{Finalizer: longDomain, URL: "https://ipam.example.com/release"}}, "spec.cleanup.finalizer"},
		"glob web[":              {v1alpha1.LifecyclePolicySpec{Match: v1alpha1.Match{Containers: []string{"web["}}}, "spec.match.containers[0]"},
		"In with empty values":   {expr(metav1.LabelSelectorRequirement{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{}}), "spec.match.podSelector"},
		"key bad key!":           {expr(metav1.LabelSelectorRequirement{Key: "bad key!", Operator: metav1.LabelSelectorOpExists}), "spec.match.podSelector.matchExpressions[0].key"},
		"Exists with values":     {expr(metav1.LabelSelectorRequirement{Key: "app", Operator: metav1.LabelSelectorOpExists, Values: []string{"x"}}), "spec.match.podSelector"},
	} {
		t.Run(name, func(t *testing.T) {
			p := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "bad-" + strings.NewReplacer(" ", "-", ">", "", "!", "", "[", "").Replace(strings.ToLower(name))}, Spec: tc.spec}
			err := env.c.Create(ctxFor(t), p)
			if err == nil {
				_ = env.c.Delete(ctxFor(t), p)
				t.Fatal("the API server accepted the policy")
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("refused with %q, which does not name %s", err, tc.field)
			}
		})
	}
}

// TestCronJobJudgedAsItsPods: a Deny policy selecting the label the Job
// machinery adds to pods (batch.kubernetes.io/job-name) refuses a CronJob
// and a Job whose pods it would refuse, at apply time.
func TestCronJobJudgedAsItsPods(t *testing.T) {
	ns, scenario := newNamespace(t, nil)
	spec := v1alpha1.LifecyclePolicySpec{
		Match: forScenario(scenario),
		PreStop: &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{
			Exec: &v1alpha1.ExecAction{Command: []string{"drain"}, BudgetSeconds: ptr.To[int64](60)}}},
	}
	spec.Match.PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "batch.kubernetes.io/job-name", Operator: metav1.LabelSelectorOpExists}}}
	createPolicy(t, "jobs-"+scenario, spec)
	tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, TerminationGracePeriodSeconds: ptr.To[int64](30),
		Containers: []corev1.Container{container("step")}}}
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly"}, Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *",
		JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "once"}, Spec: batchv1.JobSpec{Template: tmpl}}
	eventually(t, "CronJob refused", func(ctx context.Context) (bool, string) {
		err := env.c.Create(ctx, cj.DeepCopy(), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "terminationGracePeriodSeconds 30"), errString(err)
	})
	if err := env.c.Create(ctxFor(t), job.DeepCopy(), client.DryRunAll); err == nil || !strings.Contains(err.Error(), "terminationGracePeriodSeconds 30") {
		t.Errorf("Job: %v, want refused for its budget", err)
	}
}
