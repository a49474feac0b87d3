// Package cluster drives the local single-node cluster of up.sh and down.sh
// from Go tests: it says what this machine lacks to run one, brings one up
// (or reuses the one `make cluster-up` started) and tears down what it
// started itself. The cluster lives in a network namespace of its own;
// RESTConfig reaches it from a test running inside (test/cluster/exec.sh,
// make e2e-local) or outside that namespace.
package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// NodeName is the name up.sh gives the node.
const NodeName = "gk-node"

// Binaries are what `make node-assets` puts in the assets dir.
func Binaries() []string {
	return []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"}
}

// Config says where the repository, the Kubernetes binaries and the state
// file live, and where the scripts' output goes.
type Config struct {
	Repo     string    // repository root (holds test/cluster/up.sh)
	Assets   string    // bin/k8s/<version>
	StateDir string    // holds state and kubeconfig; default Repo/bin/cluster
	Out      io.Writer // up.sh/down.sh output; nil: discarded
}

// Cluster is a running local cluster.
type Cluster struct {
	Kubeconfig string
	// Dir is the temp dir holding all of its state.
	Dir string
	// Netns is the name of its network namespace (/run/netns/<Netns>).
	Netns string
	// Owned is true when Up started it, so Down stops it.
	Owned bool
	cfg   Config
}

func (c Config) stateDir() string {
	if c.StateDir != "" {
		return c.StateDir
	}
	return filepath.Join(c.Repo, "bin", "cluster")
}

// Missing returns why this machine cannot run the cluster ("" when it can):
// Linux, root and the built binaries.
func Missing(cfg Config) string {
	if runtime.GOOS != "linux" {
		return "the local cluster needs Linux (this is " + runtime.GOOS + ")"
	}
	if os.Geteuid() != 0 {
		return "the local cluster needs root (it makes a network namespace; the kubelet mounts and makes cgroups)"
	}
	for _, b := range Binaries() {
		if _, err := os.Stat(filepath.Join(cfg.Assets, b)); err != nil {
			return fmt.Sprintf("%s not in %s: run `make node-assets`", b, cfg.Assets)
		}
	}
	return ""
}

// Up reuses the cluster whose state file exists, or runs up.sh.
func Up(ctx context.Context, cfg Config) (*Cluster, error) {
	if c, err := load(cfg); err == nil {
		// A state file outliving its cluster (a crash, a reboot) must not
		// pass for a running one.
		if err := c.ready(ctx); err != nil {
			return nil, fmt.Errorf("%s names a cluster that does not answer (%v); run `make cluster-down`",
				filepath.Join(cfg.stateDir(), "state"), err)
		}
		return c, nil
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	if err := script(ctx, cfg, "up.sh"); err != nil {
		return nil, fmt.Errorf("cluster up: %w", err)
	}
	c, err := load(cfg)
	if err != nil {
		return nil, err
	}
	c.Owned = true
	return c, nil
}

// RESTConfig is the admin config for the cluster. The API server listens
// only inside the cluster's network namespace: from a process outside it,
// connections are opened in that namespace (a process inside needs nothing).
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	if c.Netns == "" {
		return rc, nil
	}
	path := filepath.Join("/run/netns", c.Netns)
	inside, err := inNetns(path)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s of the cluster: %w", c.Netns, err)
	}
	if !inside {
		rc.Dial = dialInNetns(path)
	}
	return rc, nil
}

func (c *Cluster) ready(ctx context.Context) error {
	rc, err := c.RESTConfig()
	if err != nil {
		return err
	}
	rc.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	_, err = cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err
}

// Down runs down.sh when Up started the cluster; a reused one stays up.
func (c *Cluster) Down(ctx context.Context) error {
	if !c.Owned {
		return nil
	}
	return script(ctx, c.cfg, "down.sh")
}

func script(ctx context.Context, cfg Config, name string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(cfg.Repo, "test", "cluster", name))
	cmd.Env = append(os.Environ(), "K8S_BIN="+cfg.Assets, "CLUSTER_STATE_DIR="+cfg.stateDir())
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd.Run()
}

// load reads the KEY=VALUE state file up.sh writes.
func load(cfg Config) (*Cluster, error) {
	f, err := os.Open(filepath.Join(cfg.stateDir(), "state"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c := &Cluster{cfg: cfg}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "DIR":
			c.Dir = v
		case "KUBECONFIG":
			c.Kubeconfig = v
		case "NETNS":
			c.Netns = v
		}
	}
	if c.Kubeconfig == "" {
		return nil, fmt.Errorf("%s has no KUBECONFIG: the cluster did not finish starting; run `make cluster-down`", f.Name())
	}
	return c, sc.Err()
}
