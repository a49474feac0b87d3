// Command demo is `make demo`: it starts a local etcd + kube-apiserver on
// loopback (data in a temp dir), runs the gracekeeper binary against it,
// registers the webhooks and the CRD as the chart does, installs a policy from
// policies/library, creates a few pods and Deployments, and prints what
// gracekeeper injected and what it refused, and why. It then leaves the
// cluster up for kubectl until Ctrl-C (or exits at once with --exit or
// DEMO_EXIT=1), and removes every process and file it started or wrote.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/gracekeeper/gracekeeper/test/controlplane"
	"github.com/gracekeeper/gracekeeper/test/internal/cli"
)

func main() { cli.Main(run) }

type options struct {
	gracekeeper string
	assets      string
	policy      string
	exit        bool
	// admissionMode is passed to `gracekeeper serve --admission-mode` and
	// chooses the chart's webhook configurations (admission.mode).
	admissionMode string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	root := controlplane.RepoRoot()
	o := options{}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.gracekeeper, "gracekeeper", filepath.Join(root, "bin", "gracekeeper"), "the gracekeeper binary to run (make build)")
	fs.StringVar(&o.assets, "assets", controlplane.AssetsDir(), "directory holding kube-apiserver, etcd and kubectl (make test-assets)")
	fs.StringVar(&o.policy, "policy", filepath.Join(root, "policies", "library", "http-drain.yaml"), "the LifecyclePolicy to install")
	fs.BoolVar(&o.exit, "exit", os.Getenv("DEMO_EXIT") == "1", "exit after the report instead of waiting for Ctrl-C (also DEMO_EXIT=1)")
	fs.StringVar(&o.admissionMode, "admission-mode", "webhook", "gracekeeper serve --admission-mode: webhook, or apiserver (policies compiled into admission policies the API server evaluates)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.admissionMode != "webhook" && o.admissionMode != "apiserver" {
		return o, fmt.Errorf("--admission-mode %q: must be webhook or apiserver", o.admissionMode)
	}
	for _, f := range []string{o.gracekeeper, o.policy, filepath.Join(o.assets, "kube-apiserver"), filepath.Join(o.assets, "etcd")} {
		if _, err := os.Stat(f); err != nil {
			return o, fmt.Errorf("%s: %w (run `make build test-assets`, or `make demo`)", f, err)
		}
	}
	return o, nil
}

// run is the whole demo; everything it starts is stopped, and its temp dir
// removed, before it returns.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	o, err := parseFlags(args, stderr)
	if code, stop := cli.FlagsParsed("demo", err, stderr); stop {
		return code
	}
	dir, err := os.MkdirTemp("", "gracekeeper-demo-")
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintln(stderr, "demo: remove", dir, err)
			code = 1
			return
		}
		fmt.Fprintf(stdout, "removed %s\n", dir)
	}()
	fail := func(err error) int {
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	step := func(format string, a ...any) { fmt.Fprintf(stdout, ">> "+format+"\n", a...) }

	step("starting etcd and kube-apiserver %s on loopback (data in %s)", controlplane.KubernetesVersion, dir)
	cl, err := startCluster(dir, o.assets)
	defer func() {
		step("stopping kube-apiserver and etcd")
		if err := cl.stop(); err != nil {
			fmt.Fprintln(stderr, "demo: stop control plane:", err)
			code = 1
		}
	}()
	if err != nil {
		return fail(err)
	}
	step("kube-apiserver at %s", cl.cfg.Host)

	gk, err := startBinary(o.gracekeeper, cl.kubeconfig, dir, o.admissionMode)
	if gk != nil {
		defer func() {
			step("stopping gracekeeper")
			if err := gk.stop(10 * time.Second); err != nil {
				fmt.Fprintln(stderr, "demo: stop gracekeeper:", err)
				code = 1
			}
		}()
	}
	if err != nil {
		return fail(err)
	}
	step("started %s, serving on %s", gk.desc, gk.baseURL)
	if err := gk.waitReady(ctx, 60*time.Second); err != nil {
		return fail(fmt.Errorf("%w\n%s", err, gk.logTail()))
	}

	d, err := newDemo(cl, gk, stdout, o.admissionMode)
	if err != nil {
		return fail(err)
	}
	step("installing the webhook configurations and the policy %s (admission mode %s)", o.policy, o.admissionMode)
	if err := d.install(ctx, o.policy); err != nil {
		return fail(err)
	}
	step("creating pods and Deployments")
	if err := d.showcase(ctx); err != nil {
		return fail(err)
	}
	step("auditing what already runs")
	if err := d.showAudit(ctx, o.gracekeeper, cl.kubeconfig, d.policy); err != nil {
		return fail(fmt.Errorf("%w\n%s", err, gk.logTail()))
	}

	if o.admissionMode == "apiserver" {
		step("killing gracekeeper (SIGKILL): the API server still enforces the policy")
		if err := d.whileStopped(ctx); err != nil {
			return fail(err)
		}
	}

	fmt.Fprintf(stdout, "\nThe cluster is yours to explore:\n  export KUBECONFIG=%s\n  %s get pods -A\n  %s get lifecyclepolicies\n",
		cl.kubeconfig, filepath.Join(o.assets, "kubectl"), filepath.Join(o.assets, "kubectl"))
	if gk.logPath != "" {
		fmt.Fprintf(stdout, "  gracekeeper log: %s\n", gk.logPath)
	}
	if o.exit {
		return 0
	}
	fmt.Fprintln(stdout, "\nPress Ctrl-C to stop everything and remove", dir)
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout)
	case err := <-gk.exited:
		return fail(fmt.Errorf("gracekeeper exited: %v\n%s", err, gk.logTail()))
	}
	return 0
}
