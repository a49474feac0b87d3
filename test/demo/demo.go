package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/test/integration/install"
)

const demoNamespace = "demo"

// profileLabel selects pods for the library's http-drain policy.
const profileLabel = "gracekeeper.dev/profile"

type demo struct {
	cfg *rest.Config
	c   client.Client
	gk  *gracekeeperProc
	out io.Writer
	// policy is the name of the policy installed.
	policy string
	// admissionMode is webhook or apiserver (serve --admission-mode).
	admissionMode string
}

func newDemo(cl *cluster, gk *gracekeeperProc, out io.Writer, admissionMode string) (*demo, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cl.cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	return &demo{cfg: cl.cfg, c: c, gk: gk, out: out, admissionMode: admissionMode}, nil
}

// install creates gracekeeper's namespace, its webhook configurations as the
// chart renders them (pointed at the local server), the demo namespace and
// the policy, then waits until a probe pod shows the policy in effect.
func (d *demo) install(ctx context.Context, policyFile string) error {
	for _, ns := range []string{install.Namespace, demoNamespace} {
		if err := d.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	wo := install.DefaultOptions()
	wo.AdmissionMode = d.admissionMode
	mut, val, err := install.Webhooks(wo, d.gk.baseURL, d.gk.caBundle)
	if err != nil {
		return err
	}
	for _, o := range []client.Object{mut, val} {
		if err := d.c.Create(ctx, o); err != nil {
			return fmt.Errorf("create %s: %w", o.GetName(), err)
		}
	}
	if err := d.createLegacy(ctx); err != nil {
		return err
	}
	raw, err := os.ReadFile(policyFile)
	if err != nil {
		return err
	}
	pol := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &pol.Object); err != nil {
		return fmt.Errorf("%s: %w", policyFile, err)
	}
	if err := d.c.Create(ctx, pol); err != nil {
		return fmt.Errorf("create policy from %s: %w", policyFile, err)
	}
	d.policy = pol.GetName()
	fmt.Fprintf(d.out, "   policy %s installed from %s\n", pol.GetName(), policyFile)

	// The policy reaches gracekeeper through its informer: wait (dry-run,
	// nothing stored) until a pod is mutated by it.
	probe := pod(demoNamespace, "probe", 30, nil)
	var last error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		p := probe.DeepCopy()
		if last = d.c.Create(ctx, p, client.DryRunAll); last != nil {
			return false, nil
		}
		return p.Annotations[policies.AnnotationPolicies] != "", nil
	})
	if err != nil {
		return fmt.Errorf("policy %s not in effect after 30s (last error: %v)", pol.GetName(), last)
	}
	return nil
}

// warnings collects admission warnings, as kubectl prints them.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(code int, _, text string) {
	if code == 299 && text != "" {
		w.mu.Lock()
		w.msgs = append(w.msgs, text)
		w.mu.Unlock()
	}
}

// showcase is one object the demo creates and what it illustrates.
type showcase struct {
	obj  client.Object
	why  string
	pod  *corev1.Pod // for pods: the pod as submitted, to diff against the stored one
	kind string
}

// pod is an nginx pod labelled for the http-drain policy.
func pod(ns, name string, tgps int64, mutate func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name, profileLabel: "http-drain"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To(tgps),
			Containers:                    []corev1.Container{{Name: "app", Image: "nginx:1.27"}},
		},
	}
	if mutate != nil {
		mutate(p)
	}
	return p
}

func deployment(name string, p *corev1.Pod) *appsv1.Deployment {
	labels := map[string]string{"app": name, profileLabel: "http-drain"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: demoNamespace, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: p.Spec},
		},
	}
}

// slowDrain has its own preStop that sleeps 10 minutes: no grace period the
// policy may fit (maxSeconds) covers it.
func slowDrain(p *corev1.Pod) {
	p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
		Exec: &corev1.ExecAction{Command: []string{"sleep", "600"}}}}
}

