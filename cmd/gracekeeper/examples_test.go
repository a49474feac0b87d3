package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// outcome is what `gracekeeper check` must report on one example.
type outcome struct {
	exit int
	// changed is how many objects the policies change.
	changed int
	// findings are "ACTION Reason" per finding line, in output order.
	findings []string
	// stdout must hold these, in this order.
	stdout []string
}

// exampleOutcome is the expected result on one shipped example: with the
// whole library (as examples/README.md describes it) and with each library
// policy alone (keyed by file under policies/library/).
type exampleOutcome struct {
	library outcome
	alone   map[string]outcome
}

// nothing: the policy does not select the example's pods.
var nothing = outcome{}

// exampleOutcomes covers every file in examples/ (a test fails when one is
// missing, or listed but gone).
var exampleOutcomes = map[string]exampleOutcome{
	"web-deployment.yaml": {
		// sleep 5 + shutdown 20 = 25 <= 30: no finding, grace period left unset.
		library: outcome{changed: 1, stdout: []string{"gracekeeper.dev/policies: http-drain,termination-record", "- gracekeeper.dev/termination-record", "sleep:", "seconds: 5"}},
		alone: map[string]outcome{
			"http-drain.yaml":         {changed: 1, stdout: []string{"gracekeeper.dev/policies: http-drain", "seconds: 5"}},
			"termination-record.yaml": {changed: 1, stdout: []string{"- gracekeeper.dev/termination-record", `gracekeeper.dev/finalize: "true"`}},
			"mesh-aware.yaml":         nothing, // selects profile: mesh
			"batch.yaml":              nothing, // selects Job pods
		},
	},
	"slow-drain-deployment.yaml": {
		// own sleep 90 kept; 90 + 20 = 110 > fit's cap of 60.
		library: outcome{exit: 1, changed: 1, findings: []string{"WARN GraceCapped", "DENY BudgetExceeded"}, stdout: []string{"sleep 90", "terminationGracePeriodSeconds: 60"}},
		alone: map[string]outcome{
			"http-drain.yaml": {exit: 1, changed: 1, findings: []string{"WARN GraceCapped", "DENY BudgetExceeded"}, stdout: []string{"terminationGracePeriodSeconds: 60"}},
			// termination-record only audits budgets: 90 + its shutdown > 30.
			"termination-record.yaml": {changed: 1, findings: []string{"AUDIT BudgetExceeded"}},
			"mesh-aware.yaml":         nothing,
			"batch.yaml":              nothing,
		},
	},
	"sidecar-pod.yaml": {
		// web 20 s, then log-shipper 35 s, then istio-proxy 50 s: fit to 50.
		library: outcome{changed: 1, stdout: []string{"gracekeeper.dev/policies: mesh-aware,termination-record", "seconds: 5", "name: log-shipper", "terminationGracePeriodSeconds: 50"}},
		alone: map[string]outcome{
			"mesh-aware.yaml":         {changed: 1, stdout: []string{"terminationGracePeriodSeconds: 50"}},
			"termination-record.yaml": {changed: 1, stdout: []string{"- gracekeeper.dev/termination-record"}},
			"http-drain.yaml":         nothing, // selects profile: http-drain
			"batch.yaml":              nothing,
		},
	},
	"exec-hook-pod.yaml": {
		// the drain script's time cannot be known: a warning naming the annotation.
		library: outcome{changed: 1, findings: []string{"WARN UnknownPreStop"}, stdout: []string{"/app/bin/drain"}},
		alone: map[string]outcome{
			"http-drain.yaml": {changed: 1, findings: []string{"WARN UnknownPreStop"}},
			// termination-record's findings are audited only.
			"termination-record.yaml": {changed: 1, findings: []string{"AUDIT UnknownPreStop"}},
			"mesh-aware.yaml":         nothing,
			"batch.yaml":              nothing,
		},
	},
	"cronjob.yaml": {
		// judged as its Jobs' pods, which carry batch.kubernetes.io/job-name:
		// batch applies too.
		library: outcome{changed: 1, stdout: []string{"gracekeeper.dev/policies: batch,termination-record", "- gracekeeper.dev/termination-record"}},
		alone: map[string]outcome{
			"termination-record.yaml": {changed: 1},
			"batch.yaml":              {changed: 1, stdout: []string{"gracekeeper.dev/policies: batch", "- gracekeeper.dev/termination-record"}},
			"http-drain.yaml":         nothing,
			"mesh-aware.yaml":         nothing,
		},
	},
	"statefulset.yaml": {
		// own sleep 10 + 20 = 30 <= 60; the grace period is not lowered.
		library: outcome{changed: 1, stdout: []string{"gracekeeper.dev/policies: http-drain,termination-record", "sleep 10", "terminationGracePeriodSeconds: 60"}},
		alone: map[string]outcome{
			"http-drain.yaml":         {changed: 1},
			"termination-record.yaml": {changed: 1},
			"mesh-aware.yaml":         nothing,
			"batch.yaml":              nothing,
		},
	},
}

