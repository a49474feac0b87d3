package chart

import (
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/test/chartrender"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// TestWebhookRegistration checks the two configurations against docs/design.md
// "Webhook registration" for every mode.
func TestWebhookRegistration(t *testing.T) {
	for name, values := range modes() {
		t.Run(name, func(t *testing.T) {
			objs := render(t, values)
			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			into(t, find(t, objs, "MutatingWebhookConfiguration", "gracekeeper"), &mwc)
			var vwc admissionregistrationv1.ValidatingWebhookConfiguration
			into(t, find(t, objs, "ValidatingWebhookConfiguration", "gracekeeper"), &vwc)

			if len(mwc.Webhooks) != 1 {
				t.Fatalf("mutating webhooks = %d, want 1", len(mwc.Webhooks))
			}
			m := mwc.Webhooks[0]
			if m.ReinvocationPolicy == nil || *m.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
				t.Error("mutating webhook must use reinvocationPolicy IfNeeded")
			}
			checkRules(t, m.Name, m.Rules, map[string][]string{"/v1/pods": {"CREATE"}})
			checkCommon(t, m.Name, m.SideEffects, m.AdmissionReviewVersions, m.MatchPolicy, m.TimeoutSeconds, m.NamespaceSelector.MatchExpressions, m.ClientConfig, "/mutate-pods")

			// The workload rules are exactly the kinds registry's; the
			// webhooks and their paths exactly the server's routes table.
			workloadRules := map[string][]string{}
			for _, k := range policies.Kinds() {
				workloadRules[k.GVK.Group+"/"+k.GVK.Version+"/"+k.Resource] = []string{"CREATE", "UPDATE"}
			}
			rules := map[string]map[string][]string{
				webhook.RouteValidatePods:      {"/v1/pods": {"CREATE"}},
				webhook.RouteValidateWorkloads: workloadRules,
				webhook.RouteValidatePolicies:  {"gracekeeper.dev/v1alpha1/lifecyclepolicies": {"CREATE", "UPDATE"}},
			}
			want := map[string]string{}
			for _, r := range webhook.Routes() {
				if r.Mutating {
					if r.Webhook != m.Name || r.Path != *m.ClientConfig.Service.Path {
						t.Errorf("mutating webhook %s at %s, routes table says %s at %s", m.Name, *m.ClientConfig.Service.Path, r.Webhook, r.Path)
					}
					continue
				}
				if rules[r.Path] == nil {
					t.Fatalf("route %s has no expected rules in this test", r.Path)
				}
				want[r.Webhook] = r.Path
			}
			if len(vwc.Webhooks) != len(want) {
				t.Fatalf("validating webhooks = %d, want %d (%v)", len(vwc.Webhooks), len(want), want)
			}
			for _, w := range vwc.Webhooks {
				path, ok := want[w.Name]
				if !ok {
					t.Fatalf("unexpected validating webhook %q", w.Name)
				}
				if path == webhook.RouteValidatePolicies {
					checkPolicyWebhook(t, w, rules[path])
					continue
				}
				checkRules(t, w.Name, w.Rules, rules[path])
				checkCommon(t, w.Name, w.SideEffects, w.AdmissionReviewVersions, w.MatchPolicy, w.TimeoutSeconds, w.NamespaceSelector.MatchExpressions, w.ClientConfig, path)
			}

			// failurePolicy and timeout come from values.
			wantFP := "Ignore"
			if values != nil && values["webhook"] != nil {
				wantFP = "Fail"
			}
			if string(*m.FailurePolicy) != wantFP || string(*vwc.Webhooks[0].FailurePolicy) != wantFP {
				t.Errorf("failurePolicy = %s/%s, want %s", *m.FailurePolicy, *vwc.Webhooks[0].FailurePolicy, wantFP)
			}

			// cert-manager injects the CA only in certManager mode, from the serving Certificate.
			certManager := values != nil && values["certificates"] != nil
			for _, a := range []map[string]string{mwc.Annotations, vwc.Annotations} {
				got := a["cert-manager.io/inject-ca-from"]
				if certManager && got != chartrender.Namespace+"/gracekeeper-serving" {
					t.Errorf("inject-ca-from = %q, want %s/gracekeeper-serving", got, chartrender.Namespace)
				}
				if !certManager && got != "" {
					t.Errorf("self mode must not ask cert-manager to inject (got %q)", got)
				}
			}
		})
	}
}

