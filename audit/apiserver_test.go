package audit_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/go-logr/logr/testr"
	orv1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gracekeeper/gracekeeper/audit"
	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// reportCRDDir holds the openreports.io CRDs the chart installs with
// reports.installCRDs.
func reportCRDDir() string {
	return filepath.Join(controlplane.RepoRoot(), "charts", "gracekeeper", "files", "openreports")
}

type env struct {
	c   client.Client
	reg *prometheus.Registry
}

// start runs a real kube-apiserver (with the report CRDs when reports) and
// a manager holding the webhook's PolicyStore and the background audit, as
// `gracekeeper serve` wires them.
func start(t *testing.T, reports bool, lg logr.Logger) *env {
	t.Helper()
	controlplane.SkipIfShort(t)
	if err := controlplane.CheckAssets(); err != nil {
		t.Fatalf("needs the control-plane binaries (make test builds them): %v", err)
	}
	cp := controlplane.New()
	if reports {
		cp.CRDDirectoryPaths = append(cp.CRDDirectoryPaths, reportCRDDir())
	}
	cfg, err := cp.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver + etcd: %v", err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	scheme, err := clientscheme.New(orv1.AddToScheme)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := manager.New(cfg, manager.Options{Scheme: scheme, Logger: testr.New(t),
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	if err != nil {
		t.Fatal(err)
	}
	store := webhook.NewPolicyStore(webhook.StoreConfig{Engine: policies.Config{ExcludedNamespaces: policies.SystemNamespaces()},
		Debounce: 50 * time.Millisecond, WriteStatus: true}, testr.New(t).WithName("policies"))
	if err := store.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if _, err := audit.Setup(mgr, store, audit.Options{
		Settle: 200 * time.Millisecond, WritesPerSecond: 50, WriteBurst: 50,
		Excluded: policies.SystemNamespaces(), Reports: true, Events: true, Registerer: reg,
	}, lg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return &env{c: c, reg: reg}
}

func deployment(ns, name string, tgps int64) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To(tgps),
					Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
}

func pod(ns, name string, tgps int64) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To(tgps),
			Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}
}

func policySpec(action v1alpha1.ValidationAction) v1alpha1.LifecyclePolicySpec {
	return v1alpha1.LifecyclePolicySpec{
		Match:           v1alpha1.Match{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "shop"}}},
		PreStop:         &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: 25}}},
		ShutdownSeconds: ptr.To[int64](10),
		Validation:      &v1alpha1.Validation{Action: action},
	}
}

// eventually polls cond until it holds, failing with its last word.
func eventually(t *testing.T, what string, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last string
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, msg := cond(ctx)
		last = msg
		return ok, nil
	}); err != nil {
		t.Fatalf("%s: not reached in 30s; last: %s", what, last)
	}
}

// resultsOf is a report's results as "result kind/name policy", sorted as written.
func resultsOf(r *orv1.Report) []string {
	var out []string
	for _, res := range r.Results {
		for _, s := range res.Subjects {
			out = append(out, fmt.Sprintf("%s %s/%s %s", res.Result, strings.ToLower(s.Kind), s.Name, res.Policy))
		}
	}
	return out
}

