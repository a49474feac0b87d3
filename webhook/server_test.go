package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/test/testcert"
)

func readCase(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "cases", name, "request.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBadInput sends malformed requests to a real TLS server: each gets an
// AdmissionReview with allowed:false and code 400 (uid echoed when there is
// one) or an HTTP 4xx, never a panic, a 5xx or a hang.
func TestBadInput(t *testing.T) {
	r, _, _ := startTLS(t, testSource(t), Config{MaxBodyBytes: 64 << 10})
	pod := readCase(t, "mutate-web-unknown-fields")
	deploy := readCase(t, "validate-workloads-deployment-deny")
	edit := func(b []byte, f func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	req := func(m map[string]any) map[string]any { return m["request"].(map[string]any) }
	tests := map[string]struct {
		method, route, contentType, body string
		wantHTTP                         int
		wantUID                          string // in the AdmissionReview error
		wantMsg                          string
	}{
		"not JSON":                {body: "this is not json", wantMsg: "not a JSON AdmissionReview"},
		"empty body":              {body: "", wantMsg: "not a JSON AdmissionReview"},
		"JSON array":              {body: "[1,2]", wantMsg: "not a JSON AdmissionReview"},
		"truncated JSON":          {body: string(pod[:len(pod)/2]), wantMsg: "not a JSON AdmissionReview"},
		"wrong apiVersion":        {body: edit(pod, func(m map[string]any) { m["apiVersion"] = "admission.k8s.io/v1beta1" }), wantUID: "u-1", wantMsg: `got apiVersion "admission.k8s.io/v1beta1"`},
		"wrong kind":              {body: edit(pod, func(m map[string]any) { m["kind"] = "Pod" }), wantUID: "u-1", wantMsg: `kind "Pod"`},
		"missing request":         {body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, wantMsg: "has no request"},
		"missing uid":             {body: edit(pod, func(m map[string]any) { delete(req(m), "uid") }), wantMsg: "has no uid"},
		"missing object":          {body: edit(pod, func(m map[string]any) { delete(req(m), "object") }), wantUID: "u-1", wantMsg: "has no object"},
		"null object":             {body: edit(pod, func(m map[string]any) { req(m)["object"] = nil }), wantUID: "u-1", wantMsg: "has no object"},
		"object not a pod":        {body: edit(pod, func(m map[string]any) { req(m)["object"] = "a string" }), wantUID: "u-1", wantMsg: "not a valid Pod"},
		"pod field of wrong type": {body: edit(pod, func(m map[string]any) { req(m)["object"].(map[string]any)["spec"] = 7 }), wantUID: "u-1", wantMsg: "not a valid Pod"},
		"wrong resource kind":     {body: string(deploy), wantUID: "w-strict", wantMsg: "expected a core/v1 Pod, got apps/v1 Deployment"},
		"pod sent to workloads":   {route: RouteValidateWorkloads, body: string(pod), wantUID: "u-1", wantMsg: "expected a workload"},
		"pod sent to validate":    {route: RouteValidatePods, body: string(deploy), wantUID: "w-strict", wantMsg: "expected a core/v1 Pod"},
		"unknown workload kind": {route: RouteValidateWorkloads, body: edit(deploy, func(m map[string]any) {
			req(m)["kind"] = map[string]any{"group": "apps", "version": "v1", "kind": "Widget"}
		}), wantUID: "w-strict", wantMsg: "got apps/v1 Widget"},
		"oversized body":           {body: `{"x":"` + strings.Repeat("a", 70<<10) + `"}`, wantHTTP: http.StatusRequestEntityTooLarge},
		"wrong content type":       {contentType: "text/plain", body: string(pod), wantHTTP: http.StatusUnsupportedMediaType},
		"missing content type":     {contentType: "-", body: string(pod), wantHTTP: http.StatusUnsupportedMediaType},
		"GET on a POST route":      {method: http.MethodGet, wantHTTP: http.StatusMethodNotAllowed},
		"POST on /healthz":         {route: "/healthz", body: "{}", wantHTTP: http.StatusMethodNotAllowed},
		"unknown route":            {route: "/mutate-everything", body: string(pod), wantHTTP: http.StatusNotFound},
		"content type with params": {contentType: "application/json; charset=utf-8", body: string(pod), wantHTTP: http.StatusOK},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			method, route, ct := tc.method, tc.route, tc.contentType
			if method == "" {
				method = http.MethodPost
			}
			if route == "" {
				route = RouteMutatePods
			}
			if ct == "" {
				ct = "application/json"
			}
			hr, err := http.NewRequest(method, r.url+route, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if ct != "-" {
				hr.Header.Set("Content-Type", ct)
			}
			resp, err := r.client.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if tc.wantHTTP != 0 {
				if resp.StatusCode != tc.wantHTTP {
					t.Fatalf("HTTP %d, want %d: %s", resp.StatusCode, tc.wantHTTP, body)
				}
				return
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("HTTP %d, want 200 with an AdmissionReview error: %s", resp.StatusCode, body)
			}
			var rev admissionv1.AdmissionReview
			if err := json.Unmarshal(body, &rev); err != nil || rev.Response == nil {
				t.Fatalf("not an AdmissionReview response (%v): %s", err, body)
			}
			if rev.APIVersion != "admission.k8s.io/v1" || rev.Kind != "AdmissionReview" {
				t.Errorf("apiVersion/kind %q/%q", rev.APIVersion, rev.Kind)
			}
			got := rev.Response
			if got.Allowed || got.Result == nil || got.Result.Code != 400 {
				t.Fatalf("want allowed:false code 400, got %s", body)
			}
			if string(got.UID) != tc.wantUID {
				t.Errorf("uid %q, want %q", got.UID, tc.wantUID)
			}
			if !strings.Contains(got.Result.Message, tc.wantMsg) {
				t.Errorf("message %q does not contain %q", got.Result.Message, tc.wantMsg)
			}
			if got.Patch != nil {
				t.Errorf("bad input must change nothing, got a patch")
			}
		})
	}
}

// TestReviewRecoversFromPanic: a Source that panics yields a 500, and the
// server keeps serving.
func TestReviewRecoversFromPanic(t *testing.T) {
	r, _, _ := startTLS(t, panicSource{testSource(t)}, Config{})
	body := readCase(t, "mutate-web-unknown-fields")
	for range 2 {
		resp, err := r.client.Post(r.url+RouteMutatePods, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("HTTP %d, want 500", resp.StatusCode)
		}
	}
	resp, err := r.client.Get(r.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz after panics: %d", resp.StatusCode)
	}
}

type panicSource struct{ StaticSource }

func (panicSource) Namespace(context.Context, string) (policies.Namespace, error) {
	panic("boom")
}

// TestReadinessAndDrain: /readyz fails until the set is there, and after
// cancel it fails at once while admission is still served during the drain.
func TestReadinessAndDrain(t *testing.T) {
	src := &switchSource{}
	r, s, _ := startTLS(t, src, Config{DrainDelay: 2 * time.Second})
	status := func(path string) int {
		resp, err := r.client.Get(r.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("/readyz"); got != http.StatusServiceUnavailable {
		t.Fatalf("readyz before sync = %d, want 503", got)
	}
	body := readCase(t, "mutate-web-unknown-fields")
	post := func() int {
		resp, err := r.client.Post(r.url+RouteMutatePods, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(); got != http.StatusServiceUnavailable {
		t.Fatalf("admission before sync = %d, want 503 (so failurePolicy decides)", got)
	}
	src.set = testSource(t).Policies
	if got := status("/readyz"); got != http.StatusOK {
		t.Fatalf("readyz after sync = %d", got)
	}
	if status("/healthz") != http.StatusOK {
		t.Fatal("healthz")
	}
	done := make(chan error, 1)
	go func() { done <- r.stop() }()
	deadline := time.Now().Add(time.Second)
	for s.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("still ready after cancel")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := status("/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("readyz while draining = %d, want 503", got)
	}
	if got := post(); got != http.StatusOK {
		t.Errorf("admission while draining = %d, want 200", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not shut down after the drain")
	}
	if _, err := r.client.Get(r.url + "/healthz"); err == nil {
		t.Error("server still answers after shutdown")
	}
}

type switchSource struct{ set *policies.Set }

func (s *switchSource) Set() *policies.Set { return s.set }
func (s *switchSource) Namespace(ctx context.Context, n string) (policies.Namespace, error) {
	return StaticSource{Namespaces: testNamespaces()}.Namespace(ctx, n)
}

// TestTLS: HTTP/1.1 only (no h2 via ALPN), TLS 1.2 minimum by default, 1.3
// when configured, and a bad version string is refused.
func TestTLS(t *testing.T) {
	r, _, _ := startTLS(t, testSource(t), Config{})
	dial := func(url string, cfg *tls.Config) (*tls.ConnectionState, error) {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), cfg)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		st := conn.ConnectionState()
		return &st, nil
	}
	st, err := dial(r.url, &tls.Config{RootCAs: r.pool, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if st.NegotiatedProtocol != "http/1.1" {
		t.Errorf("ALPN negotiated %q, want http/1.1 (HTTP/2 must be off)", st.NegotiatedProtocol)
	}
	resp, err := r.client.Get(r.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Errorf("served %s, want HTTP/1.x", resp.Proto)
	}
	if _, err := dial(r.url, &tls.Config{RootCAs: r.pool, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("TLS 1.1 accepted; the default minimum is 1.2")
	}
	if _, err := dial(r.url, &tls.Config{RootCAs: r.pool, MaxVersion: tls.VersionTLS12}); err != nil {
		t.Errorf("TLS 1.2 refused by default: %v", err)
	}

	r13, _, _ := startTLS(t, testSource(t), Config{TLSMinVersion: "1.3"})
	if _, err := dial(r13.url, &tls.Config{RootCAs: r13.pool, MaxVersion: tls.VersionTLS12}); err == nil {
		t.Error("TLS 1.2 accepted with TLSMinVersion 1.3")
	}
	if _, err := dial(r13.url, &tls.Config{RootCAs: r13.pool}); err != nil {
		t.Errorf("TLS 1.3 refused: %v", err)
	}
	if _, err := NewServer(Config{TLSMinVersion: "1.1"}, testSource(t), nil, testr(t)); err == nil {
		t.Error("TLSMinVersion 1.1 accepted")
	}
}

// TestCertReload: replacing tls.crt/tls.key in the cert dir changes the
// certificate new connections get, without restart (certwatcher).
func TestCertReload(t *testing.T) {
	r, _, _ := startTLS(t, testSource(t), Config{})
	served := func() []byte {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(r.url, "https://"), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading the served cert
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	before := served()
	next, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	want, err := next.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(before, want.Leaf.Raw) {
		t.Fatal("the new certificate is the old one")
	}
	if err := next.WriteDir(r.dir); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second) // fsnotify, or certwatcher's 10s poll
	for !bytes.Equal(served(), want.Leaf.Raw) {
		if time.Now().After(deadline) {
			t.Fatal("new certificate not served within 20s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMetrics: latency by route and outcome, mutations by policy, findings
// by policy/action/reason and overrides by policy/kind/outcome, in the
// server's registry; the admission port does not serve them.
func TestMetrics(t *testing.T) {
	r, _, reg := startTLS(t, testSource(t), Config{})
	for _, c := range []struct{ route, name string }{
		{RouteMutatePods, "mutate-web-unknown-fields"},
		{RouteValidatePods, "validate-pods-deny"},
		{RouteValidatePods, "validate-pods-audit"},
		{RouteValidatePods, "validate-pods-override-zero-denied"},
		{RouteValidatePods, "validate-pods-override-raise-audited"},
		{RouteMutatePods, "not-json"},
	} {
		body := []byte("nope")
		if c.name != "not-json" {
			body = readCase(t, c.name)
		}
		resp, err := r.client.Post(r.url+c.route, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	expect := map[string]float64{
		`gracekeeper_webhook_mutations_total{policy="http-drain"}`:                                           1,
		`gracekeeper_webhook_findings_total{action="Deny",policy="strict",reason="BudgetExceeded"}`:          2,
		`gracekeeper_webhook_findings_total{action="Audit",policy="audit-only",reason="BudgetExceeded"}`:     1,
		`gracekeeper_webhook_findings_total{action="Warn",policy="strict",reason="ShutdownLoweringRefused"}`: 1,
		`gracekeeper_webhook_overrides_total{kind="shutdown-seconds",outcome="refused",policy="strict"}`:     1,
		`gracekeeper_webhook_overrides_total{kind="shutdown-seconds",outcome="honoured",policy="strict"}`:    1,
		`gracekeeper_webhook_request_duration_seconds_count{outcome="patched",route="/mutate-pods"}`:         1,
		`gracekeeper_webhook_request_duration_seconds_count{outcome="denied",route="/validate-pods"}`:        2,
		`gracekeeper_webhook_request_duration_seconds_count{outcome="allowed",route="/validate-pods"}`:       2,
		`gracekeeper_webhook_request_duration_seconds_count{outcome="error",route="/mutate-pods"}`:           1,
	}
	resp, err := r.client.Get(r.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the admission port: HTTP %d, want 404 (metrics have their own, authenticated port)", resp.StatusCode)
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := rec.Body.String()
	for series, want := range expect {
		line := ""
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, series+" ") {
				line = l
			}
		}
		if line == "" {
			t.Errorf("metrics lack %s", series)
			continue
		}
		if got := strings.TrimSpace(strings.TrimPrefix(line, series)); got != strconvF(want) {
			t.Errorf("%s = %s, want %v", series, got, want)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "gracekeeper_webhook_mutations_total"); err != nil || n != 1 {
		t.Errorf("mutations series = %d (%v), want 1", n, err)
	}
}
