package policies

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

func TestMerge(t *testing.T) {
	high := pol("high", func(s *v1alpha1.LifecyclePolicySpec) {
		s.Priority = 10
		s.ShutdownSeconds = i64(7)
		s.Finalizers = []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer}
		s.Cleanup = &v1alpha1.Cleanup{Finalizer: "a.example.com/x", URL: "https://high"}
	})
	lowA := pol("a-low", func(s *v1alpha1.LifecyclePolicySpec) {
		s.ShutdownSeconds = i64(99)
		s.TerminationGracePeriod = &v1alpha1.TerminationGracePeriod{Fit: true}
		s.Validation = &v1alpha1.Validation{Action: v1alpha1.ActionWarn}
		s.Cleanup = &v1alpha1.Cleanup{Finalizer: "a.example.com/x", URL: "https://low"}
	})
	lowB := pol("b-low", func(s *v1alpha1.LifecyclePolicySpec) {
		s.TerminationGracePeriod = &v1alpha1.TerminationGracePeriod{Fit: false, MaxSeconds: i64(10)}
		s.Validation = &v1alpha1.Validation{Action: v1alpha1.ActionAudit}
		s.Finalizers = []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer}
		s.Cleanup = &v1alpha1.Cleanup{Finalizer: "b.example.com/y", URL: "https://b", TimeoutSeconds: 9, GiveUpAfterSeconds: i64(0)}
	})
	// Input order must not matter.
	for name, order := range map[string][]v1alpha1.LifecyclePolicy{
		"given in merge order":   {high, lowA, lowB},
		"given in reverse order": {lowB, lowA, high},
	} {
		t.Run(name, func(t *testing.T) {
			s := mustSet(t, order...)
			m := merge(s.selectPolicies(podWith(nil, "c"), Namespace{Name: "shop"}, nil))
			if got := m.names(); !reflect.DeepEqual(got, []string{"high", "a-low", "b-low"}) {
				t.Fatalf("order %v", got)
			}
			if *m.shutdown != 7 || m.shutdownFrom != "high" {
				t.Errorf("shutdown %d from %s, want 7 from high", *m.shutdown, m.shutdownFrom)
			}
			if !m.fit || m.maxSecs != defaultMaxSeconds || m.fitFrom != "a-low" {
				t.Errorf("fit %v max %d from %s, want true 300 from a-low (tie broken by name)", m.fit, m.maxSecs, m.fitFrom)
			}
			if m.action != v1alpha1.ActionWarn || m.actionFrom != "a-low" {
				t.Errorf("action %s from %s", m.action, m.actionFrom)
			}
			if want := []string{"a.example.com/x", "b.example.com/y", "gracekeeper.dev/termination-record"}; !reflect.DeepEqual(m.finalizers, want) {
				t.Errorf("finalizers %v, want %v", m.finalizers, want)
			}
			want := []CleanupRecord{
				{Policy: "high", Finalizer: "a.example.com/x", URL: "https://high", TimeoutSeconds: 5, GiveUpAfterSeconds: 600},
				{Policy: "b-low", Finalizer: "b.example.com/y", URL: "https://b", TimeoutSeconds: 9, GiveUpAfterSeconds: 0},
			}
			if !reflect.DeepEqual(m.cleanups, want) {
				t.Errorf("cleanups %+v, want %+v", m.cleanups, want)
			}
		})
	}
	t.Run("no policy sets validation: Deny", func(t *testing.T) {
		m := merge(mustSet(t, pol("x", nil)).pols)
		if m.action != v1alpha1.ActionDeny {
			t.Fatalf("action %s", m.action)
		}
	})
	t.Run("per container: highest policy that selects it", func(t *testing.T) {
		s := mustSet(t,
			pol("web", func(s *v1alpha1.LifecyclePolicySpec) {
				s.Priority = 5
				s.Match.Containers = []string{"web"}
				s.PreStop = sleepPreStop(9)
			}),
			pol("all", func(s *v1alpha1.LifecyclePolicySpec) { s.PreStop = sleepPreStop(2) }))
		d := s.Mutate(podWith(nil, "web", "db"), Namespace{Name: "shop"})
		got := []int64{d.Pod.Spec.Containers[0].Lifecycle.PreStop.Sleep.Seconds, d.Pod.Spec.Containers[1].Lifecycle.PreStop.Sleep.Seconds}
		if !reflect.DeepEqual(got, []int64{9, 2}) {
			t.Fatalf("preStop sleeps %v, want [9 2]", got)
		}
	})
}

