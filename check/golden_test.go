package check

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

const goldenDir = "testdata/golden"

// goldenCases are the golden cases, keyed by their directory under
// testdata/golden. Each directory holds input.yaml, policies.yaml and the
// goldens output.yaml (stdout) and findings.txt (exit code and stderr).
var goldenCases = map[string]struct {
	desc    string
	options Options
}{
	"drain-fit":          {desc: "sleep preStop injected into a Deployment template and a pod; fit raises the grace period"},
	"tight-grace-denied": {desc: "a preStop that does not fit the template's grace period denies the Deployment only"},
	"sidecars-mesh":      {desc: "native sidecar gets a hook, istio-proxy is excluded, plain init containers are left alone"},
	"exec-hooks":         {desc: "own exec and httpGet hooks are kept; sleep N is recognised, an unknown script is warned about"},
	"no-match":           {desc: "no policy matches: every document is printed exactly as written"},
	"all-kinds":          {desc: "every workload kind, a v1 List, and kinds that pass through"},
	"unknown-fields":     {desc: "fields the Go types do not know survive the change; a misspelt field is flagged"},
	"namespace-selector": {desc: "namespace labels from the flag and kubernetes.io/metadata.name; kube-system excluded", options: Options{NamespaceLabels: map[string]string{"team": "payments"}}},
	"warn-audit":         {desc: "Warn and Audit findings do not fail the run"},
	"controller-labels":  {desc: "templates judged with the labels their controllers give pods; unknown values may match, DoesNotExist on a controller label does not"},
}

// testEngine is the engine configuration the CLI uses.
func testOptions(o Options) Options {
	o.Engine.ExcludedNamespaces = []string{"kube-system", "kube-node-lease"}
	if o.Engine.IgnoreLabel == "" {
		o.Engine.IgnoreLabel = "gracekeeper.dev/ignore"
	}
	return o
}

// runGolden runs check as the CLI does and returns stdout and the
// findings golden (exit code, then stderr).
func runGolden(t *testing.T, dir string, o Options, stdin []byte) (stdout []byte, findings string) {
	t.Helper()
	in := filepath.Join(dir, "input.yaml")
	if stdin != nil {
		in = "-"
	}
	var out, errOut bytes.Buffer
	code := Run(context.Background(), RunOptions{
		Options:     testOptions(o),
		Files:       []string{in},
		PolicyPaths: []string{filepath.Join(dir, "policies.yaml")},
		Stdin:       bytes.NewReader(stdin),
		Stdout:      &out,
		Stderr:      &errOut,
	})
	return out.Bytes(), fmt.Sprintf("exit %d\n%s", code, errOut.String())
}

func TestGolden(t *testing.T) {
	for name, tc := range goldenCases {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(goldenDir, name)
			out, findings := runGolden(t, dir, tc.options, nil)
			compareGolden(t, filepath.Join(dir, "output.yaml"), out)
			compareGolden(t, filepath.Join(dir, "findings.txt"), []byte(findings))

			// Second pass, as the mutating webhook's reinvocation does: the
			// output fed back in must come out identical, with no change.
			c, err := New(context.Background(), testOptions(tc.options), []string{filepath.Join(dir, "policies.yaml")})
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Check([]string{"-"}, bytes.NewReader(out))
			if err != nil {
				t.Fatalf("second pass: %v", err)
			}
			if n := res.Changed(); n != 0 {
				t.Errorf("second pass changed %d objects; the mutation is not idempotent", n)
			}
			var again bytes.Buffer
			if err := res.WriteObjects(&again, FormatYAML); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Bytes(), out) {
				t.Errorf("second pass output differs from the first:\n--- first\n%s\n--- second\n%s", out, again.Bytes())
			}
			// The findings do not depend on the pass: the mutated objects
			// are judged as admission judges the pods they make.
			_, findings2 := runGolden(t, dir, tc.options, out)
			if got, want := stripSources(findings2), stripSources(findings); got != want {
				t.Errorf("second pass findings differ:\n--- first\n%s\n--- second\n%s", want, got)
			}
		})
	}
}

// stripSources drops file names and change counts, which differ between a
// file and the same objects read from stdin after mutation.
func stripSources(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if i := strings.Index(line, " of "); i >= 0 {
			if j := strings.IndexAny(line[i:], ",)"); j >= 0 {
				line = line[:i] + line[i+j:]
			}
		}
		if strings.HasPrefix(line, "PASS:") || strings.HasPrefix(line, "FAIL:") {
			line = line[:4]
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./check -run TestGolden -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is out of date (run go test ./check -run TestGolden -update):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

// TestGoldenNotStale fails on golden directories no case runs, and on cases
// or files missing their inputs, so goldens cannot rot unnoticed.
func TestGoldenNotStale(t *testing.T) {
	entries, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"input.yaml": true, "policies.yaml": true, "output.yaml": true, "findings.txt": true}
	var dirs []string
	for _, e := range entries {
		if !e.IsDir() {
			t.Errorf("stray file %s in %s", e.Name(), goldenDir)
			continue
		}
		dirs = append(dirs, e.Name())
		if _, ok := goldenCases[e.Name()]; !ok {
			t.Errorf("stale golden directory %s: no case in goldenCases runs it", e.Name())
		}
		files, err := os.ReadDir(filepath.Join(goldenDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if !known[f.Name()] {
				t.Errorf("stale golden file %s/%s", e.Name(), f.Name())
			}
		}
	}
	sort.Strings(dirs)
	for name := range goldenCases {
		if i := sort.SearchStrings(dirs, name); i == len(dirs) || dirs[i] != name {
			t.Errorf("case %s has no directory %s/%s", name, goldenDir, name)
		}
	}
}
