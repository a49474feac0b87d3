package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/gracekeeper/gracekeeper/test/controlplane"
	"github.com/gracekeeper/gracekeeper/test/integration/install"
	"github.com/gracekeeper/gracekeeper/test/testcert"
)

// controlPlane starts etcd and kube-apiserver from assets with the
// LifecyclePolicy CRD (envtest keeps their data in temp dirs it removes on
// Stop) and writes an admin kubeconfig for gracekeeper into dir.
func controlPlane(assets, dir string) (*envtest.Environment, *rest.Config, string, error) {
	env := controlplane.New()
	env.BinaryAssetsDirectory = assets
	cfg, err := env.Start()
	if err != nil {
		return env, nil, "", fmt.Errorf("start etcd and kube-apiserver from %s: %w", assets, err)
	}
	user, err := env.AddUser(envtest.User{Name: "bench-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return env, cfg, "", err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return env, cfg, "", err
	}
	path := filepath.Join(dir, "kubeconfig")
	return env, cfg, path, os.WriteFile(path, kc, 0o600)
}

// server is `gracekeeper serve`, restarted for each admission mode on the
// same loopback port with the same certificate, so the webhook
// configurations keep reaching it.
type server struct {
	bin, kubeconfig, dir, certDir string
	goMemLimit                    string
	extraArgs                     []string // more serve flags (-serve-arg)
	addr, metricsAddr, pprofAddr  string
	caBundle                      []byte
	http                          *http.Client

	mode string
	cmd  *exec.Cmd
	done chan error
	log  *bytes.Buffer
}

func newServer(bin, kubeconfig, dir string) (*server, error) {
	s := &server{bin: bin, kubeconfig: kubeconfig, dir: dir, certDir: filepath.Join(dir, "certs")}
	pair, err := testcert.New()
	if err != nil {
		return nil, err
	}
	if err := pair.WriteDir(s.certDir); err != nil {
		return nil, err
	}
	s.caBundle = pair.CertPEM
	pool, err := pair.Pool()
	if err != nil {
		return nil, err
	}
	s.http = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	if s.addr, err = loopbackAddr(); err != nil {
		return nil, err
	}
	if s.metricsAddr, err = loopbackAddr(); err != nil {
		return nil, err
	}
	if s.pprofAddr, err = loopbackAddr(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *server) baseURL() string { return "https://" + s.addr }

// errModeUnavailable: serve refused --admission-mode (a build without it).
var errModeUnavailable = fmt.Errorf("not available in this build")

// start runs serve in mode, as the chart runs it (narrowed webhooks, the
// background audit, the finalizer controller), and waits for /readyz.
// "webhook" is serve's default and passes no flag, so builds without
// --admission-mode run it too.
func (s *server) start(ctx context.Context, mode string, profile bool) error {
	args := []string{"serve", "--kubeconfig", s.kubeconfig, "--namespace", install.Namespace,
		"--cert-dir", s.certDir, "--addr", s.addr, "--drain-delay", "100ms",
		"--metrics-bind-address", s.metricsAddr, "--metrics-insecure",
		"--narrow-webhooks", "--mutating-webhook-config", install.WebhookConfigName,
		"--validating-webhook-config", install.WebhookConfigName}
	if mode != "webhook" {
		args = append(args, "--admission-mode="+mode)
	}
	if profile {
		args = append(args, "--pprof-bind-address", s.pprofAddr)
	}
	args = append(args, s.extraArgs...)
	s.log = &bytes.Buffer{}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = childAttrs()
	if s.goMemLimit != "" {
		cmd.Env = append(os.Environ(), "GOMEMLIMIT="+s.goMemLimit)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.mode, s.done = cmd, mode, make(chan error, 1)
	go func() { s.done <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.done <- err
			s.cmd = nil
			if cmd.ProcessState.ExitCode() == 2 && strings.Contains(s.log.String(), "admission-mode") {
				return errModeUnavailable
			}
			return fmt.Errorf("gracekeeper serve exited: %v\n%s", err, tail(s.log.String()))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if resp, err := s.http.Get(s.baseURL() + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("gracekeeper serve not ready within 60s\n%s", tail(s.log.String()))
}

// stop sends SIGTERM and waits; past 15 s it kills.
func (s *server) stop() error {
	if s.cmd == nil {
		return nil
	}
	defer func() { s.cmd = nil }()
	return controlplane.Terminate(s.cmd.Process, s.done, 15*time.Second, "gracekeeper serve")
}

// metrics scrapes gracekeeper's /metrics.
func (s *server) metrics() (map[string]*metricFamily, error) {
	resp, err := http.Get("http://" + s.metricsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// podReviews is how many pod reviews (mutate and validate) gracekeeper has answered.
func (s *server) podReviews() (uint64, error) {
	fams, err := s.metrics()
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, m := range fams["gracekeeper_webhook_request_duration_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "route" && (l.GetValue() == "/mutate-pods" || l.GetValue() == "/validate-pods") {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n, nil
}

// memory reads gracekeeper's resident set from /proc/PID/status and its Go
// heap in use from /metrics.
func (s *server) memory() (mem, error) {
	var m mem
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = kb << 10
		case "VmHWM:":
			m.peak = kb << 10
		case "RssAnon:":
			m.anon = kb << 10
		case "RssFile:":
			m.file = kb << 10
		}
	}
	fams, err := s.metrics()
	if err != nil {
		return m, err
	}
	if f := fams["go_memstats_heap_inuse_bytes"]; f != nil && len(f.GetMetric()) > 0 {
		m.heap = uint64(f.GetMetric()[0].GetGauge().GetValue())
	}
	return m, nil
}

// heapProfile writes gracekeeper's heap profile, taken after a GC, to path.
func (s *server) heapProfile(path string) error {
	resp, err := http.Get("http://" + s.pprofAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/debug/pprof/heap: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// counter sums a counter family's samples whose label name has value.
func counter(fams map[string]*metricFamily, family, name, value string) float64 {
	var n float64
	for _, m := range fams[family].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == name && l.GetValue() == value {
				n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return n
}

// mem is gracekeeper's memory: the resident set, its peak, its anonymous
// part (heap, stacks) and its file-backed part (the binary's mapped code and
// read-only data), and the Go heap in use.
type mem struct{ rss, peak, anon, file, heap uint64 }

type metricFamily = dto.MetricFamily

func loopbackAddr() (string, error) {
	port, err := controlplane.FreeLoopbackPort()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), err
}

func tail(s string) string {
	if len(s) > 3000 {
		return s[len(s)-3000:]
	}
	return s
}
