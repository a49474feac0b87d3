// Command gracekeeper is the admission webhook and finalizer controller
// (`serve`), the offline checker (`check`), the read-only cluster audit
// (`audit`), the uninstall helper
// (`release-finalizers`) and `version`. This package only parses flags and
// wires packages together.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

func commands() map[string]command {
	return map[string]command{
		"serve":              {"run the admission webhook, the finalizer controller, metrics and health endpoints", runServe},
		"check":              {"apply policies to pod and workload YAML offline and print the result and findings", runCheck},
		"audit":              {"judge the pods and workloads running in a cluster against its policies (read-only)", runAudit},
		"release-finalizers": {"remove every gracekeeper finalizer from every pod (uninstall)", runReleaseFinalizers},
		"version":            {"print the version", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		return 2
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "gracekeeper: unknown command %q\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	return c.run(ctx, args[1:], stdin, stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: gracekeeper <command> [flags]")
	for _, name := range []string{"serve", "check", "audit", "release-finalizers", "version"} {
		fmt.Fprintf(w, "  %-20s %s\n", name, cmds[name].summary)
	}
}

func runVersion(_ context.Context, _ []string, _ io.Reader, stdout, _ io.Writer) int {
	fmt.Fprintf(stdout, "gracekeeper %s\n", Version)
	return 0
}
