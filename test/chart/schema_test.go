package chart

import (
	"strings"
	"testing"

	"github.com/gracekeeper/gracekeeper/test/chartrender"
)

// TestSchemaRefusesBadValues: values.schema.json stops a bad install before
// anything reaches the cluster, with an error that names the field.
func TestSchemaRefusesBadValues(t *testing.T) {
	for name, tc := range map[string]struct {
		values map[string]any
		want   []string
	}{
		"zero replicas":                 {map[string]any{"replicas": 0}, []string{"/replicas", "minimum"}},
		"replicas as a string":          {map[string]any{"replicas": "two"}, []string{"/replicas", "integer"}},
		"unknown failurePolicy":         {map[string]any{"webhook": map[string]any{"mutating": map[string]any{"failurePolicy": "Retry"}}}, []string{"/webhook/mutating/failurePolicy", "Ignore", "Fail"}},
		"lower-case failurePolicy":      {map[string]any{"webhook": map[string]any{"validating": map[string]any{"failurePolicy": "ignore"}}}, []string{"/webhook/validating/failurePolicy"}},
		"unknown certificate mode":      {map[string]any{"certificates": map[string]any{"mode": "letsencrypt"}}, []string{"/certificates/mode", "self", "certManager"}},
		"unknown admission mode":        {map[string]any{"admission": map[string]any{"mode": "both"}}, []string{"/admission/mode", "webhook", "apiserver"}},
		"timeout 0":                     {map[string]any{"webhook": map[string]any{"timeoutSeconds": 0}}, []string{"/webhook/timeoutSeconds", "minimum"}},
		"timeout above 30":              {map[string]any{"webhook": map[string]any{"timeoutSeconds": 31}}, []string{"/webhook/timeoutSeconds", "maximum"}},
		"port out of range":             {map[string]any{"webhook": map[string]any{"port": 70000}}, []string{"/webhook/port"}},
		"bad duration":                  {map[string]any{"certificates": map[string]any{"self": map[string]any{"certLifetime": "90 days"}}}, []string{"/certificates/self/certLifetime"}},
		"bad drain delay":               {map[string]any{"drainDelay": 10}, []string{"/drainDelay"}},
		"misspelt top-level key":        {map[string]any{"replica": 2}, []string{"replica"}},
		"misspelt nested key":           {map[string]any{"webhook": map[string]any{"failurePolicy": "Fail"}}, []string{"failurePolicy"}},
		"invalid namespace name":        {map[string]any{"webhook": map[string]any{"excludeNamespaces": []any{"Kube_System"}}}, []string{"/webhook/excludeNamespaces/0"}},
		"anti-affinity weight 0":        {map[string]any{"podAntiAffinity": map[string]any{"weight": 0}}, []string{"/podAntiAffinity/weight"}},
		"bad pull policy":               {map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}, []string{"/image/pullPolicy"}},
		"grace period 0":                {map[string]any{"terminationGracePeriodSeconds": 0}, []string{"/terminationGracePeriodSeconds"}},
		"default policy bad name":       {map[string]any{"defaultPolicy": map[string]any{"name": "../secrets"}}, []string{"/defaultPolicy/name"}},
		"crds.enabled as a string":      {map[string]any{"crds": map[string]any{"enabled": "yes"}}, []string{"/crds/enabled", "boolean"}},
		"misspelt crds key":             {map[string]any{"crds": map[string]any{"keeep": true}}, []string{"keeep"}},
		"spread without skew":           {map[string]any{"topologySpreadConstraints": []any{map[string]any{"topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}}}, []string{"/topologySpreadConstraints/0", "maxSkew"}},
		"spread bad whenUnsatisfiable":  {map[string]any{"topologySpreadConstraints": []any{map[string]any{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "Never"}}}, []string{"/topologySpreadConstraints/0/whenUnsatisfiable"}},
		"extra argument not a flag":     {map[string]any{"extraArgs": []any{"check"}}, []string{"/extraArgs/0"}},
		"extra env without a name":      {map[string]any{"extraEnv": []any{map[string]any{"value": "x"}}}, []string{"/extraEnv/0", "name"}},
		"service account bad name":      {map[string]any{"serviceAccount": map[string]any{"name": "Gk_Runner"}}, []string{"/serviceAccount/name"}},
		"anti-affinity required string": {map[string]any{"podAntiAffinity": map[string]any{"required": "true"}}, []string{"/podAntiAffinity/required"}},
		"misspelt grafana key":          {map[string]any{"grafana": map[string]any{"dashboards": map[string]any{"enabled": true}}}, []string{"dashboards"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := chartrender.Render(tc.values)
			if err == nil {
				t.Fatal("rendered; want the schema to refuse it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestTemplateRefusesUnknownDefaultPolicy: a name with no file fails the render with the reason.
func TestTemplateRefusesUnknownDefaultPolicy(t *testing.T) {
	_, err := chartrender.Render(map[string]any{"defaultPolicy": map[string]any{"enabled": true, "name": "no-such-policy"}})
	if err == nil || !strings.Contains(err.Error(), `defaultPolicy.name "no-such-policy"`) {
		t.Fatalf("err = %v, want it to name the missing policy", err)
	}
}
