package check

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// TestCheckAgreesWithWebhookOnEveryKind: for every workload kind of the
// registry and policies selecting on controller labels, `check` and the
// validating webhook refuse or admit the same objects with the same
// messages: both judge the template as its pods through the same code.
func TestCheckAgreesWithWebhookOnEveryKind(t *testing.T) {
	policy := func(name string, action v1alpha1.ValidationAction, sel metav1.LabelSelectorRequirement) v1alpha1.LifecyclePolicy {
		return v1alpha1.LifecyclePolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "gracekeeper.dev/v1alpha1", Kind: "LifecyclePolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.LifecyclePolicySpec{
				Match:      v1alpha1.Match{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{sel}}},
				PreStop:    &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Exec: &v1alpha1.ExecAction{Command: []string{"drain"}, BudgetSeconds: ptr.To[int64](40)}}},
				Validation: &v1alpha1.Validation{Action: action},
			},
		}
	}
	pols := []v1alpha1.LifecyclePolicy{
		policy("deployments", v1alpha1.ActionDeny, metav1.LabelSelectorRequirement{Key: "pod-template-hash", Operator: metav1.LabelSelectorOpExists}),
		policy("revisions", v1alpha1.ActionDeny, metav1.LabelSelectorRequirement{Key: "controller-revision-hash", Operator: metav1.LabelSelectorOpIn, Values: []string{"abc"}}),
		policy("jobs", v1alpha1.ActionWarn, metav1.LabelSelectorRequirement{Key: "batch.kubernetes.io/job-name", Operator: metav1.LabelSelectorOpExists}),
	}
	dir := t.TempDir()
	var docs []string
	for _, p := range pols {
		b, err := yaml.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	polFile := filepath.Join(dir, "policies.yaml")
	if err := os.WriteFile(polFile, []byte(strings.Join(docs, "---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	checker, err := New(context.Background(), Options{Namespace: "shop"}, []string{polFile})
	if err != nil {
		t.Fatal(err)
	}
	set, fs := policies.NewSet(policies.Config{}, pols)
	if len(fs) > 0 {
		t.Fatal(fs)
	}
	srv, err := webhook.NewServer(webhook.Config{DrainDelay: -1}, webhook.StaticSource{Policies: set}, prometheus.NewRegistry(), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		denied bool
		warned bool
	}{
		"Deployment": {denied: true}, "StatefulSet": {denied: true}, "DaemonSet": {denied: true},
		"ReplicaSet": {}, "ReplicationController": {}, "Job": {warned: true}, "CronJob": {warned: true},
	}
	for _, k := range policies.Kinds() {
		t.Run(k.GVK.Kind, func(t *testing.T) {
			obj := k.New()
			if rc, ok := obj.(*corev1.ReplicationController); ok {
				rc.Spec.Template = &corev1.PodTemplateSpec{}
			}
			obj.GetObjectKind().SetGroupVersionKind(k.GVK)
			meta := obj.(metav1.Object)
			meta.SetName("w")
			meta.SetNamespace("shop")
			tmpl, _ := k.Template(obj)
			tmpl.Labels = map[string]string{"app": "w"}
			tmpl.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
			tmpl.Spec.Containers = []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}
			js, err := json.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}

			f := filepath.Join(dir, k.Resource+".json")
			if err := os.WriteFile(f, js, 0o600); err != nil {
				t.Fatal(err)
			}
			res, err := checker.Check([]string{f}, nil)
			if err != nil {
				t.Fatal(err)
			}
			o := res.Objects[0]
			var checkDeny, checkWarn []string
			for _, f := range o.Findings {
				switch f.Action {
				case v1alpha1.ActionDeny:
					checkDeny = append(checkDeny, f.Message)
				case v1alpha1.ActionWarn:
					checkWarn = append(checkWarn, f.Message)
				}
			}

			review, _ := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": map[string]any{
				"uid": "u", "kind": map[string]string{"group": k.GVK.Group, "version": k.GVK.Version, "kind": k.GVK.Kind},
				"namespace": "shop", "name": "w", "operation": "CREATE", "object": json.RawMessage(js)}})
			code, out, _ := srv.Review(context.Background(), webhook.RouteValidateWorkloads, review)
			if code != http.StatusOK {
				t.Fatalf("webhook HTTP %d: %s", code, out)
			}
			var resp struct {
				Response struct {
					Allowed  bool     `json:"allowed"`
					Warnings []string `json:"warnings"`
					Status   struct {
						Message string `json:"message"`
					} `json:"status"`
				} `json:"response"`
			}
			if err := json.Unmarshal(out, &resp); err != nil {
				t.Fatal(err)
			}
			w := want[k.GVK.Kind]
			if o.Denied() != w.denied || resp.Response.Allowed == w.denied {
				t.Errorf("check denied=%v, webhook allowed=%v; want denied=%v", o.Denied(), resp.Response.Allowed, w.denied)
			}
			if (len(checkWarn) > 0) != w.warned {
				t.Errorf("check warnings %v, want warned=%v", checkWarn, w.warned)
			}
			if msg := "gracekeeper: " + strings.Join(checkDeny, "; "); len(checkDeny) > 0 && resp.Response.Status.Message != msg {
				t.Errorf("webhook message %q, check says %q", resp.Response.Status.Message, msg)
			}
			if !slices.Equal(resp.Response.Warnings, checkWarn) {
				t.Errorf("webhook warnings %q, check warnings %q", resp.Response.Warnings, checkWarn)
			}
		})
	}
}

// TestMirrorPodFinding: check leaves a mirror pod as it is and says so.
func TestMirrorPodFinding(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(pol, []byte("apiVersion: gracekeeper.dev/v1alpha1\nkind: LifecyclePolicy\nmetadata: {name: all}\nspec:\n  preStop: {sleep: {seconds: 5}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pod := filepath.Join(dir, "pod.yaml")
	if err := os.WriteFile(pod, []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd-node1\n  namespace: shop\n  annotations: {kubernetes.io/config.mirror: abc}\nspec:\n  containers: [{name: etcd, image: etcd}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(context.Background(), Options{}, []string{pol})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Check([]string{pod}, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := res.Objects[0]
	if o.Changed || len(o.Findings) != 1 || o.Findings[0].Reason != policies.ReasonMirrorPod {
		t.Errorf("changed=%v findings %+v, want unchanged with a MirrorPod finding", o.Changed, o.Findings)
	}
}
