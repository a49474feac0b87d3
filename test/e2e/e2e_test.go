//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/finalizer"
	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// suite is one run against one cluster.
type suite struct {
	cs         kubernetes.Interface
	c          client.Client
	ns         string // a fresh namespace per run
	run        string // label value that scopes this run's policies
	image      string
	pullPolicy corev1.PullPolicy
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// setup connects to KUBECONFIG's cluster (skipping, with the reason, when
// there is none), checks that gracekeeper is installed and ready, and makes a
// namespace for this run.
func setup(t *testing.T) *suite {
	t.Helper()
	kc := os.Getenv("KUBECONFIG")
	if kc == "" {
		t.Skip("KUBECONFIG is not set: the e2e suite needs a cluster with gracekeeper installed (`make e2e-kind` makes one with kind; needs Docker)")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Skipf("KUBECONFIG %s is unusable: %v", kc, err)
	}
	cfg.Timeout = 30 * time.Second
	cs := kubernetes.NewForConfigOrDie(cfg)
	if _, err := cs.Discovery().ServerVersion(); err != nil {
		t.Skipf("no cluster reachable through KUBECONFIG %s: %v", kc, err)
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
	relNS, rel := env("GRACEKEEPER_E2E_NAMESPACE", "gracekeeper-system"), env("GRACEKEEPER_E2E_RELEASE", "gracekeeper")
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, rel, metav1.GetOptions{}); err != nil {
		t.Fatalf("gracekeeper is not installed as release %q (MutatingWebhookConfiguration: %v); helm install it first, see docs/install.md", rel, err)
	}
	err = wait.PollUntilContextTimeout(ctx, 2*time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(relNS).Get(ctx, rel, metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas >= 1, nil
	})
	if err != nil {
		t.Fatalf("deployment %s/%s never became ready", relNS, rel)
	}

	s := &suite{cs: cs, c: c, run: rand.String(6), image: env("GRACEKEEPER_E2E_TEST_IMAGE", "busybox:1.37"), pullPolicy: corev1.PullIfNotPresent}
	// The repo's local node (test/cluster) has no registry access; it imports this image.
	if os.Getenv("GRACEKEEPER_E2E_TEST_IMAGE") == "" && nodeHasImage(ctx, cs, "gracekeeper.local/testbox:1") {
		s.image, s.pullPolicy = "gracekeeper.local/testbox:1", corev1.PullNever
	}
	s.ns = "gk-e2e-" + s.run
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: s.ns, Labels: map[string]string{"e2e.gracekeeper.dev/run": s.run}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), s.ns, metav1.DeleteOptions{})
	})
	return s
}

func nodeHasImage(ctx context.Context, cs kubernetes.Interface, ref string) bool {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false
	}
	for _, n := range nodes.Items {
		for _, img := range n.Status.Images {
			if slices.Contains(img.Names, ref) || slices.Contains(img.Names, "docker.io/"+ref) {
				return true
			}
		}
	}
	return false
}

// policy creates a LifecyclePolicy for pods of this run's namespace with label case=name,
// and waits until the webhook applies it (server-side dry-run creates run admission).
func (s *suite) policy(t *testing.T, name string, spec v1alpha1.LifecyclePolicySpec) {
	t.Helper()
	ctx := context.Background()
	spec.Match.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"e2e.gracekeeper.dev/run": s.run}}
	spec.Match.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"e2e.gracekeeper.dev/case": name}}
	p := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + s.run + "-" + name}, Spec: spec}
	if err := s.c.Create(ctx, p); err != nil {
		t.Fatalf("create policy: %v", err)
	}
	t.Cleanup(func() { _ = s.c.Delete(context.Background(), p) })
	probe := s.pod(name, "probe", 30, "sleep 1")
	err := wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		out := probe.DeepCopy()
		if err := s.c.Create(ctx, out, client.DryRunAll); err != nil {
			return false, nil
		}
		return strings.Contains(out.Annotations[policies.AnnotationPolicies], p.Name), nil
	})
	if err != nil {
		t.Fatalf("the webhook never applied policy %s (is gracekeeper serving?)", p.Name)
	}
}