func gauge(t *testing.T, reg *prometheus.Registry, policy, result string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "gracekeeper_audit_objects" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["policy"] == policy && l["result"] == result {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// TestBackgroundAudit: workloads and a pod created before any policy are
// audited when a policy arrives; the namespace's report, the policy's
// status and the metrics tell the same story, follow a workload change and
// a change of action, and the report goes when the policy goes. Nothing
// judged is ever written.
func TestBackgroundAudit(t *testing.T) {
	e := start(t, true, testr.New(t).WithName("audit"))
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "shop"}}}))
	must(e.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}}))
	roomy, tight := deployment("shop", "roomy", 60), deployment("shop", "tight", 30)
	must(e.c.Create(ctx, roomy))
	must(e.c.Create(ctx, tight))
	must(e.c.Create(ctx, pod("shop", "lone", 30)))
	must(e.c.Create(ctx, pod("other", "elsewhere", 30)))

	pol := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "shop-drain"}, Spec: policySpec(v1alpha1.ActionAudit)}
	must(e.c.Create(ctx, pol))
	const msg = `container "app": preStop 25s + shutdown 10s = 35s > terminationGracePeriodSeconds 30s; raise it to at least 35 or shorten the preStop`

	report := func(ns string) func(ctx context.Context) (*orv1.Report, error) {
		return func(ctx context.Context) (*orv1.Report, error) {
			var r orv1.Report
			err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: audit.ReportName}, &r)
			return &r, err
		}
	}
	expectReport := func(what string, want []string, sum orv1.ReportSummary) *orv1.Report {
		t.Helper()
		var got *orv1.Report
		eventually(t, what, func(ctx context.Context) (bool, string) {
			r, err := report("shop")(ctx)
			if err != nil {
				return false, err.Error()
			}
			got = r
			return strings.Join(resultsOf(r), "\n") == strings.Join(want, "\n") && r.Summary == sum,
				fmt.Sprintf("results %q summary %+v", resultsOf(r), r.Summary)
		})
		return got
	}
	expectStatus := func(what string, matched, violations int32) {
		t.Helper()
		eventually(t, what, func(ctx context.Context) (bool, string) {
			var p v1alpha1.LifecyclePolicy
			if err := e.c.Get(ctx, client.ObjectKeyFromObject(pol), &p); err != nil {
				return false, err.Error()
			}
			a := p.Status.Audit
			return a != nil && a.Matched == matched && a.Violations == violations && a.LastAuditTime != nil, fmt.Sprintf("%+v", a)
		})
	}

	t.Run("a policy in Audit: report, status and metrics", func(t *testing.T) {
		r := expectReport("report of shop", []string{
			"fail pod/lone shop-drain",
			"fail deployment/tight shop-drain",
			"pass deployment/roomy shop-drain",
		}, orv1.ReportSummary{Pass: 1, Fail: 2})
		if r.Labels[audit.LabelManagedBy] != "gracekeeper" || r.Source != "gracekeeper" {
			t.Errorf("report labels %v source %q", r.Labels, r.Source)
		}
		for _, res := range r.Results {
			if res.Result == "fail" && (res.Description != msg || res.Properties["action"] != "Audit" || res.Properties["reason"] != "BudgetExceeded") {
				t.Errorf("fail result %q %v, want message %q, action Audit", res.Description, res.Properties, msg)
			}
			if res.Timestamp.Seconds == 0 || len(res.Subjects) != 1 || res.Subjects[0].UID == "" {
				t.Errorf("result without timestamp or subject UID: %+v", res)
			}
		}
		expectStatus("status.audit", 3, 2)
		eventually(t, "metrics", func(context.Context) (bool, string) {
			f, _ := gauge(t, e.reg, "shop-drain", "fail")
			p, _ := gauge(t, e.reg, "shop-drain", "pass")
			return f == 2 && p == 1, fmt.Sprintf("fail %v pass %v", f, p)
		})
		if _, err := report("other")(ctx); !apierrors.IsNotFound(err) {
			t.Errorf("namespace other, selected by no policy, has a report (err %v)", err)
		}
	})

	t.Run("Deny: a Warning Event on the workload whose pods would be refused", func(t *testing.T) {
		must(e.c.Get(ctx, client.ObjectKeyFromObject(pol), pol))
		pol.Spec = policySpec(v1alpha1.ActionDeny)
		must(e.c.Update(ctx, pol))
		eventually(t, "event on deployment/tight", func(ctx context.Context) (bool, string) {
			var evs corev1.EventList
			if err := e.c.List(ctx, &evs, client.InNamespace("shop")); err != nil {
				return false, err.Error()
			}
			var seen []string
			for _, ev := range evs.Items {
				seen = append(seen, ev.InvolvedObject.Kind+"/"+ev.InvolvedObject.Name+" "+ev.Reason)
				if ev.InvolvedObject.Kind == "Deployment" && ev.InvolvedObject.Name == "tight" && ev.Reason == "PodsWouldBeRefused" &&
					ev.Type == corev1.EventTypeWarning && strings.Contains(ev.Message, msg) {
					return true, ""
				}
			}
			return false, fmt.Sprintf("events %q", seen)
		})
		r := expectReport("report under Deny", []string{
			"fail pod/lone shop-drain",
			"fail deployment/tight shop-drain",
			"pass deployment/roomy shop-drain",
		}, orv1.ReportSummary{Pass: 1, Fail: 2})
		for _, res := range r.Results {
			if res.Result == "fail" && res.Properties["action"] != "Deny" {
				t.Errorf("fail result action %q, want Deny", res.Properties["action"])
			}
		}
	})

	t.Run("a workload fixed: report and status follow", func(t *testing.T) {
		// Without admission webhooks here, the update is stored as is.
		must(e.c.Get(ctx, client.ObjectKeyFromObject(tight), tight))
		tight.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](60)
		must(e.c.Update(ctx, tight))
		expectReport("report after the fix", []string{
			"fail pod/lone shop-drain",
			"pass deployment/roomy shop-drain",
			"pass deployment/tight shop-drain",
		}, orv1.ReportSummary{Pass: 2, Fail: 1})
		expectStatus("status after the fix", 3, 1)
	})

	t.Run("an unchanged cluster is not written again", func(t *testing.T) {
		r1, err := report("shop")(ctx)
		must(err)
		// A pass over shop that changes nothing: a label no policy reads.
		var p corev1.Pod
		must(e.c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "lone"}, &p))
		p.Labels["touched"] = "yes"
		must(e.c.Update(ctx, &p))
		time.Sleep(time.Second) // a settle period and more: a write would have happened by now
		r2, err := report("shop")(ctx)
		must(err)
		if r1.ResourceVersion != r2.ResourceVersion {
			t.Errorf("report rewritten (resourceVersion %s -> %s) though nothing in it changed", r1.ResourceVersion, r2.ResourceVersion)
		}
	})

	t.Run("the judged objects were never written", func(t *testing.T) {
		var d appsv1.Deployment
		must(e.c.Get(ctx, client.ObjectKeyFromObject(roomy), &d))
		if d.ResourceVersion != roomy.ResourceVersion {
			t.Errorf("deployment/roomy was written (resourceVersion %s -> %s)", roomy.ResourceVersion, d.ResourceVersion)
		}
	})

	t.Run("the policy deleted: the report goes, and its metrics", func(t *testing.T) {
		must(e.c.Delete(ctx, pol))
		eventually(t, "report deleted", func(ctx context.Context) (bool, string) {
			_, err := report("shop")(ctx)
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
		eventually(t, "metrics dropped", func(context.Context) (bool, string) {
			_, ok := gauge(t, e.reg, "shop-drain", "fail")
			return !ok, "series still exported"
		})
	})
}

// lines collects log lines.
type lines struct {
	mu  sync.Mutex
	all []string
}

func (l *lines) add(prefix, args string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, prefix+" "+args)
}

