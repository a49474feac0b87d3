package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/testcert"
	"github.com/gracekeeper/gracekeeper/webhook"
)

// TestLoadAgainstServer runs the tool briefly against an in-process
// gracekeeper server over TLS (verified with the server's CA).
func TestLoadAgainstServer(t *testing.T) {
	dir := t.TempDir()
	testcert.MustWriteDir(t, dir)
	ca := filepath.Join(dir, "tls.crt")
	p := v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: "web"}}
	p.Spec.Match.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	p.Spec.PreStop = &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: 5}}}
	set, fs := policies.NewSet(policies.Config{}, []v1alpha1.LifecyclePolicy{p})
	if len(fs) > 0 {
		t.Fatal(fs)
	}
	srv, err := webhook.NewServer(webhook.Config{Addr: "127.0.0.1:0", CertDir: dir, DrainDelay: -1},
		webhook.StaticSource{Policies: set}, prometheus.NewRegistry(), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	addr, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	url := "https://" + addr.String()

	var out, errOut bytes.Buffer
	deadline := time.Now().Add(10 * time.Second)
	for {
		out.Reset()
		errOut.Reset()
		if code := run(context.Background(), []string{"-url", url + "/healthz", "-n", "1", "-c", "1", "-ca", ca, "-expect-code", "405"}, &out, &errOut); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not up: %s %s", out.String(), errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	out.Reset()
	errOut.Reset()
	code := run(context.Background(), []string{"-url", url + webhook.RouteMutatePods, "-n", "300", "-c", "4", "-ca", ca}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	t.Log(out.String())
	for _, want := range []string{`(?m)^requests: 300$`, `(?m)^errors: 0$`, `throughput: \d+ req/s`, `latency: p50 \S+\s+p90 \S+\s+p99 \S+\s+max \S+`,
		`(?s)baseline \(bare HTTPS echo.*requests: 300\nerrors: 0`, `ratio to baseline: throughput \d+\.\d\dx  p50 \d+\.\d\dx  p99 \d+\.\d\dx`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("output lacks %s:\n%s", want, out.String())
		}
	}

	// A server answering something else counts as errors, exit 1.
	out.Reset()
	if code := run(context.Background(), []string{"-url", url + "/no-such-route", "-n", "5", "-c", "2", "-insecure"}, &out, &errOut); code != 1 {
		t.Errorf("exit %d against a 404 route, want 1:\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "errors: 5") {
		t.Errorf("want 5 errors:\n%s", out.String())
	}
}

func TestRefusesBadFlags(t *testing.T) {
	tests := map[string]struct {
		args []string
		want string
	}{
		"no url":            {nil, "-url is required"},
		"not loopback":      {[]string{"-url", "https://10.0.0.1:9443/mutate-pods"}, "not a loopback address"},
		"not loopback name": {[]string{"-url", "https://example.com/mutate-pods"}, "not a loopback address"},
		"too many":          {[]string{"-url", "https://127.0.0.1:1/x", "-n", "2000000"}, "-n must be"},
		"too concurrent":    {[]string{"-url", "https://127.0.0.1:1/x", "-c", "1000"}, "-c must be"},
		"too long":          {[]string{"-url", "https://[::1]:1/x", "-duration", "1h"}, "-duration must be"},
		"bad scheme":        {[]string{"-url", "ftp://127.0.0.1/x"}, "scheme"},
		"body not JSON":     {[]string{"-url", "https://localhost:1/x", "-f", "main.go"}, "not JSON"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(context.Background(), tc.args, &out, &errOut); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("stderr %q lacks %q", errOut.String(), tc.want)
			}
		})
	}
}