// pod is a one-container pod running script under sh, in this run's namespace.
func (s *suite) pod(kase, name string, grace int64, script string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.ns, Labels: map[string]string{"e2e.gracekeeper.dev/case": kase}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To(grace),
			Containers: []corev1.Container{{
				Name: "app", Image: s.image, ImagePullPolicy: s.pullPolicy,
				Command: []string{"sh", "-c", script},
			}},
		},
	}
}

func (s *suite) createRunning(t *testing.T, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	if err := s.c.Create(ctx, p); err != nil {
		t.Fatalf("create pod %s: %v", p.Name, err)
	}
	var got *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		got, err = s.cs.CoreV1().Pods(s.ns).Get(ctx, p.Name, metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("pod %s never ran (phase %s)", p.Name, got.Status.Phase)
	}
	return got
}

// terminatedExit watches pod p from its resourceVersion until its first
// container is terminated and returns the exit code; -1 if the pod was
// deleted with no terminated state.
func (s *suite) terminatedExit(t *testing.T, p *corev1.Pod) int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w, err := s.cs.CoreV1().Pods(s.ns).Watch(ctx, metav1.ListOptions{
		FieldSelector:   "metadata.name=" + p.Name,
		ResourceVersion: p.ResourceVersion,
	})
	if err != nil {
		t.Fatalf("watch pod %s: %v", p.Name, err)
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		got, ok := ev.Object.(*corev1.Pod)
		if !ok {
			t.Fatalf("watch pod %s: %s event %T", p.Name, ev.Type, ev.Object)
		}
		if len(got.Status.ContainerStatuses) > 0 {
			if tm := got.Status.ContainerStatuses[0].State.Terminated; tm != nil {
				return tm.ExitCode
			}
		}
		if ev.Type == watch.Deleted {
			return -1
		}
	}
	t.Fatalf("pod %s: container not terminated within 2m", p.Name)
	return -1
}

// followLogs streams the container's log and sends each line with the time it arrived.
type logLine struct {
	text string
	at   time.Time
}

func (s *suite) followLogs(ctx context.Context, t *testing.T, pod string) <-chan logLine {
	t.Helper()
	return s.followContainer(ctx, t, pod, "")
}

// followContainer follows one container's log ("" for a pod's only one).
func (s *suite) followContainer(ctx context.Context, t *testing.T, pod, container string) <-chan logLine {
	t.Helper()
	rc, err := s.cs.CoreV1().Pods(s.ns).GetLogs(pod, &corev1.PodLogOptions{Follow: true, Container: container}).Stream(ctx)
	if err != nil {
		t.Fatalf("follow logs of %s: %v", pod, err)
	}
	ch := make(chan logLine, 16)
	go func() {
		defer close(ch)
		defer rc.Close()
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			ch <- logLine{sc.Text(), time.Now()}
		}
	}()
	return ch
}

func waitLine(t *testing.T, ch <-chan logLine, prefix string, timeout time.Duration) logLine {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("log ended before a %q line", prefix)
			}
			if strings.HasPrefix(l.text, prefix) {
				return l
			}
		case <-deadline:
			t.Fatalf("no %q line within %s", prefix, timeout)
		}
	}
}

func (s *suite) waitGone(t *testing.T, name string, timeout time.Duration) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		_, err := s.cs.CoreV1().Pods(s.ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		p, _ := s.cs.CoreV1().Pods(s.ns).Get(context.Background(), name, metav1.GetOptions{})
		t.Fatalf("pod %s still exists after %s (finalizers %v): stuck in Terminating", name, timeout, p.Finalizers)
	}
}

// stamp prints a step and the node's /proc/uptime (not namespaced: every
// container on a node reads the same clock, to the hundredth of a second).
const stamp = `stamp() { echo "$1 $(cut -d' ' -f1 /proc/uptime)"; }; `

// uptimeOf reads the uptime a stamp line carries.
func uptimeOf(t *testing.T, l logLine) float64 {
	t.Helper()
	f := strings.Fields(l.text)
	if len(f) < 2 {
		t.Fatalf("bad stamp line %q", l.text)
	}
	v, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		t.Fatalf("bad stamp line %q: %v", l.text, err)
	}
	return v
}

