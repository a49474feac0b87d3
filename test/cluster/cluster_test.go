//go:build e2e

package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/gracekeeper/gracekeeper/test/controlplane"
	"github.com/gracekeeper/gracekeeper/test/images"
)

// holdFinalizer keeps a deleted pod readable until the test has looked at
// how its containers ended. Not in gracekeeper.dev/: the e2e suite checks
// that uninstall leaves none of gracekeeper's finalizers behind.
const holdFinalizer = "e2e.test/hold"

// TestNode brings up the real node (or reuses `make cluster-up`'s) and checks
// what the kubelet really does at shutdown, which the budget model in
// docs/design.md relies on. Every container records /proc/uptime (the same clock
// as this test's) into a hostPath file at each step, so the timings need no
// container logs, which the kubelet removes with a deleted pod.
func TestNode(t *testing.T) {
	cfg := Config{Repo: controlplane.RepoRoot(), Assets: controlplane.AssetsDir(), Out: testWriter{t}}
	if why := Missing(cfg); why != "" {
		t.Skip("skipping the local-node tests: " + why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster ready after %s (started here: %v)", time.Since(start).Round(time.Second), c.Owned)
	t.Cleanup(func() {
		if err := c.Down(context.Background()); err != nil {
			t.Errorf("cluster down: %v", err)
		}
	})

	rc, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(rc)
	ns := newNamespace(ctx, t, cs)
	out := t.TempDir()
	// The container runs as root; the dir must be reachable through the
	// test's 0700 temp dirs.
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	n := node{t: t, cs: cs, ns: ns, out: out}

	t.Run("group", func(t *testing.T) {
		t.Run("native sleep preStop delays SIGTERM by its seconds", func(t *testing.T) {
			t.Parallel()
			// kuberuntime_container.go killContainer: the preStop hook runs first,
			// SIGTERM follows when it returns; KEP-3960 sleep action.
			const preStop = 3
			pod := n.pod("prestop", 30, container("main", trapExit("main")))
			pod.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: preStop}}}
			n.run(ctx, t, pod)
			deleted := n.deleteNow(ctx, t, pod.Name)
			term := n.waitStep(ctx, t, pod.Name, "main", "TERM")
			if d := term - deleted; d < preStop || d > preStop+5 {
				t.Errorf("SIGTERM came %.2fs after the delete; want %ds (the preStop sleep) up to a few seconds more, far below the 30s grace period", d, preStop)
			} else {
				t.Logf("SIGTERM %.2fs after the delete (preStop sleep %ds)", d, preStop)
			}
		})

		t.Run("an exec preStop runs to its end before SIGTERM", func(t *testing.T) {
			t.Parallel()
			// handlers.go runs the exec hook in the container; killContainer waits for it.
			pod := n.pod("exec", 30, container("main", trapExit("main")))
			pod.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
				Command: []string{"sh", "-c", stepFn + "step main PRESTOP; sleep 2; step main PRESTOP-DONE"}}}}
			n.run(ctx, t, pod)
			n.deleteNow(ctx, t, pod.Name)
			term := n.waitStep(ctx, t, pod.Name, "main", "TERM")
			done := n.waitStep(ctx, t, pod.Name, "main", "PRESTOP-DONE")
			start := n.waitStep(ctx, t, pod.Name, "main", "PRESTOP")
			if done-start < 2 || term < done {
				t.Errorf("preStop ran %.2f..%.2f, SIGTERM at %.2f; want the 2s hook to finish before SIGTERM", start, done, term)
			}
		})

		t.Run("a shutdown overrun is SIGKILLed at the grace deadline", func(t *testing.T) {
			t.Parallel()
			// killContainer gives the runtime the grace period left; the runtime
			// sends SIGKILL when it runs out (CRI StopContainer timeout).
			const grace = 4
			script := `trap 'step main TERM' TERM; step main START; while :; do read u _ </proc/uptime; echo $u >/out/main.last; usleep 100000; done`
			pod := n.pod("overrun", grace, container("main", script))
			n.run(ctx, t, pod)
			n.deleteNow(ctx, t, pod.Name)
			term := n.waitStep(ctx, t, pod.Name, "main", "TERM")
			st := n.waitTerminated(ctx, t, pod.Name, "main")
			if st.ExitCode != 137 {
				t.Errorf("exit code %d (%s), want 137: SIGKILL", st.ExitCode, st.Reason)
			}
			last := n.readUptime(t, pod.Name, "main.last")
			if d := last - term; d < grace-0.5 || d > grace+2 {
				t.Errorf("the container last ran %.2fs after SIGTERM; want it killed at the %ds grace deadline", d, grace)
			} else {
				t.Logf("killed %.2fs after SIGTERM (grace %ds), exit %d", d, grace, st.ExitCode)
			}
		})

		t.Run("a pod reaches the API server through the kubernetes Service", func(t *testing.T) {
			t.Parallel()
			// The node lives in its own network namespace: the Service's
			// ClusterIP is DNATed by kube-proxy's rules in that namespace to
			// the API server's address there (the endpoint reconciler
			// publishes --advertise-address). A TCP connect (busybox nc):
			// busybox wget's TLS crashes against the API server.
			svc, err := n.cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			script := `nc -w 10 "$KUBERNETES_SERVICE_HOST" "$KUBERNETES_SERVICE_PORT" </dev/null && echo "$KUBERNETES_SERVICE_HOST" >/out/host`
			pod := n.pod("svc", 5, container("main", script))
			pod.Spec.RestartPolicy = corev1.RestartPolicyNever
			if _, err := n.cs.CoreV1().Pods(n.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { n.release(pod.Name) })
			st := n.waitTerminated(ctx, t, pod.Name, "main")
			host, _ := os.ReadFile(n.file(pod.Name, "host"))
			if st.ExitCode != 0 {
				t.Fatalf("nc to the kubernetes Service from a pod: exit %d (%s); want 0 (connected)", st.ExitCode, st.Reason)
			}
			if got := strings.TrimSpace(string(host)); got != svc.Spec.ClusterIP {
				t.Errorf("the pod dialed %s; want the kubernetes Service's ClusterIP %s", got, svc.Spec.ClusterIP)
			}
		})

		t.Run("a container over its memory limit is OOMKilled", func(t *testing.T) {
			t.Parallel()
			// dd is PID 1 and allocates a 64 MiB buffer against a 32 MiB limit.
			pod := n.pod("oom", 5, corev1.Container{Name: "main", Image: images.TestboxRef, ImagePullPolicy: corev1.PullNever,
				Command:   []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"},
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}}})
			pod.Spec.RestartPolicy = corev1.RestartPolicyNever
			if _, err := n.cs.CoreV1().Pods(n.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { n.release(pod.Name) })
			st := n.waitTerminated(ctx, t, pod.Name, "main")
			if st.Reason != "OOMKilled" || st.ExitCode != 137 {
				t.Errorf("container ended with reason %q exit %d; want OOMKilled exit 137", st.Reason, st.ExitCode)
			}
		})

		t.Run("a sidecar gets SIGTERM only after the main container exited", func(t *testing.T) {
			t.Parallel()
			// KEP-753: sidecars (init containers with restartPolicy Always) are
			// terminated after every regular container has stopped.
			mainScript := `trap 'step main TERM; sleep 2; step main EXIT; exit 0' TERM; step main START; sleep 3600 & wait`
			pod := n.pod("sidecar", 30, container("main", mainScript))
			side := container("side", trapExit("side"))
			side.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
			pod.Spec.InitContainers = []corev1.Container{side}
			n.run(ctx, t, pod)
			n.waitStep(ctx, t, pod.Name, "side", "START")
			n.deleteNow(ctx, t, pod.Name)
			mainExit := n.waitStep(ctx, t, pod.Name, "main", "EXIT")
			sideTerm := n.waitStep(ctx, t, pod.Name, "side", "TERM")
			mainTerm := n.waitStep(ctx, t, pod.Name, "main", "TERM")
			if sideTerm < mainExit {
				t.Errorf("sidecar got SIGTERM at %.2f, before the main container exited at %.2f", sideTerm, mainExit)
			} else {
				t.Logf("main TERM %.2f, main exit +%.2fs, sidecar TERM +%.2fs", mainTerm, mainExit-mainTerm, sideTerm-mainTerm)
			}
		})
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// node runs pods on the real node; each pod gets its own hostPath files
// under out, named after its containers (which are unique per test).
type node struct {
	t   *testing.T
	cs  kubernetes.Interface
	ns  string
	out string
}

