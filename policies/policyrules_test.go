package policies

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// badPolicies are policies the API server's pod rules, or the engine, could
// not use, each with the field its error must name and a part of the message.
func badPolicies() map[string]struct {
	spec  func(*v1alpha1.LifecyclePolicySpec)
	field string
	msg   string
} {
	httpGet := func(edit func(*v1alpha1.HTTPGetAction)) func(*v1alpha1.LifecyclePolicySpec) {
		return func(s *v1alpha1.LifecyclePolicySpec) {
			g := &v1alpha1.HTTPGetAction{Path: "/drain", Port: intstr.FromInt32(8080), BudgetSeconds: ptr.To[int64](5)}
			edit(g)
			s.PreStop = &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{HTTPGet: g}}
		}
	}
	sel := func(reqs ...metav1.LabelSelectorRequirement) func(*v1alpha1.LifecyclePolicySpec) {
		return func(s *v1alpha1.LifecyclePolicySpec) {
			s.Match.PodSelector = &metav1.LabelSelector{MatchExpressions: reqs}
		}
	}
	return map[string]struct {
		spec  func(*v1alpha1.LifecyclePolicySpec)
		field string
		msg   string
	}{
		"port 0":                {httpGet(func(g *v1alpha1.HTTPGetAction) { g.Port = intstr.FromInt32(0) }), "spec.preStop.httpGet.port", "between 1 and 65535"},
		"port 65536":            {httpGet(func(g *v1alpha1.HTTPGetAction) { g.Port = intstr.FromInt32(65536) }), "spec.preStop.httpGet.port", "between 1 and 65535"},
		"invalid port name":     {httpGet(func(g *v1alpha1.HTTPGetAction) { g.Port = intstr.FromString("Http_Port") }), "spec.preStop.httpGet.port", "Http_Port"},
		"port name too long":    {httpGet(func(g *v1alpha1.HTTPGetAction) { g.Port = intstr.FromString("a-very-long-port-name") }), "spec.preStop.httpGet.port", "no more than 15"},
		"header name w/ spaces": {httpGet(func(g *v1alpha1.HTTPGetAction) { g.HTTPHeaders = []v1alpha1.HTTPHeader{{Name: "X Drain", Value: "1"}} }), "spec.preStop.httpGet.httpHeaders[0].name", "X Drain"},
		"bad scheme":            {httpGet(func(g *v1alpha1.HTTPGetAction) { g.Scheme = "FTP" }), "spec.preStop.httpGet.scheme", "Unsupported value"},
		"exec without command": {func(s *v1alpha1.LifecyclePolicySpec) {
			s.PreStop = &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Exec: &v1alpha1.ExecAction{BudgetSeconds: ptr.To[int64](1)}}}
		}, "spec.preStop.exec.command", "Required"},
		"two actions": {func(s *v1alpha1.LifecyclePolicySpec) {
			s.PostStart = &v1alpha1.PostStartHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: 1}, Exec: &v1alpha1.ExecAction{Command: []string{"x"}}}}
		}, "spec.postStart", "exactly one of sleep, exec or httpGet"},
		"exec preStop without budget": {func(s *v1alpha1.LifecyclePolicySpec) {
			s.PreStop = &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Exec: &v1alpha1.ExecAction{Command: []string{"drain"}}}}
		}, "spec.preStop.exec.budgetSeconds", "Required"},
		"postStart with budget": {func(s *v1alpha1.LifecyclePolicySpec) {
			s.PostStart = &v1alpha1.PostStartHook{HookAction: v1alpha1.HookAction{HTTPGet: &v1alpha1.HTTPGetAction{Port: intstr.FromInt32(80), BudgetSeconds: ptr.To[int64](1)}}}
		}, "spec.postStart.httpGet.budgetSeconds", "only to preStop"},
		"finalizer domain > 253": {func(s *v1alpha1.LifecyclePolicySpec) {
			s.Cleanup = &v1alpha1.Cleanup{Finalizer: strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) + ".com/x", URL: "https://x.example"}
		}, "spec.cleanup.finalizer", "253"},
		"finalizer without domain": {func(s *v1alpha1.LifecyclePolicySpec) {
			s.Cleanup = &v1alpha1.Cleanup{Finalizer: "release", URL: "https://x.example"}
		}, "spec.cleanup.finalizer", "domain-qualified"},
		"finalizer name part bad": {func(s *v1alpha1.LifecyclePolicySpec) {
			s.Cleanup = &v1alpha1.Cleanup{Finalizer: "example.com/-x", URL: "https://x.example"}
		}, "spec.cleanup.finalizer", "name part"},
		"cleanup finalizer also built-in": {func(s *v1alpha1.LifecyclePolicySpec) {
			s.Finalizers = []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer}
			s.Cleanup = &v1alpha1.Cleanup{Finalizer: string(v1alpha1.TerminationRecordFinalizer), URL: "https://x.example"}
		}, "spec.cleanup.finalizer", "Duplicate"},
		"unknown built-in finalizer": {func(s *v1alpha1.LifecyclePolicySpec) {
			s.Finalizers = []v1alpha1.BuiltinFinalizer{"gracekeeper.dev/other"}
		}, "spec.finalizers[0]", "Unsupported"},
		"glob web[":          {func(s *v1alpha1.LifecyclePolicySpec) { s.Match.Containers = []string{"web["} }, "spec.match.containers[0]", "path.Match"},
		"blank exclude glob": {func(s *v1alpha1.LifecyclePolicySpec) { s.Match.ExcludeContainers = []string{"ok", " "} }, "spec.match.excludeContainers[1]", "Required"},
		"In with no values": {sel(metav1.LabelSelectorRequirement{Key: "app", Operator: metav1.LabelSelectorOpIn}),
			"spec.match.podSelector.matchExpressions[0].values", "must be specified"},
		"NotIn with no values": {sel(metav1.LabelSelectorRequirement{Key: "app", Operator: metav1.LabelSelectorOpNotIn}),
			"spec.match.podSelector.matchExpressions[0].values", "must be specified"},
		"Exists with values": {sel(metav1.LabelSelectorRequirement{Key: "app", Operator: metav1.LabelSelectorOpExists, Values: []string{"x"}}),
			"spec.match.podSelector.matchExpressions[0].values", "may not be specified"},
		"key bad key!": {sel(metav1.LabelSelectorRequirement{Key: "bad key!", Operator: metav1.LabelSelectorOpExists}),
			"spec.match.podSelector.matchExpressions[0].key", "bad key!"},
		"bad operator": {sel(metav1.LabelSelectorRequirement{Key: "app", Operator: "Near"}),
			"spec.match.podSelector.matchExpressions[0].operator", "Near"},
		"matchLabels bad value": {func(s *v1alpha1.LifecyclePolicySpec) {
			s.Match.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a b"}}
		}, "spec.match.namespaceSelector.matchLabels", "a b"},
		"bad action": {func(s *v1alpha1.LifecyclePolicySpec) { s.Validation = &v1alpha1.Validation{Action: "Block"} }, "spec.validation.action", "Block"},
	}
}

