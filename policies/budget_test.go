package policies

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

func TestExecSleepSeconds(t *testing.T) {
	cases := map[string]struct {
		cmd  []string
		want int64
		ok   bool
	}{
		"sleep":                      {[]string{"sleep", "5"}, 5, true},
		"/bin/sleep":                 {[]string{"/bin/sleep", "7"}, 7, true},
		"/usr/bin/sleep":             {[]string{"/usr/bin/sleep", "0"}, 0, true},
		"sh -c":                      {[]string{"/bin/sh", "-c", "sleep 5"}, 5, true},
		"bash -c with spaces":        {[]string{"bash", "-c", "  sleep   12 "}, 12, true},
		"chained command":            {[]string{"sh", "-c", "sleep 5 && nginx -s quit"}, 0, false},
		"suffix":                     {[]string{"sleep", "5s"}, 0, false},
		"fraction":                   {[]string{"sleep", "0.5"}, 0, false},
		"negative":                   {[]string{"sleep", "-1"}, 0, false},
		"above a day":                {[]string{"sleep", "86401"}, 0, false},
		"extra argument":             {[]string{"sleep", "5", "6"}, 0, false},
		"not a shell":                {[]string{"python", "-c", "sleep 5"}, 0, false},
		"shell without -c":           {[]string{"sh", "sleep 5"}, 0, false},
		"empty":                      {nil, 0, false},
		"another program":            {[]string{"/app/drain"}, 0, false},
		"sleep alone in shell":       {[]string{"sh", "-c", "sleep"}, 0, false},
		"sleep with variable in sh":  {[]string{"sh", "-c", "sleep $DRAIN"}, 0, false},
		"sleep with leading zeros":   {[]string{"sleep", "010"}, 10, true},
		"dash -c":                    {[]string{"/bin/dash", "-c", "sleep 3"}, 3, true},
		"ash -c (alpine busybox sh)": {[]string{"/bin/ash", "-c", "sleep 4"}, 4, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, ok := execSleepSeconds(tc.cmd)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("execSleepSeconds(%q) = %d, %v; want %d, %v", tc.cmd, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func preStopExec(cmd ...string) *corev1.Lifecycle {
	return &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: cmd}}}
}

func preStopSleep(n int64) *corev1.Lifecycle {
	return &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: n}}}
}