// checkPolicyWebhook: the LifecyclePolicy webhook fails closed whatever the
// values say (a policy is an admin object), for cluster-scoped policies,
// with no namespaceSelector (it would not apply to them).
func checkPolicyWebhook(t *testing.T, w admissionregistrationv1.ValidatingWebhook, want map[string][]string) {
	t.Helper()
	if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("%s: failurePolicy %v, want Fail", w.Name, w.FailurePolicy)
	}
	if w.NamespaceSelector != nil && len(w.NamespaceSelector.MatchExpressions)+len(w.NamespaceSelector.MatchLabels) > 0 {
		t.Errorf("%s: namespaceSelector %v on a cluster-scoped resource", w.Name, w.NamespaceSelector)
	}
	got := map[string][]string{}
	for _, r := range w.Rules {
		if r.Scope == nil || *r.Scope != admissionregistrationv1.ClusterScope {
			t.Errorf("%s: rule %v is not Cluster scoped", w.Name, r.Resources)
		}
		for _, g := range r.APIGroups {
			for _, v := range r.APIVersions {
				for _, res := range r.Resources {
					for _, op := range r.Operations {
						got[g+"/"+v+"/"+res] = append(got[g+"/"+v+"/"+res], string(op))
					}
				}
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: rules %v, want %v", w.Name, got, want)
	}
	for k, ops := range want {
		if !slices.Equal(got[k], ops) {
			t.Errorf("%s: %s operations = %v, want %v", w.Name, k, got[k], ops)
		}
	}
	if w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
		t.Errorf("%s: sideEffects must be None", w.Name)
	}
	if cc := w.ClientConfig; cc.Service == nil || cc.Service.Path == nil || *cc.Service.Path != webhook.RouteValidatePolicies {
		t.Errorf("%s: clientConfig %+v, want path %s", w.Name, cc.Service, webhook.RouteValidatePolicies)
	}
}