// TestValidatePolicy: each rule refuses its bad policy, naming the field,
// and the engine leaves it out with the same message.
func TestValidatePolicy(t *testing.T) {
	for name, tc := range badPolicies() {
		t.Run(name, func(t *testing.T) {
			p := v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "bad"}}
			tc.spec(&p.Spec)
			errs := ValidatePolicy(&p)
			if len(errs) == 0 {
				t.Fatal("accepted")
			}
			msg := errs.ToAggregate().Error()
			if !strings.Contains(msg, tc.field+":") || !strings.Contains(msg, tc.msg) {
				t.Errorf("error %q does not name %s with %q", msg, tc.field, tc.msg)
			}
			s, fs := NewSet(Config{}, []v1alpha1.LifecyclePolicy{p})
			if s.Len() != 0 || len(fs) != 1 || !strings.Contains(fs[0].Message, msg) {
				t.Errorf("engine: len %d findings %v, want it left out with %q", s.Len(), fs, msg)
			}
		})
	}
}

// TestValidatePolicyAccepts: good policies, at the edges of each rule.
func TestValidatePolicyAccepts(t *testing.T) {
	for name, spec := range map[string]v1alpha1.LifecyclePolicySpec{
		"empty": {},
		"port 1 and 65535 and a name": {
			PreStop:   &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{HTTPGet: &v1alpha1.HTTPGetAction{Port: intstr.FromInt32(65535), BudgetSeconds: ptr.To[int64](0)}}},
			PostStart: &v1alpha1.PostStartHook{HookAction: v1alpha1.HookAction{HTTPGet: &v1alpha1.HTTPGetAction{Port: intstr.FromString("http-alt"), Scheme: corev1.URISchemeHTTPS, HTTPHeaders: []v1alpha1.HTTPHeader{{Name: "X-Drain"}}}}},
		},
		"selectors and globs": {Match: v1alpha1.Match{
			PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "web"}, MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "a"}}, {Key: "x", Operator: metav1.LabelSelectorOpDoesNotExist}}},
			Containers: []string{"web-*", "[a-c]?"}, ExcludeContainers: []string{"istio-proxy"}}},
		"finalizer domain 253": {Cleanup: &v1alpha1.Cleanup{
			Finalizer: strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61) + "/x", URL: "https://x.example"}},
	} {
		t.Run(name, func(t *testing.T) {
			p := v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "good"}, Spec: spec}
			if errs := ValidatePolicy(&p); len(errs) != 0 {
				t.Errorf("refused: %v", errs)
			}
		})
	}
}
