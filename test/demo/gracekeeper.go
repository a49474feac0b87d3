package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/gracekeeper/gracekeeper/test/controlplane"
	"github.com/gracekeeper/gracekeeper/test/testcert"
)

// gkNamespace is the namespace gracekeeper "runs in" (its webhook
// configurations exclude it, as the chart's do).
const gkNamespace = "gracekeeper-system"

// gracekeeperProc is the gracekeeper binary's `serve` against the local
// control plane, with a serving certificate the demo made.
type gracekeeperProc struct {
	desc     string // what runs, for the report
	exited   chan error
	baseURL  string
	caBundle []byte
	logPath  string
	halt     func() error // asks it to stop: SIGTERM
	kill     func() error // stops it at once: SIGKILL
	cleanup  func()
}

// prepare makes the serving certificate and picks the port.
func prepare(dir string) (certDir string, ca []byte, port int, err error) {
	certDir = filepath.Join(dir, "gracekeeper-certs")
	pair, err := testcert.New()
	if err != nil {
		return "", nil, 0, err
	}
	if err := pair.WriteDir(certDir); err != nil {
		return "", nil, 0, err
	}
	// The webhook configurations trust the file's CA as caBundle.
	ca = pair.CertPEM
	port, err = controlplane.FreeLoopbackPort()
	return certDir, ca, port, err
}

// startBinary runs `bin serve` with its output in dir/gracekeeper.log.
func startBinary(bin, kubeconfig, dir, admissionMode string) (*gracekeeperProc, error) {
	certDir, ca, port, err := prepare(dir)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "gracekeeper.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append(serveArgs(kubeconfig, certDir, port), "--admission-mode", admissionMode)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childAttrs()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	g := &gracekeeperProc{
		desc:   fmt.Sprintf("%s serve (pid %d)", bin, cmd.Process.Pid),
		exited: make(chan error, 1), caBundle: ca, logPath: logPath,
		baseURL: "https://127.0.0.1:" + strconv.Itoa(port),
		halt:    func() error { return cmd.Process.Signal(syscall.SIGTERM) },
		kill:    func() error { return cmd.Process.Kill() },
		cleanup: func() { _ = cmd.Process.Kill(); logFile.Close() },
	}
	go func() { g.exited <- cmd.Wait() }()
	return g, nil
}

// serveArgs are the flags of `gracekeeper serve` (cmd/gracekeeper/serve.go).
func serveArgs(kubeconfig, certDir string, port int) []string {
	return []string{"serve",
		"--kubeconfig", kubeconfig,
		"--namespace", gkNamespace,
		"--cert-dir", certDir,
		"--addr", "127.0.0.1:" + strconv.Itoa(port),
		// Nothing routes to it through endpoints here: a short drain keeps Ctrl-C quick.
		"--drain-delay", "500ms",
	}
}

// waitReady polls /readyz (ready once the policy cache has synced) until it
// answers 200, gracekeeper exits, or the deadline passes.
func (g *gracekeeperProc) waitReady(ctx context.Context, timeout time.Duration) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(g.caBundle)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		resp, err := hc.Get(g.baseURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/readyz: %s", resp.Status)
		}
		last = err
		select {
		case err := <-g.exited:
			g.exited <- err // stop() reads it again
			return fmt.Errorf("gracekeeper exited before it was ready: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("gracekeeper not ready at %s: %v", g.baseURL, last)
		case <-tick.C:
		}
	}
}

// stop asks gracekeeper to stop (it drains, then exits) and waits up to
// grace; past that it is killed.
func (g *gracekeeperProc) stop(grace time.Duration) error {
	defer g.cleanup()
	_ = g.halt()
	select {
	case <-g.exited:
		return nil
	case <-time.After(grace):
		return fmt.Errorf("gracekeeper did not exit within %s of being asked to", grace)
	}
}

// logTail is the end of gracekeeper's log, for error messages.
func (g *gracekeeperProc) logTail() string { return controlplane.TailFile(g.logPath, 4000) }
