package controlplane

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// TestCRDRefusesBadPolicies proves the CRD schema and CEL rules refuse bad
// policies at the real API server with a message that names the field.
func TestCRDRefusesBadPolicies(t *testing.T) {
	cfg := Start(t)
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		spec    string
		wantErr []string // substrings; empty means accepted
	}{
		"valid policy is accepted":               {spec: `{preStop: {sleep: {seconds: 5}}, shutdownSeconds: 10, finalizers: [gracekeeper.dev/termination-record], cleanup: {finalizer: example.com/release-ip, url: "https://ipam.example.com/release"}, validation: {action: Warn}}`},
		"cluster-local http cleanup is accepted": {spec: `{cleanup: {finalizer: example.com/release-ip, url: "http://ipam.net.svc:8080/release"}}`},
		"container exits are accepted":           {spec: `{finalizers: [gracekeeper.dev/termination-record], containerExits: {record: false, logLines: 50}, cleanup: {finalizer: example.com/scratch, url: "https://gc.example.com/r", when: [Deletion, ContainerExit]}}`},
		"exit cleanup without Deletion":          {spec: `{cleanup: {finalizer: example.com/scratch, url: "https://gc.example.com/r", when: [ContainerExit]}}`, wantErr: []string{"spec.cleanup.when", "must include Deletion"}},
		"a trigger twice":                        {spec: `{cleanup: {finalizer: example.com/scratch, url: "https://gc.example.com/r", when: [Deletion, Deletion]}}`, wantErr: []string{"spec.cleanup.when[1]", "Duplicate"}},
		"negative logLines":                      {spec: `{containerExits: {logLines: -1}}`, wantErr: []string{"spec.containerExits.logLines"}},
		"two hook actions":                       {spec: `{preStop: {sleep: {seconds: 5}, exec: {command: [x], budgetSeconds: 1}}}`, wantErr: []string{"spec.preStop", "exactly one of sleep, exec or httpGet"}},
		"no hook action":                         {spec: `{postStart: {overwrite: true}}`, wantErr: []string{"spec.postStart", "exactly one"}},
		"exec preStop without budget":            {spec: `{preStop: {exec: {command: [x]}}}`, wantErr: []string{"spec.preStop.exec.budgetSeconds", "needs budgetSeconds"}},
		"httpGet preStop without budget":         {spec: `{preStop: {httpGet: {path: /drain, port: 8080}}}`, wantErr: []string{"spec.preStop.httpGet.budgetSeconds"}},
		"budget on postStart":                    {spec: `{postStart: {exec: {command: [x], budgetSeconds: 1}}}`, wantErr: []string{"spec.postStart.exec.budgetSeconds"}},
		"negative sleep":                         {spec: `{preStop: {sleep: {seconds: -1}}}`, wantErr: []string{"spec.preStop.sleep.seconds"}},
		"negative shutdown":                      {spec: `{shutdownSeconds: -3}`, wantErr: []string{"spec.shutdownSeconds"}},
		"maxSeconds zero":                        {spec: `{terminationGracePeriod: {fit: true, maxSeconds: 0}}`, wantErr: []string{"spec.terminationGracePeriod.maxSeconds"}},
		"unknown action":                         {spec: `{validation: {action: Block}}`, wantErr: []string{"spec.validation.action", "Unsupported value"}},
		"plain http cleanup":                     {spec: `{cleanup: {finalizer: example.com/x, url: "http://ipam.example.com/release"}}`, wantErr: []string{"spec.cleanup.url", "https"}},
		"cleanup without finalizer":              {spec: `{cleanup: {url: "https://x.example.com"}}`, wantErr: []string{"spec.cleanup.finalizer", "Required"}},
		"unqualified cleanup finalizer":          {spec: `{cleanup: {finalizer: "release ip", url: "https://x.example.com"}}`, wantErr: []string{"spec.cleanup.finalizer"}},
		"unknown builtin finalizer":              {spec: `{finalizers: [example.com/other]}`, wantErr: []string{"spec.finalizers[0]"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			obj := &unstructured.Unstructured{}
			obj.SetAPIVersion("gracekeeper.dev/v1alpha1")
			obj.SetKind("LifecyclePolicy")
			obj.SetGenerateName("p-")
			var spec map[string]any
			if err := yaml.Unmarshal([]byte(tc.spec), &spec); err != nil {
				t.Fatal(err)
			}
			obj.Object["spec"] = spec
			err := c.Create(context.Background(), obj, client.DryRunAll)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("want accepted, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want refused with %q, got accepted", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
