package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	cliDeployment = `# comment kept when nothing changes
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 30
      containers: [{name: web, image: nginx}]
`
	cliPolicyDeny = `apiVersion: gracekeeper.dev/v1alpha1
kind: LifecyclePolicy
metadata: {name: http-drain}
spec:
  match: {namespaceSelector: {matchLabels: {env: prod}}}
  preStop: {sleep: {seconds: 25}}
  shutdownSeconds: 10
  validation: {action: Deny}
`
	cliPolicyFit = `apiVersion: gracekeeper.dev/v1alpha1
kind: LifecyclePolicy
metadata: {name: http-fit}
spec:
  preStop: {sleep: {seconds: 25}}
  shutdownSeconds: 10
  terminationGracePeriod: {fit: true}
`
)

// runCLI runs the real command line in dir and returns exit code, stdout, stderr.
func runCLI(t *testing.T, dir string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	t.Chdir(dir)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append([]string{"check"}, args...), strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestCheckCommand(t *testing.T) {
	files := map[string]string{
		"app.yaml":               cliDeployment,
		"policies/drain.yaml":    cliPolicyDeny,
		"fit/fit.yml":            cliPolicyFit,
		"broken.yaml":            cliDeployment + "---\napiVersion: apps/v1\nkind: Deployment\nspec: {replicas: many}\n",
		"policies-bad/typo.yaml": strings.Replace(cliPolicyDeny, "shutdownSeconds", "shutdownSecs", 1),
	}
	tests := map[string]struct {
		args   []string
		stdin  string
		want   int
		stderr []string
		stdout []string
	}{
		"pass: the namespace is not selected": {
			args:   []string{"-f", "app.yaml", "-p", "policies"},
			want:   0,
			stderr: []string{"PASS: 1 object (1 reviewed, 0 changed) against 1 policy"},
			stdout: []string{"# comment kept when nothing changes"},
		},
		"deny: --namespace-labels selects the namespace": {
			args:   []string{"-f", "app.yaml", "-p", "policies", "--namespace-labels", "env=prod,team=web"},
			want:   1,
			stderr: []string{`DENY  deployment/web (doc 1 of app.yaml) container "web": preStop 25s + shutdown 10s = 35s > terminationGracePeriodSeconds 30s`, "[policy http-drain, BudgetExceeded]", "FAIL:"},
			stdout: []string{"seconds: 25"},
		},
		"pass: fit raises the grace period; -p twice": {
			args:   []string{"-f", "app.yaml", "-p", "fit", "-p", "policies/drain.yaml"},
			want:   0,
			stdout: []string{"terminationGracePeriodSeconds: 35"},
			stderr: []string{"against 2 policies"},
		},
		"stdin: -f - with -o json": {
			args:   []string{"-f", "-", "-p", "fit", "-o", "json"},
			stdin:  cliDeployment,
			want:   0,
			stdout: []string{`"kind": "Deployment"`, `"terminationGracePeriodSeconds": 35`, `"kind": "List"`},
		},
		"bad input: doc number in the message": {
			args:   []string{"-f", "broken.yaml"},
			want:   2,
			stderr: []string{"gracekeeper check: doc 2 of broken.yaml: invalid Deployment"},
		},
		"bad input: a policy with a misspelt field": {
			args:   []string{"-f", "app.yaml", "-p", "policies-bad"},
			want:   2,
			stderr: []string{"doc 1 of policies-bad/typo.yaml", `unknown field "spec.shutdownSecs"`},
		},
		"pass: kube-system is excluded by default, as serve excludes it": {
			args:   []string{"-f", "app.yaml", "-p", "policies", "--namespace", "kube-system", "--namespace-labels", "env=prod"},
			want:   0,
			stderr: []string{"0 changed"},
		},
		"deny: --excluded-namespaces without kube-system judges it": {
			args:   []string{"-f", "app.yaml", "-p", "policies", "--namespace", "kube-system", "--namespace-labels", "env=prod", "--excluded-namespaces", "kube-node-lease"},
			want:   1,
			stderr: []string{"DENY  deployment/web"},
		},
		"pass: --ignore-label names the label that leaves a namespace out": {
			args:   []string{"-f", "app.yaml", "-p", "policies", "--namespace-labels", "env=prod,example.com/skip=true", "--ignore-label", "example.com/skip"},
			want:   0,
			stderr: []string{"0 reviewed"},
		},
		"deny: the default ignore label is not honoured when another is named": {
			args:   []string{"-f", "app.yaml", "-p", "policies", "--namespace-labels", "env=prod,gracekeeper.dev/ignore=true", "--ignore-label", "example.com/skip"},
			want:   1,
			stderr: []string{"DENY  deployment/web"},
		},
		"bad flag: --ignore-label not a label key": {
			args:   []string{"-f", "app.yaml", "--ignore-label", "no spaces"},
			want:   2,
			stderr: []string{`--ignore-label`, `ignore label "no spaces"`},
		},
		"bad flag: --namespace-labels without =": {
			args:   []string{"-f", "app.yaml", "--namespace-labels", "env"},
			want:   2,
			stderr: []string{"--namespace-labels"},
		},
		"bad flag: --namespace-labels with an invalid value": {
			args:   []string{"-f", "app.yaml", "--namespace-labels", "env=no spaces"},
			want:   2,
			stderr: []string{`--namespace-labels`, `Invalid value: "no spaces"`},
		},
		"bad flag: --namespace-labels with an invalid key": {
			args:   []string{"-f", "app.yaml", "--namespace-labels", "-bad-=x"},
			want:   2,
			stderr: []string{`--namespace-labels`, `-bad-`},
		},
		"bad flag: --namespace not a DNS label": {
			args:   []string{"-f", "app.yaml", "--namespace", "Prod_1"},
			want:   2,
			stderr: []string{`--namespace "Prod_1"`},
		},
		"bad flag: a stray argument": {
			args:   []string{"-f", "app.yaml", "extra.yaml"},
			want:   2,
			stderr: []string{`unexpected argument "extra.yaml"`},
		},
		"bad flag: unknown flag": {
			args:   []string{"--frobnicate"},
			want:   2,
			stderr: []string{"flag provided but not defined", "usage: gracekeeper check"},
		},
		"help: -h prints the usage and succeeds": {
			args:   []string{"-h"},
			want:   0,
			stderr: []string{"usage: gracekeeper check", "-namespace-labels"},
		},
		"bad input: no -f": {
			args:   []string{"-p", "policies"},
			want:   2,
			stderr: []string{"no input"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := writeFiles(t, files)
			code, stdout, stderr := runCLI(t, dir, tc.stdin, tc.args...)
			if code != tc.want {
				t.Errorf("exit %d, want %d\nstderr:\n%s", code, tc.want, stderr)
			}
			assertHolds(t, "stderr", stderr, tc.stderr)
			assertHolds(t, "stdout", stdout, tc.stdout)
			if tc.want == 2 && stdout != "" {
				t.Errorf("exit 2 printed objects:\n%s", stdout)
			}
		})
	}
}

func assertHolds(t *testing.T, what, s string, want []string) {
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

// TestCheckCommandIdempotent feeds the command's output back through stdin:
// the same bytes come out and nothing is changed.
func TestCheckCommandIdempotent(t *testing.T) {
	dir := writeFiles(t, map[string]string{"app.yaml": cliDeployment, "fit.yaml": cliPolicyFit})
	code, first, stderr := runCLI(t, dir, "", "-f", "app.yaml", "-p", "fit.yaml")
	if code != 0 || !strings.Contains(stderr, "1 changed") {
		t.Fatalf("first pass: exit %d, stderr:\n%s", code, stderr)
	}
	code, second, stderr := runCLI(t, dir, first, "-f", "-", "-p", "fit.yaml")
	if code != 0 || !strings.Contains(stderr, "0 changed") {
		t.Errorf("second pass: exit %d, stderr:\n%s", code, stderr)
	}
	if first != second {
		t.Errorf("second pass differs:\n--- first\n%s\n--- second\n%s", first, second)
	}
}

// TestCheckCommandNoPolicyMatches: output equals input, semantically and here
// even byte for byte.
func TestCheckCommandNoPolicyMatches(t *testing.T) {
	dir := writeFiles(t, map[string]string{"app.yaml": cliDeployment, "p.yaml": cliPolicyDeny})
	code, out, stderr := runCLI(t, dir, "", "-f", "app.yaml", "-p", "p.yaml")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	var got, want any
	if err := yaml.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(cliDeployment), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("output differs from input:\n%s", out)
	}
	if out != cliDeployment {
		t.Errorf("unchanged input was not echoed as written:\n%s", out)
	}
}
