package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/audit"
	"github.com/gracekeeper/gracekeeper/check"
	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/policies"
)

const auditUsage = `usage: gracekeeper audit [--kubeconfig FILE] [--context NAME] [-n NAMESPACE | -A]
Judges the pods and workloads running in the cluster against its LifecyclePolicies, as admission would
judge them if created now, and prints the findings table of ` + "`gracekeeper check`" + `. It only reads.
Exit code: 0 all pass (warnings allowed), 1 a policy denies something, 2 the cluster cannot be read.`

// runAudit is `gracekeeper audit`: kubectl's connection flags in, package
// audit does the work with a read-only client.
func runAudit(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit", stderr, auditUsage)
	var (
		kubeconfig, kubeContext, namespace, excluded string
		all                                          bool
		timeout                                      time.Duration
	)
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&kubeContext, "context", "", "kubeconfig context to use (default: the current context)")
	fs.StringVar(&namespace, "namespace", "", "namespace to audit (default: the context's namespace, else default)")
	fs.StringVar(&namespace, "n", "", "shorthand for --namespace")
	fs.BoolVar(&all, "all-namespaces", false, "audit every namespace")
	fs.BoolVar(&all, "A", false, "shorthand for --all-namespaces")
	fs.StringVar(&excluded, "excluded-namespaces", strings.Join(policies.SystemNamespaces(), ","), "comma-separated namespaces never judged (set it as serve's, plus gracekeeper's own namespace)")
	fs.DurationVar(&timeout, "request-timeout", 60*time.Second, "bound on the whole audit's API reads")
	switch parseFlags(fs, args, stderr, "") {
	case parsedHelp:
		return check.ExitPass
	case parsedBad:
		return check.ExitBadInput
	}
	// The same loading rules as kubectl (client-go's clientcmd).
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext})
	cfg, err := cc.ClientConfig()
	if err != nil {
		fmt.Fprintf(stderr, "gracekeeper audit: kubeconfig: %v\n", err)
		return check.ExitBadInput
	}
	if namespace == "" && !all {
		if namespace, _, err = cc.Namespace(); err != nil {
			fmt.Fprintf(stderr, "gracekeeper audit: kubeconfig: %v\n", err)
			return check.ExitBadInput
		}
	}
	scheme, err := clientscheme.New()
	if err != nil {
		fmt.Fprintln(stderr, "gracekeeper audit:", err)
		return check.ExitBadInput
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintf(stderr, "gracekeeper audit: %v\n", err)
		return check.ExitBadInput
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var ex []string
	for _, n := range strings.Split(excluded, ",") {
		if n = strings.TrimSpace(n); n != "" {
			ex = append(ex, n)
		}
	}
	return audit.RunCLI(ctx, c, audit.CLIOptions{
		Namespace: namespace, AllNamespaces: all, Excluded: ex, Stdout: stdout, Stderr: stderr,
	})
}
