//go:build !linux

package controlplane

import "syscall"

func childAttrs() *syscall.SysProcAttr { return nil }
