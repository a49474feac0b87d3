package controlplane

import "syscall"

// childAttrs has the kernel SIGKILL a process we start should the test
// binary die without stopping it (a panic, a -timeout), so no
// kube-controller-manager outlives its test against a dead API server.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
