package main

import (
	"bytes"
	"flag"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gracekeeper/gracekeeper/admissionpolicy"
	"github.com/gracekeeper/gracekeeper/app"
	"github.com/gracekeeper/gracekeeper/test/chartrender"
)

// chartServeOptions renders the chart with values and parses its
// Deployment's container args with serve's own flag parser: a flag the
// chart passes and serve does not know would crash-loop every install.
func chartServeOptions(t *testing.T, values map[string]any) serveOptions {
	t.Helper()
	objs, err := chartrender.Render(values)
	if err != nil {
		t.Fatal(err)
	}
	var d *appsv1.Deployment
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			d = &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d == nil {
		t.Fatal("no Deployment rendered")
	}
	args := d.Spec.Template.Spec.Containers[0].Args
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("args %q do not run serve", args)
	}
	var stderr bytes.Buffer
	o, code, ok := parseServeFlags(args[1:], &stderr)
	if !ok {
		t.Fatalf("serve refuses the chart's args %q (exit %d): %s", args, code, stderr.String())
	}
	return o
}

// TestChartArgsParse renders the chart's Deployment in each certificate mode
// and parses its container args with serve's own flag parser.
func TestChartArgsParse(t *testing.T) {
	for mode, want := range map[string]app.CertMode{"self": app.CertModeSelf, "certManager": app.CertModeCertManager} {
		t.Run(mode, func(t *testing.T) {
			o := chartServeOptions(t, map[string]any{"certificates": map[string]any{"mode": mode}})
			if o.CertMode != want || o.Namespace != chartrender.Namespace || o.MetricsAddr != ":8443" || o.MetricsInsecure || o.Webhook.Addr != ":9443" || !o.LeaderElect {
				t.Errorf("parsed %+v", o.Options)
			}
			// The chart's defaults are the binary's defaults.
			if got := o.Engine(); !slices.Equal(got.ExcludedNamespaces, []string{chartrender.Namespace, "kube-system", "kube-node-lease"}) || got.IgnoreLabel != "gracekeeper.dev/ignore" {
				t.Errorf("engine config %+v from the chart's defaults", got)
			}
		})
	}
}

// TestChartValuesReachServe renders the chart with a non-default value for
// each value that configures the process and asserts, through serve's own
// parser, that the process gets it.
func TestChartValuesReachServe(t *testing.T) {
	defaults := chartServeOptions(t, nil)
	for name, tc := range map[string]struct {
		values map[string]any
		check  func(o serveOptions) bool
	}{
		"webhook.excludeNamespaces (and the release namespace stays excluded)": {
			values: map[string]any{"webhook": map[string]any{"excludeNamespaces": []any{"kube-public", "monitoring"}}},
			check: func(o serveOptions) bool {
				return slices.Equal(o.Engine().ExcludedNamespaces, []string{chartrender.Namespace, "kube-public", "monitoring"})
			},
		},
		"webhook.excludeNamespaces empty: kube-system is judged like any namespace": {
			values: map[string]any{"webhook": map[string]any{"excludeNamespaces": []any{}}},
			check: func(o serveOptions) bool {
				return slices.Equal(o.Engine().ExcludedNamespaces, []string{chartrender.Namespace})
			},
		},
		"webhook.ignoreLabel": {
			values: map[string]any{"webhook": map[string]any{"ignoreLabel": "example.com/no-hooks"}},
			check:  func(o serveOptions) bool { return o.Engine().IgnoreLabel == "example.com/no-hooks" },
		},
		"webhook.port": {
			values: map[string]any{"webhook": map[string]any{"port": 10443}},
			check:  func(o serveOptions) bool { return o.Webhook.Addr == ":10443" },
		},
		"leaderElection.enabled": {
			values: map[string]any{"leaderElection": map[string]any{"enabled": false}, "replicas": 1},
			check:  func(o serveOptions) bool { return !o.LeaderElect },
		},
		"drainDelay": {
			values: map[string]any{"drainDelay": "7s"},
			check:  func(o serveOptions) bool { return o.Webhook.DrainDelay == 7*time.Second },
		},
		"logLevel": {
			values: map[string]any{"logLevel": 3},
			check:  func(o serveOptions) bool { return o.verbosity == 3 },
		},
		"certificates.mode": {
			values: map[string]any{"certificates": map[string]any{"mode": "certManager"}},
			check:  func(o serveOptions) bool { return o.CertMode == app.CertModeCertManager },
		},
		"admission.mode": {
			values: map[string]any{"admission": map[string]any{"mode": "apiserver"}},
			check:  func(o serveOptions) bool { return o.AdmissionMode == admissionpolicy.ModeAPIServer },
		},
		"certificates.self.caLifetime": {
			values: map[string]any{"certificates": map[string]any{"self": map[string]any{"caLifetime": "1000h"}}},
			check:  func(o serveOptions) bool { return o.Certs.CALifetime == 1000*time.Hour },
		},
		"certificates.self.certLifetime": {
			values: map[string]any{"certificates": map[string]any{"self": map[string]any{"certLifetime": "100h"}}},
			check:  func(o serveOptions) bool { return o.Certs.CertLifetime == 100*time.Hour },
		},
		"fullnameOverride names the Secret, Service and webhook configurations": {
			values: map[string]any{"fullnameOverride": "gk"},
			check: func(o serveOptions) bool {
				c := o.Certs
				return c.SecretName == "gk-tls" && c.ServiceName == "gk" && c.MutatingWebhookConfiguration == "gk" && c.ValidatingWebhookConfiguration == "gk"
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			// A value equal to the default would prove nothing.
			if tc.check(defaults) {
				t.Fatalf("the chart's defaults already pass this check; pick a non-default value")
			}
			if o := chartServeOptions(t, tc.values); !tc.check(o) {
				t.Errorf("values %v did not reach serve: parsed %+v", tc.values, o.Options)
			}
		})
	}
}

// TestScopeFlagsSharedByCheck: check takes the same --excluded-namespaces and
// --ignore-label as serve, with the same defaults.
func TestScopeFlagsSharedByCheck(t *testing.T) {
	var stderr bytes.Buffer
	o, _, ok := parseServeFlags([]string{"--namespace=gk"}, &stderr)
	if !ok {
		t.Fatal(stderr.String())
	}
	var s scopeFlags
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	s.register(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	serveEngine := o.Engine()
	if !reflect.DeepEqual(append([]string{"gk"}, s.engine().ExcludedNamespaces...), serveEngine.ExcludedNamespaces) || s.engine().IgnoreLabel != serveEngine.IgnoreLabel {
		t.Errorf("check's defaults %+v differ from serve's %+v", s.engine(), serveEngine)
	}
	var help bytes.Buffer
	runCheck(t.Context(), []string{"-h"}, strings.NewReader(""), &help, &help)
	for _, f := range []string{"-excluded-namespaces", "-ignore-label"} {
		if !strings.Contains(help.String(), f) {
			t.Errorf("check -h does not list %s:\n%s", f, help.String())
		}
	}
}
