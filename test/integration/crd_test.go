package integration

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// TestInvalidPolicy: the API server itself (CRD schema and CEL rules) refuses
// a bad LifecyclePolicy with a message naming the field, and stores nothing.
// test/controlplane covers the rules case by case; this proves it at create.
func TestInvalidPolicy(t *testing.T) {
	cases := map[string]struct {
		spec    v1alpha1.LifecyclePolicySpec
		wantErr []string
	}{
		"two preStop actions": {
			spec: v1alpha1.LifecyclePolicySpec{PreStop: &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{
				Sleep: &v1alpha1.SleepAction{Seconds: 1}, Exec: &v1alpha1.ExecAction{Command: []string{"x"}, BudgetSeconds: ptr.To[int64](1)}}}},
			wantErr: []string{"spec.preStop", "exactly one of sleep, exec or httpGet"},
		},
		"exec preStop without budgetSeconds": {
			spec:    v1alpha1.LifecyclePolicySpec{PreStop: &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Exec: &v1alpha1.ExecAction{Command: []string{"drain"}}}}},
			wantErr: []string{"spec.preStop.exec.budgetSeconds"},
		},
		"negative shutdownSeconds": {
			spec:    v1alpha1.LifecyclePolicySpec{ShutdownSeconds: ptr.To[int64](-1)},
			wantErr: []string{"spec.shutdownSeconds"},
		},
		"unknown validation action": {
			spec:    v1alpha1.LifecyclePolicySpec{Validation: &v1alpha1.Validation{Action: "Block"}},
			wantErr: []string{"spec.validation.action", "Unsupported value"},
		},
		"plain-http cleanup url outside the cluster": {
			spec:    v1alpha1.LifecyclePolicySpec{Cleanup: &v1alpha1.Cleanup{Finalizer: "example.com/release", URL: "http://ipam.example.com/release"}},
			wantErr: []string{"spec.cleanup.url"},
		},
		"cleanup on container exits without Deletion": {
			spec: v1alpha1.LifecyclePolicySpec{Cleanup: &v1alpha1.Cleanup{Finalizer: "example.com/release", URL: "https://ipam.example.com/release",
				When: []v1alpha1.CleanupTrigger{v1alpha1.CleanupOnContainerExit}}},
			wantErr: []string{"spec.cleanup.when", "must include Deletion"},
		},
		"unknown cleanup trigger": {
			spec: v1alpha1.LifecyclePolicySpec{Cleanup: &v1alpha1.Cleanup{Finalizer: "example.com/release", URL: "https://ipam.example.com/release",
				When: []v1alpha1.CleanupTrigger{v1alpha1.CleanupOnDeletion, "Restart"}}},
			wantErr: []string{"spec.cleanup.when[1]", "Unsupported value"},
		},
		"more log lines than the bound": {
			spec:    v1alpha1.LifecyclePolicySpec{ContainerExits: &v1alpha1.ContainerExits{LogLines: 51}},
			wantErr: []string{"spec.containerExits.logLines"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := &v1alpha1.LifecyclePolicy{Spec: tc.spec}
			p.Name = "invalid-" + strings.ToLower(strings.ReplaceAll(name, " ", "-"))
			err := env.c.Create(ctxFor(t), p)
			if err == nil {
				_ = env.c.Delete(ctxFor(t), p)
				t.Fatalf("accepted, want refused with %q", tc.wantErr)
			}
			if !apierrors.IsInvalid(err) {
				t.Errorf("want an Invalid error, got %v", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			if err := env.c.Get(ctxFor(t), client.ObjectKeyFromObject(p), &v1alpha1.LifecyclePolicy{}); !apierrors.IsNotFound(err) {
				t.Errorf("refused policy is stored (get: %v)", err)
			}
		})
	}
}
