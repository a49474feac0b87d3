package finalizer

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// TestReducedRBAC runs the controller as a user that may read and patch
// pods but neither create Events nor read Nodes (an admin trimmed
// gracekeeper's role): the finalizers still go, the records are logged and
// counted as forbidden, and a pod whose node cannot be read is recorded
// after the grace deadline and margin.
func TestReducedRBAC(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	user, err := cp.env.AddUser(envtest.User{Name: "gracekeeper-reduced"}, cp.cfg)
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "gracekeeper-reduced"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"gracekeeper.dev"}, Resources: []string{"lifecyclepolicies"}, Verbs: []string{"get", "list", "watch"}},
	}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "gracekeeper-reduced"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "gracekeeper-reduced"}}}
	if err := c.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, binding); _ = c.Delete(ctx, role) })

	ns := newNamespace(t)
	reg := prometheus.NewRegistry()
	startManagerAs(t, user.Config(), Options{Registerer: reg, NodeGoneMargin: time.Second}, nil)
	never := createPod(t, ns, podSpec{name: "never", grace: 30, finalizers: []string{keep, TerminationRecord}})
	onNode := createPod(t, ns, podSpec{name: "on-node", node: "node-unreadable", grace: 1, finalizers: []string{keep, TerminationRecord}})
	deletePod(t, never)
	deletePod(t, onNode)
	waitFinalizers(t, ns, never.Name, []string{keep}, 10*time.Second)
	start := time.Now()
	waitFinalizers(t, ns, onNode.Name, []string{keep}, 20*time.Second)
	t.Logf("pod on an unreadable node released %v after the first one", time.Since(start).Round(10*time.Millisecond))
	if n := counter(t, reg, "gracekeeper_finalizer_records_unwritten_total", map[string]string{"record": "termination", "reason": RefusedForbidden}); n != 2 {
		t.Errorf("records_unwritten_total{forbidden} = %v, want 2", n)
	}
	if n := counter(t, reg, "gracekeeper_finalizer_pods_recorded_total", map[string]string{"cause": "NodeLost"}); n != 1 {
		t.Errorf("pods_recorded_total{NodeLost} = %v, want 1", n)
	}
	for _, p := range []*corev1.Pod{never, onNode} {
		removeFinalizer(t, p, keep)
	}
}
