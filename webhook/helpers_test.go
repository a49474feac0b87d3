package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	testrpkg "github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
	"github.com/gracekeeper/gracekeeper/test/testcert"
)

// testNamespaces are the namespace labels every test source knows.
func testNamespaces() map[string]map[string]string {
	return map[string]map[string]string{
		"shop":        {"env": "prod", "kubernetes.io/metadata.name": "shop"},
		"kube-system": {"kubernetes.io/metadata.name": "kube-system"},
	}
}

// loadPolicies reads testdata/policies.yaml.
func loadPolicies(tb testing.TB) []v1alpha1.LifecyclePolicy {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "policies.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	var out []v1alpha1.LifecyclePolicy
	d := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var p v1alpha1.LifecyclePolicy
		if err := d.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			tb.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func testSource(tb testing.TB) StaticSource {
	tb.Helper()
	set, fs := policies.NewSet(policies.Config{ExcludedNamespaces: []string{"kube-system"}}, loadPolicies(tb))
	if len(fs) > 0 {
		tb.Fatalf("test policies do not compile: %+v", fs)
	}
	return StaticSource{Policies: set, Namespaces: testNamespaces()}
}

// newTestServer builds a server with its own registry and no drain delay.
func newTestServer(tb testing.TB, src Source, cfg Config) (*Server, *prometheus.Registry) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	if cfg.DrainDelay == 0 {
		cfg.DrainDelay = -1
	}
	var lg logr.Logger = logr.Discard()
	if t, ok := tb.(*testing.T); ok {
		lg = testrpkg.NewWithOptions(t, testrpkg.Options{Verbosity: 1})
	}
	s, err := NewServer(cfg, src, reg, lg)
	if err != nil {
		tb.Fatal(err)
	}
	return s, reg
}

// running is a server listening on 127.0.0.1 over TLS with a test cert.
type running struct {
	url    string
	client *http.Client
	pool   *x509.CertPool
	dir    string
	stop   func() error
}

// startTLS starts s with a fresh certificate for 127.0.0.1 in a temp dir.
func startTLS(t *testing.T, src Source, cfg Config) (*running, *Server, *prometheus.Registry) {
	t.Helper()
	dir := t.TempDir()
	pool := testcert.MustWriteDir(t, dir)
	cfg.CertDir = dir
	cfg.Addr = "127.0.0.1:0"
	s, reg := newTestServer(t, src, cfg)
	addr, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Start(ctx) }()
	var stopped bool
	var stopErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case stopErr = <-errc:
			case <-time.After(30 * time.Second):
				stopErr = errors.New("server did not stop within 30s")
			}
		}
		return stopErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("server stop: %v", err)
		}
	})
	r := &running{
		url: "https://" + addr.String(), pool: pool, dir: dir, stop: stop,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2: true, // the server must still answer HTTP/1.1
		}},
	}
	// Wait until the TLS listener answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := r.client.Get(r.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r, s, reg
}

func testr(t *testing.T) logr.Logger { return testrpkg.New(t) }

func strconvF(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
