package main

import (
	"bytes"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gracekeeper/gracekeeper/app"
	"github.com/gracekeeper/gracekeeper/test/chartrender"
)

// TestChartArgsParse renders the chart's Deployment in each certificate mode
// and parses its container args with serve's own flag parser: a flag the
// chart passes and serve does not know would crash-loop every install.
func TestChartArgsParse(t *testing.T) {
	for mode, want := range map[string]app.CertMode{"self": app.CertModeSelf, "certManager": app.CertModeCertManager} {
		t.Run(mode, func(t *testing.T) {
			objs, err := chartrender.Render(map[string]any{"certificates": map[string]any{"mode": mode}})
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
			if o.CertMode != want || o.Namespace != chartrender.Namespace || o.MetricsAddr != ":8443" || o.MetricsInsecure || o.Webhook.Addr != ":9443" || !o.LeaderElect {
				t.Errorf("parsed %+v from %q", o.Options, args)
			}
		})
	}
}
