// Package faults kills gracekeeper's real processes in the middle of real
// traffic through a real kube-apiserver + etcd (test/controlplane) and
// counts what the API server did with every request: nothing lost, nothing
// admitted unjudged when the configuration says so.
package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
	"github.com/gracekeeper/gracekeeper/test/integration/install"
)

const (
	// burst is how many pods each case creates, by clients concurrent clients.
	burst   = 1000
	clients = 4
	// killAt is how many creates have returned when the process is
	// SIGKILLed; it is started again at once, as a restarting pod would be.
	killAt = 300
	// webhookTimeout is the configurations' timeoutSeconds: how long the API
	// server waits for an answer from a process that died mid-request.
	webhookTimeout = 2
	// burstBound bounds each burst; it takes seconds.
	burstBound = 3 * time.Minute
	// injectedSleep is the preStop the policy injects: the mark of a judged pod.
	injectedSleep = 7
)

const scenarioLabel = "test.gracekeeper.dev/scenario"

// TestWebhookKilledMidBurst: `gracekeeper serve` (the built binary) is
// SIGKILLed while clients create 1,000 pods through the API server, and
// started again at once. With failurePolicy Ignore every create
// succeeds and every pod exists (some without the mutation: admitted
// unjudged, which is what Ignore means). With Fail every pod that exists
// carries the mutation, every create that was not admitted failed visibly
// with the API server's webhook error, and no successful create is lost.
func TestWebhookKilledMidBurst(t *testing.T) {
	controlplane.SkipIfShort(t)
	if err := controlplane.CheckAssets(); err != nil {
		t.Fatalf("needs the control-plane binaries (make test builds them): %v", err)
	}
	// envtest logs through controller-runtime's logger; nothing to show here.
	ctrllog.SetLogger(logr.Discard())
	dir := t.TempDir()
	bin := buildGracekeeper(t, dir)

	cp := controlplane.New()
	cfg, err := cp.Start()
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	user, err := cp.AddUser(envtest.User{Name: "gracekeeper", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	scheme, err := clientscheme.New()
	if err != nil {
		t.Fatal(err)
	}
	// No client-side rate limit (client-go's default is 5 QPS): the burst
	// is bounded by count, clients and time instead.
	burstCfg := rest.CopyConfig(cfg)
	burstCfg.QPS, burstCfg.Burst = -1, 0
	c, err := client.New(burstCfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: install.Namespace}}); err != nil {
		t.Fatal(err)
	}

	gk := newServeProc(t, bin, kubeconfig, dir)
	if err := gk.start(ctx); err != nil {
		t.Fatal(err)
	}

	for _, fp := range []admissionregistrationv1.FailurePolicyType{admissionregistrationv1.Ignore, admissionregistrationv1.Fail} {
		t.Run(string(fp), func(t *testing.T) {
			scenario := strings.ToLower(string(fp))
			ns := "kill-" + scenario
			if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{scenarioLabel: scenario}}}); err != nil {
				t.Fatal(err)
			}
			policy := &v1alpha1.LifecyclePolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "kill-" + scenario},
				Spec: v1alpha1.LifecyclePolicySpec{
					Match:           v1alpha1.Match{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{scenarioLabel: scenario}}},
					PreStop:         &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: injectedSleep}}},
					ShutdownSeconds: ptr.To[int64](5),
					Validation:      &v1alpha1.Validation{Action: v1alpha1.ActionDeny},
				},
			}
			if err := c.Create(ctx, policy); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Delete(context.Background(), policy) })
			installWebhooks(t, c, fp, gk, scenario)
			waitJudged(t, c, ns, policy.Name)

			res := runBurst(t, c, ns, gk)
			n := count(t, c, ns, policy.Name, res)
			t.Logf("failurePolicy %s: %d creates by %d clients in %s; SIGKILL after %d returned, restarted and ready %s later (%d returned by then): "+
				"%d admitted with the mutation, %d admitted unjudged, %d refused with the webhook error, %d other errors, %d lost, %d pods exist",
				fp, burst, clients, res.elapsed.Round(10*time.Millisecond), res.killedAfter, res.outage.Round(10*time.Millisecond), res.readyAfter,
				n.mutated, n.unjudged, n.refused, n.otherErr, n.lost, n.exist)
			// Restarted, it judges again.
			waitJudged(t, c, ns, policy.Name)

			// The kill must have landed mid-burst, and been felt: else this
			// proves nothing about a kill.
			if res.killedAfter <= 0 || res.killedAfter >= burst {
				t.Errorf("the kill did not land mid-burst (after %d of %d)", res.killedAfter, burst)
			}
			if n.lost != 0 {
				t.Errorf("%d creates returned success but their pod does not exist", n.lost)
			}
			if n.otherErr != 0 || n.ambiguous != 0 {
				t.Errorf("%d creates failed other than by the webhook call failing, %d failed yet stored: %s", n.otherErr, n.ambiguous, n.firstOther)
			}
			switch fp {
			case admissionregistrationv1.Ignore:
				if n.refused != 0 {
					t.Errorf("failurePolicy Ignore: %d creates refused; first: %s", n.refused, n.firstRefused)
				}
				if n.exist != burst {
					t.Errorf("failurePolicy Ignore: %d pods exist, want all %d", n.exist, burst)
				}
				if n.unjudged == 0 {
					t.Errorf("failurePolicy Ignore: no pod was admitted unjudged while gracekeeper was down: the outage was not felt")
				}
			case admissionregistrationv1.Fail:
				if n.unjudged != 0 {
					t.Errorf("failurePolicy Fail: %d pods admitted without the mutation", n.unjudged)
				}
				if n.refused == 0 {
					t.Errorf("failurePolicy Fail: no create was refused while gracekeeper was down: the outage was not felt")
				}
				if n.exist != n.mutated {
					t.Errorf("failurePolicy Fail: %d pods exist, %d mutated", n.exist, n.mutated)
				}
			}
			if sum := n.mutated + n.unjudged + n.refused + n.otherErr + n.lost; sum != burst {
				t.Errorf("outcomes add up to %d, not %d", sum, burst)
			}
		})
	}
}

