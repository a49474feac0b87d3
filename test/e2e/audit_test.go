//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	orv1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/audit"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// TestE2EAuditReport: a pod that was running before its policy shows up in
// the background audit's report for its namespace, with the finding's
// message. Needs the chart installed with reports.installCRDs=true (or
// another engine's openreports.io CRDs); skipped, saying so, otherwise.
func TestE2EAuditReport(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	if _, err := s.cs.Discovery().ServerResourcesForGroupVersion(orv1.SchemeGroupVersion.String()); err != nil {
		t.Skipf("the cluster serves no %s (install the chart with reports.installCRDs=true): %v", orv1.SchemeGroupVersion, err)
	}
	if err := orv1.AddToScheme(s.c.Scheme()); err != nil {
		t.Fatal(err)
	}
	p := s.createRunning(t, s.pod("audit", "audited", 30, "sleep 3600"))
	t.Cleanup(func() {
		_ = s.cs.CoreV1().Pods(s.ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	})
	s.policy(t, "audit", v1alpha1.LifecyclePolicySpec{
		PreStop:         &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: 25}}},
		ShutdownSeconds: ptr.To[int64](10),
		Validation:      &v1alpha1.Validation{Action: v1alpha1.ActionAudit},
	})
	const msg = `container "app": preStop 25s + shutdown 10s = 35s > terminationGracePeriodSeconds 30s`
	var last string
	err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		var r orv1.Report
		if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: audit.ReportName}, &r); err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("%+v", r.Results)
		for _, res := range r.Results {
			for _, sub := range res.Subjects {
				if sub.Kind == "Pod" && sub.Name == p.Name && sub.UID == p.UID && res.Result == "fail" && strings.Contains(res.Description, msg) {
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no fail result for the running pod %s in report %s/%s within 2m; last: %s", p.Name, s.ns, audit.ReportName, last)
	}
}
