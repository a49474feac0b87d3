package chart

import (
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// TestNoControllerWritesRegistered: no webhook registers a subresource
// (scale: kubectl scale and the HPA; status: every controller) or a
// wildcard that would include one, and the workload webhook is only sent
// UPDATEs that change the pod template of an object not being deleted
// (matchConditions; their effect is proven against kube-apiserver in
// test/integration TestControllerWritesPass).
func TestNoControllerWritesRegistered(t *testing.T) {
	for name, values := range modes() {
		t.Run(name, func(t *testing.T) {
			objs := render(t, values)
			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			into(t, find(t, objs, "MutatingWebhookConfiguration", "gracekeeper"), &mwc)
			var vwc admissionregistrationv1.ValidatingWebhookConfiguration
			into(t, find(t, objs, "ValidatingWebhookConfiguration", "gracekeeper"), &vwc)
			rules := map[string][]admissionregistrationv1.RuleWithOperations{}
			for _, w := range mwc.Webhooks {
				rules[w.Name] = w.Rules
			}
			var workloads *admissionregistrationv1.ValidatingWebhook
			for i, w := range vwc.Webhooks {
				rules[w.Name] = w.Rules
				if w.Name == "validate-workloads.gracekeeper.dev" {
					workloads = &vwc.Webhooks[i]
				}
			}
			for wh, rs := range rules {
				for _, r := range rs {
					for _, res := range r.Resources {
						if strings.ContainsAny(res, "/*") {
							t.Errorf("%s registers %q: subresources (scale, status) are controller writes", wh, res)
						}
					}
				}
			}
			if workloads == nil {
				t.Fatal("no validate-workloads webhook")
			}
			if len(workloads.MatchConditions) != 1 {
				t.Fatalf("validate-workloads matchConditions = %+v, want the template-changed condition", workloads.MatchConditions)
			}
			expr := workloads.MatchConditions[0].Expression
			for _, want := range []string{"request.operation != 'UPDATE'", "deletionTimestamp", "spec.?template", "jobTemplate"} {
				if !strings.Contains(expr, want) {
					t.Errorf("matchCondition %q lacks %q", expr, want)
				}
			}
		})
	}
}
