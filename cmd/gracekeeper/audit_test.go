package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
)

// auditReader is the ClusterRole `gracekeeper audit` needs: get and list,
// nothing else. The test runs the command as a user bound to it, so a write
// would fail the run.
var auditReader = rbacv1.ClusterRole{
	ObjectMeta: metav1.ObjectMeta{Name: "gracekeeper-audit-reader"},
	Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "namespaces", "replicationcontrollers"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets", "daemonsets", "replicasets"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"gracekeeper.dev"}, Resources: []string{"lifecyclepolicies"}, Verbs: []string{"get", "list"}},
	},
}

func auditDeployment(ns, name string, tgps int64) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To(tgps),
					Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
}

func auditPod(ns, name string, tgps int64) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To(tgps),
			Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}
}

// TestAuditCommand runs `gracekeeper audit` against a real kube-apiserver
// (no webhook installed: the objects exist before any policy, as on a
// cluster gracekeeper is being introduced to), as a user who may only get
// and list, and checks its table and exit code as the policy goes from
// none to Audit to Deny.
func TestAuditCommand(t *testing.T) {
	controlplane.SkipIfShort(t)
	if err := controlplane.CheckAssets(); err != nil {
		t.Fatalf("needs the control-plane binaries (make test builds them): %v", err)
	}
	cp := controlplane.New()
	cfg, err := cp.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver + etcd: %v", err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	scheme, err := clientscheme.New()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	role := auditReader.DeepCopy()
	must(admin.Create(ctx, role))
	must(admin.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "auditor"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "auditor"}},
	}))
	user, err := cp.AddUser(envtest.User{Name: "auditor"}, nil)
	must(err)
	kc, err := user.KubeConfig()
	must(err)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	must(os.WriteFile(kubeconfig, kc, 0o600))

	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "shop"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "other"}},
	} {
		must(admin.Create(ctx, ns))
	}
	must(admin.Create(ctx, auditDeployment("shop", "roomy", 60)))
	must(admin.Create(ctx, auditDeployment("shop", "tight", 30)))
	must(admin.Create(ctx, auditPod("shop", "lone", 30)))
	must(admin.Create(ctx, auditPod("other", "elsewhere", 30)))

	audit := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"audit", "--kubeconfig", kubeconfig}, args...), nil, &out, &errOut)
		return out.String(), errOut.String(), code
	}
	const msg = `container "app": preStop 25s + shutdown 10s = 35s > terminationGracePeriodSeconds 30s; raise it to at least 35 or shorten the preStop`

	tests := []struct {
		desc     string
		action   v1alpha1.ValidationAction // "" = no policy
		args     []string
		wantCode int
		want     []string // lines, in order, of stdout
	}{
		{desc: "no policy: everything passes", args: []string{"-n", "shop"}, wantCode: 0, want: []string{
			"PASS: 3 objects (3 reviewed, 0 changed) against 0 policies: 0 denied, 0 warnings, 0 audit findings",
		}},
		{desc: "Audit policy: findings, still exit 0", action: v1alpha1.ActionAudit, args: []string{"-A"}, wantCode: 0, want: []string{
			"AUDIT pod/lone (namespace shop) " + msg + "  [policy shop-drain, BudgetExceeded]",
			"AUDIT deployment/tight (namespace shop) " + msg + "  [policy shop-drain, BudgetExceeded]",
			"PASS: 4 objects (4 reviewed, 3 changed) against 1 policy: 0 denied, 0 warnings, 2 audit findings",
		}},
		{desc: "Deny policy: denials, exit 1", action: v1alpha1.ActionDeny, args: []string{"--all-namespaces"}, wantCode: 1, want: []string{
			"DENY  pod/lone (namespace shop) " + msg + "  [policy shop-drain, BudgetExceeded]",
			"DENY  deployment/tight (namespace shop) " + msg + "  [policy shop-drain, BudgetExceeded]",
			"FAIL: 4 objects (4 reviewed, 3 changed) against 1 policy: 2 denied, 0 warnings, 0 audit findings",
		}},
		{desc: "Deny policy, a namespace it does not select", action: v1alpha1.ActionDeny, args: []string{"--namespace", "other"}, wantCode: 0, want: []string{
			"PASS: 1 object (1 reviewed, 0 changed) against 1 policy: 0 denied, 0 warnings, 0 audit findings",
		}},
	}
	pol := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "shop-drain"}}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if tc.action != "" {
				spec := v1alpha1.LifecyclePolicySpec{
					Match:           v1alpha1.Match{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "shop"}}},
					PreStop:         &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: 25}}},
					ShutdownSeconds: ptr.To[int64](10),
					Validation:      &v1alpha1.Validation{Action: tc.action},
				}
				if pol.ResourceVersion == "" {
					pol.Spec = spec
					must(admin.Create(ctx, pol))
				} else {
					must(admin.Get(ctx, client.ObjectKeyFromObject(pol), pol))
					pol.Spec = spec
					must(admin.Update(ctx, pol))
				}
			}
			out, errOut, code := audit(tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.wantCode, errOut)
			}
			got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("stdout:\n%s\nwant:\n%s\nstderr:\n%s", out, strings.Join(tc.want, "\n"), errOut)
			}
		})
	}

	t.Run("nothing was written", func(t *testing.T) {
		// The auditor may only get and list (a write would have made a run
		// fail); and the objects still carry no hook.
		var d appsv1.Deployment
		must(admin.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "tight"}, &d))
		if d.Generation != 1 || d.Spec.Template.Spec.Containers[0].Lifecycle != nil {
			t.Errorf("deployment/tight changed: generation %d, lifecycle %v", d.Generation, d.Spec.Template.Spec.Containers[0].Lifecycle)
		}
	})

	t.Run("an unknown context is exit 2", func(t *testing.T) {
		_, errOut, code := audit("--context", "nope")
		if code != 2 || !strings.Contains(errOut, `context "nope"`) {
			t.Errorf("exit %d, stderr %q; want 2 naming the context", code, errOut)
		}
	})
}
