package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/gracekeeper/gracekeeper/admissionpolicy"
	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
)

// TestReleaseFinalizersCommand runs `gracekeeper release-finalizers` as the
// chart's hook does, against a real API server, on a pod in a namespace being
// deleted (its Events are refused): exit 0, the finalizers gone, the records
// on stderr, and the cleanup looked up in its policy (then tried: nothing
// listens on 127.0.0.1:1).
func TestReleaseFinalizersCommand(t *testing.T) {
	controlplane.SkipIfShort(t)
	if err := controlplane.CheckAssets(); err != nil {
		t.Fatal(err)
	}
	env := controlplane.New()
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	scheme, err := clientscheme.New()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pol := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "ipam"}, Spec: v1alpha1.LifecyclePolicySpec{
		Cleanup: &v1alpha1.Cleanup{Finalizer: "example.com/release-ip", URL: "https://127.0.0.1:1/release", TimeoutSeconds: 1, GiveUpAfterSeconds: ptr.To[int64](600)}}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "going"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "going",
		Labels:      map[string]string{policies.LabelFinalize: "true"},
		Annotations: map[string]string{policies.AnnotationCleanup: `[{"policy":"ipam","finalizer":"example.com/release-ip"}]`},
		Finalizers:  []string{"gracekeeper.dev/termination-record", "example.com/release-ip"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "x"}}}}
	for _, o := range []client.Object{pol, ns, pod} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// What apiserver mode compiled from the policy must go first: it
	// would add finalizers nobody removes after the uninstall.
	objs, err := admissionpolicy.Compile(pol, nil, admissionpolicy.Config{Mutate: true})
	if err != nil {
		t.Fatal(err)
	}
	compiled := []client.Object{objs.VAP, objs.VAPBinding, objs.MAP, objs.MAPBinding}
	for _, o := range compiled {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, ns); err != nil { // Terminating for good: no namespace controller here
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"release-finalizers", "--kubeconfig", kubeconfig}, nil, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err == nil {
		t.Errorf("pod still there with finalizers %v", pod.Finalizers)
	}
	for _, o := range compiled {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); !apierrors.IsNotFound(err) {
			t.Errorf("compiled %T %s still there: %v", o, o.GetName(), err)
		}
	}
	for _, want := range []string{`"refusal":"namespace_terminating"`, `"record":"termination"`, `"record":"cleanup_abandoned"`, "failed during `gracekeeper release-finalizers`"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %s:\n%s", want, stderr.String())
		}
	}
	if strings.Contains(stderr.String(), "could not be looked up") {
		t.Errorf("the policy was not read:\n%s", stderr.String())
	}
	t.Logf("stdout: %s", stdout.String())
}
