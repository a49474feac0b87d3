package main

import (
	"flag"
	"strings"

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
