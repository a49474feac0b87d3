package check

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/policies"
)

const (
	podWeb = `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: web
    image: nginx
`
	policyDeny = `apiVersion: gracekeeper.dev/v1alpha1
kind: LifecyclePolicy
metadata: {name: drain}
spec:
  preStop: {sleep: {seconds: 25}}
  shutdownSeconds: 10
  validation: {action: Deny}
`
	policyWarn = `apiVersion: gracekeeper.dev/v1alpha1
kind: LifecyclePolicy
metadata: {name: drain-warn}
spec:
  preStop: {sleep: {seconds: 25}}
  shutdownSeconds: 10
  validation: {action: Warn}
`
	policyFits = `apiVersion: gracekeeper.dev/v1alpha1
kind: LifecyclePolicy
metadata: {name: short}
spec:
  preStop: {sleep: {seconds: 5}}
  shutdownSeconds: 5
`
)

func TestRun(t *testing.T) {
	type file struct{ name, content string }
	tests := map[string]struct {
		files    []file   // written to a temp dir; "input.yaml" is the default -f
		args     []string // -f values relative to the temp dir ("-" is stdin); default input.yaml
		policies []string // -p values relative to the temp dir
		stdin    string
		options  Options
		output   Format
		want     int
		// stderr must hold these, in this order.
		stderr []string
		// stdout must hold these; nil with want 2 means stdout must be empty.
		stdout []string
	}{
		"pass: no policies": {
			files:  []file{{"input.yaml", podWeb}},
			want:   ExitPass,
			stderr: []string{"no policies given", "PASS: 1 object (1 reviewed, 0 changed) against 0 policies"},
			stdout: []string{"name: web"},
		},
		"pass: the budget fits": {
			files:    []file{{"input.yaml", podWeb}, {"p.yaml", policyFits}},
			policies: []string{"p.yaml"},
			want:     ExitPass,
			stderr:   []string{"PASS: 1 object (1 reviewed, 1 changed) against 1 policy: 0 denied"},
			stdout:   []string{"gracekeeper.dev/policies: short", "seconds: 5"},
		},
		"deny: preStop plus shutdown over the grace period": {
			files:    []file{{"input.yaml", podWeb}, {"p.yaml", policyDeny}},
			policies: []string{"p.yaml"},
			want:     ExitDenied,
			stderr: []string{
				`DENY  pod/web (doc 1 of input.yaml) container "web": preStop 25s + shutdown 10s = 35s > terminationGracePeriodSeconds 30s`,
				"[policy drain, BudgetExceeded]",
				"FAIL: 1 object (1 reviewed, 1 changed) against 1 policy: 1 denied",
			},
			stdout: []string{"seconds: 25"},
		},
		"warn: the same budget with action Warn passes": {
			files:    []file{{"input.yaml", podWeb}, {"p.yaml", policyWarn}},
			policies: []string{"p.yaml"},
			want:     ExitPass,
			stderr:   []string{"WARN  pod/web (doc 1 of input.yaml)", "PASS:", "1 warning"},
		},
		"pass: an input with only comments passes with a note": {
			files:  []file{{"input.yaml", "# nothing yet\n---\n"}},
			want:   ExitPass,
			stderr: []string{"note: the input holds no objects", "PASS: 0 objects"},
			stdout: []string{"# nothing yet"},
		},
		"stdin: - reads standard input and names it": {
			files:    []file{{"p.yaml", policyDeny}},
			args:     []string{"-"},
			stdin:    "---\n" + podWeb,
			policies: []string{"p.yaml"},
			want:     ExitDenied,
			stderr:   []string{"DENY  pod/web (doc 1 of stdin)"},
		},
		"policies: a directory reads its *.yaml and *.yml files": {
			files: []file{
				{"input.yaml", podWeb},
				{"pols/a.yaml", policyFits},
				{"pols/b.yml", policyWarn},
				{"pols/notes.txt", "not a policy"},
			},
			policies: []string{"pols"},
			want:     ExitPass,
			stderr:   []string{"[policy drain-warn, BudgetExceeded]", "against 2 policies"},
		},
		"input: a directory reads its *.yaml, *.yml and *.json files in name order": {
			files: []file{
				{"in/b.yml", strings.Replace(podWeb, "name: web", "name: second", 1)},
				{"in/a.yaml", podWeb},
				{"in/c.json", `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "third"}, "spec": {"containers": [{"name": "web", "image": "x"}]}}`},
				{"in/skip.txt", "kind: nonsense"},
				{"p.yaml", policyDeny},
			},
			args:     []string{"in"},
			policies: []string{"p.yaml"},
			want:     ExitDenied,
			stderr:   []string{"DENY  pod/web (doc 1 of in/a.yaml)", "DENY  pod/second (doc 1 of in/b.yml)", "DENY  pod/third (doc 1 of in/c.json)", "3 objects"},
		},
		"policies: a v1 List of policies": {
			files: []file{
				{"input.yaml", podWeb},
				{"p.yaml", "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(strings.TrimSpace(policyDeny), "\n", "\n  ") + "\n"},
			},
			policies: []string{"p.yaml"},
			want:     ExitDenied,
		},
		"namespace: --namespace is where objects without one go": {
			files: []file{{"input.yaml", podWeb}, {"p.yaml", `apiVersion: gracekeeper.dev/v1alpha1
kind: LifecyclePolicy
metadata: {name: in-shop}
spec:
  match: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: shop}}}
  preStop: {sleep: {seconds: 25}}
  shutdownSeconds: 10
`}},
			policies: []string{"p.yaml"},
			options:  Options{Namespace: "shop"},
			want:     ExitDenied,
		},
		"namespace: objects elsewhere are not selected": {
			files: []file{{"input.yaml", podWeb}, {"p.yaml", `apiVersion: gracekeeper.dev/v1alpha1
kind: LifecyclePolicy
metadata: {name: in-shop}
spec:
  match: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: shop}}}
  preStop: {sleep: {seconds: 25}}
  shutdownSeconds: 10
`}},
			policies: []string{"p.yaml"},
			want:     ExitPass,
			stderr:   []string{"0 changed"},
		},
		"namespace: a Namespace in the input brings its labels": {
			files: []file{{"input.yaml", strings.Replace(podWeb, "name: web", "name: web\n  namespace: shop", 1) + `---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: shop, labels: {gracekeeper.dev/ignore: "false", tier: prod}}
`}, {"p.yaml", strings.Replace(policyDeny, "spec:\n", "spec:\n  match: {namespaceSelector: {matchLabels: {tier: prod}}}\n", 1)}},
			policies: []string{"p.yaml"},
			options:  Options{NamespaceLabels: map[string]string{"gracekeeper.dev/ignore": "true"}},
			want:     ExitDenied,
			stderr:   []string{"DENY  pod/web (doc 1 of input.yaml)", "2 objects (1 reviewed"},
		},
		"namespace: gracekeeper.dev/ignore=true namespaces are never reviewed": {
			files:    []file{{"input.yaml", podWeb}, {"p.yaml", policyDeny}},
			policies: []string{"p.yaml"},
			options:  Options{NamespaceLabels: map[string]string{"gracekeeper.dev/ignore": "true"}},
			want:     ExitPass,
			stderr:   []string{"0 reviewed"},
		},
		"namespace: the configured ignore label replaces the default one": {
			files:    []file{{"input.yaml", podWeb}, {"p.yaml", policyDeny}},
			policies: []string{"p.yaml"},
			options:  Options{NamespaceLabels: map[string]string{"gracekeeper.dev/ignore": "true"}, Engine: policies.Config{IgnoreLabel: "example.com/skip"}},
			want:     ExitDenied,
			stderr:   []string{"1 reviewed"},
		},
		"output: json prints one v1 List": {
			files:    []file{{"input.yaml", podWeb + "---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n"}, {"p.yaml", policyFits}},
			policies: []string{"p.yaml"},
			output:   FormatJSON,
			want:     ExitPass,
			stdout:   []string{`"kind": "Pod"`, `"seconds": 5`, `"kind": "ConfigMap"`, `"kind": "List"`},
		},
		"warn: a key given twice is flagged, not fatal": {
			files:  []file{{"input.yaml", podWeb + "  terminationGracePeriodSeconds: 60\n"}},
			want:   ExitPass,
			stderr: []string{"WARN  pod/web (doc 1 of input.yaml)", `key "terminationGracePeriodSeconds" already set in map`, "[DuplicateField]"},
		},
		"bad input: invalid YAML names the document": {
			files:  []file{{"input.yaml", podWeb + "---\nkind: [Pod\n"}},
			want:   ExitBadInput,
			stderr: []string{"gracekeeper check: doc 2 of input.yaml: invalid YAML"},
		},
		"bad input: every bad document is named, in file order": {
			files: []file{{"input.yaml", "apiVersion: v1\nkind: Deploymnet\n---\n" + podWeb + "---\n- a list\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: x}, spec: {containers: 7}}\n"}},
			want:  ExitBadInput,
			stderr: []string{
				`doc 1 of input.yaml: unknown kind "Deploymnet" in apiVersion "v1"`,
				"doc 3 of input.yaml: not a Kubernetes object",
				"doc 4 of input.yaml, item 1: invalid Pod",
			},
		},
		"bad input: a removed API version of a built-in group": {
			files:  []file{{"input.yaml", "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: old}\n"}},
			want:   ExitBadInput,
			stderr: []string{`doc 1 of input.yaml: extensions/v1beta1 Deployment is not served by Kubernetes any more: use apiVersion apps/v1`},
		},
		"pass: custom resources pass through unreviewed, as in the cluster": {
			files:  []file{{"input.yaml", podWeb + "---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: web-tls}\nspec: {secretName: web-tls}\n"}},
			want:   ExitPass,
			stderr: []string{"PASS: 2 objects (1 reviewed, 0 changed)", "1 passed through unreviewed"},
			stdout: []string{"kind: Certificate"},
		},
		"bad input: apiVersion and kind are required": {
			files:  []file{{"input.yaml", "metadata: {name: x}\n"}},
			want:   ExitBadInput,
			stderr: []string{"doc 1 of input.yaml: not a Kubernetes object: apiVersion and kind must be set"},
		},
		"bad input: a missing file": {
			args:   []string{"nope.yaml"},
			want:   ExitBadInput,
			stderr: []string{"nope.yaml: no such file or directory"},
		},
		"bad input: a bad file fails the run even when another is fine": {
			files:  []file{{"input.yaml", podWeb}, {"bad.yaml", "kind: Pod\n"}},
			args:   []string{"input.yaml", "bad.yaml"},
			want:   ExitBadInput,
			stderr: []string{"doc 1 of bad.yaml"},
		},
		"bad input: stdin given twice": {
			args:   []string{"-", "-"},
			stdin:  podWeb,
			want:   ExitBadInput,
			stderr: []string{`"-" given more than once`},
		},
		"bad input: no -f": {
			args:   []string{},
			want:   ExitBadInput,
			stderr: []string{"no input"},
		},
		"bad input: unknown output format": {
			files:  []file{{"input.yaml", podWeb}},
			output: "xml",
			want:   ExitBadInput,
			stderr: []string{`unknown output format "xml"`},
		},
		"bad policy: a misspelt field fails strict decoding": {
			files:    []file{{"input.yaml", podWeb}, {"p.yaml", policyFits + "---\n" + strings.Replace(policyDeny, "preStop", "preStp", 1)}},
			policies: []string{"p.yaml"},
			want:     ExitBadInput,
			stderr:   []string{`doc 2 of p.yaml: invalid LifecyclePolicy`, `unknown field "spec.preStp"`},
		},
		"bad policy: a duplicated field fails strict decoding": {
			files:    []file{{"input.yaml", podWeb}, {"p.yaml", policyFits + "  shutdownSeconds: 7\n"}},
			policies: []string{"p.yaml"},
			want:     ExitBadInput,
			stderr:   []string{`doc 1 of p.yaml: invalid LifecyclePolicy`, `key "shutdownSeconds" already set in map`},
		},
		"bad policy: the engine refuses it (bad glob)": {
			files: []file{{"input.yaml", podWeb}, {"p.yaml", policyFits + "---\n" + `apiVersion: gracekeeper.dev/v1alpha1
kind: LifecyclePolicy
metadata: {name: globby}
spec:
  match: {containers: ["[web"]}
`}},
			policies: []string{"p.yaml"},
			want:     ExitBadInput,
			stderr:   []string{`doc 2 of p.yaml: invalid policy: policy "globby"`, "match.containers"},
		},
		"bad policy: the CRD schema refuses an unknown action": {
			files:    []file{{"input.yaml", podWeb}, {"p.yaml", strings.Replace(policyDeny, "action: Deny", "action: Refuse", 1)}},
			policies: []string{"p.yaml"},
			want:     ExitBadInput,
			stderr:   []string{`doc 1 of p.yaml: LifecyclePolicy "drain" would be refused by the API server`, `spec.validation.action: Unsupported value: "Refuse"`},
		},
		"bad policy: the CRD's CEL rules refuse exec without budgetSeconds": {
			files:    []file{{"input.yaml", podWeb}, {"p.yaml", strings.Replace(policyDeny, "preStop: {sleep: {seconds: 25}}", `preStop: {exec: {command: ["/drain"]}}`, 1)}},
			policies: []string{"p.yaml"},
			want:     ExitBadInput,
			stderr:   []string{`would be refused by the API server`, "spec.preStop.exec.budgetSeconds", "exec needs budgetSeconds"},
		},
		"bad policy: the CRD's CEL rules refuse two actions": {
			files:    []file{{"input.yaml", podWeb}, {"p.yaml", strings.Replace(policyDeny, "preStop: {sleep: {seconds: 25}}", `preStop: {sleep: {seconds: 5}, httpGet: {port: 80, budgetSeconds: 5}}`, 1)}},
			policies: []string{"p.yaml"},
			want:     ExitBadInput,
			stderr:   []string{`would be refused by the API server`, "exactly one of sleep, exec or httpGet must be set"},
		},
		"bad policy: the CRD schema refuses negative seconds": {
			files:    []file{{"input.yaml", podWeb}, {"p.yaml", strings.Replace(policyDeny, "shutdownSeconds: 10", "shutdownSeconds: -1", 1)}},
			policies: []string{"p.yaml"},
			want:     ExitBadInput,
			stderr:   []string{`would be refused by the API server`, "spec.shutdownSeconds"},
		},
		"bad policy: the CRD's CEL rules refuse a plain-http cleanup URL outside the cluster": {
			files: []file{{"input.yaml", podWeb}, {"p.yaml", policyDeny + `  cleanup:
    finalizer: example.com/release-ip
    url: http://ipam.example.com/release
`}},
			policies: []string{"p.yaml"},
			want:     ExitBadInput,
			stderr:   []string{`would be refused by the API server`, "spec.cleanup.url", "url must be https"},
		},
		"bad policy: a name that is not a DNS subdomain": {
			files:    []file{{"input.yaml", podWeb}, {"p.yaml", strings.Replace(policyDeny, "name: drain", "name: Drain_Now", 1)}},
			policies: []string{"p.yaml"},
			want:     ExitBadInput,
			stderr:   []string{`LifecyclePolicy "Drain_Now": metadata.name`},
		},
		"policy defaults: a policy without validation denies, as in the cluster": {
			files:    []file{{"input.yaml", podWeb}, {"p.yaml", strings.Replace(policyDeny, "  validation: {action: Deny}\n", "", 1)}},
			policies: []string{"p.yaml"},
			want:     ExitDenied,
			stderr:   []string{"DENY  pod/web"},
		},
		"bad policy: names must be unique": {
			files:    []file{{"input.yaml", podWeb}, {"a.yaml", policyDeny}, {"b.yaml", policyDeny}},
			policies: []string{"a.yaml", "b.yaml"},
			want:     ExitBadInput,
			stderr:   []string{`doc 1 of b.yaml: policy "drain" is also defined in doc 1 of a.yaml`},
		},
		"bad policy: not a LifecyclePolicy": {
			files:    []file{{"input.yaml", podWeb}, {"p.yaml", podWeb}},
			policies: []string{"p.yaml"},
			want:     ExitBadInput,
			stderr:   []string{"doc 1 of p.yaml: v1 Pod is not a policy"},
		},
		"bad policy: no name": {
			files:    []file{{"input.yaml", podWeb}, {"p.yaml", strings.Replace(policyDeny, "metadata: {name: drain}", "metadata: {}", 1)}},
			policies: []string{"p.yaml"},
			want:     ExitBadInput,
			stderr:   []string{"metadata.name is required"},
		},
		"bad policy: a directory without policy files": {
			files:    []file{{"input.yaml", podWeb}, {"empty/readme.md", "#"}},
			policies: []string{"empty"},
			want:     ExitBadInput,
			stderr:   []string{"empty: directory holds no *.yaml, *.yml or *.json file"},
		},
		"bad policy: a missing path": {
			files:    []file{{"input.yaml", podWeb}},
			policies: []string{"nowhere"},
			want:     ExitBadInput,
			stderr:   []string{"nowhere: no such file or directory"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir) // messages name files as given, relative here
			for _, f := range tc.files {
				if err := os.MkdirAll(filepath.Dir(f.name), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(f.name, []byte(f.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			args := tc.args
			if args == nil {
				args = []string{"input.yaml"}
			}
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), RunOptions{
				Options:     testOptions(tc.options),
				Files:       args,
				PolicyPaths: tc.policies,
				Output:      tc.output,
				Stdin:       strings.NewReader(tc.stdin),
				Stdout:      &stdout,
				Stderr:      &stderr,
			})
			if code != tc.want {
				t.Errorf("exit code %d, want %d\nstderr:\n%s", code, tc.want, stderr.String())
			}
			assertInOrder(t, "stderr", stderr.String(), tc.stderr)
			assertInOrder(t, "stdout", stdout.String(), tc.stdout)
			if tc.want == ExitBadInput && stdout.Len() > 0 {
				t.Errorf("bad input printed objects on stdout:\n%s", stdout.String())
			}
			if strings.Contains(stderr.String(), "panic") {
				t.Errorf("stderr mentions a panic:\n%s", stderr.String())
			}
		})
	}
}

// assertInOrder checks that s holds each of want, in order.
func assertInOrder(t *testing.T, what, s string, want []string) {
	t.Helper()
	rest := s
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("%s does not hold %q (in this order):\n%s", what, w, s)
			return
		}
		rest = rest[i+len(w):]
	}
}

