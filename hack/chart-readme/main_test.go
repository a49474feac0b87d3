package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestChartREADMEIsCurrent: charts/gracekeeper/README.md is what the
// generator makes of the current values.yaml (`make manifests` rewrites it).
func TestChartREADMEIsCurrent(t *testing.T) {
	dir := filepath.Join("..", "..", "charts", "gracekeeper")
	want, err := Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("charts/gracekeeper/README.md is stale: run `make manifests` (or go run ./hack/chart-readme charts/gracekeeper)")
	}
}

func TestRows(t *testing.T) {
	rows, err := Rows([]byte(`# Header note, not a description.

# -- Replicas of the server.
replicas: 2
webhook:
  # -- What the API server does on an outage:
  # -- Ignore or Fail.
  failurePolicy: Ignore
# -- Resources; children need no comment of their own.
resources:
  limits: {memory: 256Mi}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{
		{"replicas", "int", "`2`", "Replicas of the server."},
		{"webhook.failurePolicy", "string", "`\"Ignore\"`", "What the API server does on an outage: Ignore or Fail."},
		{"resources", "object", "`{\"limits\":{\"memory\":\"256Mi\"}}`", "Resources; children need no comment of their own."},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v", rows)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, rows[i], want[i])
		}
	}
	_, err = Rows([]byte("# -- Documented.\na: 1\nundocumented:\n  b: 2\n"))
	if err == nil || !strings.Contains(err.Error(), "undocumented.b") {
		t.Errorf("an undocumented key: err = %v, want it named", err)
	}
}
