//go:build unix

package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gracekeeper/gracekeeper/test/controlplane"
)

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// buildGracekeeper builds ./cmd/gracekeeper into the test's temp dir.
func buildGracekeeper(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gracekeeper")
	build := exec.Command("go", "build", "-o", bin, "./cmd/gracekeeper")
	build.Dir = controlplane.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/gracekeeper: %v\n%s", err, out)
	}
	return bin
}

// TestDemo runs the demo as `make demo` does, against a freshly built
// gracekeeper: once with --exit, checking the report, and once waiting for
// Ctrl-C; each time nothing may be left behind.
func TestDemo(t *testing.T) {
	controlplane.SkipIfShort(t)
	if err := controlplane.CheckAssets(); err != nil {
		t.Fatal(err)
	}
	gk := buildGracekeeper(t)
	t.Run("--exit prints the report and cleans up", func(t *testing.T) { testExit(t, gk) })
	t.Run("Ctrl-C stops everything", func(t *testing.T) { testInterrupt(t, gk) })
	t.Run("--admission-mode apiserver: the policy holds with gracekeeper killed", func(t *testing.T) { testAPIServerMode(t, gk) })
}

// testAPIServerMode runs the demo with serve --admission-mode apiserver:
// the same pods get the same hooks and refusals from the compiled
// admission policies, and after gracekeeper is killed (SIGKILL) a web pod
// still gets its hook and a pod over its budget is still refused.
func testAPIServerMode(t *testing.T, gk string) {
	report := runExit(t, gk, "--admission-mode", "apiserver")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?s)pod/web .*?admitted.*?container "app": preStop sleep 5s injected`),
		regexp.MustCompile(`(?s)pod/web .*?terminationGracePeriodSeconds 10 -> 25`),
		regexp.MustCompile(`(?s)pod/slow-drain .*?REFUSED: .*?ValidatingAdmissionPolicy .*?gracekeeper: container "app": preStop 600s \+ shutdown 20s = 620s > terminationGracePeriodSeconds 60s; raise it`),
		regexp.MustCompile(`(?s)deployment/slow-api .*?REFUSED: .*?container "app": preStop 600s`),
		regexp.MustCompile(`=== 7 admitted \(3 changed by gracekeeper\), 2 refused ===`),
		regexp.MustCompile(`gracekeeper is not running`),
		regexp.MustCompile(`pod/web-while-stopped .*\n\s+admitted: preStop sleep 5s, terminationGracePeriodSeconds 25`),
		regexp.MustCompile(`pod/slow-drain-while-stopped .*\n\s+REFUSED: .*ValidatingAdmissionPolicy .*gracekeeper: container "app": preStop 600s \+ shutdown 20s = 620s > terminationGracePeriodSeconds 60s`),
	} {
		if !want.MatchString(report) {
			t.Errorf("report does not match %s", want)
		}
	}
	checkNothingLeft(t, report)
}

// runExit runs the whole demo with --exit and the extra args, and returns
// its report; a non-zero exit fails the test.
func runExit(t *testing.T, gk string, extra ...string) string {
	t.Helper()
	args := append([]string{"--exit", "--assets", controlplane.AssetsDir(), "--gracekeeper", gk}, extra...)
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code := run(ctx, args, &stdout, &stderr)
	report := stdout.String()
	t.Logf("demo output:\n%s\nstderr:\n%s", report, stderr.String())
	if code != 0 {
		t.Fatalf("demo exited %d", code)
	}
	return report
}

// testExit runs the whole demo with --exit and checks the report shows the
// injected hook and the refusals with their reasons, and that nothing is
// left behind: no temp dir, no gracekeeper process, no kube-apiserver.
func testExit(t *testing.T, gk string) {
	report := runExit(t, gk)

	for _, want := range []*regexp.Regexp{
		// The web pod gets the library policy's native sleep preStop, and
		// fit raises its grace period to the budget: 5 + 20.
		regexp.MustCompile(`(?s)pod/web .*?admitted.*?container "app": preStop sleep 5s injected`),
		regexp.MustCompile(`(?s)pod/web .*?terminationGracePeriodSeconds 10 -> 25`),
		regexp.MustCompile(`(?s)pod/web .*?annotation gracekeeper.dev/policies=http-drain`),
		regexp.MustCompile(`(?s)pod/unselected .*?admitted\s+left unchanged`),
		regexp.MustCompile(`(?s)pod/opted-out .*?admitted\s+left unchanged`),
		regexp.MustCompile(`(?s)pod/system-pod .*?admitted\s+left unchanged`),
		// The pod whose own preStop takes 600s is refused, with the numbers and the fix.
		regexp.MustCompile(`(?s)pod/slow-drain .*?REFUSED: .*?container "app": preStop 600s \+ shutdown 20s = 620s > terminationGracePeriodSeconds 60s; raise it`),
		regexp.MustCompile(`(?s)deployment/slow-api .*?REFUSED: .*?container "app": preStop 600s`),
		regexp.MustCompile(`(?s)deployment/api .*?admitted.*?preStop sleep 5s injected`),
		regexp.MustCompile(`=== 7 admitted \(3 changed by gracekeeper\), 2 refused ===`),
		// The Deployment created before the policy: the background audit's
		// report, the policy's status, the Event and `gracekeeper audit`
		// all say its pods would be refused.
		regexp.MustCompile(`kubectl get lcp http-drain: MATCHED \d+  VIOLATIONS 1\n`),
		regexp.MustCompile(`Report demo/gracekeeper \(openreports.io/v1alpha1\): pass \d+, fail 1, warn \d+`),
		regexp.MustCompile(`fail deployment/legacy-api  \[policy http-drain\] container "app": preStop 600s \+ shutdown 20s = 620s`),
		regexp.MustCompile(`pass deployment/api  \[policy http-drain\]`),
		regexp.MustCompile(`Event on deployment/legacy-api: Warning PodsWouldBeRefused: pods of this Deployment would be refused: policy http-drain: container "app": preStop 600s`),
		regexp.MustCompile(`DENY  deployment/legacy-api \(namespace demo\) container "app": preStop 600s \+ shutdown 20s = 620s`),
		regexp.MustCompile(`FAIL: \d+ objects \(\d+ reviewed, \d+ changed\) against 1 policy: 1 denied`),
		regexp.MustCompile(`\(exit code 1: `),
		regexp.MustCompile(`export KUBECONFIG=\S+/kubeconfig`),
	} {
		if !want.MatchString(report) {
			t.Errorf("report does not match %s", want)
		}
	}
	if strings.Contains(report, "Press Ctrl-C") {
		t.Error("--exit still waited for Ctrl-C")
	}
	checkNothingLeft(t, report)
}
