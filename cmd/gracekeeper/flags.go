package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/gracekeeper/gracekeeper/policies"
)

// scopeFlags are the flags that say which namespaces gracekeeper leaves
// alone. serve and check register the same ones with the same defaults, so
// `check` judges as the webhook does; the chart passes webhook.excludeNamespaces
// and webhook.ignoreLabel to serve through them.
type scopeFlags struct {
	excluded    string
	ignoreLabel string
}

func (s *scopeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.excluded, "excluded-namespaces", strings.Join(policies.SystemNamespaces(), ","),
		"comma-separated namespaces never mutated or validated (serve adds its own --namespace)")
	fs.StringVar(&s.ignoreLabel, "ignore-label", policies.DefaultIgnoreLabel,
		`namespaces with this label set to "true" are never mutated or validated`)
}

// namespaces is --excluded-namespaces split, blanks dropped.
func (s *scopeFlags) namespaces() []string {
	var out []string
	for _, n := range strings.Split(s.excluded, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// label is --ignore-label; empty means the default.
func (s *scopeFlags) label() string {
	if s.ignoreLabel == "" {
		return policies.DefaultIgnoreLabel
	}
	return s.ignoreLabel
}

// engine is the policy engine's configuration for check, which has no own
// namespace to add.
func (s *scopeFlags) engine() policies.Config {
	return policies.Config{ExcludedNamespaces: s.namespaces(), IgnoreLabel: s.label()}
}

// newFlagSet is a subcommand's flag set: errors go to stderr, and -h prints
// the usage lines, then the flags.
func newFlagSet(name string, stderr io.Writer, usage ...string) *flag.FlagSet {
	fs := flag.NewFlagSet("gracekeeper "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		for _, l := range usage {
			fmt.Fprintln(stderr, l)
		}
		fs.PrintDefaults()
	}
	return fs
}

// parsed is what parseFlags found.
type parsed int

const (
	parsedOK   parsed = iota // run the command
	parsedHelp               // -h: usage printed, exit with success
	parsedBad                // a bad flag or a stray argument, reported on stderr
)

// parseFlags parses args and refuses positional arguments; hint, if any,
// follows that message.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, hint string) parsed {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return parsedHelp
		}
		return parsedBad
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q%s\n", fs.Name(), fs.Arg(0), hint)
		return parsedBad
	}
	return parsedOK
}

// restConfig is the cluster to talk to: --kubeconfig when given, else
// controller-runtime's lookup ($KUBECONFIG, in-cluster, ~/.kube/config).
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return config.GetConfig()
}
