package check

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/test/controlplane"
)

// TestAgainstAPIServer holds check to the real kube-apiserver (with the
// LifecyclePolicy CRD installed):
//   - every object check prints for the shipped examples and the goldens is
//     accepted by a server-side dry-run create with strict field validation,
//     so `check` never produces what `kubectl apply` would refuse;
//   - check accepts a policy exactly when the API server does (the embedded
//     CRD's schema and CEL rules, run offline).
func TestAgainstAPIServer(t *testing.T) {
	cfg := controlplane.Start(t)
	ctx := t.Context()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))

	// dryRunCreate returns the API server's verdict on creating obj.
	dryRunCreate := func(obj *unstructured.Unstructured, validation string) error {
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("mapping %s: %w", gvk, err)
		}
		opts := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: validation}
		if m.Scope.Name() == "namespace" {
			ns := obj.GetNamespace()
			if ns == "" {
				ns = corev1.NamespaceDefault
			}
			_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
			_, err = dyn.Resource(m.Resource).Namespace(ns).Create(ctx, obj, opts)
			return err
		}
		_, err = dyn.Resource(m.Resource).Create(ctx, obj, opts)
		return err
	}

	t.Run("output is accepted", func(t *testing.T) {
		root := filepath.Join("..")
		type run struct {
			input, policies string
			validation      string
		}
		runs := map[string]run{
			"examples with the library": {filepath.Join(root, "examples"), filepath.Join(root, "policies", "library"), metav1.FieldValidationStrict},
		}
		for name := range goldenCases {
			v := metav1.FieldValidationStrict
			if name == "unknown-fields" {
				v = metav1.FieldValidationIgnore // it holds unknown fields on purpose
			}
			dir := filepath.Join(goldenDir, name)
			runs["golden "+name] = run{filepath.Join(dir, "input.yaml"), filepath.Join(dir, "policies.yaml"), v}
		}
		for name, r := range runs {
			t.Run(name, func(t *testing.T) {
				var out, errOut bytes.Buffer
				code := Run(ctx, RunOptions{Options: testOptions(Options{}), Files: []string{r.input}, PolicyPaths: []string{r.policies},
					Stdout: &out, Stderr: &errOut})
				if code == ExitBadInput {
					t.Fatalf("exit %d: %s", code, errOut.String())
				}
				n := 0
				for _, doc := range strings.Split(out.String(), "\n---\n") {
					var u unstructured.Unstructured
					if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
						t.Fatal(err)
					}
					if u.Object == nil {
						continue
					}
					items := []unstructured.Unstructured{u}
					if u.IsList() {
						l, err := u.ToList()
						if err != nil {
							t.Fatal(err)
						}
						items = l.Items
					}
					for i := range items {
						n++
						if err := dryRunCreate(&items[i], r.validation); err != nil {
							t.Errorf("%s %s: the API server refuses check's output: %v", items[i].GetKind(), items[i].GetName(), err)
						}
					}
				}
				if n == 0 {
					t.Fatalf("no objects in the output:\n%s", out.String())
				}
			})
		}
	})

	t.Run("policy verdicts agree", func(t *testing.T) {
		base := "apiVersion: gracekeeper.dev/v1alpha1\nkind: LifecyclePolicy\nmetadata: {name: p}\nspec:\n"
		// valid: what both must say (the library is all valid).
		policies := map[string]struct {
			yaml  string
			valid bool
		}{
			"sleep preStop":                  {base + "  preStop: {sleep: {seconds: 5}}\n  shutdownSeconds: 10\n", true},
			"exec with budget":               {base + "  preStop: {exec: {command: [/drain], budgetSeconds: 5}}\n", true},
			"exec without budget":            {base + "  preStop: {exec: {command: [/drain]}}\n", false},
			"httpGet without budget":         {base + "  preStop: {httpGet: {port: 8080}}\n", false},
			"two actions":                    {base + "  preStop: {sleep: {seconds: 5}, exec: {command: [x], budgetSeconds: 1}}\n", false},
			"no action":                      {base + "  preStop: {overwrite: true}\n", false},
			"postStart with budget":          {base + "  postStart: {exec: {command: [x], budgetSeconds: 1}}\n", false},
			"negative shutdown":              {base + "  shutdownSeconds: -1\n", false},
			"unknown action":                 {base + "  validation: {action: Refuse}\n", false},
			"maxSeconds zero":                {base + "  terminationGracePeriod: {fit: true, maxSeconds: 0}\n", false},
			"unknown finalizer":              {base + "  finalizers: [example.com/mine]\n", false},
			"https cleanup":                  {base + "  cleanup: {finalizer: example.com/release, url: https://ipam.example.com/release}\n", true},
			"cluster-local http cleanup":     {base + "  cleanup: {finalizer: example.com/release, url: http://ipam.ipam.svc:8080/release}\n", true},
			"plain http cleanup":             {base + "  cleanup: {finalizer: example.com/release, url: http://ipam.example.com/release}\n", false},
			"unqualified cleanup finalizer":  {base + "  cleanup: {finalizer: release, url: https://ipam.example.com/release}\n", false},
			"cleanup finalizer listed twice": {base + "  finalizers: [gracekeeper.dev/termination-record]\n  cleanup: {finalizer: gracekeeper.dev/termination-record, url: https://x.example.com/}\n", false},
			"empty container glob":           {base + "  match: {containers: [\"\"]}\n", false},
			"selector with a bad operator":   {base + "  match: {podSelector: {matchExpressions: [{key: a, operator: Near}]}}\n", false},
		}
		lib, err := filepath.Glob(filepath.Join("..", "policies", "library", "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range lib {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			policies["library "+filepath.Base(f)] = struct {
				yaml  string
				valid bool
			}{string(b), true}
		}
		for name, tc := range policies {
			pol := tc.yaml
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "p.yaml")
				if err := os.WriteFile(path, []byte(pol), 0o644); err != nil {
					t.Fatal(err)
				}
				_, offline := New(ctx, testOptions(Options{}), []string{path})
				var u unstructured.Unstructured
				if err := yaml.Unmarshal([]byte(pol), &u.Object); err != nil {
					t.Fatal(err)
				}
				server := dryRunCreate(&u, metav1.FieldValidationStrict)
				if name == "selector with a bad operator" {
					// The CRD schema cannot check selector operators: the
					// API server stores this policy and the engine leaves
					// it out (status Invalid). check refuses it, since it
					// would do nothing in the cluster.
					if server != nil || offline == nil {
						t.Errorf("want the API server to accept and check to refuse; check says %v; the API server says %v", verdict(offline), verdict(server))
					}
					return
				}
				if (offline == nil) != tc.valid || (server == nil) != tc.valid {
					t.Errorf("want valid=%v; check says %v; the API server says %v", tc.valid, verdict(offline), verdict(server))
				}
			})
		}
	})
}

func verdict(err error) string {
	if err == nil {
		return "valid"
	}
	return "invalid: " + err.Error()
}
