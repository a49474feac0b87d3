package main

import "syscall"

// childAttrs has the kernel kill gracekeeper should the bench die without
// stopping it.
func childAttrs() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
