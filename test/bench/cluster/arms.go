package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/integration/install"
)

// armLabel on each namespace says which arm's pods it holds; the policies,
// the floor's bindings and the ignore label select namespaces by it.
const armLabel = "bench.gracekeeper.dev/arm"

// Namespaces, one per arm.
const (
	nsNone       = "bench-none"       // ignore label: no admission at all
	nsFloor      = "bench-floor"      // ignore label (no webhook) + the floor's bindings
	nsSelected   = "bench-selected"   // the bench policy selects it
	nsUnselected = "bench-unselected" // no policy selects it
	nsHeld       = "bench-held"       // the held pods of the memory phase
)

// policyName is the bench policy's; gracekeeper records it in the
// gracekeeper.dev/policies annotation, which the floor writes too.
const policyName = "bench"

// benchPolicy: a native-sleep preStop of 5 s on every container, a 10 s
// shutdown, Deny when the budget does not fit. On the bench pod (grace 30 s)
// gracekeeper adds the two hooks and its annotation, nothing else.
func benchPolicy(name, nsArm string, finalizers ...v1alpha1.BuiltinFinalizer) *v1alpha1.LifecyclePolicy {
	return &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.LifecyclePolicySpec{
		Match: v1alpha1.Match{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{armLabel: nsArm}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bench"}},
		},
		PreStop:         &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: 5}}},
		ShutdownSeconds: ptr.To[int64](10),
		Finalizers:      finalizers,
		Validation:      &v1alpha1.Validation{Action: v1alpha1.ActionDeny},
	}}
}

// floorPolicies are the in-process floor, written by hand for the bench
// pod: the MutatingAdmissionPolicy makes gracekeeper's exact change with
// JSONPatch (checked against gracekeeper's own answer before measuring),
// the ValidatingAdmissionPolicy checks the same budget
// (preStop + shutdown <= grace), both bound to the floor namespace.
const floorPolicies = `
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata: {name: bench-floor}
spec:
  failurePolicy: Fail
  reinvocationPolicy: Never
  matchConstraints:
    resourceRules:
      - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"]}
  mutations:
    - patchType: JSONPatch
      jsonPatch:
        expression: >-
          [
            JSONPatch{op: "add", path: "/metadata/annotations", value: {"gracekeeper.dev/policies": "bench"}},
            JSONPatch{op: "add", path: "/spec/containers/0/lifecycle", value: Object.spec.containers.lifecycle{
              preStop: Object.spec.containers.lifecycle.preStop{sleep: Object.spec.containers.lifecycle.preStop.sleep{seconds: 5}}}},
            JSONPatch{op: "add", path: "/spec/containers/1/lifecycle", value: Object.spec.containers.lifecycle{
              preStop: Object.spec.containers.lifecycle.preStop{sleep: Object.spec.containers.lifecycle.preStop.sleep{seconds: 5}}}}
          ]
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata: {name: bench-floor}
spec:
  policyName: bench-floor
  matchResources:
    namespaceSelector: {matchLabels: {bench.gracekeeper.dev/arm: floor}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: bench-floor}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"]}
  validations:
    - expression: >-
        object.spec.containers.all(c, !has(c.lifecycle) || !has(c.lifecycle.preStop) || !has(c.lifecycle.preStop.sleep) ||
        c.lifecycle.preStop.sleep.seconds + 10 <= object.spec.terminationGracePeriodSeconds)
      message: "preStop + shutdown 10s exceeds terminationGracePeriodSeconds"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: bench-floor}
spec:
  policyName: bench-floor
  validationActions: [Deny]
  matchResources:
    namespaceSelector: {matchLabels: {bench.gracekeeper.dev/arm: floor}}
`

// benchPod has two containers, as the measurements do.
func benchPod(ns, name string, grace int64) *corev1.Pod {
	c := func(n string) corev1.Container { return corev1.Container{Name: n, Image: "registry.k8s.io/pause:3.10"} }
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "bench"}},
		Spec:       corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To(grace), Containers: []corev1.Container{c("app"), c("helper")}},
	}
}

// setUp creates the namespaces, gracekeeper's webhook configurations as
// the chart renders them (pointed at s), the floor's admission policies and
// the bench policy.
func setUp(ctx context.Context, c client.Client, s *server) error {
	for name, labels := range map[string]map[string]string{
		install.Namespace: nil,
		nsNone:            {armLabel: "none", install.IgnoreLabel: "true"},
		nsFloor:           {armLabel: "floor", install.IgnoreLabel: "true"},
		nsSelected:        {armLabel: "selected"},
		nsUnselected:      {armLabel: "unselected"},
		nsHeld:            {armLabel: "held"},
	} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}); err != nil {
			return err
		}
	}
	mut, val, err := install.Webhooks(install.DefaultOptions(), s.baseURL(), s.caBundle)
	if err != nil {
		return err
	}
	for _, o := range []client.Object{mut, val} {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("create %s: %w", o.GetName(), err)
		}
	}
	for _, doc := range splitYAML(floorPolicies) {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			return err
		}
		if err := c.Create(ctx, u); err != nil {
			return fmt.Errorf("create the floor's %s: %w", u.GetKind(), err)
		}
	}
	return c.Create(ctx, benchPolicy(policyName, "selected"))
}