func showcases() []showcase {
	mk := func(why string, p *corev1.Pod) showcase {
		return showcase{obj: p, pod: p.DeepCopy(), why: why, kind: "pod"}
	}
	withSidecar := func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "log-shipper", Image: "fluent-bit:3", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}}
	}
	ownHook := func(p *corev1.Pod) {
		p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 3}}}
	}
	optOut := func(p *corev1.Pod) { p.Annotations = map[string]string{policies.AnnotationSkip: "true"} }
	unlabelled := func(p *corev1.Pod) { delete(p.Labels, profileLabel) }
	return []showcase{
		mk("a web pod with a 10s grace period", pod(demoNamespace, "web", 10, nil)),
		mk("a pod with a native sidecar", pod(demoNamespace, "web-with-sidecar", 30, withSidecar)),
		mk("a pod with its own preStop", pod(demoNamespace, "own-hook", 30, ownHook)),
		mk("a pod asking to opt out (the policy allows it)", pod(demoNamespace, "opted-out", 30, optOut)),
		mk("a pod without the gracekeeper.dev/profile label", pod(demoNamespace, "unselected", 30, unlabelled)),
		mk("a pod whose own preStop takes 600s", pod(demoNamespace, "slow-drain", 30, slowDrain)),
		mk("the same pod in kube-system (never touched)", pod(metav1.NamespaceSystem, "system-pod", 30, nil)),
		{obj: deployment("api", pod(demoNamespace, "", 30, nil)), why: "a Deployment whose pods fit", kind: "deployment"},
		{obj: deployment("slow-api", pod(demoNamespace, "", 30, slowDrain)), why: "a Deployment whose pods would be refused", kind: "deployment"},
	}
}

// showcase creates each object and reports what admission did to it.
func (d *demo) showcase(ctx context.Context) error {
	fmt.Fprintln(d.out, "\n=== What gracekeeper did ===")
	var admitted, changed, refused int
	defer func() {
		fmt.Fprintf(d.out, "\n=== %d admitted (%d changed by gracekeeper), %d refused ===\n", admitted, changed, refused)
	}()
	for _, s := range showcases() {
		w := &warnings{}
		cfg := rest.CopyConfig(d.cfg)
		cfg.WarningHandler = w
		c, err := client.New(cfg, client.Options{Scheme: d.c.Scheme()})
		if err != nil {
			return err
		}
		fmt.Fprintf(d.out, "\n%s/%s  (%s, namespace %s)\n", s.kind, s.obj.GetName(), s.why, s.obj.GetNamespace())
		err = c.Create(ctx, s.obj)
		switch {
		case apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || (err != nil && strings.Contains(err.Error(), "denied the request")):
			refused++
			fmt.Fprintf(d.out, "   REFUSED: %s\n", err)
		case err != nil:
			return fmt.Errorf("create %s/%s: %w", s.kind, s.obj.GetName(), err)
		default:
			admitted++
			fmt.Fprintln(d.out, "   admitted")
			if dep, ok := s.obj.(*appsv1.Deployment); ok {
				// Workload templates are validated, not changed: show what
				// its pods will get when the ReplicaSet creates them.
				p := policies.PodFromTemplate(dep, "Deployment", &dep.Spec.Template)
				s.pod = p.DeepCopy()
				if err := d.c.Create(ctx, p, client.DryRunAll); err != nil {
					return fmt.Errorf("dry-run a pod of %s: %w", dep.Name, err)
				}
				fmt.Fprintln(d.out, "   its pods will get (server-side dry run of one):")
				for _, ch := range podChanges(s.pod, p) {
					fmt.Fprintf(d.out, "   + %s\n", ch)
				}
			} else if s.pod != nil {
				stored := &corev1.Pod{}
				if err := d.c.Get(ctx, client.ObjectKeyFromObject(s.obj), stored); err != nil {
					return err
				}
				changes := podChanges(s.pod, stored)
				if len(changes) > 0 {
					changed++
				}
				if len(changes) == 0 {
					fmt.Fprintln(d.out, "   left unchanged")
				}
				for _, ch := range changes {
					fmt.Fprintf(d.out, "   + %s\n", ch)
				}
			}
		}
		for _, m := range w.msgs {
			fmt.Fprintf(d.out, "   Warning: %s\n", m)
		}
	}
	return nil
}
