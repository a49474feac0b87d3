package chart

import (
	"strings"
	"testing"

	policyv1 "k8s.io/api/policy/v1"

	"github.com/gracekeeper/gracekeeper/test/chartrender"
)

// TestPodDisruptionBudget: one replica renders no PDB (any PDB that keeps a
// pod available would block every node drain); two or more keep
// minAvailable of them; a minAvailable that reaches replicas is refused at
// render with a message naming both values.
func TestPodDisruptionBudget(t *testing.T) {
	tests := map[string]struct {
		values           map[string]any
		wantPDB          bool
		wantMinAvailable int
		wantErr          string
	}{
		"one replica: none":                 {values: map[string]any{"replicas": 1}},
		"one replica, minAvailable 1: none": {values: map[string]any{"replicas": 1, "podDisruptionBudget": map[string]any{"enabled": true, "minAvailable": 1}}},
		"two replicas (default): keep one":  {values: nil, wantPDB: true, wantMinAvailable: 1},
		"three replicas, keep two":          {values: map[string]any{"replicas": 3, "podDisruptionBudget": map[string]any{"enabled": true, "minAvailable": 2}}, wantPDB: true, wantMinAvailable: 2},
		"disabled":                          {values: map[string]any{"replicas": 3, "podDisruptionBudget": map[string]any{"enabled": false}}},
		"minAvailable equal to replicas":    {values: map[string]any{"replicas": 2, "podDisruptionBudget": map[string]any{"enabled": true, "minAvailable": 2}}, wantErr: "podDisruptionBudget.minAvailable (2) must be below replicas (2)"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			objs, err := chartrender.Render(tc.values)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("render error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := count(objs, "PodDisruptionBudget"); n != map[bool]int{false: 0, true: 1}[tc.wantPDB] {
				t.Fatalf("%d PodDisruptionBudgets rendered, want PDB=%v", n, tc.wantPDB)
			}
			if !tc.wantPDB {
				return
			}
			var pdb policyv1.PodDisruptionBudget
			into(t, find(t, objs, "PodDisruptionBudget", "gracekeeper"), &pdb)
			if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != tc.wantMinAvailable || pdb.Spec.MaxUnavailable != nil {
				t.Errorf("PDB spec %+v, want minAvailable %d only", pdb.Spec, tc.wantMinAvailable)
			}
		})
	}
}