// TestNoPolicyMatchesLeavesInputAsIs: when nothing matches, the output is the
// input byte for byte (comments and flow style included), in YAML, and the
// same objects in JSON.
func TestNoPolicyMatchesLeavesInputAsIs(t *testing.T) {
	in, err := os.ReadFile(filepath.Join(goldenDir, "no-match", "input.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(context.Background(), testOptions(Options{}), []string{filepath.Join(goldenDir, "no-match", "policies.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Check([]string{"-"}, bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed() != 0 || len(res.Objects) != 2 {
		t.Fatalf("changed %d of %d objects, want 0 of 2", res.Changed(), len(res.Objects))
	}
	var y, j bytes.Buffer
	if err := res.WriteObjects(&y, FormatYAML); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(y.Bytes(), in) {
		t.Errorf("YAML output differs from the input:\n%s", y.String())
	}
	if err := res.WriteObjects(&j, FormatJSON); err != nil {
		t.Fatal(err)
	}
	var list struct{ Items []any }
	if err := json.Unmarshal(j.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(in), "\n---\n")
	if len(list.Items) != len(docs) {
		t.Fatalf("JSON list has %d items, want %d", len(list.Items), len(docs))
	}
	for i, d := range docs {
		var want any
		if err := yaml.Unmarshal([]byte(d), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(list.Items[i], want) {
			t.Errorf("JSON item %d = %v, want %v", i, list.Items[i], want)
		}
	}
}

// TestJSONOutputIsIdempotent feeds -o json output back in: same bytes.
func TestJSONOutputIsIdempotent(t *testing.T) {
	dir := filepath.Join(goldenDir, "all-kinds")
	pass := func(files []string, stdin []byte) []byte {
		var out, errOut bytes.Buffer
		code := Run(context.Background(), RunOptions{Options: testOptions(Options{}), Files: files, PolicyPaths: []string{filepath.Join(dir, "policies.yaml")},
			Output: FormatJSON, Stdin: bytes.NewReader(stdin), Stdout: &out, Stderr: &errOut})
		if code != ExitPass {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
		return out.Bytes()
	}
	first := pass([]string{filepath.Join(dir, "input.yaml")}, nil)
	second := pass([]string{"-"}, first)
	if !bytes.Equal(first, second) {
		t.Errorf("second pass differs:\n--- first\n%s\n--- second\n%s", first, second)
	}
	if !bytes.Contains(first, []byte(`"gracekeeper.dev/policies": "drain,record"`)) {
		t.Errorf("first pass is not mutated:\n%s", first)
	}
}