// installWebhooks creates the chart's webhook configurations with
// failurePolicy fp, pointed at gk, narrowed to scenario's namespace (so the
// two cases never see each other's configurations), and deletes them when
// the test ends.
func installWebhooks(t *testing.T, c client.Client, fp admissionregistrationv1.FailurePolicyType, gk *serveProc, scenario string) {
	t.Helper()
	mut, val, err := install.Webhooks(install.Options{FailurePolicy: fp, TimeoutSeconds: webhookTimeout}, gk.baseURL(), gk.caBundle)
	if err != nil {
		t.Fatal(err)
	}
	mut.Name += "-" + scenario
	val.Name += "-" + scenario
	only := metav1.LabelSelectorRequirement{Key: scenarioLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{scenario}}
	for i := range mut.Webhooks {
		mut.Webhooks[i].NamespaceSelector.MatchExpressions = append(mut.Webhooks[i].NamespaceSelector.MatchExpressions, only)
	}
	// The LifecyclePolicy webhook is cluster-scoped (no namespaceSelector
	// to narrow it to this scenario) and this test creates no policies
	// through it while gracekeeper is down: leave it out.
	val.Webhooks = slices.DeleteFunc(val.Webhooks, func(w admissionregistrationv1.ValidatingWebhook) bool { return w.NamespaceSelector == nil })
	for i := range val.Webhooks {
		val.Webhooks[i].NamespaceSelector.MatchExpressions = append(val.Webhooks[i].NamespaceSelector.MatchExpressions, only)
	}
	for _, o := range []client.Object{mut, val} {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), o) })
	}
}