// TestHookSkipNearLimit: kube-apiserver v1.37.2 accepts a sleep equal to
// terminationGracePeriodSeconds and 0, refuses one above it.
func TestHookSkipNearLimit(t *testing.T) {
	cases := map[string]struct {
		sleep    int64
		tgps     *int64
		tgp      *v1alpha1.TerminationGracePeriod
		injected bool
		wantTGPS *int64
		reasons  []Reason
	}{
		"equal to the default 30 is injected":  {sleep: 30, injected: true, reasons: []Reason{}},
		"one above the default is skipped":     {sleep: 31, reasons: []Reason{ReasonHookSkipped}},
		"zero is injected":                     {sleep: 0, tgps: i64(0), injected: true, wantTGPS: i64(0), reasons: []Reason{}},
		"one above an explicit 0 is skipped":   {sleep: 1, tgps: i64(0), wantTGPS: i64(0), reasons: []Reason{ReasonHookSkipped}},
		"fit raises the grace period to allow": {sleep: 40, tgp: &v1alpha1.TerminationGracePeriod{Fit: true, MaxSeconds: i64(40)}, injected: true, wantTGPS: i64(40), reasons: []Reason{}},
		"fit capped one below is skipped, grace untouched": {
			sleep: 40, tgp: &v1alpha1.TerminationGracePeriod{Fit: true, MaxSeconds: i64(39)}, reasons: []Reason{ReasonHookSkipped},
		},
		"fit never lowers, sleep under the current value": {
			sleep: 50, tgps: i64(100), tgp: &v1alpha1.TerminationGracePeriod{Fit: true, MaxSeconds: i64(60)}, injected: true, wantTGPS: i64(100), reasons: []Reason{},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := mustSet(t, pol("p", func(s *v1alpha1.LifecyclePolicySpec) {
				s.PreStop = sleepPreStop(tc.sleep)
				s.TerminationGracePeriod = tc.tgp
			}))
			pod := podWith(nil, "web")
			pod.Spec.TerminationGracePeriodSeconds = tc.tgps
			d := s.Mutate(pod, Namespace{Name: "shop"})
			c := d.Pod.Spec.Containers[0]
			if got := c.Lifecycle != nil && c.Lifecycle.PreStop != nil; got != tc.injected {
				t.Fatalf("injected %v, want %v (findings %+v)", got, tc.injected, d.Findings)
			}
			if !reflect.DeepEqual(d.Pod.Spec.TerminationGracePeriodSeconds, tc.wantTGPS) {
				t.Fatalf("tGPS %s, want %s", ptrString(d.Pod.Spec.TerminationGracePeriodSeconds), ptrString(tc.wantTGPS))
			}
			if got := reasons(d.Findings); !reflect.DeepEqual(got, tc.reasons) {
				t.Fatalf("reasons %v, want %v", got, tc.reasons)
			}
			if tc.injected && c.Lifecycle.PreStop.Sleep.Seconds > gracePeriod(&d.Pod.Spec) {
				t.Fatal("produced a sleep the API server would refuse")
			}
		})
	}
}

// TestMutateNeverPanics feeds degenerate pods and sets.
func TestMutateNeverPanics(t *testing.T) {
	all := mustSet(t, pol("all", func(s *v1alpha1.LifecyclePolicySpec) {
		s.Match.IncludeSidecars = true
		s.PreStop = sleepPreStop(1)
		s.PostStart = &v1alpha1.PostStartHook{HookAction: v1alpha1.HookAction{HTTPGet: &v1alpha1.HTTPGetAction{Port: intstr.FromString("http")}}}
		s.TerminationGracePeriod = &v1alpha1.TerminationGracePeriod{Fit: true}
		s.Finalizers = []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer}
		s.Cleanup = &v1alpha1.Cleanup{Finalizer: "x.example.com/y", URL: "https://x"}
	}))
	var nilSet *Set
	empty, _ := NewSet(Config{}, nil)
	pods := map[string]*corev1.Pod{
		"nil":                       nil,
		"zero":                      {},
		"no containers, nil maps":   {Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "i"}}}},
		"empty lifecycle":           {Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Lifecycle: &corev1.Lifecycle{}}}}},
		"handler with no action":    {Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{}}}}}},
		"sidecar with nil probe":    {Spec: corev1.PodSpec{InitContainers: []corev1.Container{sidecar("s")}}},
		"negative grace period":     {Spec: corev1.PodSpec{TerminationGracePeriodSeconds: i64(-5), Containers: []corev1.Container{{Name: "c"}}}},
		"probe with nil grace":      {Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", LivenessProbe: &corev1.Probe{}, Lifecycle: preStopSleep(3)}}}},
		"annotations without value": {},
	}
	pods["annotations without value"].Annotations = map[string]string{AnnotationSkip: "", AnnotationPreStopSeconds: "", AnnotationShutdownSeconds: ""}
	for name, pod := range pods {
		t.Run(name, func(t *testing.T) {
			var in *corev1.Pod
			if pod != nil {
				in = pod.DeepCopy()
			}
			for _, s := range []*Set{nilSet, empty, all} {
				d := s.Review(pod, Namespace{})
				if !reflect.DeepEqual(in, pod) {
					t.Fatal("input modified")
				}
				if d.Changed {
					if again := s.Review(d.Pod, Namespace{}); again.Changed {
						t.Fatal("second pass changed the pod")
					}
				} else if d.Pod != pod {
					t.Fatal("unchanged decision returned a different pod")
				}
			}
		})
	}
	if nilSet.Len() != 0 {
		t.Fatal("nil set has policies")
	}
}

