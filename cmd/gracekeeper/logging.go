package main

import (
	"fmt"
	"io"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// newLogger is serve's one logger: JSON lines on w (logr's funcr: no logging
// framework to carry). controller-runtime and client-go each log through a
// logger kept in a package variable (controller-runtime's log.Log, klog's
// global logger: leader election, reflectors, the work queue); both are
// pointed at this one here, once, in the command that owns the process,
// so every line the process writes is JSON.
func newLogger(w io.Writer, verbosity int) logr.Logger {
	lg := funcr.NewJSON(func(obj string) { fmt.Fprintln(w, obj) }, funcr.Options{Verbosity: verbosity, LogTimestamp: true})
	ctrllog.SetLogger(lg)
	klog.SetLogger(lg.WithName("client-go"))
	return lg
}
