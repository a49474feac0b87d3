package faults

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gracekeeper/gracekeeper/test/controlplane"
	"github.com/gracekeeper/gracekeeper/test/integration/install"
	"github.com/gracekeeper/gracekeeper/test/testcert"
)

// buildGracekeeper builds ./cmd/gracekeeper into dir: the binary the image
// ships, so the process killed below is the real `gracekeeper serve`.
func buildGracekeeper(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("needs the go command to build ./cmd/gracekeeper: %v", err)
	}
	bin := filepath.Join(dir, "gracekeeper")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./cmd/gracekeeper")
	cmd.Dir = controlplane.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/gracekeeper: %v\n%s", err, out)
	}
	return bin
}

// serveProc runs `gracekeeper serve` as a child process on a fixed loopback
// address with a fixed serving certificate: the webhook configurations name
// both, so a restarted process serves where the API server calls.
type serveProc struct {
	bin, kubeconfig, certDir, addr, logPath string
	caBundle                                []byte
	http                                    *http.Client

	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

func newServeProc(t *testing.T, bin, kubeconfig, dir string) *serveProc {
	t.Helper()
	pair, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(dir, "certs")
	if err := pair.WriteDir(certDir); err != nil {
		t.Fatal(err)
	}
	pool, err := pair.Pool()
	if err != nil {
		t.Fatal(err)
	}
	port, err := controlplane.FreeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := &serveProc{
		bin: bin, kubeconfig: kubeconfig, certDir: certDir, addr: addr, caBundle: pair.CertPEM,
		logPath: filepath.Join(dir, "gracekeeper.log"),
		http: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}},
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gracekeeper log (tail):\n%s", p.logTail())
		}
		p.stop()
	})
	return p
}

func (p *serveProc) baseURL() string { return "https://" + p.addr }

// start runs the process and waits until /readyz answers 200.
func (p *serveProc) start(ctx context.Context) error {
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(logFile, "=== start %d at %s\n", p.starts, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, "serve",
		"--kubeconfig", p.kubeconfig,
		"--namespace", install.Namespace,
		"--cert-dir", p.certDir,
		"--addr", p.addr,
		"--drain-delay", "100ms",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The kernel kills it should the test binary die first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(exited) }()
	p.cmd, p.exited = cmd, exited

	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		resp, err := p.http.Get(p.baseURL() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("gracekeeper exited before ready; log:\n%s", p.logTail())
		case <-ctx.Done():
			return fmt.Errorf("gracekeeper not ready at %s within 60s; log:\n%s", p.addr, p.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// kill SIGKILLs the process (no drain, no goodbye) and waits for it to be gone.
func (p *serveProc) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}

// stop asks the process to stop (SIGTERM), killing it after 10 s.
func (p *serveProc) stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
}

func (p *serveProc) logTail() string { return controlplane.TailFile(p.logPath, 6000) }
