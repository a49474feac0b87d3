package integration

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// kubectl runs the kubectl built with the control plane against it.
func kubectl(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.kubectl, append([]string{"--kubeconfig", env.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// TestDryRun: server-side dry-run (kubectl apply --dry-run=server, or
// dryRun=All) runs our webhooks, which declare sideEffects None, shows the
// mutated pod and the refusals, and persists nothing.
func TestDryRun(t *testing.T) {
	ns, scenario := newNamespace(t, nil)
	createPolicy(t, "dryrun-"+scenario, v1alpha1.LifecyclePolicySpec{
		Match:           forScenario(scenario),
		PreStop:         &v1alpha1.PreStopHook{HookAction: sleepHook(7)},
		ShutdownSeconds: ptr.To[int64](10),
		Finalizers:      []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer},
		Validation:      &v1alpha1.Validation{Action: v1alpha1.ActionDeny},
	})
	waitForMutation(t, newPod(ns, "probe", 30, "app"), "policy in effect", func(p *corev1.Pod) bool { return preStopSleep(p, "app") == 7 })

	t.Run("our webhooks declare sideEffects None, so the API server calls them on dry runs", func(t *testing.T) {
		// Without None (or NoneOnDryRun) the API server refuses every dry-run
		// request they match (apiserver pkg/admission/plugin/webhook/generic/webhook.go).
		mut := &admissionregistrationv1.MutatingWebhookConfiguration{}
		val := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := env.c.Get(ctxFor(t), client.ObjectKey{Name: env.webhookName}, mut); err != nil {
			t.Fatal(err)
		}
		if err := env.c.Get(ctxFor(t), client.ObjectKey{Name: env.webhookName}, val); err != nil {
			t.Fatal(err)
		}
		check := func(name string, se *admissionregistrationv1.SideEffectClass) {
			if se == nil || *se != admissionregistrationv1.SideEffectClassNone {
				t.Errorf("webhook %s: sideEffects %v, want None", name, se)
			}
		}
		for _, w := range mut.Webhooks {
			check(w.Name, w.SideEffects)
		}
		for _, w := range val.Webhooks {
			check(w.Name, w.SideEffects)
		}
		if len(mut.Webhooks)+len(val.Webhooks) != len(webhook.Routes()) {
			t.Errorf("%d webhooks installed, want %d", len(mut.Webhooks)+len(val.Webhooks), len(webhook.Routes()))
		}
	})

	t.Run("dryRun=All returns the mutated pod and stores nothing", func(t *testing.T) {
		got, err := dryRunPod(ctxFor(t), newPod(ns, "dry", 30, "app"))
		if err != nil {
			t.Fatal(err)
		}
		if preStopSleep(got, "app") != 7 || len(got.Finalizers) == 0 {
			t.Errorf("dry-run result not mutated: %s", summary(got))
		}
		if err := env.c.Get(ctxFor(t), client.ObjectKeyFromObject(got), &corev1.Pod{}); !apierrors.IsNotFound(err) {
			t.Errorf("dry-run pod was stored (get: %v)", err)
		}
	})

	t.Run("kubectl apply --dry-run=server shows the injected hook and stores nothing", func(t *testing.T) {
		manifest, err := yaml.Marshal(withKind(newPod(ns, "kubectl-dry", 30, "app")))
		if err != nil {
			t.Fatal(err)
		}
		out, stderr, err := kubectl(t, string(manifest), "apply", "--dry-run=server", "-o", "yaml", "-f", "-")
		if err != nil {
			t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, stderr)
		}
		var got corev1.Pod
		if err := yaml.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("kubectl output: %v\n%s", err, out)
		}
		if preStopSleep(&got, "app") != 7 {
			t.Errorf("kubectl dry-run output not mutated: %s", summary(&got))
		}
		if _, stderr, err := kubectl(t, "", "get", "pod", "-n", ns, "kubectl-dry"); err == nil || !strings.Contains(stderr, "NotFound") {
			t.Errorf("dry-run pod was stored: err=%v stderr=%s", err, stderr)
		}
	})

	t.Run("kubectl apply --dry-run=server shows the refusal", func(t *testing.T) {
		// preStop 7 + shutdown 10 = 17 > 12.
		manifest, err := yaml.Marshal(withKind(newPod(ns, "kubectl-tight", 12, "app")))
		if err != nil {
			t.Fatal(err)
		}
		_, stderr, err := kubectl(t, string(manifest), "apply", "--dry-run=server", "-f", "-")
		if err == nil {
			t.Fatal("kubectl dry-run admitted a pod that does not fit")
		}
		if want := `container "app": preStop 7s + shutdown 10s = 17s > terminationGracePeriodSeconds 12s`; !strings.Contains(stderr, want) {
			t.Errorf("kubectl stderr %q does not contain %q", stderr, want)
		}
	})
}

func withKind(p *corev1.Pod) *corev1.Pod {
	p.APIVersion, p.Kind = "v1", "Pod"
	return p
}
