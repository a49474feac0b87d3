package integration

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// connCounter is a loopback listener that counts the connections made to
// it: a request gracekeeper should never make.
type connCounter struct {
	l net.Listener
	n atomic.Int64
}

func newConnCounter(t *testing.T) *connCounter {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &connCounter{l: l}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			c.n.Add(1)
			conn.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return c
}

// closedLoopbackURL is an https URL on a loopback port nothing listens on.
func closedLoopbackURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "https://" + addr + "/release"
}

// TestPodAuthorHasLeastPrivilege: a user who may only create, update,
// delete (and get) pods in one namespace cannot, through gracekeeper, make
// a request leave the cluster (forged cleanup records, finalize labels,
// cleanup finalizers, a record edited by a pod UPDATE the webhook never
// sees), hold a pod Terminating past its policy's give-up, or skip a Deny
// policy with the skip and duration annotations.
func TestPodAuthorHasLeastPrivilege(t *testing.T) {
	ctx := ctxFor(t)
	ns, scenario := newNamespace(t, nil)
	const user = "pod-author"
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pod-author"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create", "update", "delete", "get"}}}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pod-author"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-author"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}}}
	for _, o := range []client.Object{role, binding} {
		if err := env.c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	asUser := rest.CopyConfig(env.cfg)
	asUser.Impersonate = rest.ImpersonationConfig{UserName: user}
	author := kubernetes.NewForConfigOrDie(asUser).CoreV1().Pods(ns)
	track := func(name string) {
		t.Cleanup(func() { releasePod(t, client.ObjectKey{Namespace: ns, Name: name}) })
	}

	counter := newConnCounter(t)
	stolen := "https://" + counter.l.Addr().String() + "/steal"
	const giveUp = 5
	strict := forScenario(scenario)
	strict.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "strict"}}
	createPolicy(t, "lp-strict-"+scenario, v1alpha1.LifecyclePolicySpec{Match: strict, ShutdownSeconds: ptr.To[int64](45),
		Validation: &v1alpha1.Validation{Action: v1alpha1.ActionDeny}})
	cleanup := forScenario(scenario)
	cleanup.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cleanup"}}
	createPolicy(t, "lp-cleanup-"+scenario, v1alpha1.LifecyclePolicySpec{Match: cleanup,
		Cleanup: &v1alpha1.Cleanup{Finalizer: "example.com/release", URL: closedLoopbackURL(t), TimeoutSeconds: 1, GiveUpAfterSeconds: ptr.To[int64](giveUp)}})

	pod := func(name, app string) *corev1.Pod {
		p := newPod(ns, name, 30, "app")
		p.Labels["app"] = app
		return p
	}

	t.Run("cannot skip a Deny policy with annotations", func(t *testing.T) {
		p := pod("sneaky", "strict")
		p.Annotations = map[string]string{policies.AnnotationSkip: "true", policies.AnnotationShutdownSeconds: "0", policies.AnnotationPreStopSeconds: "0"}
		// Wait until the policy is in force (a dry run is denied), then try for real.
		eventually(t, "the Deny policy in force", func(ctx context.Context) (bool, string) {
			_, err := author.Create(ctx, p.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return apierrors.IsForbidden(err) && strings.Contains(fmt.Sprint(err), "gracekeeper"), fmt.Sprint(err)
		})
		_, err := author.Create(ctx, p, metav1.CreateOptions{})
		if err == nil {
			track(p.Name)
		}
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "shutdown 45s") {
			t.Fatalf("a pod annotated out of the Deny policy was not denied by its budget: %v", err)
		}
	})

	t.Run("forged cleanup record on a pod no policy matches", func(t *testing.T) {
		p := pod("forged", "forged")
		p.Labels[policies.LabelFinalize] = "true"
		p.Finalizers = []string{"example.com/steal", string(v1alpha1.TerminationRecordFinalizer)}
		p.Annotations = map[string]string{policies.AnnotationCleanup: `[{"policy":"lp-cleanup-` + scenario + `","finalizer":"example.com/steal","url":"` + stolen + `","timeoutSeconds":60,"giveUpAfterSeconds":0}]`}
		if _, err := author.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		track(p.Name)
		if err := author.Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("cleanup record rewritten by a pod UPDATE, then deleted: gone by the policy's give-up", func(t *testing.T) {
		p := pod("rewritten", "cleanup")
		var created *corev1.Pod
		eventually(t, "the cleanup policy's finalizer added", func(ctx context.Context) (bool, string) {
			_ = author.Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
			releasePod(t, client.ObjectKey{Namespace: ns, Name: p.Name})
			got, err := author.Create(ctx, p.DeepCopy(), metav1.CreateOptions{})
			if err != nil {
				return false, err.Error()
			}
			created = got
			return strings.Contains(strings.Join(got.Finalizers, ","), "example.com/release"), fmt.Sprint(got.Finalizers)
		})
		track(p.Name)
		if created.Annotations == nil {
			created.Annotations = map[string]string{}
		}
		created.Annotations[policies.AnnotationCleanup] = `[{"policy":"lp-cleanup-` + scenario + `","finalizer":"example.com/release","url":"` + stolen + `","timeoutSeconds":60,"giveUpAfterSeconds":0}]`
		if _, err := author.Update(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("the author's UPDATE: %v", err)
		}
		deleted := time.Now()
		if err := author.Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// The policy gives up after 5s; allow for requeue backoff and watch latency.
		limit := giveUp*time.Second + 30*time.Second
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, limit, true, func(ctx context.Context) (bool, error) {
			_, err := author.Get(ctx, p.Name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			got, _ := author.Get(ctx, p.Name, metav1.GetOptions{})
			t.Fatalf("pod still Terminating %s after deletion (policy give-up %ds); finalizers %v", time.Since(deleted).Round(time.Second), giveUp, got.Finalizers)
		}
	})

	// Give the controller time to act on the forged pod, then count.
	time.Sleep(3 * time.Second)
	if n := counter.n.Load(); n != 0 {
		t.Fatalf("gracekeeper made %d connection(s) to a URL only a pod author named", n)
	}
}