// waitJudged waits until a dry-run pod create in ns comes back mutated by
// policy: the configurations and the policy are in effect.
func waitJudged(t *testing.T, c client.Client, ns, policy string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		p := newPod(ns, "probe")
		err := c.Create(context.Background(), p, client.DryRunAll)
		if err == nil && judged(p, policy) {
			return
		}
		last = fmt.Sprintf("err %v, annotations %v", err, p.Annotations)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("policy %s not applied within 30s: %s", policy, last)
}

func newPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			Containers:                    []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
}

// judged reports whether gracekeeper's mutating webhook handled p: the
// policy's preStop and its record of the policies applied.
func judged(p *corev1.Pod, policy string) bool {
	c := p.Spec.Containers[0]
	return strings.Contains(p.Annotations[policies.AnnotationPolicies], policy) &&
		c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil && c.Lifecycle.PreStop.Sleep.Seconds == injectedSleep
}

type burstResult struct {
	errs                    []error // per pod index; nil = created
	killedAfter, readyAfter int64   // creates returned at the kill, and once restarted
	outage, elapsed         time.Duration
}

// runBurst creates burst pods in ns from clients goroutines, SIGKILLs gk
// once killAt creates have returned and starts it again at once.
func runBurst(t *testing.T, c client.Client, ns string, gk *serveProc) burstResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), burstBound)
	defer cancel()
	res := burstResult{errs: make([]error, burst)}
	var returned atomic.Int64
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range burst {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	killNow := make(chan struct{})
	var killOnce sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				err := c.Create(ctx, newPod(ns, fmt.Sprintf("p-%04d", i)))
				res.errs[i] = err
				if returned.Add(1) == killAt {
					killOnce.Do(func() { close(killNow) })
				}
			}
		}()
	}
	faultsDone := make(chan error, 1)
	go func() {
		select {
		case <-killNow:
		case <-ctx.Done():
			faultsDone <- ctx.Err()
			return
		}
		t0 := time.Now()
		gk.kill()
		res.killedAfter = returned.Load()
		err := gk.start(ctx)
		res.outage, res.readyAfter = time.Since(t0), returned.Load()
		faultsDone <- err
	}()
	wg.Wait()
	res.elapsed = time.Since(start)
	if err := <-faultsDone; err != nil {
		t.Fatalf("kill/restart: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the burst did not finish within %s", burstBound)
	}
	return res
}

type counts struct {
	mutated, unjudged, refused, otherErr, lost, ambiguous, exist int
	firstRefused, firstOther                                     string
}

// count compares what each create returned with the pods that exist.
func count(t *testing.T, c client.Client, ns, policy string, res burstResult) counts {
	t.Helper()
	var pods corev1.PodList
	if err := c.List(context.Background(), &pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	byName := map[string]*corev1.Pod{}
	for i := range pods.Items {
		byName[pods.Items[i].Name] = &pods.Items[i]
	}
	n := counts{exist: len(pods.Items)}
	for i, err := range res.errs {
		p, ok := byName[fmt.Sprintf("p-%04d", i)]
		switch {
		case err == nil && !ok:
			n.lost++
		case err == nil && judged(p, policy):
			n.mutated++
		case err == nil:
			n.unjudged++
		case ok:
			// Reported as failed, yet stored: it counts as admitted, judged
			// or not, and as ambiguous.
			if judged(p, policy) {
				n.mutated++
			} else {
				n.unjudged++
			}
			n.ambiguous++
			if n.firstOther == "" {
				n.firstOther = "create failed but the pod exists: " + err.Error()
			}
		case strings.Contains(err.Error(), "failed calling webhook"):
			n.refused++
			if n.firstRefused == "" {
				n.firstRefused = err.Error()
			}
		default:
			n.otherErr++
			if n.firstOther == "" {
				n.firstOther = err.Error()
			}
		}
	}
	return n
}