func (l *lines) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.all {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

// TestBackgroundAuditWithoutReportCRDs: with no openreports.io CRDs the
// audit still counts into the policy status, writes no report, says once
// that reports are off, and logs no error however many passes run.
func TestBackgroundAuditWithoutReportCRDs(t *testing.T) {
	log := &lines{}
	e := start(t, false, funcr.New(log.add, funcr.Options{}))
	ctx := context.Background()
	if err := e.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "shop"}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Create(ctx, deployment("shop", "tight", 30)); err != nil {
		t.Fatal(err)
	}
	pol := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "shop-drain"}, Spec: policySpec(v1alpha1.ActionAudit)}
	if err := e.c.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	eventually(t, "status.audit without reports", func(ctx context.Context) (bool, string) {
		var p v1alpha1.LifecyclePolicy
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(pol), &p); err != nil {
			return false, err.Error()
		}
		a := p.Status.Audit
		return a != nil && a.Matched == 1 && a.Violations == 1, fmt.Sprintf("%+v", a)
	})
	// More passes: a policy change (a full pass) and an object change.
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(pol), pol); err != nil {
		t.Fatal(err)
	}
	pol.Spec = policySpec(v1alpha1.ActionWarn)
	if err := e.c.Update(ctx, pol); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Create(ctx, deployment("shop", "tight2", 30)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "status after more passes", func(ctx context.Context) (bool, string) {
		var p v1alpha1.LifecyclePolicy
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(pol), &p); err != nil {
			return false, err.Error()
		}
		a := p.Status.Audit
		return a != nil && a.Matched == 2 && a.Violations == 2, fmt.Sprintf("%+v", a)
	})
	if n := log.count("policy reports off"); n != 1 {
		t.Errorf("said %d times that reports are off, want once", n)
	}
	if n := log.count(`"error"`); n != 0 {
		t.Errorf("%d error lines logged without the report CRDs:\n%s", n, strings.Join(log.all, "\n"))
	}
}