var findingLine = regexp.MustCompile(`^(DENY|WARN|AUDIT|INFO) +\S+ \(doc \d+ of [^)]*\) .*\[(?:policy [^,\]]+, )?(\w+)\]$`)

// findingsOf extracts "ACTION Reason" from check's stderr.
func findingsOf(stderr string) []string {
	var out []string
	for _, line := range strings.Split(stderr, "\n") {
		if m := findingLine.FindStringSubmatch(line); m != nil {
			out = append(out, m[1]+" "+m[2])
		}
	}
	return out
}

func globNames(t *testing.T, pattern string) []string {
	t.Helper()
	var names []string
	for _, ext := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(pattern, ext))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m {
			names = append(names, filepath.Base(p))
		}
	}
	sort.Strings(names)
	return names
}

// TestLibraryOnExamples runs the library (whole, and each policy alone)
// against each example through the real command line, checks exit code,
// findings, changes and output, then feeds the output back in and expects
// the same output with nothing changed.
func TestLibraryOnExamples(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	examples := globNames(t, filepath.Join(root, "examples"))
	library := globNames(t, filepath.Join(root, "policies", "library"))
	if len(examples) == 0 || len(library) == 0 {
		t.Fatalf("found %d examples and %d library policies; want both", len(examples), len(library))
	}
	// The table and the files must agree both ways, so neither goes stale.
	for ex, o := range exampleOutcomes {
		if _, err := os.Stat(filepath.Join(root, "examples", ex)); err != nil {
			t.Errorf("exampleOutcomes lists %s, which is not in examples/", ex)
		}
		for pol := range o.alone {
			if _, err := os.Stat(filepath.Join(root, "policies", "library", pol)); err != nil {
				t.Errorf("exampleOutcomes[%s] lists %s, which is not in policies/library/", ex, pol)
			}
		}
	}
	for _, ex := range examples {
		o, ok := exampleOutcomes[ex]
		if !ok {
			t.Errorf("no expected outcome for examples/%s: add it to exampleOutcomes", ex)
			continue
		}
		exPath := filepath.Join("examples", ex)
		t.Run(ex+"/library", func(t *testing.T) {
			checkOutcome(t, root, exPath, filepath.Join("policies", "library"), o.library)
		})
		for _, pol := range library {
			want, ok := o.alone[pol]
			if !ok {
				t.Errorf("no expected outcome for examples/%s with policies/library/%s alone: add it to exampleOutcomes", ex, pol)
				continue
			}
			t.Run(ex+"/"+pol, func(t *testing.T) {
				checkOutcome(t, root, exPath, filepath.Join("policies", "library", pol), want)
			})
		}
	}
}

func checkOutcome(t *testing.T, root, example, policy string, want outcome) {
	t.Helper()
	code, out, stderr := runCLI(t, root, "", "-f", example, "-p", policy)
	if code != want.exit {
		t.Errorf("exit %d, want %d\nstderr:\n%s", code, want.exit, stderr)
	}
	if got := findingsOf(stderr); !reflect.DeepEqual(got, want.findings) && (len(got) > 0 || len(want.findings) > 0) {
		t.Errorf("findings %q, want %q\nstderr:\n%s", got, want.findings, stderr)
	}
	if !strings.Contains(stderr, fmt.Sprintf(" %d changed)", want.changed)) {
		t.Errorf("want %d changed:\n%s", want.changed, stderr)
	}
	assertHolds(t, "stdout", out, want.stdout)
	input, err := os.ReadFile(filepath.Join(root, example))
	if err != nil {
		t.Fatal(err)
	}
	if want.changed == 0 && out != string(input) {
		t.Errorf("nothing changed, yet the output is not the input as written:\n%s", out)
	}
	code2, out2, stderr2 := runCLI(t, root, out, "-f", "-", "-p", policy)
	if code2 != code || out2 != out {
		t.Errorf("second pass: exit %d (first %d), output changed:\n--- first\n%s\n--- second\n%s", code2, code, out, out2)
	}
	if !strings.Contains(stderr2, " 0 changed)") {
		t.Errorf("second pass changed objects:\n%s", stderr2)
	}
}
