// Command cluster is `make bench-cluster`: pod creation through a real
// control plane (etcd + kube-apiserver on loopback, as `make demo` starts it)
// with the built `gracekeeper serve`, measured in rounds that alternate, in
// one run, between
//
//   - none: a namespace labelled gracekeeper.dev/ignore, no admission at all;
//   - floor: the same change gracekeeper makes, done in-process by the API
//     server with a hand-written MutatingAdmissionPolicy (JSONPatch) and a
//     minimal budget ValidatingAdmissionPolicy;
//   - selected/MODE: gracekeeper in each --modes admission mode, on pods a
//     policy selects;
//   - unselected/MODE: pods no policy selects, with gracekeeper running.
//
// Pods have two containers and are created by -c clients, -n per round. It
// reports creates per second and p50/p99 latency as ratios to none and to
// the floor, measured in the same run so that other load on the machine
// weighs on every arm alike. Then it creates -held pods a policy gives the
// termination-record finalizer and reports gracekeeper's RSS and Go heap.
// Everything runs on loopback and is bounded in count and time; every
// process and file it starts or writes is removed before it returns.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gracekeeper/gracekeeper/test/controlplane"
	"github.com/gracekeeper/gracekeeper/test/internal/cli"
)

// Bounds: a measuring tool for a local control plane, never a load generator.
const (
	maxPerRound = 20_000
	maxHeld     = 20_000
	maxClients  = 64
	maxRounds   = 20
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type options struct {
	gracekeeper string
	assets      string
	n, c        int
	rounds      int
	held        int
	modes       []string
	timeout     time.Duration
	heapProfile string
	goMemLimit  string
	serveArgs   []string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{}
	fs := flag.NewFlagSet("bench-cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var modes string
	fs.StringVar(&o.gracekeeper, "gracekeeper", filepath.Join(controlplane.RepoRoot(), "bin", "gracekeeper"), "the gracekeeper binary to run (make build)")
	fs.StringVar(&o.assets, "assets", controlplane.AssetsDir(), "directory holding kube-apiserver and etcd (make test-assets)")
	fs.IntVar(&o.n, "n", 1000, fmt.Sprintf("pods created per arm and round (at most %d)", maxPerRound))
	fs.IntVar(&o.c, "c", 16, fmt.Sprintf("concurrent clients (at most %d)", maxClients))
	fs.IntVar(&o.rounds, "rounds", 3, fmt.Sprintf("rounds; each runs every arm once per mode (at most %d)", maxRounds))
	fs.IntVar(&o.held, "held", 10000, fmt.Sprintf("then create this many pods held by the termination-record finalizer and read gracekeeper's memory; 0 skips it (at most %d)", maxHeld))
	fs.StringVar(&modes, "modes", "webhook,apiserver", "gracekeeper admission modes to measure (serve --admission-mode); a mode serve refuses is reported as not available in this build")
	fs.DurationVar(&o.timeout, "timeout", 45*time.Minute, "give up after this long")
	fs.Func("serve-arg", "one more gracekeeper serve flag, e.g. --audit=false (repeatable)", func(v string) error {
		o.serveArgs = append(o.serveArgs, v)
		return nil
	})
	fs.StringVar(&o.goMemLimit, "gomemlimit", "", "run gracekeeper with this GOMEMLIMIT (e.g. 96MiB), as the chart sets it from the container's memory limit; empty: none")
	fs.StringVar(&o.heapProfile, "heap-profile", "", "with -held: write gracekeeper's heap profile (pprof, after a GC) with the held pods to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	for _, m := range strings.Split(modes, ",") {
		if m = strings.TrimSpace(m); m != "" {
			o.modes = append(o.modes, m)
		}
	}
	switch {
	case o.n < 1 || o.n > maxPerRound:
		return o, fmt.Errorf("-n %d: must be 1..%d", o.n, maxPerRound)
	case o.c < 1 || o.c > maxClients:
		return o, fmt.Errorf("-c %d: must be 1..%d", o.c, maxClients)
	case o.rounds < 1 || o.rounds > maxRounds:
		return o, fmt.Errorf("-rounds %d: must be 1..%d", o.rounds, maxRounds)
	case o.held < 0 || o.held > maxHeld:
		return o, fmt.Errorf("-held %d: must be 0..%d", o.held, maxHeld)
	case len(o.modes) == 0:
		return o, errors.New("-modes: name at least one mode (webhook, apiserver)")
	}
	for _, f := range []string{o.gracekeeper, filepath.Join(o.assets, "kube-apiserver"), filepath.Join(o.assets, "etcd")} {
		if _, err := os.Stat(f); err != nil {
			return o, fmt.Errorf("%s: %w (run `make build test-assets`, or `make bench-cluster`)", f, err)
		}
	}
	return o, nil
}

// run is the whole benchmark: 0 when every arm ran correctly, 1 on any
// failure (a refused create, a pod not carrying what it should), 2 on bad flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if code, stop := cli.FlagsParsed("bench-cluster", err, stderr); stop {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	res, err := measure(ctx, o, stdout)
	if res != nil {
		res.print(stdout, o)
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench-cluster:", err)
		return 1
	}
	return 0
}
