package integration

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/integration/install"
	"github.com/gracekeeper/gracekeeper/webhook"
	"github.com/gracekeeper/gracekeeper/webhookconfig"
)

// reviews scrapes how many reviews the API server has sent to each
// admission route so far (the server's request histogram counts every one).
func (g *gracekeeper) reviews(t *testing.T) map[string]uint64 {
	t.Helper()
	resp, err := g.HTTP.Get(g.metricsURL)
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]uint64{}
	for _, m := range families["gracekeeper_webhook_request_duration_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "route" {
				out[l.GetValue()] += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return out
}

// podCalls creates pod for real and returns it as stored and the reviews it
// cost on the pod routes.
func podCalls(t *testing.T, pod *corev1.Pod) (*corev1.Pod, map[string]uint64) {
	t.Helper()
	before := env.gk.reviews(t)
	if err := createPod(t, env.c, pod); err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
	after := env.gk.reviews(t)
	calls := map[string]uint64{}
	for _, r := range []string{webhook.RouteMutatePods, webhook.RouteValidatePods} {
		calls[r] = after[r] - before[r]
	}
	return pod, calls
}

func total(calls map[string]uint64) uint64 {
	var n uint64
	for _, c := range calls {
		n += c
	}
	return n
}

// eventuallyNoCalls creates pods made by mk until one costs no webhook call,
// then checks that two more cost none either: the narrowing reaches the API
// server's webhook informer within propagation.
func eventuallyNoCalls(t *testing.T, what string, mk func(i int) *corev1.Pod) {
	t.Helper()
	i := 0
	eventually(t, what, func(context.Context) (bool, string) {
		i++
		_, calls := podCalls(t, mk(i))
		return total(calls) == 0, fmt.Sprintf("pod %d cost %v", i, calls)
	})
	for range 2 {
		i++
		if p, calls := podCalls(t, mk(i)); total(calls) != 0 || !untouched(p) {
			t.Fatalf("%s: pod %d cost %v after one cost none; stored: %s", what, i, calls, summary(p))
		}
	}
}

func podLabelled(ns, name, app string) *corev1.Pod {
	p := newPod(ns, name, 30, "app")
	p.Labels = map[string]string{"app": app}
	return p
}

