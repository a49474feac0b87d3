package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	orv1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/audit"
	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// legacyName is a Deployment created before the policy, as on a cluster
// gracekeeper is introduced to: admission never judged it; the audit does.
const legacyName = "legacy-api"

// createLegacy creates the pre-policy Deployment: its own preStop sleeps
// 600s, so the policy would refuse it now.
func (d *demo) createLegacy(ctx context.Context) error {
	dep := deployment(legacyName, pod(demoNamespace, "", 30, slowDrain))
	dep.Spec.Replicas = ptr.To[int32](1)
	if err := d.c.Create(ctx, dep); err != nil {
		return fmt.Errorf("create deployment/%s: %w", legacyName, err)
	}
	fmt.Fprintf(d.out, "   deployment/%s created before any policy (its own preStop sleeps 600s)\n", legacyName)
	return nil
}

// showAudit prints what the background audit and `gracekeeper audit` say
// of the demo namespace: the policy's status counts (kubectl get lcp), the
// namespace's openreports.io Report, and the command's table.
func (d *demo) showAudit(ctx context.Context, gkBin, kubeconfig, policy string) error {
	scheme, err := clientscheme.New(orv1.AddToScheme)
	if err != nil {
		return err
	}
	c, err := client.New(d.cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	fmt.Fprintln(d.out, "\n=== What the background audit found ===")
	// Wait for a report that has judged the legacy Deployment and every
	// showcase object (the audit batches changes every 2s).
	var (
		rep  orv1.Report
		pol  v1alpha1.LifecyclePolicy
		last string
	)
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Namespace: demoNamespace, Name: audit.ReportName}, &rep); err != nil {
			last = err.Error()
			return false, nil
		}
		if err := c.Get(ctx, client.ObjectKey{Name: policy}, &pol); err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("report summary %+v, policy status %+v", rep.Summary, pol.Status.Audit)
		// The status is written after the namespace's report and Events in a pass.
		return hasSubject(&rep, "Deployment", legacyName) && hasSubject(&rep, "Deployment", "api") &&
			pol.Status.Audit != nil && pol.Status.Audit.Violations > 0, nil
	})
	if err != nil {
		return fmt.Errorf("no report of the audit of namespace %s after 60s (last: %s)", demoNamespace, last)
	}
	fmt.Fprintf(d.out, "\nkubectl get lcp %s: MATCHED %d  VIOLATIONS %d\n", policy, pol.Status.Audit.Matched, pol.Status.Audit.Violations)
	fmt.Fprintf(d.out, "\nReport %s/%s (openreports.io/v1alpha1): pass %d, fail %d, warn %d\n",
		demoNamespace, audit.ReportName, rep.Summary.Pass, rep.Summary.Fail, rep.Summary.Warn)
	for _, r := range rep.Results {
		for _, s := range r.Subjects {
			fmt.Fprintf(d.out, "   %-4s %s/%s  [policy %s] %s\n", r.Result, strings.ToLower(s.Kind), s.Name, r.Policy, r.Description)
		}
	}
	var evs corev1.EventList
	if err := c.List(ctx, &evs, client.InNamespace(demoNamespace)); err == nil {
		for _, ev := range evs.Items {
			if ev.Reason == "PodsWouldBeRefused" {
				fmt.Fprintf(d.out, "\nEvent on %s/%s: %s %s: %s\n", strings.ToLower(ev.InvolvedObject.Kind), ev.InvolvedObject.Name, ev.Type, ev.Reason, ev.Message)
			}
		}
	}

	fmt.Fprintf(d.out, "\n$ gracekeeper audit -n %s\n", demoNamespace)
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, gkBin, "audit", "--kubeconfig", kubeconfig, "-n", demoNamespace, "--excluded-namespaces", "kube-system,kube-node-lease,"+gkNamespace)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	d.out.Write(out.Bytes())
	d.out.Write(errOut.Bytes())
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		return fmt.Errorf("gracekeeper audit: %w", err)
	}
	fmt.Fprintf(d.out, "(exit code %d: 1 means a policy denies something that runs)\n", code)
	return nil
}

func hasSubject(r *orv1.Report, kind, name string) bool {
	for _, res := range r.Results {
		for _, s := range res.Subjects {
			if s.Kind == kind && s.Name == name {
				return true
			}
		}
	}
	return false
}