// stepFn is prepended to every script: `step NAME WHAT` appends "WHAT
// <uptime>" to /out/NAME.
const stepFn = `step() { read u _ </proc/uptime; echo "$2 $u" >>/out/$1; }; `

// trapExit is the well-behaved container: exits 0 on SIGTERM. A plain
// `sleep` as PID 1 would ignore SIGTERM.
func trapExit(name string) string {
	return fmt.Sprintf(`trap 'step %[1]s TERM; exit 0' TERM; step %[1]s START; sleep 3600 & wait`, name)
}

func container(name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: images.TestboxRef, ImagePullPolicy: corev1.PullNever,
		Command:      []string{"sh", "-c", stepFn + script},
		VolumeMounts: []corev1.VolumeMount{{Name: "out", MountPath: "/out"}}}
}

func (n node) pod(prefix string, grace int64, c corev1.Container) *corev1.Pod {
	dir := filepath.Join(n.out, prefix)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		n.t.Fatal(err)
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: prefix, Namespace: n.ns, Finalizers: []string{holdFinalizer}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To(grace),
			AutomountServiceAccountToken:  ptr.To(false),
			Containers:                    []corev1.Container{c},
			Volumes: []corev1.Volume{{Name: "out", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir}}}},
		},
	}
}

// run creates the pod, waits until its main container has started, and
// arranges for the hold finalizer to be released at the end.
func (n node) run(ctx context.Context, t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if _, err := n.cs.CoreV1().Pods(n.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.release(pod.Name) })
	n.waitStep(ctx, t, pod.Name, pod.Spec.Containers[0].Name, "START")
}

