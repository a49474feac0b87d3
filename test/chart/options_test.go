package chart

import (
	"maps"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gracekeeper/gracekeeper/test/chartrender"
)

func deploymentOf(t *testing.T, objs []*unstructured.Unstructured) appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	into(t, find(t, objs, "Deployment", ""), &d)
	return d
}

// TestScheduling: the anti-affinity presets, affinity replacing them, and
// topology spread constraints that select this release's pods by default.
func TestScheduling(t *testing.T) {
	selector := map[string]string{"app.kubernetes.io/name": "gracekeeper", "app.kubernetes.io/instance": chartrender.ReleaseName}
	t.Run("required anti-affinity preset", func(t *testing.T) {
		pod := deploymentOf(t, render(t, map[string]any{"podAntiAffinity": map[string]any{"required": true}})).Spec.Template.Spec
		aa := pod.Affinity.PodAntiAffinity
		if len(aa.PreferredDuringSchedulingIgnoredDuringExecution) != 0 || len(aa.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
			t.Fatalf("want one required term and no preferred one: %+v", aa)
		}
		term := aa.RequiredDuringSchedulingIgnoredDuringExecution[0]
		if term.TopologyKey != "kubernetes.io/hostname" || !maps.Equal(term.LabelSelector.MatchLabels, selector) {
			t.Errorf("required term %+v: want hostname and the release's selector labels", term)
		}
	})
	t.Run("affinity replaces the preset", func(t *testing.T) {
		aff := map[string]any{"nodeAffinity": map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{
			"nodeSelectorTerms": []any{map[string]any{"matchExpressions": []any{map[string]any{"key": "node-role.example.com/infra", "operator": "Exists"}}}}}}}
		pod := deploymentOf(t, render(t, map[string]any{"affinity": aff})).Spec.Template.Spec
		if pod.Affinity.PodAntiAffinity != nil || pod.Affinity.NodeAffinity == nil ||
			pod.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Key != "node-role.example.com/infra" {
			t.Errorf("affinity %+v: want exactly the given node affinity", pod.Affinity)
		}
	})
	t.Run("preset off", func(t *testing.T) {
		if pod := deploymentOf(t, render(t, map[string]any{"podAntiAffinity": map[string]any{"enabled": false}})).Spec.Template.Spec; pod.Affinity != nil {
			t.Errorf("affinity %+v with the preset off", pod.Affinity)
		}
	})
	t.Run("topologySpreadConstraints", func(t *testing.T) {
		own := map[string]any{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
			"labelSelector": map[string]any{"matchLabels": map[string]any{"team": "platform"}}}
		zone := map[string]any{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
		pod := deploymentOf(t, render(t, map[string]any{"topologySpreadConstraints": []any{zone, own}})).Spec.Template.Spec
		tsc := pod.TopologySpreadConstraints
		if len(tsc) != 2 {
			t.Fatalf("constraints %+v", tsc)
		}
		if tsc[0].TopologyKey != "topology.kubernetes.io/zone" || tsc[0].WhenUnsatisfiable != corev1.ScheduleAnyway || !maps.Equal(tsc[0].LabelSelector.MatchLabels, selector) {
			t.Errorf("constraint without labelSelector: %+v, want the release's selector labels filled in", tsc[0])
		}
		if !maps.Equal(tsc[1].LabelSelector.MatchLabels, map[string]string{"team": "platform"}) {
			t.Errorf("a given labelSelector was changed: %+v", tsc[1].LabelSelector)
		}
		if pod := deploymentOf(t, render(t, nil)).Spec.Template.Spec; len(pod.TopologySpreadConstraints) != 0 {
			t.Errorf("constraints by default: %+v", pod.TopologySpreadConstraints)
		}
	})
}

// TestExtraArgsAndEnv: appended after the chart's own, never replacing them.
func TestExtraArgsAndEnv(t *testing.T) {
	c := deploymentOf(t, render(t, map[string]any{
		"extraArgs": []any{"--tls-min-version=1.3"},
		"extraEnv":  []any{map[string]any{"name": "GOMEMLIMIT", "value": "200MiB"}},
	})).Spec.Template.Spec.Containers[0]
	if c.Args[0] != "serve" || c.Args[len(c.Args)-1] != "--tls-min-version=1.3" {
		t.Errorf("args %q: want serve first and the extra argument last", c.Args)
	}
	if len(c.Env) != 2 || c.Env[0].Name != "POD_NAME" || c.Env[1].Name != "GOMEMLIMIT" || c.Env[1].Value != "200MiB" {
		t.Errorf("env %+v: want POD_NAME then GOMEMLIMIT", c.Env)
	}
}