// TestNarrowedWebhooks: through the real API server and the chart's webhook
// configurations kept narrowed by gracekeeper, a pod in a namespace no
// policy selects, or with labels no policy selects, costs no webhook call;
// a policy makes the calls for the pods it selects start, a change of its
// selector moves them, a configuration reset to the chart's (helm upgrade)
// is narrowed again, and deleting the policy stops them. The policy webhook
// is never narrowed.
func TestNarrowedWebhooks(t *testing.T) {
	ns, scenario := newNamespace(t, nil)
	eventuallyNoCalls(t, "a namespace no policy selects costs no call", func(i int) *corev1.Pod {
		return podLabelled(ns, fmt.Sprintf("before-%d", i), "web")
	})

	pol := createPolicy(t, "narrow-"+scenario, v1alpha1.LifecyclePolicySpec{
		Match: v1alpha1.Match{
			NamespaceSelector: forScenario(scenario).NamespaceSelector,
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		},
		PreStop:         &v1alpha1.PreStopHook{HookAction: sleepHook(5)},
		ShutdownSeconds: ptr.To[int64](10),
	})
	waitForMutation(t, podLabelled(ns, "probe", "web"), "policy in effect", func(p *corev1.Pod) bool { return preStopSleep(p, "app") == 5 })

	t.Run("a selected pod is mutated and validated", func(t *testing.T) {
		p, calls := podCalls(t, podLabelled(ns, "web-1", "web"))
		if calls[webhook.RouteMutatePods] < 1 || calls[webhook.RouteValidatePods] < 1 {
			t.Errorf("calls %v: want mutate-pods and validate-pods", calls)
		}
		if preStopSleep(p, "app") != 5 {
			t.Errorf("not mutated: %s", summary(p))
		}
	})
	t.Run("a pod the selector does not match costs no call", func(t *testing.T) {
		p, calls := podCalls(t, podLabelled(ns, "other-1", "other"))
		if total(calls) != 0 || !untouched(p) {
			t.Errorf("calls %v, stored %s", calls, summary(p))
		}
	})
	t.Run("the namespaceSelector follows the policies, the policy webhook is left alone", func(t *testing.T) {
		mut := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := env.c.Get(ctxFor(t), client.ObjectKey{Name: env.webhookName}, mut); err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, e := range mut.Webhooks[0].NamespaceSelector.MatchExpressions {
			found = found || (e.Key == scenarioLabel && slices.Contains(e.Values, scenario))
		}
		// Every policy of this suite selects its scenario's namespaces, so
		// the union is "scenario In (...)", unless another test's policy
		// selects every namespace (then there is none, a superset).
		if !found && !anyPolicySelectsEveryNamespace(t) {
			t.Errorf("mutate-pods namespaceSelector %+v: no %s requirement with %s", mut.Webhooks[0].NamespaceSelector, scenarioLabel, scenario)
		}
		val := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := env.c.Get(ctxFor(t), client.ObjectKey{Name: env.webhookName}, val); err != nil {
			t.Fatal(err)
		}
		for _, w := range val.Webhooks {
			if w.Name == "validate-policies.gracekeeper.dev" && (w.NamespaceSelector != nil && len(w.NamespaceSelector.MatchExpressions) > 0 || len(w.MatchConditions) > 0) {
				t.Errorf("the policy webhook was narrowed: %+v %+v", w.NamespaceSelector, w.MatchConditions)
			}
		}
	})

	t.Run("an event with nothing to change writes nothing", func(t *testing.T) {
		mut := &admissionregistrationv1.MutatingWebhookConfiguration{}
		val := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := env.c.Get(ctxFor(t), client.ObjectKey{Name: env.webhookName}, mut); err != nil {
			t.Fatal(err)
		}
		// An annotation on the watched configuration is an event for the
		// controller, which recomputes and finds nothing to write.
		if err := env.c.Get(ctxFor(t), client.ObjectKey{Name: env.webhookName}, val); err != nil {
			t.Fatal(err)
		}
		if val.Annotations == nil {
			val.Annotations = map[string]string{}
		}
		val.Annotations["test.gracekeeper.dev/touched"] = scenario
		if err := env.c.Update(ctxFor(t), val); err != nil {
			t.Fatal(err)
		}
		// A write, were there one, follows the event within milliseconds.
		// The API server keeps the resourceVersion of an update that changes
		// nothing, so this catches a rewrite that changes the content (say,
		// the chart's order of excluded namespaces against ours);
		// TestNarrowValidating checks that no update is even sent.
		time.Sleep(2 * time.Second)
		after := &admissionregistrationv1.MutatingWebhookConfiguration{}
		afterVal := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		for _, o := range []client.Object{after, afterVal} {
			if err := env.c.Get(ctxFor(t), client.ObjectKey{Name: env.webhookName}, o); err != nil {
				t.Fatal(err)
			}
		}
		if after.ResourceVersion != mut.ResourceVersion || afterVal.ResourceVersion != val.ResourceVersion {
			t.Errorf("rewritten with nothing to change: mutating %s -> %s, validating %s -> %s",
				mut.ResourceVersion, after.ResourceVersion, val.ResourceVersion, afterVal.ResourceVersion)
		}
	})

	// The selector moves from app=web to app=api.
	eventually(t, "policy updated", func(ctx context.Context) (bool, string) {
		cur := &v1alpha1.LifecyclePolicy{}
		if err := env.c.Get(ctx, client.ObjectKeyFromObject(pol), cur); err != nil {
			return false, err.Error()
		}
		cur.Spec.Match.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}
		if err := env.c.Update(ctx, cur); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	waitForMutation(t, podLabelled(ns, "probe", "api"), "new selector in effect", func(p *corev1.Pod) bool { return preStopSleep(p, "app") == 5 })
	t.Run("after a selector change the old pods cost no call, the new ones are mutated", func(t *testing.T) {
		eventuallyNoCalls(t, "app=web after the change", func(i int) *corev1.Pod {
			return podLabelled(ns, fmt.Sprintf("web-after-%d", i), "web")
		})
		p, calls := podCalls(t, podLabelled(ns, "api-1", "api"))
		if calls[webhook.RouteMutatePods] < 1 || preStopSleep(p, "app") != 5 {
			t.Errorf("calls %v, stored %s", calls, summary(p))
		}
	})

	t.Run("a configuration reset to the chart's is narrowed again", func(t *testing.T) {
		mut, _, err := install.Webhooks(install.DefaultOptions(), env.gk.BaseURL, env.caBundle)
		if err != nil {
			t.Fatal(err)
		}
		cur := &admissionregistrationv1.MutatingWebhookConfiguration{}
		err = wait.PollUntilContextTimeout(ctxFor(t), 50*time.Millisecond, propagation, true, func(ctx context.Context) (bool, error) {
			if err := env.c.Get(ctx, client.ObjectKey{Name: env.webhookName}, cur); err != nil {
				return false, err
			}
			cur.Webhooks = mut.Webhooks
			err := env.c.Update(ctx, cur)
			return err == nil, client.IgnoreNotFound(ignoreConflict(err))
		})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "narrowed again", func(ctx context.Context) (bool, string) {
			if err := env.c.Get(ctx, client.ObjectKey{Name: env.webhookName}, cur); err != nil {
				return false, err.Error()
			}
			for _, c := range cur.Webhooks[0].MatchConditions {
				if c.Name == webhookconfig.ConditionName {
					return true, ""
				}
			}
			return false, fmt.Sprintf("matchConditions %+v", cur.Webhooks[0].MatchConditions)
		})
	})

	if err := env.c.Delete(ctxFor(t), pol); err != nil {
		t.Fatal(err)
	}
	t.Run("with the policy deleted, no call", func(t *testing.T) {
		eventuallyNoCalls(t, "no policy for app=api", func(i int) *corev1.Pod {
			return podLabelled(ns, fmt.Sprintf("api-after-%d", i), "api")
		})
		var list v1alpha1.LifecyclePolicyList
		if err := env.c.List(ctxFor(t), &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) > 0 {
			t.Logf("%d other policies exist: not checking the no-policy condition", len(list.Items))
			return
		}
		eventually(t, "no-policy condition", func(ctx context.Context) (bool, string) {
			mut := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := env.c.Get(ctx, client.ObjectKey{Name: env.webhookName}, mut); err != nil {
				return false, err.Error()
			}
			conds := mut.Webhooks[0].MatchConditions
			return len(conds) == 1 && conds[0].Expression == "false", fmt.Sprintf("%+v", conds)
		})
		// A workload costs no call either: validate-workloads is narrowed too.
		before := env.gk.reviews(t)[webhook.RouteValidateWorkloads]
		if err := env.c.Create(ctxFor(t), newDeployment(ns, "no-policy", 30)); err != nil {
			t.Fatal(err)
		}
		if n := env.gk.reviews(t)[webhook.RouteValidateWorkloads] - before; n != 0 {
			t.Errorf("a Deployment with no policy cost %d validate-workloads calls", n)
		}
	})
}

func ignoreConflict(err error) error {
	if apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func anyPolicySelectsEveryNamespace(t *testing.T) bool {
	var list v1alpha1.LifecyclePolicyList
	if err := env.c.List(ctxFor(t), &list); err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		s := p.Spec.Match.NamespaceSelector
		if s == nil || len(s.MatchLabels)+len(s.MatchExpressions) == 0 {
			return true
		}
	}
	return false
}