// settle waits until the arms behave as measured: the floor and gracekeeper
// (in its current mode) make the same change, none and unselected pods are
// left alone, and an unselected pod costs gracekeeper no call. This is the
// correctness the numbers rest on; it fails the run when it never holds.
func settle(ctx context.Context, c client.Client, s *server) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		got := map[string]*corev1.Pod{}
		for _, ns := range []string{nsNone, nsFloor, nsSelected} {
			p := benchPod(ns, "probe", 30)
			if err := c.Create(ctx, p, client.DryRunAll); err != nil {
				last = fmt.Sprintf("%s: %v", ns, err)
				return false, nil
			}
			got[ns] = p
		}
		if !untouched(got[nsNone]) {
			return false, fmt.Errorf("a pod in %s (ignore label) was changed: %s", nsNone, describe(got[nsNone]))
		}
		if !carriesPolicy(got[nsSelected]) {
			last = "gracekeeper's change not there yet: " + describe(got[nsSelected])
			return false, nil
		}
		if !carriesPolicy(got[nsFloor]) {
			last = "the floor's admission policies not in effect yet: " + describe(got[nsFloor])
			return false, nil
		}
		if !sameChange(got[nsFloor], got[nsSelected]) {
			return false, fmt.Errorf("the floor does not make gracekeeper's change:\n floor:       %s\n gracekeeper: %s", describe(got[nsFloor]), describe(got[nsSelected]))
		}
		// Deny in both: a grace period the budget does not fit is refused.
		for _, ns := range []string{nsFloor, nsSelected} {
			if err := c.Create(ctx, benchPod(ns, "tight", 5), client.DryRunAll); err == nil {
				return false, fmt.Errorf("%s: a pod with grace 5s < preStop 5s + shutdown 10s was admitted", ns)
			}
		}
		before, err := s.podReviews()
		if err != nil {
			return false, err
		}
		p := benchPod(nsUnselected, "probe", 30)
		if err := c.Create(ctx, p, client.DryRunAll); err != nil {
			return false, err
		}
		if !untouched(p) {
			return false, fmt.Errorf("a pod no policy selects was changed: %s", describe(p))
		}
		after, err := s.podReviews()
		if err != nil {
			return false, err
		}
		last = fmt.Sprintf("a pod no policy selects still cost %d webhook calls", after-before)
		return after == before, nil
	})
	if err != nil {
		return fmt.Errorf("arms not ready (%s): %v", last, err)
	}
	return nil
}

func carriesPolicy(p *corev1.Pod) bool {
	return p.Annotations[policies.AnnotationPolicies] == policyName
}

// sameChange: what admission added to the two pods is identical.
func sameChange(a, b *corev1.Pod) bool {
	if !apiequality.Semantic.DeepEqual(a.Annotations, b.Annotations) || !apiequality.Semantic.DeepEqual(a.Finalizers, b.Finalizers) ||
		!apiequality.Semantic.DeepEqual(a.Labels, b.Labels) || *a.Spec.TerminationGracePeriodSeconds != *b.Spec.TerminationGracePeriodSeconds {
		return false
	}
	return slices.EqualFunc(a.Spec.Containers, b.Spec.Containers, func(x, y corev1.Container) bool {
		return x.Name == y.Name && apiequality.Semantic.DeepEqual(x.Lifecycle, y.Lifecycle)
	})
}

func untouched(p *corev1.Pod) bool {
	for _, c := range p.Spec.Containers {
		if c.Lifecycle != nil {
			return false
		}
	}
	return len(p.Annotations) == 0 && len(p.Finalizers) == 0
}

func describe(p *corev1.Pod) string {
	s := fmt.Sprintf("annotations=%v labels=%v finalizers=%v grace=%d", p.Annotations, p.Labels, p.Finalizers, ptr.Deref(p.Spec.TerminationGracePeriodSeconds, -1))
	for _, c := range p.Spec.Containers {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			s += fmt.Sprintf(" %s:preStop sleep %d", c.Name, c.Lifecycle.PreStop.Sleep.Seconds)
		} else {
			s += " " + c.Name + ":no preStop"
		}
	}
	return s
}

// sample is one arm's round: how long n creates took and each one's latency.
type sample struct {
	wall      time.Duration
	latencies []time.Duration
}

// createPods creates n bench pods in ns, named prefix-i, from clients
// concurrent clients; every create must succeed.
func createPods(ctx context.Context, cs *kubernetes.Clientset, ns, prefix string, n, clients int) (sample, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil || firstErr.Load() != nil {
					return
				}
				p := benchPod(ns, fmt.Sprintf("%s-%d", prefix, i), 30)
				t0 := time.Now()
				if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("create %s/%s: %w", ns, p.Name, err))
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	s := sample{wall: time.Since(start), latencies: lat}
	if err, _ := firstErr.Load().(error); err != nil {
		return s, err
	}
	return s, ctx.Err()
}

// clearPods deletes every pod in ns (none has a finalizer or a node, so they go
// at once) and waits until they are gone, outside any measurement.
func clearPods(ctx context.Context, cs *kubernetes.Clientset, ns string) error {
	if err := cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{}); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			return false, err
		}
		return len(l.Items) == 0, nil
	})
}

func splitYAML(s string) []string {
	var out []string
	for _, d := range strings.Split(s, "\n---\n") {
		if strings.TrimSpace(d) != "" {
			out = append(out, d)
		}
	}
	return out
}
