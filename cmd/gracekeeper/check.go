package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/gracekeeper/gracekeeper/check"
)

// stringsFlag collects a repeatable flag (-f a -f b).
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

const checkUsage = `usage: gracekeeper check -f FILE [-f FILE2] [-p POLICY_FILE_OR_DIR ...] [--namespace-labels k=v,...] [--namespace NAME] [--excluded-namespaces NS,...] [--ignore-label KEY] [-o yaml|json]
Prints the objects as admission would leave them on stdout and the findings on stderr.
Exit code: 0 all pass (warnings allowed), 1 something is denied, 2 bad input.`

// runCheck is `gracekeeper check`: flags in, package check does the work.
func runCheck(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", stderr, checkUsage)
	var (
		files, pols stringsFlag
		nsLabels    string
		namespace   string
		output      string
		scope       scopeFlags
	)
	fs.Var(&files, "f", "pod or workload YAML (multi-document, v1 List); repeatable; - is stdin")
	fs.Var(&pols, "p", "LifecyclePolicy file, or directory of *.yaml/*.yml files; repeatable")
	fs.StringVar(&nsLabels, "namespace-labels", "", "labels of the objects' namespace, k=v,... (kubernetes.io/metadata.name is set from the name)")
	fs.StringVar(&namespace, "namespace", "default", "namespace of objects that set no metadata.namespace")
	fs.StringVar(&output, "o", "yaml", "output format of the objects: yaml or json")
	scope.register(fs)
	switch parseFlags(fs, args, stderr, " (inputs go after -f)") {
	case parsedHelp:
		return check.ExitPass
	case parsedBad:
		return check.ExitBadInput
	}
	lbls, err := parseLabels(nsLabels)
	if err != nil {
		fmt.Fprintf(stderr, "gracekeeper check: --namespace-labels: %v\n", err)
		return check.ExitBadInput
	}
	if err := scope.engine().Validate(); err != nil {
		fmt.Fprintf(stderr, "gracekeeper check: --excluded-namespaces or --ignore-label: %v\n", err)
		return check.ExitBadInput
	}
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		fmt.Fprintf(stderr, "gracekeeper check: --namespace %q: %s\n", namespace, strings.Join(errs, "; "))
		return check.ExitBadInput
	}
	return check.Run(ctx, check.RunOptions{
		Options: check.Options{
			Namespace:       namespace,
			NamespaceLabels: lbls,
			// The namespaces the webhook configurations never send, as serve's flags say.
			Engine: scope.engine(),
		},
		Files:       files,
		PolicyPaths: pols,
		Output:      check.Format(output),
		Stdin:       stdin,
		Stdout:      stdout,
		Stderr:      stderr,
	})
}

// parseLabels reads k=v,...; keys and values are validated as label keys and
// values (apimachinery's label parser does it).
func parseLabels(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	return labels.ConvertSelectorToLabelsMap(s)
}
