package main

import (
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/gracekeeper/gracekeeper/test/controlplane"
)

// cluster is a local etcd + kube-apiserver on loopback whose every file lives
// under dir, so removing dir leaves nothing behind.
type cluster struct {
	env        *envtest.Environment
	cfg        *rest.Config
	kubeconfig string
}

// startCluster starts the control plane from the binaries in assets, with the
// LifecyclePolicy and openreports.io CRDs installed, and writes an admin kubeconfig into dir.
// The caller must call stop, also after an error.
func startCluster(dir, assets string) (*cluster, error) {
	env := controlplane.New()
	env.BinaryAssetsDirectory = assets
	// The openreports.io CRDs, as the chart installs them with
	// reports.installCRDs: the background audit writes its reports there.
	env.CRDDirectoryPaths = append(env.CRDDirectoryPaths, filepath.Join(controlplane.RepoRoot(), "charts", "gracekeeper", "files", "openreports"))
	// Given directories are used as they are (envtest only makes and removes
	// temp dirs for the ones left empty): keep them all under dir.
	env.ControlPlane.Etcd = &envtest.Etcd{DataDir: filepath.Join(dir, "etcd")}
	env.ControlPlane.APIServer = &envtest.APIServer{CertDir: filepath.Join(dir, "apiserver")}
	for _, d := range []string{env.ControlPlane.Etcd.DataDir, env.ControlPlane.APIServer.CertDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	c := &cluster{env: env}
	cfg, err := env.Start()
	if err != nil {
		return c, fmt.Errorf("start etcd and kube-apiserver from %s: %w", assets, err)
	}
	c.cfg = cfg
	user, err := env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return c, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return c, err
	}
	c.kubeconfig = filepath.Join(dir, "kubeconfig")
	return c, os.WriteFile(c.kubeconfig, kc, 0o600)
}

func (c *cluster) stop() error {
	if c == nil || c.env == nil {
		return nil
	}
	return c.env.Stop()
}
