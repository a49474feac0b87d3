package main

import "syscall"

// childAttrs puts gracekeeper in its own process group, so a terminal Ctrl-C
// reaches only the demo, which then stops it in order; and has the kernel
// SIGTERM it should the demo die without cleaning up.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
