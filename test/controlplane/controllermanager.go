package controlplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ControllerManagerPath is where `make node-assets` puts kube-controller-manager.
func ControllerManagerPath() string { return filepath.Join(AssetsDir(), "kube-controller-manager") }

// CheckControllerManager returns an error naming the missing binary and the
// command that builds it.
func CheckControllerManager() error {
	if _, err := os.Stat(ControllerManagerPath()); err != nil {
		return fmt.Errorf("kube-controller-manager not found in %s: run `make node-assets` (builds it from k8s.io/kubernetes %s; `make test` does)", AssetsDir(), KubernetesVersion)
	}
	return nil
}

// ControllerManagerOptions shape the kube-controller-manager command line.
type ControllerManagerOptions struct {
	// Controllers is --controllers; empty means "*" (every controller on by
	// default: namespace, garbage collector, deployment, replicaset,
	// statefulset, job, cronjob, serviceaccount, podgc, ...).
	Controllers []string
	// ExtraArgs are appended as they are.
	ExtraArgs []string
	// Ready bounds the wait for it to serve /healthz and run its controllers
	// (default 90 s: it starts after informers for every resource have synced).
	Ready time.Duration
}

// ControllerManager is a kube-controller-manager process running the real
// Kubernetes controllers against an envtest control plane.
type ControllerManager struct {
	cmd     *exec.Cmd
	dir     string
	logPath string
	exited  chan struct{}
	waitErr error
}

// StartControllerManager starts kube-controller-manager against env (already
// started) with the credentials of a system:masters user, no leader election
// and one shared client (--use-service-account-credentials=false: the test
// API server has no token controller key to mint per-controller tokens), its
// health port on a free loopback port. It returns once /healthz answers and
// the serviceaccount controller has created the "default" ServiceAccount of
// namespace default: proof that informers synced and controllers run.
func StartControllerManager(env *envtest.Environment, o ControllerManagerOptions) (*ControllerManager, error) {
	if err := CheckControllerManager(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gracekeeper-kcm-")
	if err != nil {
		return nil, err
	}
	m := &ControllerManager{dir: dir, logPath: filepath.Join(dir, "kube-controller-manager.log"), exited: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			_ = m.Stop()
		}
	}()

	user, err := env.AddUser(envtest.User{Name: "kube-controller-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager credentials: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	port, err := FreeLoopbackPort()
	if err != nil {
		return nil, err
	}
	controllers := "*"
	if len(o.Controllers) > 0 {
		controllers = strings.Join(o.Controllers, ",")
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		// Delegated authentication and authorization of its own /healthz
		// and /metrics go to the same API server.
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--controllers=" + controllers,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--v=2",
	}
	args = append(args, o.ExtraArgs...)
	logFile, err := os.Create(m.logPath)
	if err != nil {
		return nil, err
	}
	m.cmd = exec.Command(ControllerManagerPath(), args...)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	m.cmd.SysProcAttr = childAttrs()
	if err := m.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", ControllerManagerPath(), err)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		logFile.Close()
		close(m.exited)
	}()

	ready := o.Ready
	if ready == 0 {
		ready = 90 * time.Second
	}
	cs, err := kubernetes.NewForConfig(user.Config())
	if err != nil {
		return nil, err
	}
	if err := m.waitReady(cs, port, ready); err != nil {
		return nil, fmt.Errorf("%w\n--- kube-controller-manager log (tail) ---\n%s", err, m.LogTail())
	}
	ok = true
	return m, nil
}

func (m *ControllerManager) waitReady(cs kubernetes.Interface, port int, timeout time.Duration) error {
	// Its serving certificate is self-signed, generated into --cert-dir at
	// start; /healthz is only a readiness probe of a process we started, on
	// loopback, so the certificate is not verified.
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // see above
	}}
	defer hc.CloseIdleConnections()
	url := "https://127.0.0.1:" + strconv.Itoa(port) + "/healthz"
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		select {
		case <-m.exited:
			return false, fmt.Errorf("kube-controller-manager exited: %v", m.waitErr)
		default:
		}
		resp, err := hc.Get(url)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			last = "/healthz: " + resp.Status
			return false, nil
		}
		if _, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{}); err != nil {
			if !apierrors.IsNotFound(err) {
				last = err.Error()
			} else {
				last = "healthy, but the serviceaccount controller has not created default/default yet"
			}
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("kube-controller-manager not ready within %s: %v (last: %s)", timeout, err, last)
	}
	return nil
}

// Stop stops kube-controller-manager (SIGTERM, then SIGKILL after 10 s) and
// removes its directory.
func (m *ControllerManager) Stop() error {
	defer os.RemoveAll(m.dir)
	if m.cmd == nil || m.cmd.Process == nil {
		return nil
	}
	select {
	case <-m.exited:
		return nil
	default:
	}
	return Terminate(m.cmd.Process, m.exited, 10*time.Second, "kube-controller-manager")
}

// Running reports whether the process is still up (it exits on fatal errors).
func (m *ControllerManager) Running() bool {
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// LogTail is the end of its log, for failure messages.
func (m *ControllerManager) LogTail() string { return TailFile(m.logPath, 6000) }

// TailFile is the last max bytes of the file at path (a process's log, for
// failure messages), or why it cannot be read.
func TailFile(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// LogPath is its log file (removed by Stop).
func (m *ControllerManager) LogPath() string { return m.logPath }

// StartControllerManagerT starts kube-controller-manager for one test and
// stops it when the test ends: skipped under -short, and skipped with the
// command that builds it when the binary is absent.
func StartControllerManagerT(t testing.TB, env *envtest.Environment, o ControllerManagerOptions) *ControllerManager {
	t.Helper()
	SkipIfShort(t)
	if err := CheckControllerManager(); err != nil {
		t.Skipf("needs kube-controller-manager: %v", err)
	}
	m, err := StartControllerManager(env, o)
	if err != nil {
		t.Fatalf("starting kube-controller-manager: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube-controller-manager log (tail):\n%s", m.LogTail())
		}
		if err := m.Stop(); err != nil {
			t.Errorf("stopping kube-controller-manager: %v", err)
		}
	})
	return m
}

// FreeLoopbackPort asks the kernel for a free port on 127.0.0.1.
func FreeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Terminate sends p SIGTERM and waits until exited delivers; past grace it
// kills p, waits, and says so.
func Terminate[T any](p *os.Process, exited <-chan T, grace time.Duration, name string) error {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(grace):
		_ = p.Kill()
		<-exited
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", name, grace)
	}
}