func (n node) release(name string) {
	patch := []byte(`{"metadata":{"finalizers":null}}`)
	_, err := n.cs.CoreV1().Pods(n.ns).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		n.t.Errorf("releasing pod %s: %v", name, err)
	}
}

// deleteNow deletes the pod with its own grace period and returns the
// uptime just before the request.
func (n node) deleteNow(ctx context.Context, t *testing.T, name string) float64 {
	t.Helper()
	at := hostUptime(t)
	if err := n.cs.CoreV1().Pods(n.ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	return at
}

// file is the hostPath file container ctr of pod writes.
func (n node) file(pod, ctr string) string { return filepath.Join(n.out, pod, ctr) }

// waitStep waits for the line "WHAT <uptime>" in the container's file.
func (n node) waitStep(ctx context.Context, t *testing.T, pod, ctr, what string) float64 {
	t.Helper()
	var at float64
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
		b, err := os.ReadFile(n.file(pod, ctr))
		if err != nil {
			return false, nil
		}
		for _, line := range strings.Split(string(b), "\n") {
			if w, v, ok := strings.Cut(line, " "); ok && w == what {
				at, err = strconv.ParseFloat(v, 64)
				return err == nil, err
			}
		}
		return false, nil
	})
	if err != nil {
		b, _ := os.ReadFile(n.file(pod, ctr))
		t.Fatalf("container %s never recorded %s: %v (recorded: %q)", ctr, what, err, b)
	}
	return at
}

func (n node) readUptime(t *testing.T, pod, name string) float64 {
	t.Helper()
	b, err := os.ReadFile(n.file(pod, name))
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// waitTerminated waits until the kubelet reports the container ended.
func (n node) waitTerminated(ctx context.Context, t *testing.T, pod, ctr string) corev1.ContainerStateTerminated {
	t.Helper()
	var st *corev1.ContainerStateTerminated
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := n.cs.CoreV1().Pods(n.ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, s := range p.Status.ContainerStatuses {
			if s.Name == ctr && s.State.Terminated != nil {
				st = s.State.Terminated
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("container %s of pod %s never terminated: %v", ctr, pod, err)
	}
	return *st
}

func hostUptime(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newNamespace(ctx context.Context, t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	// The ignore label keeps an installed gracekeeper (make e2e-local) from
	// adding hooks: these tests measure the kubelet alone.
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "gk-node-test-", Labels: map[string]string{"gracekeeper.dev/ignore": "true"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{}) })
	// The ServiceAccount admission plugin refuses pods until the token
	// controller has made the namespace's default ServiceAccount.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("no default ServiceAccount in %s: %v", ns.Name, err)
	}
	return ns.Name
}
