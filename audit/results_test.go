package audit

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/gracekeeper/gracekeeper/check"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// TestStripKeepsJudgement: the cache transform drops only what the engine
// does not read, so a stripped object is judged exactly as the original.
func TestStripKeepsJudgement(t *testing.T) {
	_, set := benchPolicySet()
	for i := range 300 {
		p := benchPod(i)
		p.Annotations[policies.AnnotationShutdownSeconds] = "28"
		p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "3"}}}}
		d := benchDeployment(i)
		sp := p.DeepCopy()
		_, _ = strip(sp)
		sd := d.DeepCopy()
		_, _ = strip(sd)
		if sp.Status.Phase != "" || sp.ManagedFields != nil || sp.Annotations["kubectl.kubernetes.io/last-applied-configuration"] != "" || sp.Spec.Volumes != nil {
			t.Fatalf("pod %d not stripped: %+v", i, sp)
		}
		ns := policies.Namespace{Name: p.Namespace}
		for _, pair := range [][2]any{{&p, sp}, {&d, sd}} {
			kind := "Pod"
			if _, ok := pair[0].(*appsv1.Deployment); ok {
				kind = "Deployment"
			}
			a, okA := check.ReviewLive(set, pair[0].(kruntime.Object), kind, ns, "x")
			b, okB := check.ReviewLive(set, pair[1].(kruntime.Object), kind, ns, "x")
			if okA != okB || !reflect.DeepEqual(a, b) {
				t.Fatalf("%s %d judged differently once stripped:\n%+v\n%+v", kind, i, a, b)
			}
			if len(a.Findings) == 0 && i%3 == 0 {
				t.Fatalf("%s %d: no finding, want the budget exceeded (the test would prove nothing)", kind, i)
			}
		}
	}
}

// TestVerdicts: what each kind of finding makes of a report result.
func TestVerdicts(t *testing.T) {
	f := func(pol string, a v1alpha1.ValidationAction, r policies.Reason) policies.Finding {
		return policies.Finding{Policy: pol, Action: a, Reason: r, Message: string(r)}
	}
	tests := []struct {
		desc     string
		findings []policies.Finding
		want     Outcome
	}{
		{"no finding passes", nil, Pass},
		{"budget exceeded under Audit fails", []policies.Finding{f("p", v1alpha1.ActionAudit, policies.ReasonBudgetExceeded)}, Fail},
		{"budget exceeded under Warn fails", []policies.Finding{f("p", v1alpha1.ActionWarn, policies.ReasonBudgetExceeded)}, Fail},
		{"any Deny fails", []policies.Finding{f("p", v1alpha1.ActionDeny, policies.ReasonUnknownPreStop)}, Fail},
		{"unknown preStop warns", []policies.Finding{f("p", v1alpha1.ActionWarn, policies.ReasonUnknownPreStop)}, Warn},
		{"opt-out notes pass", []policies.Finding{f("p", v1alpha1.ActionAudit, policies.ReasonOptOutNotAllowed)}, Pass},
		{"another policy's finding is not ours", []policies.Finding{f("q", v1alpha1.ActionDeny, policies.ReasonBudgetExceeded)}, Pass},
		{"a fail outranks a warn", []policies.Finding{f("p", v1alpha1.ActionWarn, policies.ReasonHookSkipped), f("p", v1alpha1.ActionDeny, policies.ReasonBudgetExceeded)}, Fail},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			it := Item{Object: check.Object{Kind: "Pod", Name: "x", Policies: []string{"p"}, Findings: tc.findings}}
			v := Verdicts(it)
			if len(v) != 1 || v[0].Outcome != tc.want {
				t.Fatalf("verdicts %+v, want one %s", v, tc.want)
			}
			if tc.want == Fail && !strings.HasPrefix(v[0].Message, string(policies.ReasonBudgetExceeded)) && !strings.HasPrefix(v[0].Message, string(policies.ReasonUnknownPreStop)) {
				t.Errorf("message %q does not start with why it fails", v[0].Message)
			}
		})
	}
}

// TestReportBounded: a namespace with more results than the limit keeps
// the failures, and the summary still counts everything.
func TestReportBounded(t *testing.T) {
	var items []Item
	for i := range 50 {
		o := check.Object{Kind: "Pod", Namespace: "ns", Name: fmt.Sprintf("p%d", i), Policies: []string{"p"}}
		if i%10 == 0 {
			o.Findings = []policies.Finding{{Policy: "p", Action: v1alpha1.ActionDeny, Reason: policies.ReasonBudgetExceeded, Message: "too long"}}
		}
		items = append(items, Item{Object: o})
	}
	r := buildReport("ns", items, 8)
	if len(r.Results) != 8 || r.Summary.Fail != 5 || r.Summary.Pass != 45 || r.Configuration == nil || r.Configuration.Limits.MaxResults != 8 {
		t.Fatalf("results %d summary %+v config %+v", len(r.Results), r.Summary, r.Configuration)
	}
	for _, res := range r.Results[:5] {
		if res.Result != "fail" {
			t.Errorf("failures are not first: %v", res.Result)
		}
	}
	if buildReport("ns", []Item{{Object: check.Object{Kind: "Pod", Name: "lonely"}}}, 8) != nil {
		t.Error("a namespace where no policy selects anything has a report")
	}
	if h1, h2 := reportHash(r), reportHash(buildReport("ns", items, 8)); h1 != h2 {
		t.Error("the same results hash differently")
	}
}