// checkRules compares rules as group/version/resource -> operations and
// refuses any pod UPDATE or DELETE: finalizer removal is a pod UPDATE.
func checkRules(t *testing.T, name string, rules []admissionregistrationv1.RuleWithOperations, want map[string][]string) {
	t.Helper()
	got := map[string][]string{}
	for _, r := range rules {
		if r.Scope == nil || *r.Scope != admissionregistrationv1.NamespacedScope {
			t.Errorf("%s: rule %v is not Namespaced", name, r.Resources)
		}
		for _, g := range r.APIGroups {
			for _, v := range r.APIVersions {
				for _, res := range r.Resources {
					var ops []string
					for _, op := range r.Operations {
						ops = append(ops, string(op))
						if res == "pods" && (op == "UPDATE" || op == "DELETE" || op == "*") {
							t.Errorf("%s intercepts pods %s: finalizer removal must never be blocked", name, op)
						}
					}
					got[g+"/"+v+"/"+res] = ops
				}
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: rules cover %v, want %v", name, got, want)
	}
	for k, ops := range want {
		if !slices.Equal(got[k], ops) {
			t.Errorf("%s: %s operations = %v, want %v", name, k, got[k], ops)
		}
	}
}

func checkCommon(t *testing.T, name string, se *admissionregistrationv1.SideEffectClass, arv []string, mp *admissionregistrationv1.MatchPolicyType, timeout *int32, sel []metav1.LabelSelectorRequirement, cc admissionregistrationv1.WebhookClientConfig, path string) {
	t.Helper()
	if se == nil || *se != admissionregistrationv1.SideEffectClassNone {
		t.Errorf("%s: sideEffects must be None", name)
	}
	if !slices.Equal(arv, []string{"v1"}) {
		t.Errorf("%s: admissionReviewVersions = %v, want [v1]", name, arv)
	}
	if mp == nil || *mp != admissionregistrationv1.Equivalent {
		t.Errorf("%s: matchPolicy must be Equivalent", name)
	}
	if timeout == nil || *timeout < 1 || *timeout > 10 {
		t.Errorf("%s: timeoutSeconds = %v, want a small value", name, timeout)
	}
	if cc.Service == nil || cc.Service.Name != "gracekeeper" || cc.Service.Namespace != chartrender.Namespace ||
		cc.Service.Path == nil || *cc.Service.Path != path || cc.Service.Port == nil || *cc.Service.Port != 443 {
		t.Errorf("%s: clientConfig = %+v, want service gracekeeper/%s:443%s", name, cc.Service, chartrender.Namespace, path)
	}
	// Never the release namespace, kube-system, kube-node-lease, or ignored namespaces.
	var names, ignore []string
	for _, r := range sel {
		if r.Operator != "NotIn" {
			t.Errorf("%s: namespaceSelector %s uses %s, want NotIn", name, r.Key, r.Operator)
		}
		switch r.Key {
		case "kubernetes.io/metadata.name":
			names = r.Values
		case "gracekeeper.dev/ignore":
			ignore = r.Values
		}
	}
	for _, ns := range []string{"kube-system", "kube-node-lease", chartrender.Namespace} {
		if !slices.Contains(names, ns) {
			t.Errorf("%s: namespace %s is not excluded (%v)", name, ns, names)
		}
	}
	if !slices.Equal(ignore, []string{"true"}) {
		t.Errorf("%s: gracekeeper.dev/ignore NotIn = %v, want [true]", name, ignore)
	}
}

// TestDeploymentProductionDefaults checks what keeps the webhook available and hardened.
func TestDeploymentProductionDefaults(t *testing.T) {
	objs := render(t, nil)
	var d appsv1.Deployment
	into(t, find(t, objs, "Deployment", "gracekeeper"), &d)
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %d, want 2", *d.Spec.Replicas)
	}
	if d.Spec.Strategy.RollingUpdate == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Error("rollouts must not drop a serving replica (maxUnavailable 0)")
	}
	pod := d.Spec.Template.Spec
	if pod.PriorityClassName != "system-cluster-critical" {
		t.Errorf("priorityClassName = %q", pod.PriorityClassName)
	}
	if pod.ServiceAccountName != "gracekeeper" {
		t.Errorf("serviceAccountName = %q", pod.ServiceAccountName)
	}
	aa := pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution
	if len(aa) != 1 || aa[0].PodAffinityTerm.TopologyKey != "kubernetes.io/hostname" {
		t.Errorf("want preferred anti-affinity on hostname, got %+v", aa)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("containers = %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container securityContext not hardened: %+v", sc)
	}
	if pod.SecurityContext == nil || !*pod.SecurityContext.RunAsNonRoot || *pod.SecurityContext.RunAsUser != 65532 {
		t.Errorf("pod securityContext must run as the distroless nonroot user 65532")
	}
	for probe, p := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != probe || p.HTTPGet.Scheme != corev1.URISchemeHTTPS || p.HTTPGet.Port.String() != "webhook" {
			t.Errorf("probe %s must be HTTPS on the webhook port, got %+v", probe, p)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("requests (cpu, memory) and a memory limit are required")
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"serve", "--namespace=" + chartrender.Namespace, "--cert-dir=/var/run/gracekeeper/certs",
		"--drain-delay=10s", "--cert-mode=self", "--cert-secret=gracekeeper-tls", "--service=gracekeeper",
		"--mutating-webhook-config=gracekeeper", "--validating-webhook-config=gracekeeper", "--leader-elect=true"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	// Drain: not-ready, keep serving drainDelay, exit — inside the grace period.
	if *pod.TerminationGracePeriodSeconds <= 10 {
		t.Errorf("terminationGracePeriodSeconds %d must exceed the 10s drain delay", *pod.TerminationGracePeriodSeconds)
	}
	var pdb policyv1.PodDisruptionBudget
	into(t, find(t, objs, "PodDisruptionBudget", "gracekeeper"), &pdb)
	if pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PDB minAvailable = %v, want 1", pdb.Spec.MinAvailable)
	}
	for k, v := range pdb.Spec.Selector.MatchLabels {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("PDB selector %s=%s does not match the pods", k, v)
		}
	}
}

