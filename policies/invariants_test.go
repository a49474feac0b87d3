package policies

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// TestMutateInvariants walks a grid of policies and pods near the limits and
// checks, for every combination, what must always hold: the input is not
// modified; the output is a pod the API server accepts (no injected sleep
// above the final grace period, no lifecycle on plain init containers);
// fit never lowers the grace period nor raises it above maxSeconds; and a
// second pass changes nothing and says the same.
func TestMutateInvariants(t *testing.T) {
	n := 0
	for _, sleep := range []int64{0, 29, 30, 31, 60, 61} {
		for _, tgps := range []*int64{nil, i64(0), i64(30), i64(45)} {
			for _, fit := range []*v1alpha1.TerminationGracePeriod{nil, {Fit: true, MaxSeconds: i64(40)}, {Fit: true, MaxSeconds: i64(60)}, {Fit: true}} {
				for _, shutdown := range []int64{0, 10, 35} {
					for _, overwrite := range []bool{false, true} {
						for _, own := range []*corev1.Lifecycle{nil, preStopSleep(20), preStopExec("/drain")} {
							n++
							name := fmt.Sprintf("sleep=%d/tgps=%s/fit=%v/shutdown=%d/overwrite=%v/own=%v", sleep, ptrString(tgps), fit != nil, shutdown, overwrite, own != nil)
							s := mustSet(t, pol("p", func(s *v1alpha1.LifecyclePolicySpec) {
								s.Match.IncludeSidecars = true
								s.PreStop = sleepPreStop(sleep)
								s.PreStop.Overwrite = overwrite
								s.PostStart = &v1alpha1.PostStartHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: sleep}}}
								s.ShutdownSeconds = i64(shutdown)
								s.TerminationGracePeriod = fit
							}))
							pod := podWith(nil, "app")
							pod.Spec.TerminationGracePeriodSeconds = tgps
							pod.Spec.Containers[0].Lifecycle = own
							side := sidecar("proxy")
							side.Lifecycle = own.DeepCopy()
							pod.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "i"}, side}
							checkInvariants(t, name, s, pod, fit)
						}
					}
				}
			}
		}
	}
	if n < 1000 {
		t.Fatalf("grid has %d cases", n)
	}
}

func checkInvariants(t *testing.T, name string, s *Set, pod *corev1.Pod, fit *v1alpha1.TerminationGracePeriod) {
	t.Helper()
	in := pod.DeepCopy()
	d := s.Mutate(pod, Namespace{Name: "shop"})
	if !equalPods(in, pod) {
		t.Fatalf("%s: input modified", name)
	}
	out := d.Pod
	final := gracePeriod(&out.Spec)
	before := gracePeriod(&in.Spec)
	if final < before {
		t.Fatalf("%s: grace period lowered %d -> %d", name, before, final)
	}
	if final > before {
		if fit == nil || !fit.Fit {
			t.Fatalf("%s: grace raised without fit", name)
		}
		max := int64(defaultMaxSeconds)
		if fit.MaxSeconds != nil {
			max = *fit.MaxSeconds
		}
		if final > max {
			t.Fatalf("%s: grace %d above maxSeconds %d", name, final, max)
		}
	}
	for _, c := range append(append([]corev1.Container{}, out.Spec.Containers...), out.Spec.InitContainers...) {
		if c.Lifecycle == nil {
			continue
		}
		if c.RestartPolicy == nil && c.Name == "setup" {
			t.Fatalf("%s: lifecycle on a plain init container", name)
		}
		for _, h := range []*corev1.LifecycleHandler{c.Lifecycle.PreStop, c.Lifecycle.PostStart} {
			// The pod's own hooks are the user's; only check what was injected.
			if h != nil && h.Sleep != nil && h.Sleep.Seconds > final && !ownHook(in, c.Name, h) {
				t.Fatalf("%s: injected sleep %d > terminationGracePeriodSeconds %d", name, h.Sleep.Seconds, final)
			}
		}
	}
	again := s.Mutate(out, Namespace{Name: "shop"})
	if again.Changed {
		t.Fatalf("%s: second pass changed the pod", name)
	}
	if fmt.Sprint(again.Findings) != fmt.Sprint(d.Findings) {
		t.Fatalf("%s: second pass findings differ:\n%v\n%v", name, again.Findings, d.Findings)
	}
}

func ownHook(p *corev1.Pod, container string, h *corev1.LifecycleHandler) bool {
	c := findContainer(p, container)
	return c != nil && c.Lifecycle != nil && (equalHandlers(c.Lifecycle.PreStop, h) || equalHandlers(c.Lifecycle.PostStart, h))
}