// TestServiceAccountValues: the pods, the uninstall hook and every RBAC
// binding use the resolved name; the ServiceAccount is created only when asked.
func TestServiceAccountValues(t *testing.T) {
	for name, tc := range map[string]struct {
		values  map[string]any
		account string
		created bool
	}{
		"default":                   {nil, "gracekeeper", true},
		"named":                     {map[string]any{"serviceAccount": map[string]any{"name": "gk-runner", "annotations": map[string]any{"iam.example.com/role": "gk"}}}, "gk-runner", true},
		"existing one, not created": {map[string]any{"serviceAccount": map[string]any{"create": false, "name": "platform-sa"}}, "platform-sa", false},
		"not created and not named": {map[string]any{"serviceAccount": map[string]any{"create": false}}, "default", false},
		"fullnameOverride names it": {map[string]any{"fullnameOverride": "gk"}, "gk", true},
	} {
		t.Run(name, func(t *testing.T) {
			objs := render(t, tc.values)
			if got := deploymentOf(t, objs).Spec.Template.Spec.ServiceAccountName; got != tc.account {
				t.Errorf("Deployment serviceAccountName %q, want %q", got, tc.account)
			}
			for _, o := range objs {
				switch o.GetKind() {
				case "ClusterRoleBinding", "RoleBinding":
					var b rbacv1.ClusterRoleBinding // same shape for subjects
					into(t, o, &b)
					if len(b.Subjects) != 1 || b.Subjects[0].Name != tc.account || b.Subjects[0].Namespace != chartrender.Namespace {
						t.Errorf("%s subjects %+v, want ServiceAccount %s/%s", o.GetKind(), b.Subjects, chartrender.Namespace, tc.account)
					}
				case "Job":
					var j batchv1.Job
					into(t, o, &j)
					if j.Spec.Template.Spec.ServiceAccountName != tc.account {
						t.Errorf("hook Job serviceAccountName %q, want %q", j.Spec.Template.Spec.ServiceAccountName, tc.account)
					}
				}
			}
			sas := 0
			for _, o := range objs {
				if o.GetKind() == "ServiceAccount" {
					sas++
					if o.GetName() != tc.account {
						t.Errorf("ServiceAccount %q, want %q", o.GetName(), tc.account)
					}
					if tc.values != nil && name == "named" && o.GetAnnotations()["iam.example.com/role"] != "gk" {
						t.Errorf("annotations %v not on the ServiceAccount", o.GetAnnotations())
					}
				}
			}
			if (sas == 1) != tc.created || sas > 1 {
				t.Errorf("%d ServiceAccounts rendered, created=%v wanted", sas, tc.created)
			}
		})
	}
}

// TestGoMemLimitFromTheLimit: by default the Go GC's soft limit is the
// container's memory limit, read through the downward API; goMemLimit:
// false leaves it out (and a GOMEMLIMIT in extraEnv replaces it,
// TestExtraArgsAndEnv).
func TestGoMemLimitFromTheLimit(t *testing.T) {
	c := deploymentOf(t, render(t, nil)).Spec.Template.Spec.Containers[0]
	var found bool
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			found = true
			if e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil || e.ValueFrom.ResourceFieldRef.Resource != "limits.memory" ||
				e.ValueFrom.ResourceFieldRef.ContainerName != c.Name {
				t.Errorf("GOMEMLIMIT %+v: want the container's limits.memory", e)
			}
		}
	}
	if !found || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("env %+v, memory limit %v: want GOMEMLIMIT from a set memory limit", c.Env, c.Resources.Limits.Memory())
	}
	off := deploymentOf(t, render(t, map[string]any{"goMemLimit": false})).Spec.Template.Spec.Containers[0]
	if len(off.Env) != 1 {
		t.Errorf("goMemLimit false: env %+v, want POD_NAME alone", off.Env)
	}
}