// TestMutateOutputIsIndependent: the hooks put into a pod are copies, so a
// caller editing the result cannot change what the Set injects next time.
func TestMutateOutputIsIndependent(t *testing.T) {
	s := mustSet(t, pol("p", func(s *v1alpha1.LifecyclePolicySpec) {
		s.PreStop = &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Exec: &v1alpha1.ExecAction{Command: []string{"/drain"}, BudgetSeconds: i64(1)}}}
	}))
	d := s.Mutate(podWith(nil, "c"), Namespace{Name: "shop"})
	d.Pod.Spec.Containers[0].Lifecycle.PreStop.Exec.Command[0] = "/changed"
	d2 := s.Mutate(podWith(nil, "c"), Namespace{Name: "shop"})
	if got := d2.Pod.Spec.Containers[0].Lifecycle.PreStop.Exec.Command[0]; got != "/drain" {
		t.Fatalf("second pod got %q", got)
	}
}

func TestMutateRecords(t *testing.T) {
	s := mustSet(t,
		pol("zeta", func(s *v1alpha1.LifecyclePolicySpec) {
			s.Priority = 9
			s.Cleanup = &v1alpha1.Cleanup{Finalizer: "z.example.com/release", URL: "https://z", GiveUpAfterSeconds: i64(30)}
		}),
		pol("alpha", func(s *v1alpha1.LifecyclePolicySpec) {
			s.Finalizers = []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer}
			s.Cleanup = &v1alpha1.Cleanup{Finalizer: "a.example.com/release", URL: "https://a"}
		}))
	pod := podWith(map[string]string{"app": "x"}, "c")
	pod.Finalizers = []string{"gracekeeper.dev/termination-record"} // already there: not added twice
	d := s.Mutate(pod, Namespace{Name: "shop"})
	if want := []string{"gracekeeper.dev/termination-record", "a.example.com/release", "z.example.com/release"}; !reflect.DeepEqual(d.Pod.Finalizers, want) {
		t.Fatalf("finalizers %v, want %v", d.Pod.Finalizers, want)
	}
	if d.Pod.Labels[LabelFinalize] != "true" || d.Pod.Labels["app"] != "x" {
		t.Fatalf("labels %v", d.Pod.Labels)
	}
	if got := d.Pod.Annotations[AnnotationPolicies]; got != "alpha,zeta" {
		t.Fatalf("policies annotation %q", got)
	}
	if !reflect.DeepEqual(d.Policies, []string{"zeta", "alpha"}) {
		t.Fatalf("Decision.Policies %v (want priority order)", d.Policies)
	}
	var recs []CleanupRecord
	if err := json.Unmarshal([]byte(d.Pod.Annotations[AnnotationCleanup]), &recs); err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(recs, func(a, b CleanupRecord) int { return cmpString(a.Finalizer, b.Finalizer) }) || len(recs) != 2 ||
		recs[1].GiveUpAfterSeconds != 30 || recs[0].GiveUpAfterSeconds != 600 || recs[0].TimeoutSeconds != 5 {
		t.Fatalf("cleanup records %+v", recs)
	}
	// A pod without policies that need finalizers gets no label.
	plain := mustSet(t, pol("hooks", func(s *v1alpha1.LifecyclePolicySpec) { s.PreStop = sleepPreStop(1) }))
	if d := plain.Mutate(podWith(nil, "c"), Namespace{Name: "shop"}); d.Pod.Labels[LabelFinalize] != "" || len(d.Pod.Finalizers) != 0 {
		t.Fatalf("unexpected finalizer bookkeeping: %v %v", d.Pod.Labels, d.Pod.Finalizers)
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
