package chart

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gracekeeper/gracekeeper/test/chartrender"
)

// TestReportValues: the openreports.io CRDs are installed only when asked
// (another policy engine may own them), and the audit's RBAC and flags
// follow audit.enabled.
func TestReportValues(t *testing.T) {
	tests := []struct {
		desc      string
		values    map[string]any
		wantCRDs  []string
		wantRole  bool
		wantAudit string
	}{
		{desc: "defaults: audit on, CRDs left to others", values: map[string]any{}, wantRole: true, wantAudit: "--audit=true"},
		{desc: "installCRDs", values: map[string]any{"reports": map[string]any{"installCRDs": true}},
			wantCRDs: []string{"clusterreports.openreports.io", "reports.openreports.io"}, wantRole: true, wantAudit: "--audit=true"},
		{desc: "audit off", values: map[string]any{"audit": map[string]any{"enabled": false}}, wantAudit: "--audit=false"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			objs, err := chartrender.Render(tc.values)
			if err != nil {
				t.Fatal(err)
			}
			var crds, args []string
			role := false
			for _, o := range objs {
				switch o.GetKind() {
				case "CustomResourceDefinition":
					if o.GetName() != "lifecyclepolicies.gracekeeper.dev" {
						crds = append(crds, o.GetName())
					}
				case "ClusterRole":
					role = role || o.GetName() == "gracekeeper-audit"
				case "Deployment":
					cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
					if len(cs) > 0 {
						for _, a := range cs[0].(map[string]any)["args"].([]any) {
							args = append(args, a.(string))
						}
					}
				}
			}
			slices.Sort(crds)
			if !slices.Equal(crds, tc.wantCRDs) {
				t.Errorf("CRDs %v, want %v", crds, tc.wantCRDs)
			}
			if role != tc.wantRole {
				t.Errorf("audit ClusterRole rendered: %v, want %v", role, tc.wantRole)
			}
			if !slices.Contains(args, tc.wantAudit) {
				t.Errorf("args %q lack %s", args, tc.wantAudit)
			}
		})
	}
}