// TestBudget checks Validate's budget arithmetic and findings on pods as
// they are (Validate never mutates).
func TestBudget(t *testing.T) {
	shutdown := func(n int64) func(*v1alpha1.LifecyclePolicySpec) {
		return func(s *v1alpha1.LifecyclePolicySpec) { s.ShutdownSeconds = i64(n) }
	}
	cases := map[string]struct {
		edit    func(*v1alpha1.LifecyclePolicySpec)
		pod     func() *corev1.Pod
		total   int64
		reasons []Reason
		message string // exact message of the last finding, when set
	}{
		"regular container over the default grace period": {
			edit: shutdown(10),
			pod: func() *corev1.Pod {
				p := podWith(nil, "web")
				p.Spec.Containers[0].Lifecycle = preStopSleep(25)
				return p
			},
			total: 35, reasons: []Reason{ReasonBudgetExceeded},
			message: `container "web": preStop 25s + shutdown 10s = 35s > terminationGracePeriodSeconds 30s; raise it to at least 35 or shorten the preStop`,
		},
		"exactly at the grace period fits": {
			edit: shutdown(10),
			pod: func() *corev1.Pod {
				p := podWith(nil, "web")
				p.Spec.Containers[0].Lifecycle = preStopSleep(20)
				return p
			},
			total: 30, reasons: []Reason{},
		},
		"the widest regular container counts": {
			edit: shutdown(5),
			pod: func() *corev1.Pod {
				p := podWith(nil, "a", "b", "c")
				p.Spec.Containers[0].Lifecycle = preStopSleep(3)
				p.Spec.Containers[1].Lifecycle = preStopExec("sleep", "40")
				p.Spec.TerminationGracePeriodSeconds = i64(60)
				return p
			},
			total: 45, reasons: []Reason{},
		},
		"sidecars stop in reverse order after the app": {
			edit: shutdown(10),
			pod: func() *corev1.Pod {
				p := podWith(nil, "app")
				p.Spec.Containers[0].Lifecycle = preStopSleep(5) // 15
				first, second := sidecar("first"), sidecar("second")
				first.Lifecycle = preStopSleep(30) // starts at t=0, ends before its SIGTERM turn: max(25, 30)
				second.Lifecycle = preStopSleep(2)
				p.Spec.InitContainers = []corev1.Container{{Name: "plain", Image: "i", Lifecycle: preStopSleep(99)}, first, second}
				p.Spec.TerminationGracePeriodSeconds = i64(40)
				return p
			},
			// second: max(15, 2)+10 = 25; first: max(25, 30)+10 = 40. The plain
			// init container has ended before termination and does not count.
			total: 40, reasons: []Reason{},
		},
		"sidecar chain exactly at the limit fits": {
			edit: shutdown(10),
			pod: func() *corev1.Pod {
				p := podWith(nil, "app")
				p.Spec.InitContainers = []corev1.Container{sidecar("proxy"), sidecar("logs")}
				return p
			},
			total: 30, reasons: []Reason{},
		},
		"sidecar chain exceeded": {
			edit: shutdown(12),
			pod: func() *corev1.Pod {
				p := podWith(nil, "app")
				p.Spec.InitContainers = []corev1.Container{sidecar("proxy"), sidecar("logs")}
				return p
			},
			total: 36, reasons: []Reason{ReasonBudgetExceeded},
			message: `sidecar "proxy" stops last: containers need 12s ("app": preStop 0s + shutdown 12s), then sidecars stop in reverse order: "logs" max(12s, preStop 0s) + shutdown 12s = 24s, "proxy" max(24s, preStop 0s) + shutdown 12s = 36s; total 36s > terminationGracePeriodSeconds 30s; raise it to at least 36 or shorten the preStop`,
		},
		"pod with only sidecars": {
			edit: shutdown(20),
			pod: func() *corev1.Pod {
				p := podWith(nil)
				p.Spec.InitContainers = []corev1.Container{sidecar("s1"), sidecar("s2")}
				return p
			},
			total: 40, reasons: []Reason{ReasonBudgetExceeded},
			message: `sidecar "s1" stops last: sidecars stop in reverse order: "s2" max(0s, preStop 0s) + shutdown 20s = 20s, "s1" max(20s, preStop 0s) + shutdown 20s = 40s; total 40s > terminationGracePeriodSeconds 30s; raise it to at least 40 or shorten the preStop`,
		},
		"policy exec hook counts its declared budget": {
			edit: func(s *v1alpha1.LifecyclePolicySpec) {
				s.ShutdownSeconds = i64(15)
				s.PreStop = &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Exec: &v1alpha1.ExecAction{Command: []string{"/drain"}, BudgetSeconds: i64(20)}}}
			},
			pod: func() *corev1.Pod {
				p := podWith(nil, "web")
				p.Spec.Containers[0].Lifecycle = preStopExec("/drain")
				return p
			},
			total: 35, reasons: []Reason{ReasonBudgetExceeded},
		},
		"policy httpGet hook counts its declared budget (after API defaults)": {
			edit: func(s *v1alpha1.LifecyclePolicySpec) {
				s.PreStop = &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{HTTPGet: &v1alpha1.HTTPGetAction{Port: intstr.FromInt32(8080), BudgetSeconds: i64(12)}}}
			},
			pod: func() *corev1.Pod {
				p := podWith(nil, "web")
				p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/", Port: intstr.FromInt32(8080), Scheme: corev1.URISchemeHTTP}}}
				p.Spec.TerminationGracePeriodSeconds = i64(10)
				return p
			},
			total: 12, reasons: []Reason{ReasonBudgetExceeded},
		},
		"unknown exec warns and counts as zero": {
			edit: shutdown(10),
			pod: func() *corev1.Pod {
				p := podWith(nil, "web")
				p.Spec.Containers[0].Lifecycle = preStopExec("/drain")
				return p
			},
			total: 10, reasons: []Reason{ReasonUnknownPreStop},
			message: `container "web": preStop exec ["/drain"] takes an unknown time and counts as 0s; declare it with the pod annotation gracekeeper.dev/prestop-seconds: "<seconds>"`,
		},
		"declared annotation makes it known": {
			edit: shutdown(10),
			pod: func() *corev1.Pod {
				p := podWith(nil, "web")
				p.Annotations = map[string]string{AnnotationPreStopSeconds: "25"}
				p.Spec.Containers[0].Lifecycle = preStopExec("/drain")
				return p
			},
			total: 35, reasons: []Reason{ReasonBudgetExceeded},
		},
		"shutdown annotation lowering the policy's is refused": {
			edit: shutdown(10),
			pod: func() *corev1.Pod {
				p := podWith(nil, "web")
				p.Annotations = map[string]string{AnnotationShutdownSeconds: "2"}
				p.Spec.Containers[0].Lifecycle = preStopSleep(25)
				return p
			},
			total: 35, reasons: []Reason{ReasonShutdownLoweringRefused, ReasonBudgetExceeded},
		},
		"shutdown annotation lowers where the policy allows it": {
			edit: func(s *v1alpha1.LifecyclePolicySpec) { s.ShutdownSeconds = i64(10); s.AllowLowerBudget = true },
			pod: func() *corev1.Pod {
				p := podWith(nil, "web")
				p.Annotations = map[string]string{AnnotationShutdownSeconds: "2"}
				p.Spec.Containers[0].Lifecycle = preStopSleep(25)
				return p
			},
			total: 27, reasons: []Reason{ReasonShutdownOverride},
		},
		"shutdown annotation raises without permission": {
			edit: shutdown(10),
			pod: func() *corev1.Pod {
				p := podWith(nil, "web")
				p.Annotations = map[string]string{AnnotationShutdownSeconds: "12"}
				p.Spec.Containers[0].Lifecycle = preStopSleep(5)
				return p
			},
			total: 17, reasons: []Reason{ReasonShutdownOverride},
		},
		"shutdown annotation equal to the policy's leaves no trace": {
			edit: shutdown(10),
			pod: func() *corev1.Pod {
				p := podWith(nil, "web")
				p.Annotations = map[string]string{AnnotationShutdownSeconds: "10"}
				return p
			},
			total: 10, reasons: []Reason{},
		},
		"prestop annotation below the policy's preStop budget is refused": {
			edit: func(s *v1alpha1.LifecyclePolicySpec) {
				s.ShutdownSeconds = i64(10)
				s.PreStop = &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Exec: &v1alpha1.ExecAction{Command: []string{"/drain"}, BudgetSeconds: i64(25)}}}
			},
			pod: func() *corev1.Pod {
				p := podWith(nil, "web")
				p.Annotations = map[string]string{AnnotationPreStopSeconds: "0"}
				p.Spec.Containers[0].Lifecycle = preStopExec("/own-drain")
				return p
			},
			total: 35, reasons: []Reason{ReasonPreStopLoweringRefused, ReasonBudgetExceeded},
		},
		"prestop annotation below the policy's preStop where allowed": {
			edit: func(s *v1alpha1.LifecyclePolicySpec) {
				s.ShutdownSeconds = i64(10)
				s.AllowLowerBudget = true
				s.PreStop = &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Exec: &v1alpha1.ExecAction{Command: []string{"/drain"}, BudgetSeconds: i64(25)}}}
			},
			pod: func() *corev1.Pod {
				p := podWith(nil, "web")
				p.Annotations = map[string]string{AnnotationPreStopSeconds: "3"}
				p.Spec.Containers[0].Lifecycle = preStopExec("/own-drain")
				return p
			},
			total: 13, reasons: []Reason{ReasonPreStopOverride},
		},
		"bad annotations are reported and ignored": {
			edit: shutdown(10),
			pod: func() *corev1.Pod {
				p := podWith(nil, "web")
				p.Annotations = map[string]string{AnnotationShutdownSeconds: "-3", AnnotationPreStopSeconds: "1e3"}
				p.Spec.Containers[0].Lifecycle = preStopExec("/drain")
				return p
			},
			total: 10, reasons: []Reason{ReasonBadAnnotation, ReasonBadAnnotation, ReasonUnknownPreStop},
		},
		"probe grace shorter than the preStop": {
			edit: shutdown(5),
			pod: func() *corev1.Pod {
				p := podWith(nil, "web")
				p.Spec.Containers[0].Lifecycle = preStopSleep(10)
				p.Spec.Containers[0].StartupProbe = &corev1.Probe{TerminationGracePeriodSeconds: i64(3)}
				p.Spec.Containers[0].LivenessProbe = &corev1.Probe{TerminationGracePeriodSeconds: i64(10)}
				return p
			},
			total: 15, reasons: []Reason{ReasonProbeGraceShort},
			message: `container "web": startupProbe terminationGracePeriodSeconds 3s < preStop 10s; a startup kill cuts the preStop short; raise the probe's terminationGracePeriodSeconds to at least 10 or shorten the preStop`,
		},
		"warn action": {
			edit: func(s *v1alpha1.LifecyclePolicySpec) {
				s.ShutdownSeconds = i64(40)
				s.Validation = &v1alpha1.Validation{Action: v1alpha1.ActionWarn}
			},
			pod:   func() *corev1.Pod { return podWith(nil, "web") },
			total: 40, reasons: []Reason{ReasonBudgetExceeded},
		},
		"empty pod": {
			pod:   func() *corev1.Pod { return &corev1.Pod{} },
			total: 0, reasons: []Reason{},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := mustSet(t, pol("p", tc.edit))
			pod := tc.pod()
			d := s.Validate(pod, Namespace{Name: "shop"})
			if got := reasons(d.Findings); !reflect.DeepEqual(got, tc.reasons) {
				t.Fatalf("reasons %v, want %v: %+v", got, tc.reasons, d.Findings)
			}
			if tc.message != "" {
				if got := d.Findings[len(d.Findings)-1].Message; got != tc.message {
					t.Fatalf("message\n got %s\nwant %s", got, tc.message)
				}
			}
			m := merge(s.pols)
			ps := m.readSeconds(pod, "")
			if b := m.budget(members(&pod.Spec, currentPreStop), m.shutdownSeconds(ps), ps); b.total != tc.total {
				t.Fatalf("budget %ds, want %ds", b.total, tc.total)
			}
			for _, f := range d.Findings {
				if f.Reason == ReasonBudgetExceeded {
					want := v1alpha1.ActionDeny
					if tc.edit != nil {
						var sp v1alpha1.LifecyclePolicySpec
						tc.edit(&sp)
						if sp.Validation != nil {
							want = sp.Validation.Action
						}
					}
					if f.Action != want {
						t.Errorf("BudgetExceeded action %s, want %s", f.Action, want)
					}
					if !strings.Contains(f.Message, "raise it to at least") {
						t.Errorf("message does not say the fix: %s", f.Message)
					}
				}
			}
		})
	}
}

