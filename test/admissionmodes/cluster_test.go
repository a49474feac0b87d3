// Package admissionmodes runs the engine's golden cases and random pods
// through a real kube-apiserver in both admission modes.
package admissionmodes

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/gracekeeper/gracekeeper/admissionpolicy"
	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
)

// cluster is the control plane the tests of this package share.
var (
	cluster       client.Client
	clusterConfig *rest.Config
	serving       envtest.WebhookInstallOptions
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if !hasShortFlag() {
		if err := controlplane.CheckAssets(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		env := controlplane.New()
		// envtest writes a serving certificate for 127.0.0.1: webhook
		// mode's gracekeeper serves with it.
		env.WebhookInstallOptions = envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1"}
		cfg, err := env.Start()
		if err != nil {
			fmt.Fprintln(os.Stderr, "control plane:", err)
			_ = env.Stop()
			return 1
		}
		defer func() { _ = env.Stop() }()
		clusterConfig = cfg
		serving = env.WebhookInstallOptions
		s, err := clientscheme.New()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if cluster, err = client.New(cfg, client.Options{Scheme: s}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// hasShortFlag: testing.Short() before m.Run (flags are parsed by then in
// TestMain only after testing.Init; os.Args is enough here).
func hasShortFlag() bool {
	for _, a := range os.Args {
		if a == "-test.short" || a == "-test.short=true" {
			return true
		}
	}
	return false
}

func needCluster(t *testing.T) {
	t.Helper()
	controlplane.SkipIfShort(t)
	if cluster == nil {
		t.Fatal("no control plane")
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// createAll creates the objects and removes them when the test ends (no
// garbage collector runs in this control plane).

func createAll(t *testing.T, objs ...client.Object) {
	t.Helper()
	ctx := ctxT(t)
	for _, o := range objs {
		if o == nil || (isNilPtr(o)) {
			continue
		}
		if err := cluster.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
		t.Cleanup(func() {
			if err := cluster.Delete(context.Background(), o); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete %s: %v", o.GetName(), err)
			}
		})
	}
}

func isNilPtr(o client.Object) bool {
	switch x := o.(type) {
	case *admissionregistrationv1.MutatingAdmissionPolicy:
		return x == nil
	case *admissionregistrationv1.MutatingAdmissionPolicyBinding:
		return x == nil
	case *admissionregistrationv1.ValidatingAdmissionPolicy:
		return x == nil
	case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
		return x == nil
	}
	return false
}

// compiledObjects installs what Compile makes of each policy of the set.
func compiledObjects(t *testing.T, pols []v1alpha1.LifecyclePolicy, cfg admissionpolicy.Config) {
	t.Helper()
	for i := range pols {
		o, err := admissionpolicy.Compile(&pols[i], pols, cfg)
		if err != nil {
			t.Fatalf("compile %s: %v", pols[i].Name, err)
		}
		createAll(t, o.VAP, o.VAPBinding)
		if cfg.Mutate {
			createAll(t, o.MAP, o.MAPBinding)
		}
	}
}

// waitEffective waits until admission policies created before it are in
// effect: the API server loads them through informers, so a canary
// policy pair created last is seen by a dry-run create once they all are.
func waitEffective(t *testing.T, mutate bool) {
	t.Helper()
	ns := ensureNamespace(t, "gk-canary", map[string]string{"gracekeeper.dev/ignore": "true"})
	id := fmt.Sprintf("canary-%d", time.Now().UnixNano())
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"gk-canary": id}}
	match := &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
	}}}}
	want := id
	if mutate {
		want = id + " mutated"
	}
	createAll(t,
		&admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: id}, Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: match, Validations: []admissionregistrationv1.Validation{{Expression: "false",
				MessageExpression: fmt.Sprintf("%q + (object.metadata.labels[?'gk-mutated'].orValue('') == 'yes' ? ' mutated' : '')", id)}}}},
		&admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: id}, Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName: id, ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}, MatchResources: &admissionregistrationv1.MatchResources{ObjectSelector: sel}}})
	if mutate {
		createAll(t,
			&admissionregistrationv1.MutatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: id}, Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
				ReinvocationPolicy: admissionregistrationv1.NeverReinvocationPolicy, MatchConstraints: match, Mutations: []admissionregistrationv1.Mutation{{PatchType: admissionregistrationv1.PatchTypeJSONPatch,
					JSONPatch: &admissionregistrationv1.JSONPatch{Expression: "[JSONPatch{op: 'add', path: '/metadata/labels/gk-mutated', value: 'yes'}]"}}}}},
			&admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: id}, Spec: admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{
				PolicyName: id, MatchResources: &admissionregistrationv1.MatchResources{ObjectSelector: sel}}})
	}
	var last error
	err := wait.PollUntilContextTimeout(ctxT(t), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "canary", Namespace: ns, Labels: map[string]string{"gk-canary": id}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
		last = cluster.Create(ctx, p, client.DryRunAll)
		return last != nil && strings.HasSuffix(strings.TrimSpace(last.Error()), want), nil
	})
	if err != nil {
		t.Fatalf("admission policies not in effect after 30s: %v", last)
	}
}

// ensureNamespace creates the namespace or sets its labels (namespaces
// are never deleted here: without a namespace controller they stay
// Terminating).
func ensureNamespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	ctx := ctxT(t)
	ns := &corev1.Namespace{}
	err := cluster.Get(ctx, client.ObjectKey{Name: name}, ns)
	if apierrors.IsNotFound(err) {
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		if err := cluster.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
		return name
	}
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels = map[string]string{corev1.LabelMetadataName: name}
	for k, v := range labels {
		ns.Labels[k] = v
	}
	if err := cluster.Update(ctx, ns); err != nil {
		t.Fatal(err)
	}
	return name
}

func ptr[T any](v T) *T { return &v }

// warningClient is a client whose requests' warnings w collects.
func warningClient(t *testing.T) (client.Client, *warnings) {
	t.Helper()
	w := &warnings{}
	rc := rest.CopyConfig(clusterConfig)
	rc.WarningHandler = w
	c, err := client.New(rc, client.Options{Scheme: cluster.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}
