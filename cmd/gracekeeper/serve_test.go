package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gracekeeper/gracekeeper/app"
	"github.com/gracekeeper/gracekeeper/certs"
	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/controlplane"
	"github.com/gracekeeper/gracekeeper/test/testcert"
)

func TestServeFlags(t *testing.T) {
	tests := map[string]struct {
		args     []string
		wantCode int
		wantOK   bool
		wantErr  string
		check    func(t *testing.T, o serveOptions)
	}{
		"help":                   {args: []string{"-h"}, wantCode: 0},
		"namespace required":     {args: nil, wantCode: 2, wantErr: "--namespace is required"},
		"bad TLS version":        {args: []string{"--namespace", "gk", "--tls-min-version", "1.1"}, wantCode: 2, wantErr: "unsupported TLS minimum version"},
		"stray argument":         {args: []string{"--namespace", "gk", "extra"}, wantCode: 2, wantErr: `unexpected argument "extra"`},
		"unknown flag":           {args: []string{"--nope"}, wantCode: 2, wantErr: "flag provided but not defined"},
		"unknown cert mode":      {args: []string{"--namespace", "gk", "--cert-mode", "vault"}, wantCode: 2, wantErr: `--cert-mode "vault"`},
		"unknown admission mode": {args: []string{"--namespace", "gk", "--admission-mode", "both"}, wantCode: 2, wantErr: `--admission-mode "both": must be webhook or apiserver`},
		"self needs names":       {args: []string{"--namespace", "gk", "--cert-mode", "self", "--cert-secret", "s"}, wantCode: 2, wantErr: "cert mode self needs the Secret and Service names (--cert-secret, --service)"},
		"self mode": {args: []string{"--namespace", "gk", "--cert-mode=self", "--cert-secret=s", "--service=svc", "--mutating-webhook-config=w", "--validating-webhook-config=w", "--cert-lifetime=48h"}, wantOK: true, check: func(t *testing.T, o serveOptions) {
			if o.CertMode != app.CertModeSelf || o.Certs.SecretName != "s" || o.Certs.ServiceName != "svc" || o.Certs.CertLifetime != 48*time.Hour || o.Certs.CALifetime != certs.DefaultCALifetime {
				t.Errorf("self mode: %+v", o)
			}
		}},
		"chart flags": {args: []string{"--namespace=gk", "--addr=:9443", "--metrics-bind-address=:8080", "--leader-elect=true", "--drain-delay=10s", "--v=1", "--cert-mode=certManager"}, wantOK: true, check: func(t *testing.T, o serveOptions) {
			if o.MetricsAddr != ":8080" || !o.LeaderElect || o.Webhook.DrainDelay != 10*time.Second || o.verbosity != 1 || o.CertMode != app.CertModeCertManager {
				t.Errorf("chart flags: %+v", o)
			}
		}},
		"request timeout from the chart": {args: []string{"--namespace", "gk", "--request-timeout=5s"}, wantOK: true, check: func(t *testing.T, o serveOptions) {
			if o.Webhook.RequestTimeout != 5*time.Second {
				t.Errorf("request timeout %s, want 5s", o.Webhook.RequestTimeout)
			}
		}},
		"request timeout over 30s": {args: []string{"--namespace", "gk", "--request-timeout=31s"}, wantCode: 2, wantErr: "--request-timeout"},
		"negative body":            {args: []string{"--namespace", "gk", "--max-body-bytes", "-1"}, wantCode: 2, wantErr: "--max-body-bytes"},
		"bad excluded namespace":   {args: []string{"--namespace", "gk", "--excluded-namespaces", "kube-system,Not_A_Name"}, wantCode: 2, wantErr: `--excluded-namespaces or --ignore-label: excluded namespace "Not_A_Name"`},
		"bad ignore label":         {args: []string{"--namespace", "gk", "--ignore-label", "a b"}, wantCode: 2, wantErr: `ignore label "a b" is not a label key`},
		"ignore label": {args: []string{"--namespace", "gk", "--ignore-label", "example.com/skip"}, wantOK: true, check: func(t *testing.T, o serveOptions) {
			if o.Engine().IgnoreLabel != "example.com/skip" {
				t.Errorf("ignore label: %+v", o.Engine())
			}
		}},
		"own namespace first": {args: []string{"--namespace", "gk", "--excluded-namespaces", "kube-system, gk ,,other"}, wantOK: true, check: func(t *testing.T, o serveOptions) {
			if got := strings.Join(o.Excluded(), ","); got != "gk,kube-system,other" {
				t.Errorf("excluded %q", got)
			}
		}},
		"defaults": {args: []string{"--namespace", "gk"}, wantOK: true, check: func(t *testing.T, o serveOptions) {
			if o.Webhook.Addr != ":9443" || o.Webhook.TLSMinVersion != "1.2" || o.Webhook.MaxBodyBytes != 7<<20 || o.LeaderElect || o.CertMode != app.CertModeFiles ||
				strings.Join(o.Excluded(), ",") != "gk,kube-system,kube-node-lease" {
				t.Errorf("defaults: %+v", o)
			}
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var stderr bytes.Buffer
			o, code, ok := parseServeFlags(tc.args, &stderr)
			if ok != tc.wantOK || (!ok && code != tc.wantCode) {
				t.Fatalf("ok=%v code=%d, want ok=%v code=%d; stderr: %s", ok, code, tc.wantOK, tc.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t, o)
			}
		})
	}
}

// TestServeAgainstControlPlane runs serve (manager, policy store, server)
// against a real kube-apiserver + etcd: it becomes ready, applies a policy
// created after start, and shuts down cleanly when its context ends.
func TestServeAgainstControlPlane(t *testing.T) {
	cfg := controlplane.Start(t)
	ctrllog.SetLogger(logr.Discard())
	dir := t.TempDir()
	pool := testcert.MustWriteDir(t, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	var stderr bytes.Buffer
	o, _, ok := parseServeFlags([]string{"--namespace", "gracekeeper", "--addr", addr, "--cert-dir", dir, "--drain-delay", "200ms"}, &stderr)
	if !ok {
		t.Fatal(stderr.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, o.Options, logr.Discard()) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cancel()
			<-done
		}
	})

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	base := "https://" + addr
	waitFor(t, "readyz 200", func() bool {
		resp, err := hc.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	scheme, err := clientscheme.New()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	p := &v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "drain"}}
	p.Spec.PreStop = &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: 4}}}
	if err := c.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	review := func(ns string) *admissionv1.AdmissionResponse {
		body, _ := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
			"request": map[string]any{"uid": "u1", "kind": map[string]any{"version": "v1", "kind": "Pod"}, "namespace": ns, "operation": "CREATE",
				"object": map[string]any{"metadata": map[string]any{"name": "p"}, "spec": map[string]any{"containers": []any{map[string]any{"name": "c", "image": "i"}}}}}})
		resp, err := hc.Post(base+"/mutate-pods", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rev admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&rev); err != nil || rev.Response == nil {
			t.Fatalf("HTTP %d: %v", resp.StatusCode, err)
		}
		return rev.Response
	}
	waitFor(t, "policy applied", func() bool { return bytes.Contains(review("shop").Patch, []byte(`"seconds":4`)) })
	if r := review("gracekeeper"); r.Patch != nil {
		t.Errorf("own namespace was patched: %s", r.Patch)
	}
	if r := review("kube-system"); r.Patch != nil {
		t.Errorf("kube-system was patched: %s", r.Patch)
	}

	cancel()
	stopped = true
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v after cancel", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30s")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
