package chart

import (
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"

	"github.com/gracekeeper/gracekeeper/test/chartrender"
)

// TestLint runs `helm lint`'s own rules for each mode; any message at warning
// level or above fails (informational ones, like a missing icon, are logged).
func TestLint(t *testing.T) {
	kv, err := chartutil.ParseKubeVersion(chartrender.KubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for name, values := range modes() {
		t.Run(name, func(t *testing.T) {
			res := lint.AllWithKubeVersion(chartrender.ChartDir(), values, chartrender.Namespace, kv)
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("lint: %s", m)
				} else {
					t.Logf("lint (info): %s", m)
				}
			}
		})
	}
}
