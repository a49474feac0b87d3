package chart

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gracekeeper/gracekeeper/test/chartrender"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the current chart")

// goldenModes are the renders kept as reviewable goldens (the CRD left out: it
// is checked against config/crd by TestCRDIsTheGeneratedOne).
func goldenModes() map[string]map[string]any {
	return map[string]map[string]any{
		"self":        nil,
		"certmanager": {"certificates": map[string]any{"mode": "certManager"}},
		"apiserver":   {"admission": map[string]any{"mode": "apiserver"}},
		"options": {
			"serviceAccount":            map[string]any{"name": "gk-runner", "annotations": map[string]any{"iam.example.com/role": "gk"}},
			"podAntiAffinity":           map[string]any{"required": true},
			"topologySpreadConstraints": []any{map[string]any{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}},
			"extraArgs":                 []any{"--tls-min-version=1.3"},
			"extraEnv":                  []any{map[string]any{"name": "GOMEMLIMIT", "value": "200MiB"}},
			"defaultPolicy":             map[string]any{"enabled": true, "name": "http-drain"},
			"containerExits":            map[string]any{"readLogs": true},
		},
	}
}

// TestGoldenRenders: any change to what the chart renders shows up as a
// reviewed diff of testdata/; `go test ./test/chart -run TestGolden -update` rewrites them.
func TestGoldenRenders(t *testing.T) {
	want := map[string]bool{}
	for name, values := range goldenModes() {
		file := filepath.Join("testdata", name+".golden.yaml")
		want[filepath.Base(file)] = true
		t.Run(name, func(t *testing.T) {
			files, err := chartrender.RenderFiles(values)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for k := range files {
				if !strings.HasPrefix(k, "0-") && !strings.HasSuffix(k, "/templates/crds.yaml") {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			var b strings.Builder
			for _, k := range keys {
				b.WriteString("# Source: " + k + "\n" + strings.TrimSpace(files[k]) + "\n---\n")
			}
			got := b.String()
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(exp) != got {
				t.Errorf("render differs from %s; review and run `go test ./test/chart -run TestGolden -update`", file)
			}
		})
	}
	// Stale goldens: a file no mode produces any more.
	entries, _ := filepath.Glob(filepath.Join("testdata", "*.golden.yaml"))
	for _, e := range entries {
		if !want[filepath.Base(e)] {
			if *update {
				_ = os.Remove(e)
				continue
			}
			t.Errorf("stale golden %s: no mode renders it (run -update to remove)", e)
		}
	}
}