// TestCertificateModes checks which objects, volumes and permissions each mode brings.
func TestCertificateModes(t *testing.T) {
	self := render(t, nil)
	cm := render(t, map[string]any{"certificates": map[string]any{"mode": "certManager"}})

	if count(self, "Certificate")+count(self, "Issuer") != 0 {
		t.Error("self mode renders cert-manager objects")
	}
	find(t, self, "Secret", "gracekeeper-tls")
	if count(cm, "Secret") != 0 {
		t.Error("certManager mode must leave the Secret to cert-manager")
	}
	if count(cm, "Certificate") != 2 || count(cm, "Issuer") != 2 {
		t.Errorf("certManager mode: %d Certificates, %d Issuers; want 2 and 2", count(cm, "Certificate"), count(cm, "Issuer"))
	}

	var dSelf, dCM appsv1.Deployment
	into(t, find(t, self, "Deployment", ""), &dSelf)
	into(t, find(t, cm, "Deployment", ""), &dCM)
	if v := dSelf.Spec.Template.Spec.Volumes[0]; v.EmptyDir == nil {
		t.Errorf("self mode cert dir must be a writable emptyDir, got %+v", v.VolumeSource)
	}
	if v := dCM.Spec.Template.Spec.Volumes[0]; v.Secret == nil || v.Secret.SecretName != "gracekeeper-tls" {
		t.Errorf("certManager mode must mount the issued Secret, got %+v", v.VolumeSource)
	}
	if strings.Contains(strings.Join(dCM.Spec.Template.Spec.Containers[0].Args, " "), "--cert-secret") {
		t.Error("certManager mode passes self-mode flags")
	}

	secretRules := func(t *testing.T, objs []*unstructured.Unstructured) []rbacv1.PolicyRule {
		var role rbacv1.Role
		into(t, find(t, objs, "Role", "gracekeeper"), &role)
		var out []rbacv1.PolicyRule
		for _, r := range role.Rules {
			if slices.Contains(r.Resources, "secrets") {
				out = append(out, r)
			}
		}
		return out
	}
	sr := secretRules(t, self)
	if len(sr) != 1 || !slices.Equal(sr[0].ResourceNames, []string{"gracekeeper-tls"}) || slices.Contains(sr[0].Verbs, "create") || slices.Contains(sr[0].Verbs, "list") {
		t.Errorf("self mode secret rule must be its own Secret by name, without create/list: %+v", sr)
	}
	if got := secretRules(t, cm); len(got) != 0 {
		t.Errorf("certManager mode needs no secret access, got %+v", got)
	}
	// cert-manager injects the caBundle; gracekeeper reaches its own two
	// configurations by name only: to keep them narrowed (webhook.narrow, on
	// by default: list and watch too) or to restore them once (get, update).
	cmWide := render(t, map[string]any{"certificates": map[string]any{"mode": "certManager"}, "webhook": map[string]any{"narrow": false}})
	for objs, verbs := range map[*[]*unstructured.Unstructured][]string{
		&cm:     {"get", "list", "watch", "update", "patch"},
		&cmWide: {"get", "update", "patch"},
	} {
		var crCM rbacv1.ClusterRole
		into(t, find(t, *objs, "ClusterRole", "gracekeeper"), &crCM)
		for _, r := range crCM.Rules {
			if slices.Contains(r.APIGroups, "admissionregistration.k8s.io") && slices.Contains(r.Resources, "mutatingwebhookconfigurations") && (!slices.Equal(r.ResourceNames, []string{"gracekeeper"}) || !slices.Equal(r.Verbs, verbs)) {
				t.Errorf("webhook configurations: %+v, want %v on its own by name", r, verbs)
			}
		}
	}
}

// TestReleaseFinalizersHook: the uninstall hook runs release-finalizers, hardened, outside the Service/PDB selector.
func TestReleaseFinalizersHook(t *testing.T) {
	objs := render(t, nil)
	u := find(t, objs, "Job", "gracekeeper-release-finalizers")
	if u.GetAnnotations()["helm.sh/hook"] != "pre-delete" || !strings.Contains(u.GetAnnotations()["helm.sh/hook-delete-policy"], "hook-succeeded") {
		t.Errorf("hook annotations = %v", u.GetAnnotations())
	}
	var job batchv1.Job
	into(t, u, &job)
	if !slices.Equal(job.Spec.Template.Spec.Containers[0].Args, []string{"release-finalizers"}) {
		t.Errorf("hook args = %v", job.Spec.Template.Spec.Containers[0].Args)
	}
	if !*job.Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem {
		t.Error("hook container not hardened")
	}
	var svc corev1.Service
	into(t, find(t, objs, "Service", "gracekeeper"), &svc)
	matches := true
	for k, v := range svc.Spec.Selector {
		if job.Spec.Template.Labels[k] != v {
			matches = false
		}
	}
	if matches {
		t.Error("the Service selector would route webhook calls to the hook pod")
	}
	if count(render(t, map[string]any{"releaseFinalizersHook": map[string]any{"enabled": false}}), "Job") != 0 {
		t.Error("hook rendered although disabled")
	}
}

// TestAPIServerModeRegistersNoPodWebhooks: with admission.mode apiserver
// pods are admitted by the compiled admission policies, so neither pod
// webhook is registered; workloads and policies stay on the webhook.
func TestAPIServerModeRegistersNoPodWebhooks(t *testing.T) {
	objs := render(t, map[string]any{"admission": map[string]any{"mode": "apiserver"}})
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	into(t, find(t, objs, "MutatingWebhookConfiguration", "gracekeeper"), &mwc)
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	into(t, find(t, objs, "ValidatingWebhookConfiguration", "gracekeeper"), &vwc)
	if len(mwc.Webhooks) != 0 {
		t.Errorf("mutating webhooks %d, want none", len(mwc.Webhooks))
	}
	var names []string
	for _, w := range vwc.Webhooks {
		names = append(names, w.Name)
	}
	if !slices.Equal(names, []string{"validate-workloads.gracekeeper.dev", "validate-policies.gracekeeper.dev"}) {
		t.Errorf("validating webhooks %v", names)
	}
}
