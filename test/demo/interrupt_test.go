//go:build unix

package main

import (
	"bufio"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracekeeper/gracekeeper/test/controlplane"
)

// testInterrupt runs the demo binary as `make demo` does (waiting for
// Ctrl-C), sends it SIGINT once the report is out, and checks it exits 0
// having stopped gracekeeper and the control plane and removed its temp dir.
func testInterrupt(t *testing.T, gk string) {
	tmp := t.TempDir()
	demoBin := filepath.Join(tmp, "demo")
	build := exec.Command("go", "build", "-o", demoBin, "./test/demo")
	build.Dir = controlplane.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./test/demo: %v\n%s", err, out)
	}
	args := []string{"--assets", controlplane.AssetsDir(), "--gracekeeper", gk}
	cmd := exec.Command(demoBin, args...)
	cmd.Env = append(os.Environ(), "DEMO_EXIT=0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()

	var out strings.Builder
	deadline := time.After(3 * time.Minute)
	waiting := true
	for waiting {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo ended before waiting for Ctrl-C: %v\n%s\n%s", <-exited, out.String(), stderr.String())
			}
			out.WriteString(l + "\n")
			waiting = !strings.HasPrefix(l, "Press Ctrl-C")
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatalf("no Ctrl-C prompt within 3 minutes:\n%s\n%s", out.String(), stderr.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		out.WriteString(l + "\n")
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("demo exited with %v after Ctrl-C\n%s", err, stderr.String())
		}
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("demo did not exit within a minute of Ctrl-C")
	}
	report := out.String()
	t.Logf("demo output:\n%s", report)
	checkNothingLeft(t, report)
}

// checkNothingLeft asserts the demo's temp dir is gone, gracekeeper's
// process has exited and kube-apiserver no longer listens.
func checkNothingLeft(t *testing.T, report string) {
	t.Helper()
	dir := regexp.MustCompile(`data in (\S+)\)`).FindStringSubmatch(report)
	if dir == nil {
		t.Error("report does not name its temp dir")
	} else if _, err := os.Stat(dir[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s still there after the demo (stat: %v)", dir[1], err)
	}
	if m := regexp.MustCompile(`serve \(pid (\d+)\)`).FindStringSubmatch(report); m == nil {
		t.Error("report does not name gracekeeper's pid")
	} else if pid := atoi(m[1]); syscall.Kill(pid, 0) == nil {
		t.Errorf("gracekeeper (pid %d) still running after the demo", pid)
	}
	if m := regexp.MustCompile(`kube-apiserver at (\S+)`).FindStringSubmatch(report); m == nil {
		t.Error("report does not name the kube-apiserver address")
	} else if u, err := url.Parse(m[1]); err != nil {
		t.Error(err)
	} else if conn, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		conn.Close()
		t.Errorf("kube-apiserver still listening on %s after the demo", u.Host)
	}
}