func TestValidateOnlyMatchedPods(t *testing.T) {
	s := mustSet(t, pol("p", func(s *v1alpha1.LifecyclePolicySpec) {
		s.Match.PodSelector = nil
		s.Match.NamespaceSelector = nil
		s.ShutdownSeconds = i64(100)
	}))
	pod := podWith(nil, "web")
	if d := s.Validate(pod, Namespace{Name: "shop"}); len(d.Findings) != 1 {
		t.Fatalf("matched pod: %+v, want one BudgetExceeded", d.Findings)
	}
	empty, _ := NewSet(Config{}, nil)
	pod.Spec.Containers[0].Lifecycle = preStopExec("/unknown")
	if d := empty.Validate(pod, Namespace{Name: "shop"}); len(d.Findings) != 0 || d.Policies != nil {
		t.Fatalf("no policy: %+v", d)
	}
}

func TestAdviceFollowsAuditOnlyPolicies(t *testing.T) {
	for action, want := range map[v1alpha1.ValidationAction]v1alpha1.ValidationAction{
		v1alpha1.ActionDeny:  v1alpha1.ActionWarn,
		v1alpha1.ActionWarn:  v1alpha1.ActionWarn,
		v1alpha1.ActionAudit: v1alpha1.ActionAudit,
	} {
		t.Run(string(action), func(t *testing.T) {
			s := mustSet(t, pol("p", func(s *v1alpha1.LifecyclePolicySpec) { s.Validation = &v1alpha1.Validation{Action: action} }))
			pod := podWith(nil, "web")
			pod.Spec.Containers[0].Lifecycle = preStopExec("/drain")
			d := s.Validate(pod, Namespace{Name: "shop"})
			if len(d.Findings) != 1 || d.Findings[0].Reason != ReasonUnknownPreStop || d.Findings[0].Action != want {
				t.Fatalf("findings %+v, want one UnknownPreStop with %s", d.Findings, want)
			}
		})
	}
}