// waitEvent waits for the termination record Event of pod and returns it.
func (s *suite) waitEvent(t *testing.T, p *corev1.Pod) *corev1.Event {
	t.Helper()
	name := finalizer.TerminationEventName(p)
	var ev *corev1.Event
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		e, err := s.cs.CoreV1().Events(s.ns).Get(ctx, name, metav1.GetOptions{})
		ev = e
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("no termination record Event %s/%s", s.ns, name)
	}
	t.Logf("termination record: %s %s: %s", ev.Type, ev.Reason, ev.Message)
	return ev
}

// The container logs its epoch second at start and when SIGTERM arrives.
const trapScript = `trap 'echo TERM $(date +%s); exit 0' TERM; echo START $(date +%s); sleep 3600 & wait`

func TestE2E(t *testing.T) {
	s := setup(t)
	t.Logf("namespace %s, test image %s", s.ns, s.image)

	t.Run("injected native-sleep preStop delays SIGTERM, and the termination-record finalizer is removed", func(t *testing.T) {
		const sleep = 5
		s.policy(t, "prestop", v1alpha1.LifecyclePolicySpec{
			PreStop:         &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: sleep}}},
			ShutdownSeconds: ptr.To[int64](2),
			Finalizers:      []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer},
		})
		p := s.createRunning(t, s.pod("prestop", "prestop", 30, trapScript))
		ls := p.Spec.Containers[0].Lifecycle
		if ls == nil || ls.PreStop == nil || ls.PreStop.Sleep == nil || ls.PreStop.Sleep.Seconds != sleep {
			t.Fatalf("the webhook did not inject preStop sleep %d: %+v", sleep, ls)
		}
		if !slices.Contains(p.Finalizers, string(v1alpha1.TerminationRecordFinalizer)) || p.Labels[policies.LabelFinalize] != "true" {
			t.Fatalf("finalizer/label not added: finalizers %v labels %v", p.Finalizers, p.Labels)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		logs := s.followLogs(ctx, t, p.Name)
		waitLine(t, logs, "START", time.Minute)

		asked := time.Now()
		if err := s.cs.CoreV1().Pods(s.ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// Read the deletion while the preStop still sleeps (the pod may be gone soon after SIGTERM).
		del, err := s.cs.CoreV1().Pods(s.ns).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil || del.DeletionTimestamp == nil || del.DeletionGracePeriodSeconds == nil {
			t.Fatalf("pod not terminating right after delete: %v", err)
		}
		term := waitLine(t, logs, "TERM", 60*time.Second)
		// Client clock: log arrival minus the delete call; latency only adds to it,
		// so the upper bound is the meaningful check there.
		seen := term.at.Sub(asked)
		// Cluster clock: deletionTimestamp = request time + grace period
		// (k8s.io/apiserver/pkg/registry/rest/delete.go BeforeDelete); the node's
		// `date` at SIGTERM minus that request time.
		requested := del.DeletionTimestamp.Add(-time.Duration(*del.DeletionGracePeriodSeconds) * time.Second).Unix()
		termAt, err := strconv.ParseInt(strings.Fields(term.text)[1], 10, 64)
		if err != nil {
			t.Fatalf("bad TERM line %q", term.text)
		}
		delay := termAt - requested
		t.Logf("SIGTERM %ds after the delete request (node clock), log seen after %s", delay, seen.Round(100*time.Millisecond))
		if delay < sleep-1 { // whole seconds on both sides
			t.Errorf("SIGTERM came %ds after deletion; the %ds preStop sleep did not delay it", delay, sleep)
		}
		if seen > (sleep+10)*time.Second {
			t.Errorf("SIGTERM took %s; expected about %ds", seen, sleep)
		}
		s.waitGone(t, p.Name, 90*time.Second)
	})

	t.Run("a shutdown overrun ends in SIGKILL and a termination record that says so", func(t *testing.T) {
		s.policy(t, "overrun", v1alpha1.LifecyclePolicySpec{
			ShutdownSeconds: ptr.To[int64](1),
			Finalizers:      []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer},
		})
		// Ignores SIGTERM, so the kubelet must kill it at the grace deadline.
		p := s.createRunning(t, s.pod("overrun", "overrun", 3, `trap '' TERM; echo START; while true; do sleep 1; done`))
		ctx := context.Background()
		if err := s.cs.CoreV1().Pods(s.ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// Watched from the running pod's resourceVersion, not polled: the
		// record and the finalizer's removal can follow the kubelet's
		// terminated status within milliseconds, so a poll may see the pod
		// only after it is gone. A watch sees every write, the deletion's
		// last state included.
		exit := s.terminatedExit(t, p)
		if exit != 137 {
			t.Errorf("exit code %d, want 137 (SIGKILL at the grace deadline); -1 means the pod was deleted without a terminated status (finalizer missing?)", exit)
		}
		ev := s.waitEvent(t, p)
		if ev.Reason != "ShutdownOverrun" || ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Message, "exit 137") {
			t.Errorf("termination record %s %q: %q; want Warning ShutdownOverrun naming exit 137", ev.Type, ev.Reason, ev.Message)
		}
		s.waitGone(t, p.Name, time.Minute)
	})

	t.Run("an injected exec preStop runs to its end before SIGTERM", func(t *testing.T) {
		const budget = 3
		// The hook writes into PID 1's stdout, the container log (a hook's own
		// output is discarded by the kubelet).
		hook := stamp + `stamp PRESTOP > /proc/1/fd/1; sleep 2; stamp HOOKEND > /proc/1/fd/1`
		s.policy(t, "exec", v1alpha1.LifecyclePolicySpec{
			PreStop: &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Exec: &v1alpha1.ExecAction{
				Command: []string{"sh", "-c", hook}, BudgetSeconds: ptr.To[int64](budget)}}},
			ShutdownSeconds: ptr.To[int64](2),
			Finalizers:      []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer},
		})
		p := s.createRunning(t, s.pod("exec", "exec", 30, stamp+`trap 'stamp TERM; exit 0' TERM; stamp START; sleep 3600 & wait`))
		if ls := p.Spec.Containers[0].Lifecycle; ls == nil || ls.PreStop == nil || ls.PreStop.Exec == nil {
			t.Fatalf("the webhook did not inject the exec preStop: %+v", ls)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		logs := s.followLogs(ctx, t, p.Name)
		waitLine(t, logs, "START", time.Minute)
		if err := s.cs.CoreV1().Pods(s.ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		pre := uptimeOf(t, waitLine(t, logs, "PRESTOP", 30*time.Second))
		end := uptimeOf(t, waitLine(t, logs, "HOOKEND", 30*time.Second))
		term := uptimeOf(t, waitLine(t, logs, "TERM", 30*time.Second))
		t.Logf("preStop ran %.2fs, SIGTERM %.2fs after it began", end-pre, term-pre)
		if term < end {
			t.Errorf("SIGTERM at %.2f before the exec preStop finished at %.2f", term, end)
		}
		if end-pre < 1.9 {
			t.Errorf("the preStop ran %.2fs; its sleep 2 did not run to the end", end-pre)
		}
		s.waitGone(t, p.Name, time.Minute)
	})

	t.Run("a container over its memory limit is recorded as OOMKilled", func(t *testing.T) {
		s.policy(t, "oom", v1alpha1.LifecyclePolicySpec{
			Finalizers: []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer},
		})
		// dd is PID 1 and allocates a 64 MiB buffer against a 32 MiB limit.
		p := s.pod("oom", "oom", 5, "")
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
		p.Spec.Containers[0].Command = []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"}
		p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}
		ctx := context.Background()
		if err := s.c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		var reason string
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			got, err := s.cs.CoreV1().Pods(s.ns).Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil || len(got.Status.ContainerStatuses) == 0 || got.Status.ContainerStatuses[0].State.Terminated == nil {
				return false, nil
			}
			reason = got.Status.ContainerStatuses[0].State.Terminated.Reason
			return true, nil
		})
		if err != nil || reason != "OOMKilled" {
			t.Fatalf("container did not end OOMKilled (reason %q, %v)", reason, err)
		}
		if err := s.cs.CoreV1().Pods(s.ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		ev := s.waitEvent(t, p)
		if ev.Reason != "OOMKilled" || ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Message, "app exit 137 OOMKilled") {
			t.Errorf("termination record %s %q: %q; want Warning OOMKilled naming app exit 137 OOMKilled", ev.Type, ev.Reason, ev.Message)
		}
		s.waitGone(t, p.Name, time.Minute)
	})

	t.Run("a sidecar's shutdown waits for the main container and its injected preStop", func(t *testing.T) {
		const sleep = 3
		// Sidecars get no hook unless includeSidecars: the main container's
		// preStop and shutdown come first (KEP-753 terminates sidecars after
		// every regular container has stopped).
		s.policy(t, "sidecar", v1alpha1.LifecyclePolicySpec{
			PreStop:         &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: sleep}}},
			ShutdownSeconds: ptr.To[int64](2),
			Finalizers:      []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer},
		})
		p := s.pod("sidecar", "sidecar", 30, stamp+`trap 'stamp TERM; sleep 1; stamp EXIT; exit 0' TERM; stamp START; sleep 3600 & wait`)
		side := p.Spec.Containers[0]
		side.Name, side.Command = "side", []string{"sh", "-c", stamp + `trap 'stamp TERM; exit 0' TERM; stamp START; sleep 3600 & wait`}
		side.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		p.Spec.InitContainers = []corev1.Container{side}
		p = s.createRunning(t, p)
		if ls := p.Spec.InitContainers[0].Lifecycle; ls != nil && ls.PreStop != nil {
			t.Fatalf("the sidecar got a preStop without includeSidecars: %+v", ls)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		mainLog, sideLog := s.followContainer(ctx, t, p.Name, "app"), s.followContainer(ctx, t, p.Name, "side")
		start := uptimeOf(t, waitLine(t, mainLog, "START", time.Minute))
		waitLine(t, sideLog, "START", time.Minute)
		asked := time.Now()
		if err := s.cs.CoreV1().Pods(s.ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		termLine := waitLine(t, mainLog, "TERM", time.Minute)
		// Log latency only adds to this, so a short delay means no preStop ran.
		if d := termLine.at.Sub(asked); d < sleep*time.Second-500*time.Millisecond {
			t.Errorf("the main container got SIGTERM %s after the delete; the injected %ds preStop sleep did not delay it", d, sleep)
		}
		mainTerm := uptimeOf(t, termLine)
		mainExit := uptimeOf(t, waitLine(t, mainLog, "EXIT", time.Minute))
		sideTerm := uptimeOf(t, waitLine(t, sideLog, "TERM", time.Minute))
		t.Logf("main TERM %.2fs after start, main exit +%.2fs, sidecar TERM +%.2fs", mainTerm-start, mainExit-mainTerm, sideTerm-mainTerm)
		if sideTerm < mainExit {
			t.Errorf("the sidecar got SIGTERM at %.2f, before the main container exited at %.2f", sideTerm, mainExit)
		}
		s.waitGone(t, p.Name, time.Minute)
	})

	t.Run("helm uninstall leaves no pod stuck", func(t *testing.T) {
		if os.Getenv("GRACEKEEPER_E2E_UNINSTALL") != "1" {
			t.Skip("set GRACEKEEPER_E2E_UNINSTALL=1 (make e2e-kind does) to let the suite helm-uninstall gracekeeper; it uses $HELM or helm on PATH")
		}
		s.policy(t, "uninstall", v1alpha1.LifecyclePolicySpec{
			Finalizers: []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer},
		})
		p := s.createRunning(t, s.pod("uninstall", "uninstall", 5, trapScript))
		if !slices.Contains(p.Finalizers, string(v1alpha1.TerminationRecordFinalizer)) {
			t.Fatalf("finalizer not added: %v", p.Finalizers)
		}
		helm := env("HELM", "helm")
		out, err := exec.Command(helm, "uninstall", env("GRACEKEEPER_E2E_RELEASE", "gracekeeper"),
			"--namespace", env("GRACEKEEPER_E2E_NAMESPACE", "gracekeeper-system"), "--wait", "--timeout", "3m").CombinedOutput()
		if err != nil {
			t.Fatalf("helm uninstall: %v\n%s", err, out)
		}
		// With the controller gone, only the pre-delete hook can have released the finalizer.
		if err := s.cs.CoreV1().Pods(s.ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		s.waitGone(t, p.Name, time.Minute)
		pods, err := s.cs.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range pods.Items {
			for _, f := range q.Finalizers {
				if strings.HasPrefix(f, "gracekeeper.dev/") {
					t.Errorf("pod %s/%s still carries %s after uninstall", q.Namespace, q.Name, f)
				}
			}
		}
	})
}
