package main

import (
	"context"
	"fmt"
	"io"

	"github.com/go-logr/logr/funcr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gracekeeper/gracekeeper/admissionpolicy"
	"github.com/gracekeeper/gracekeeper/finalizer"
	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
)

const releaseUsage = `usage: gracekeeper release-finalizers [--kubeconfig FILE] [--dry-run]
Removes the admission policies gracekeeper compiled (apiserver mode), then every gracekeeper finalizer
(and only those) from every pod labelled gracekeeper.dev/finalize=true, after recording what it can. Exit code: 0 done, 1 some pods failed, 2 bad flags or no cluster.`

// runReleaseFinalizers is `gracekeeper release-finalizers`, the chart's
// pre-delete hook: package finalizer does the work.
func runReleaseFinalizers(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("release-finalizers", stderr, releaseUsage)
	var (
		kubeconfig string
		dryRun     bool
	)
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, in-cluster, then ~/.kube/config)")
	fs.BoolVar(&dryRun, "dry-run", false, "report what would be removed; the API server checks the patches as dry runs, nothing is written or called")
	switch parseFlags(fs, args, stderr, "") {
	case parsedHelp:
		return 0
	case parsedBad:
		return 2
	}
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "gracekeeper release-finalizers: %v\n", err)
		return 2
	}
	// Cleanup targets are read from LifecyclePolicies: the client must know them.
	scheme, err := clientscheme.New()
	if err != nil {
		fmt.Fprintf(stderr, "gracekeeper release-finalizers: %v\n", err)
		return 2
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintf(stderr, "gracekeeper release-finalizers: %v\n", err)
		return 2
	}
	// Records whose Event the API server refuses (a namespace being
	// deleted, quota, RBAC) are written here, as JSON lines on stderr.
	lg := funcr.NewJSON(func(obj string) { fmt.Fprintln(stderr, obj) }, funcr.Options{LogTimestamp: true})
	// First the compiled admission policies (apiserver mode): once they are
	// gone no new pod gets a gracekeeper finalizer behind our back.
	if !dryRun {
		if err := admissionpolicy.RemoveAll(ctx, c); err != nil {
			fmt.Fprintf(stderr, "gracekeeper release-finalizers: removing the compiled admission policies: %v\n", err)
			return 1
		}
	}
	rep, err := finalizer.ReleaseAll(ctrllog.IntoContext(ctx, lg), c, finalizer.ReleaseOptions{DryRun: dryRun})
	prefix := ""
	if dryRun {
		prefix = "dry run: "
	}
	fmt.Fprintf(stdout, "%s%s\n", prefix, rep)
	if err != nil {
		fmt.Fprintf(stderr, "gracekeeper release-finalizers: %v\n", err)
		return 1
	}
	return 0
}
