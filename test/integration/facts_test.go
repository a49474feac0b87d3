package integration

import (
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/test/integration/install"
)

// TestAPIServerFacts proves the kube-apiserver rules gracekeeper relies on
// (docs/kubernetes-facts.md), by dry-run creates in a namespace gracekeeper's
// webhooks skip, and that the engine's own check of a mutated pod
// (policies.PodRuleErrors) refuses exactly what the API server refuses.
func TestAPIServerFacts(t *testing.T) {
	ns, _ := newNamespace(t, map[string]string{install.IgnoreLabel: "true"})
	base := func() *corev1.Pod { return newPod(ns, "fact", 30, "web") }
	sleep := func(s int64) *corev1.Lifecycle {
		return &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: s}}}
	}
	httpGet := func(port intstr.IntOrString, header string) *corev1.Lifecycle {
		g := &corev1.HTTPGetAction{Path: "/", Port: port, Scheme: corev1.URISchemeHTTP}
		if header != "" {
			g.HTTPHeaders = []corev1.HTTPHeader{{Name: header}}
		}
		return &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: g}}
	}
	for name, tc := range map[string]struct {
		edit  func(*corev1.Pod)
		field string // "" = accepted
	}{
		"sleep equal to the grace period is accepted": {func(p *corev1.Pod) { p.Spec.Containers[0].Lifecycle = sleep(30) }, ""},
		"sleep 0 is accepted":                         {func(p *corev1.Pod) { p.Spec.Containers[0].Lifecycle = sleep(0) }, ""},
		"sleep over the grace period is refused":      {func(p *corev1.Pod) { p.Spec.Containers[0].Lifecycle = sleep(31) }, "spec.containers[0].lifecycle.preStop.sleep"},
		"lifecycle on a plain init container is refused": {func(p *corev1.Pod) {
			c := container("init")
			c.Lifecycle = sleep(1)
			p.Spec.InitContainers = []corev1.Container{c}
		}, "spec.initContainers[0].lifecycle"},
		"lifecycle on a native sidecar is accepted": {func(p *corev1.Pod) {
			c := container("side")
			c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
			c.Lifecycle = sleep(1)
			p.Spec.InitContainers = []corev1.Container{c}
		}, ""},
		"httpGet port 0 is refused":           {func(p *corev1.Pod) { p.Spec.Containers[0].Lifecycle = httpGet(intstr.FromInt32(0), "") }, "spec.containers[0].lifecycle.preStop.httpGet.port"},
		"httpGet port name Http_Port refused": {func(p *corev1.Pod) { p.Spec.Containers[0].Lifecycle = httpGet(intstr.FromString("Http_Port"), "") }, "spec.containers[0].lifecycle.preStop.httpGet.port"},
		"httpGet header with a space refused": {func(p *corev1.Pod) { p.Spec.Containers[0].Lifecycle = httpGet(intstr.FromInt32(80), "X Drain") }, "spec.containers[0].lifecycle.preStop.httpGet.httpHeaders"},
		"httpGet port name http accepted":     {func(p *corev1.Pod) { p.Spec.Containers[0].Lifecycle = httpGet(intstr.FromString("http"), "X-Drain") }, ""},
		"finalizer with domain > 253 refused": {func(p *corev1.Pod) { p.Finalizers = []string{strings.Repeat("a.", 127) + "com/x"} }, "metadata.finalizers"},
		"finalizer with domain 253 accepted":  {func(p *corev1.Pod) { p.Finalizers = []string{strings.Repeat("a.", 125) + "com/x"} }, ""},
	} {
		t.Run(name, func(t *testing.T) {
			before := base()
			after := before.DeepCopy()
			tc.edit(after)
			err := env.c.Create(ctxFor(t), after.DeepCopy(), client.DryRunAll)
			engine := policies.PodRuleErrors(before, after)
			if tc.field == "" {
				if err != nil || len(engine) != 0 {
					t.Errorf("API server: %v; engine: %v; want both to accept", err, engine)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("API server: %v, want a refusal naming %s", err, tc.field)
			}
			if len(engine) == 0 || !strings.Contains(engine.ToAggregate().Error(), tc.field) {
				t.Errorf("engine: %v, want a refusal naming %s", engine, tc.field)
			}
		})
	}

	t.Run("a negative grace period is stored as 1 (SetDefaults_Pod)", func(t *testing.T) {
		p := base()
		p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](-1)
		if err := env.c.Create(ctxFor(t), p, client.DryRunAll); err != nil {
			t.Fatal(err)
		}
		if g := p.Spec.TerminationGracePeriodSeconds; g == nil || *g != 1 {
			t.Errorf("terminationGracePeriodSeconds %v, want 1", g)
		}
	})

	t.Run("a Job's template gets job-name and controller-uid unless manualSelector (registry strategy)", func(t *testing.T) {
		tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{container("step")}}}
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "labels"}, Spec: batchv1.JobSpec{Template: tmpl}}
		if err := env.c.Create(ctxFor(t), job, client.DryRunAll); err != nil {
			t.Fatal(err)
		}
		k, _ := policies.KindOf(&batchv1.Job{})
		for _, l := range k.PodLabels(&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "labels"}}) {
			got, ok := job.Spec.Template.Labels[l.Key]
			if !ok || (l.Known && got != l.Value) {
				t.Errorf("template label %s = %q (present %v); the registry says known=%v value %q", l.Key, got, ok, l.Known, l.Value)
			}
		}
		if len(job.Spec.Template.Labels) != 4 {
			t.Errorf("template labels %v, want the 4 the registry names", job.Spec.Template.Labels)
		}
	})
}
