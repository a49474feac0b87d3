package integration

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// TestBudget: a pod whose shutdown budget does not fit its grace period is
// refused (Deny), admitted with a warning kubectl shows (Warn), or admitted
// and only counted (Audit), as its policy says.
func TestBudget(t *testing.T) {
	// preStop 20 + shutdown 15 = 35 > 30, and no fit: the pod cannot fit.
	const wantMsg = `container "app": preStop 20s + shutdown 15s = 35s > terminationGracePeriodSeconds 30s`
	cases := map[string]struct {
		action      v1alpha1.ValidationAction
		wantRefused bool
		wantWarning bool
		wantAudit   bool
	}{
		"Deny refuses the pod with our message":         {action: v1alpha1.ActionDeny, wantRefused: true},
		"Warn admits it with a kubectl-visible warning": {action: v1alpha1.ActionWarn, wantWarning: true},
		"Audit admits it silently and counts it":        {action: v1alpha1.ActionAudit, wantAudit: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ns, scenario := newNamespace(t, nil)
			pol := createPolicy(t, "budget-"+strings.ToLower(string(tc.action))+"-"+scenario, v1alpha1.LifecyclePolicySpec{
				Match:           forScenario(scenario),
				PreStop:         &v1alpha1.PreStopHook{HookAction: sleepHook(20)},
				ShutdownSeconds: ptr.To[int64](15),
				Validation:      &v1alpha1.Validation{Action: tc.action},
			})
			// A fitting pod shows the policy is in effect before the real attempt.
			waitForMutation(t, newPod(ns, "fits", 60, "app"), "policy in effect", func(p *corev1.Pod) bool { return preStopSleep(p, "app") == 20 })
			auditBefore := env.gk.auditCount(t, pol.Name)

			c, warns := clientWithWarnings(t)
			err := createPod(t, c, newPod(ns, "tight", 30, "app"))
			if tc.wantRefused {
				if err == nil {
					t.Fatal("pod admitted, want refused")
				}
				if !strings.Contains(err.Error(), `admission webhook "validate-pods.gracekeeper.dev" denied the request`) {
					t.Errorf("error is not our validating webhook's denial: %v", err)
				}
				if !strings.Contains(err.Error(), wantMsg) {
					t.Errorf("error %q does not contain %q", err, wantMsg)
				}
			} else if err != nil {
				t.Fatalf("pod refused, want admitted: %v", err)
			}

			var found bool
			for _, w := range warns.all() {
				if strings.Contains(w, wantMsg) {
					found = true
				}
			}
			if found != tc.wantWarning {
				t.Errorf("warning containing %q: got %v, want %v (warnings: %q)", wantMsg, found, tc.wantWarning, warns.all())
			}

			if tc.wantWarning {
				// What a user sees: kubectl prints admission warnings on stderr.
				manifest, err := yaml.Marshal(withKind(newPod(ns, "tight-kubectl", 30, "app")))
				if err != nil {
					t.Fatal(err)
				}
				_, stderr, err := kubectl(t, string(manifest), "create", "--dry-run=server", "-f", "-")
				if err != nil {
					t.Fatalf("kubectl create --dry-run=server: %v\n%s", err, stderr)
				}
				if !strings.Contains(stderr, "Warning: "+wantMsg) {
					t.Errorf("kubectl stderr %q does not show the warning %q", stderr, wantMsg)
				}
			}

			after := env.gk.auditCount(t, pol.Name)
			if tc.wantAudit && after <= auditBefore {
				t.Errorf("audit count for %s: %v before, %v after; want it to grow", pol.Name, auditBefore, after)
			}
			if !tc.wantAudit && after != auditBefore {
				t.Errorf("audit count for %s changed %v -> %v for action %s", pol.Name, auditBefore, after, tc.action)
			}
		})
	}
}
