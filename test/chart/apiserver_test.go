package chart

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/admissionpolicy"
	"github.com/gracekeeper/gracekeeper/app"
	"github.com/gracekeeper/gracekeeper/certs"
	"github.com/gracekeeper/gracekeeper/finalizer"
	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/chartrender"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
	"github.com/gracekeeper/gracekeeper/webhook"
	"github.com/gracekeeper/gracekeeper/webhookconfig"
)

const serviceAccount = "system:serviceaccount:" + chartrender.Namespace + ":gracekeeper"

// certManagerCRDs finds cert-manager's CRDs in the module cache (the module
// is a dependency of this repo, for its API types).
func certManagerCRDs(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	if err != nil {
		t.Fatalf("locate the cert-manager module: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	if m, _ := filepath.Glob(filepath.Join(dir, "cert-manager.io_certificates.yaml")); len(m) == 0 {
		t.Fatalf("no cert-manager CRDs in %s", dir)
	}
	return dir
}

// TestChartOnAPIServer applies everything the chart renders to a real
// kube-apiserver (server-side apply, dry run: the API server validates each
// object, CRD schemas included), then installs self mode for real and proves,
// as the chart's ServiceAccount, that its RBAC allows what gracekeeper does
// and nothing more.
func TestChartOnAPIServer(t *testing.T) {
	controlplane.SkipIfShort(t)
	if err := controlplane.CheckAssets(); err != nil {
		t.Fatal(err)
	}
	env := controlplane.New()
	env.CRDDirectoryPaths = append(env.CRDDirectoryPaths, certManagerCRDs(t))
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	scheme, err := clientscheme.New()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{chartrender.Namespace, "apps"} {
		if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("server-side dry run of every rendered object", func(t *testing.T) {
		for name, values := range modes() {
			t.Run(name, func(t *testing.T) {
				for _, obj := range render(t, values) {
					id := obj.GetKind() + " " + obj.GetName()
					if obj.GetKind() == "ServiceMonitor" {
						// prometheus-operator's CRD is not installed here; TestOptionalObjects decodes it strictly into its Go types.
						t.Logf("skip %s: no ServiceMonitor CRD on this API server", id)
						continue
					}
					if err := admin.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()),
						client.DryRunAll, client.FieldOwner("chart-test"), client.ForceOwnership); err != nil {
						t.Errorf("%s refused by the API server: %v", id, err)
					}
				}
			})
		}
	})

	t.Run("webhook configurations pointed at a local URL are valid (for the integration suite)", func(t *testing.T) {
		objs := render(t, nil)
		if _, err := chartrender.PointWebhooksAt(objs, "https://127.0.0.1:9443", []byte("not checked by the API server")); err != nil {
			t.Fatal(err)
		}
		for _, obj := range objs {
			if !strings.HasSuffix(obj.GetKind(), "WebhookConfiguration") {
				continue
			}
			if err := admin.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()),
				client.DryRunAll, client.FieldOwner("chart-test"), client.ForceOwnership); err != nil {
				t.Errorf("%s %s refused: %v", obj.GetKind(), obj.GetName(), err)
			}
		}
	})

	t.Run("cert-manager objects decode strictly into cert-manager's types", func(t *testing.T) {
		objs := render(t, map[string]any{"certificates": map[string]any{"mode": "certManager"}})
		issuers := map[string]cmv1.Issuer{}
		for _, o := range objs {
			switch o.GetKind() {
			case "Issuer":
				var is cmv1.Issuer
				strictInto(t, o, &is)
				issuers[is.Name] = is
			}
		}
		for _, o := range objs {
			if o.GetKind() != "Certificate" {
				continue
			}
			var c cmv1.Certificate
			strictInto(t, o, &c)
			is, ok := issuers[c.Spec.IssuerRef.Name]
			if !ok {
				t.Errorf("Certificate %s refers to missing Issuer %q", c.Name, c.Spec.IssuerRef.Name)
			}
			switch c.Name {
			case "gracekeeper-ca":
				if !c.Spec.IsCA || is.Spec.SelfSigned == nil {
					t.Errorf("CA certificate must be isCA and issued by the self-signed Issuer")
				}
			case "gracekeeper-serving":
				want := []string{"gracekeeper", "gracekeeper.gracekeeper-system", "gracekeeper.gracekeeper-system.svc", "gracekeeper.gracekeeper-system.svc.cluster.local"}
				if strings.Join(c.Spec.DNSNames, ",") != strings.Join(want, ",") {
					t.Errorf("serving dnsNames = %v, want %v", c.Spec.DNSNames, want)
				}
				if c.Spec.SecretName != "gracekeeper-tls" || is.Spec.CA == nil || is.Spec.CA.SecretName != "gracekeeper-ca" {
					t.Errorf("serving certificate must go to gracekeeper-tls, issued by the CA Issuer over gracekeeper-ca")
				}
			default:
				t.Errorf("unexpected Certificate %s", c.Name)
			}
		}
	})

	// Install self mode for real (hooks and CRDs aside: the CRD is already there).
	objs := render(t, nil)
	for _, obj := range objs {
		if chartrender.IsHook(obj) || obj.GetKind() == "CustomResourceDefinition" {
			continue
		}
		if err := admin.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()), client.FieldOwner("helm"), client.ForceOwnership); err != nil {
			t.Fatalf("install %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	sa := rest.CopyConfig(cfg)
	sa.Impersonate = rest.ImpersonationConfig{UserName: serviceAccount}
	asSA := kubernetes.NewForConfigOrDie(sa)

	t.Run("the ServiceAccount can run self-managed certificates", func(t *testing.T) {
		m, err := certs.New(asSA, certs.Options{
			Namespace: chartrender.Namespace, SecretName: "gracekeeper-tls", ServiceName: "gracekeeper",
			MutatingWebhookConfiguration: "gracekeeper", ValidatingWebhookConfiguration: "gracekeeper",
			CertDir: t.TempDir(),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Bootstrap(ctx); err != nil {
			t.Fatalf("bootstrap as %s: %v", serviceAccount, err)
		}
		if _, err := m.Reconcile(ctx); err != nil {
			t.Fatalf("reconcile as %s: %v", serviceAccount, err)
		}
		if _, err := m.Sync(ctx); err != nil {
			t.Fatalf("sync as %s: %v", serviceAccount, err)
		}
		mwc, err := asSA.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "gracekeeper", metav1.GetOptions{})
		if err != nil || len(mwc.Webhooks[0].ClientConfig.CABundle) == 0 {
			t.Fatalf("caBundle not injected (err %v)", err)
		}
	})

	t.Run("real calls as the ServiceAccount", func(t *testing.T) {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "apps"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
		if err := admin.Create(ctx, pod); err != nil {
			t.Fatalf("create pod as admin (webhook failurePolicy Ignore, no server running): %v", err)
		}
		dyn := dynamic.NewForConfigOrDie(sa)
		lcp := schema.GroupVersionResource{Group: "gracekeeper.dev", Version: "v1alpha1", Resource: "lifecyclepolicies"}
		policy := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "gracekeeper.dev/v1alpha1", "kind": "LifecyclePolicy",
			"metadata": map[string]any{"name": "p"}, "spec": map[string]any{"shutdownSeconds": int64(5)}}}
		// No gracekeeper serves the webhooks here: the policy webhook fails
		// closed (a policy is an admin object), whatever failurePolicy the
		// pod webhooks have. It is then removed, as if gracekeeper served it.
		if err := admin.Create(ctx, policy.DeepCopy()); err == nil || !strings.Contains(err.Error(), "validate-policies.gracekeeper.dev") {
			t.Errorf("policy created with the policy webhook unreachable: %v; want refused", err)
		}
		var vwc admissionregistrationv1.ValidatingWebhookConfiguration
		if err := admin.Get(ctx, client.ObjectKey{Name: "gracekeeper"}, &vwc); err != nil {
			t.Fatal(err)
		}
		vwc.Webhooks = slices.DeleteFunc(vwc.Webhooks, func(w admissionregistrationv1.ValidatingWebhook) bool {
			return w.Name == "validate-policies.gracekeeper.dev"
		})
		if err := admin.Update(ctx, &vwc); err != nil {
			t.Fatal(err)
		}
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			return admin.Create(ctx, policy) == nil, nil
		}); err != nil {
			t.Fatal("policy not created once the policy webhook was removed")
		}
		allowed := map[string]func() error{
			"list pods in all namespaces": func() error {
				_, err := asSA.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
				return err
			},
			"watch pods": func() error {
				w, err := asSA.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{LabelSelector: "gracekeeper.dev/finalizers"})
				if err == nil {
					w.Stop()
				}
				return err
			},
			"patch a pod's finalizers": func() error {
				_, err := asSA.CoreV1().Pods("apps").Patch(ctx, "p", types.MergePatchType, []byte(`{"metadata":{"finalizers":["gracekeeper.dev/termination-record"]}}`), metav1.PatchOptions{})
				if err != nil {
					return err
				}
				_, err = asSA.CoreV1().Pods("apps").Patch(ctx, "p", types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{})
				return err
			},
			"create a core event": func() error {
				_, err := asSA.CoreV1().Events("apps").Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{GenerateName: "p-"},
					InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "apps", Name: "p"}, Reason: "TerminationRecord", Message: "m", Type: "Normal"}, metav1.CreateOptions{})
				return err
			},
			"create an events.k8s.io event": func() error {
				_, err := asSA.EventsV1().Events("apps").Create(ctx, &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{GenerateName: "p-"},
					EventTime: metav1.NowMicro(), ReportingController: "gracekeeper.dev/finalizer", ReportingInstance: "gk-0", Action: "Record",
					Reason: "TerminationRecord", Type: "Normal", Regarding: corev1.ObjectReference{Kind: "Pod", Namespace: "apps", Name: "p"}}, metav1.CreateOptions{})
				return err
			},
			"update LifecyclePolicy status": func() error {
				_, err := dyn.Resource(lcp).Patch(ctx, "p", types.MergePatchType, []byte(`{"status":{"observedGeneration":1}}`), metav1.PatchOptions{}, "status")
				return err
			},
			"list LifecyclePolicies": func() error {
				_, err := dyn.Resource(lcp).List(ctx, metav1.ListOptions{})
				return err
			},
			"list namespaces": func() error {
				_, err := asSA.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
				return err
			},
		}
		for name, call := range allowed {
			t.Run("allowed: "+name, func(t *testing.T) {
				if err := call(); err != nil {
					t.Errorf("refused: %v", err)
				}
			})
		}
		denied := map[string]func() error{
			"delete a pod": func() error {
				return asSA.CoreV1().Pods("apps").Delete(ctx, "p", metav1.DeleteOptions{})
			},
			"create a pod": func() error {
				_, err := asSA.CoreV1().Pods("apps").Create(ctx, pod.DeepCopy(), metav1.CreateOptions{})
				return err
			},
			"update a LifecyclePolicy's spec": func() error {
				_, err := dyn.Resource(lcp).Patch(ctx, "p", types.MergePatchType, []byte(`{"spec":{"shutdownSeconds":1}}`), metav1.PatchOptions{})
				return err
			},
			"read another Secret in its namespace": func() error {
				_, err := asSA.CoreV1().Secrets(chartrender.Namespace).Get(ctx, "other", metav1.GetOptions{})
				return err
			},
			"list Secrets": func() error {
				_, err := asSA.CoreV1().Secrets(chartrender.Namespace).List(ctx, metav1.ListOptions{})
				return err
			},
			"create a Secret": func() error {
				_, err := asSA.CoreV1().Secrets(chartrender.Namespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
				return err
			},
			"delete its own webhook configuration": func() error {
				return asSA.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, "gracekeeper", metav1.DeleteOptions{})
			},
			"list webhook configurations": func() error {
				_, err := asSA.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
				return err
			},
		}
		for name, call := range denied {
			t.Run("denied: "+name, func(t *testing.T) {
				if err := call(); !apierrors.IsForbidden(err) {
					t.Errorf("want Forbidden, got %v", err)
				}
			})
		}
	})

	t.Run("gracekeeper serve (app.Run: certificates, leader election, finalizer controller, policy store) runs as the ServiceAccount", func(t *testing.T) {
		// An RBAC refusal that controller-runtime only logs (leader election, reconcile errors) fails the test;
		// informer (client-go reflector) refusals go to klog and are covered by the real list/watch calls below.
		var logMu sync.Mutex
		var forbidden []string
		logger := funcr.New(func(prefix, args string) {
			if strings.Contains(strings.ToLower(args), "forbidden") {
				logMu.Lock()
				forbidden = append(forbidden, prefix+" "+args)
				logMu.Unlock()
			}
		}, funcr.Options{Verbosity: 1})
		defer func() {
			logMu.Lock()
			defer logMu.Unlock()
			for _, l := range forbidden {
				t.Errorf("refused by RBAC: %s", l)
			}
		}()
		// The whole `gracekeeper serve` process (app.Run), as the chart runs it:
		// self-managed certificates, leader election, the finalizer controller
		// and the policy store, all with the ServiceAccount's credentials.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		ml, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		metricsAddr := ml.Addr().String()
		ml.Close()
		o := app.Options{
			Webhook:     webhook.Config{Addr: addr, CertDir: filepath.Join(t.TempDir(), "certs"), DrainDelay: -1},
			MetricsAddr: metricsAddr, // authenticated HTTPS, as the chart runs it
			Namespace:   chartrender.Namespace,
			LeaderElect: true,
			CertMode:    app.CertModeSelf,
			Certs: certs.Options{SecretName: "gracekeeper-tls", ServiceName: "gracekeeper",
				MutatingWebhookConfiguration: "gracekeeper", ValidatingWebhookConfiguration: "gracekeeper"},
			Finalizer:      finalizer.Options{ReportingInstance: "chart-test"},
			NarrowWebhooks: true, // webhook.narrow, on by default
			// apiserver mode: the compiled admission policies are written
			// with the chart's RBAC too (the rules are the same in both modes).
			AdmissionMode: admissionpolicy.ModeAPIServer,
		}
		mctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- app.Run(logr.NewContext(mctx, logger), sa, o, logger) }()
		defer func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("gracekeeper (app.Run) as the ServiceAccount: %v", err)
			}
		}()

		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "recorded", Namespace: "apps",
			Labels:     map[string]string{policies.LabelFinalize: "true"},
			Finalizers: []string{string(v1alpha1.TerminationRecordFinalizer)}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
		if err := admin.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		if err := admin.Delete(ctx, pod); err != nil {
			t.Fatal(err)
		}
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			return apierrors.IsNotFound(admin.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})), nil
		})
		if err != nil {
			t.Fatal("the controller, running with the chart's RBAC, never removed the finalizer")
		}
		var ev corev1.Event
		if err := admin.Get(ctx, client.ObjectKey{Namespace: "apps", Name: finalizer.TerminationEventName(pod)}, &ev); err != nil {
			t.Errorf("no termination record Event: %v", err)
		}
		// The webhook's policy store: informers on policies and namespaces, status written
		// by the leader on the next policy change.
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			var lease coordinationv1.Lease
			err := admin.Get(ctx, client.ObjectKey{Namespace: chartrender.Namespace, Name: "gracekeeper-leader"}, &lease)
			return err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "", nil
		})
		if err != nil {
			t.Fatal("never elected leader with the chart's lease permissions")
		}
		pol := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
		if err := admin.Patch(ctx, pol, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"shutdownSeconds":7}}`))); err != nil {
			t.Fatal(err)
		}
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			var p v1alpha1.LifecyclePolicy
			if err := admin.Get(ctx, client.ObjectKey{Name: "p"}, &p); err != nil {
				return false, nil
			}
			return p.Status.ObservedGeneration == p.Generation && len(p.Status.Conditions) > 0, nil
		})
		if err != nil {
			t.Errorf("the policy store never wrote policy status as the ServiceAccount")
		}
		// The narrowing controller watches the two configurations by name
		// and updates them when a policy's selector narrows what it selects.
		if err := admin.Patch(ctx, pol, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"match":{"podSelector":{"matchLabels":{"app":"narrowed"}}}}}`))); err != nil {
			t.Fatal(err)
		}
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			if err := admin.Get(ctx, client.ObjectKey{Name: "gracekeeper"}, &mwc); err != nil {
				return false, nil
			}
			conds := mwc.Webhooks[0].MatchConditions
			return len(conds) == 1 && conds[0].Name == webhookconfig.ConditionName, nil
		})
		if err != nil {
			t.Errorf("the narrowing controller never narrowed the MutatingWebhookConfiguration as the ServiceAccount")
		}
		// The leader compiled policy p into admission policies and bindings, owned by it.
		for _, o := range []client.Object{&admissionregistrationv1.ValidatingAdmissionPolicy{}, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{},
			&admissionregistrationv1.MutatingAdmissionPolicy{}, &admissionregistrationv1.MutatingAdmissionPolicyBinding{}} {
			err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
				return admin.Get(ctx, client.ObjectKey{Name: admissionpolicy.Name("p")}, o) == nil, nil
			})
			if err != nil || len(o.GetOwnerReferences()) != 1 || o.GetOwnerReferences()[0].Name != "p" {
				t.Errorf("%T %s not written as the ServiceAccount, or not owned by policy p: %v %v", o, admissionpolicy.Name("p"), err, o.GetOwnerReferences())
			}
		}
		// Ready means the policy informers listed and watched with the chart's RBAC.
		pool := x509.NewCertPool()
		var sec corev1.Secret
		if err := admin.Get(ctx, client.ObjectKey{Namespace: chartrender.Namespace, Name: "gracekeeper-tls"}, &sec); err != nil || !pool.AppendCertsFromPEM(sec.Data[certs.KeyCABundle]) {
			t.Fatalf("no CA bundle in the self-managed Secret: %v", err)
		}
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, ServerName: "gracekeeper." + chartrender.Namespace + ".svc", MinVersion: tls.VersionTLS12}}}
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			resp, err := hc.Get("https://" + addr + "/readyz")
			if err != nil {
				return false, nil
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
		if err != nil {
			t.Errorf("/readyz never succeeded over the self-managed certificate: %v", err)
		}

		// /metrics reviews each scraper's token and access through the API
		// server with the chart's RBAC: the chart's metrics-reader
		// ClusterRole lets a scraper in, no token or another ServiceAccount's
		// is refused.
		scrape := func(token string) int {
			req, _ := http.NewRequest(http.MethodGet, "https://"+metricsAddr+"/metrics", nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := hc.Do(req)
			if err != nil {
				return 0
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		token := func(name string, bind bool) string {
			if err := admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps"}}); err != nil {
				t.Fatal(err)
			}
			if bind {
				crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
					RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "gracekeeper-metrics-reader"},
					Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: "apps"}}}
				if err := admin.Create(ctx, crb); err != nil {
					t.Fatal(err)
				}
			}
			tr, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().ServiceAccounts("apps").CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return tr.Status.Token
		}
		prom, other := token("prometheus", true), token("other", false)
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			return scrape(prom) == http.StatusOK, nil
		})
		if err != nil {
			t.Errorf("a scraper bound to gracekeeper-metrics-reader never got /metrics (last HTTP %d)", scrape(prom))
		}
		if code := scrape(""); code != http.StatusUnauthorized {
			t.Errorf("unauthenticated scrape: HTTP %d, want 401", code)
		}
		if code := scrape(other); code != http.StatusForbidden {
			t.Errorf("scrape by a ServiceAccount without metrics-reader: HTTP %d, want 403", code)
		}
	})

	t.Run("release-finalizers (the pre-delete hook) runs as the ServiceAccount", func(t *testing.T) {
		held := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "held", Namespace: "apps",
			Labels:     map[string]string{policies.LabelFinalize: "true"},
			Finalizers: []string{string(v1alpha1.TerminationRecordFinalizer)}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
		if err := admin.Create(ctx, held); err != nil {
			t.Fatal(err)
		}
		// Never scheduled, so deletion is immediate but for the finalizer.
		if err := admin.Delete(ctx, held); err != nil {
			t.Fatal(err)
		}
		saClient, err := client.New(sa, client.Options{Scheme: scheme}) // cleanups are looked up in LifecyclePolicies
		if err != nil {
			t.Fatal(err)
		}
		rep, err := finalizer.ReleaseAll(ctx, saClient, finalizer.ReleaseOptions{})
		if err != nil || rep.Failed != 0 || rep.Released < 1 {
			t.Fatalf("ReleaseAll as %s: %v (%s)", serviceAccount, err, rep)
		}
		if err := admin.Get(ctx, client.ObjectKeyFromObject(held), &corev1.Pod{}); !apierrors.IsNotFound(err) {
			t.Errorf("pod still there after release: %v", err)
		}
	})

	t.Run("access reviews as the ServiceAccount", func(t *testing.T) {
		for name, tc := range map[string]struct {
			attr authorizationv1.ResourceAttributes
			want bool
		}{
			"get replicasets (owner resolution)":    {authorizationv1.ResourceAttributes{Verb: "get", Group: "apps", Resource: "replicasets", Namespace: "apps"}, true},
			"get nodes (node gone)":                 {authorizationv1.ResourceAttributes{Verb: "get", Resource: "nodes", Name: "n1"}, true},
			"list nodes":                            {authorizationv1.ResourceAttributes{Verb: "list", Resource: "nodes"}, false},
			"watch replicasets (background audit)":  {authorizationv1.ResourceAttributes{Verb: "watch", Group: "apps", Resource: "replicasets", Namespace: "apps"}, true},
			"update reports (background audit)":     {authorizationv1.ResourceAttributes{Verb: "update", Group: "openreports.io", Resource: "reports", Namespace: "apps"}, true},
			"update cronjobs (audit never writes)":  {authorizationv1.ResourceAttributes{Verb: "update", Group: "batch", Resource: "cronjobs", Namespace: "apps"}, false},
			"create leases in its namespace":        {authorizationv1.ResourceAttributes{Verb: "create", Group: "coordination.k8s.io", Resource: "leases", Namespace: chartrender.Namespace}, true},
			"update leases in its namespace":        {authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: chartrender.Namespace, Name: "gracekeeper.dev"}, true},
			"update its own mutating configuration": {authorizationv1.ResourceAttributes{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: "gracekeeper"}, true},
			"watch its own webhook configuration":   {authorizationv1.ResourceAttributes{Verb: "watch", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: "gracekeeper"}, true},
			"watch all webhook configurations":      {authorizationv1.ResourceAttributes{Verb: "watch", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations"}, false},
			"update its own Secret":                 {authorizationv1.ResourceAttributes{Verb: "update", Resource: "secrets", Namespace: chartrender.Namespace, Name: "gracekeeper-tls"}, true},
			"watch namespaces":                      {authorizationv1.ResourceAttributes{Verb: "watch", Resource: "namespaces"}, true},
			"leases in another namespace":           {authorizationv1.ResourceAttributes{Verb: "create", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system"}, false},
			"update another validating config":      {authorizationv1.ResourceAttributes{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: "kyverno-resource-validating-webhook-cfg"}, false},
			"update another mutating config":        {authorizationv1.ResourceAttributes{Verb: "patch", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: "istio-sidecar-injector"}, false},
			"create webhook configurations":         {authorizationv1.ResourceAttributes{Verb: "create", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations"}, false},
			"secrets in another namespace":          {authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: "apps", Name: "gracekeeper-tls"}, false},
			"update pods (only patch is needed)":    {authorizationv1.ResourceAttributes{Verb: "update", Resource: "pods", Namespace: "apps"}, false},
			"evict pods":                            {authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "eviction", Namespace: "apps"}, false},
			"patch deployments":                     {authorizationv1.ResourceAttributes{Verb: "patch", Group: "apps", Resource: "deployments", Namespace: "apps"}, false},
			"delete LifecyclePolicies":              {authorizationv1.ResourceAttributes{Verb: "delete", Group: "gracekeeper.dev", Resource: "lifecyclepolicies"}, false},
			"read configmaps":                       {authorizationv1.ResourceAttributes{Verb: "get", Resource: "configmaps", Namespace: chartrender.Namespace}, false},
			"escalate: bind clusterroles":           {authorizationv1.ResourceAttributes{Verb: "bind", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"}, false},
		} {
			t.Run(name, func(t *testing.T) {
				attr := tc.attr
				r, err := asSA.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
					Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attr}}, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if r.Status.Allowed != tc.want {
					t.Errorf("allowed = %v, want %v (%s)", r.Status.Allowed, tc.want, r.Status.Reason)
				}
			})
		}
	})
}

// strictInto decodes through JSON with unknown fields refused, as cert-manager's API would.
func strictInto(t *testing.T, u *unstructured.Unstructured, out any) {
	t.Helper()
	b, err := u.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, out); err != nil {
		t.Fatalf("%s %s does not decode strictly into its owner's type %T: %v", u.GetKind(), u.GetName(), out, err)
	}
}
